package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley"
)

// BenchmarkSendMessageParallel measures durable sends (SQLite: WAL,
// synchronous=FULL; PostgreSQL: the server's settings, four writers) from
// many concurrent clients into a few conversations, which is where group
// commit pays: one fsync per batch instead of one per message.
func BenchmarkSendMessageParallel(b *testing.B) {
	for _, engine := range engines {
		b.Run(engine, func(b *testing.B) { benchmarkSend(b, engine, false) })
	}
}

// BenchmarkSendMessageParallelWithPush is the same with every user owning
// an iOS device: each message also queues 15 push jobs, each with a badge
// summed over the recipient's 8 conversations, in its transaction.
func BenchmarkSendMessageParallelWithPush(b *testing.B) {
	for _, engine := range engines {
		b.Run(engine, func(b *testing.B) { benchmarkSend(b, engine, true) })
	}
}

func benchmarkSend(b *testing.B, engine string, withPush bool) {
	ctx := context.Background()
	var opts Options
	if withPush {
		opts.PushPlatforms = []parley.Platform{parley.PlatformIOS}
	}
	db, err := newLocation(b, engine).open(ctx, discard{}, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()

	const users, convs = 16, 8
	var ids []string
	for i := range users {
		ids = append(ids, newUser(b, db, fmt.Sprintf("bench%02d", i)).ID)
		if withPush {
			putToken(b, db, ids[i], parley.PlatformIOS, fmt.Sprintf("%064x", i))
		}
	}
	var convIDs []string
	for range convs {
		convIDs = append(convIDs, newGroup(b, db, ids[0], ids[1:]...).ID)
	}

	var next atomic.Int64
	b.SetParallelism(16) // many clients per CPU, as a chat server has
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := next.Add(1)
			_, _, err := db.SendMessage(ctx, parley.NewMessage{
				ConversationID:  convIDs[n%convs],
				SenderID:        ids[n%users],
				ClientMessageID: fmt.Sprint(n),
				Kind:            parley.KindText,
				Text:            "a benchmark message of a typical length, about eighty bytes long.",
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkSendMessageConversations measures sends into a few busy groups
// of 10 members, as the server runs them by default (Web Push on, nobody
// with a device: each send looks for recipients' devices and finds none),
// with the latency of each send: into 3 conversations (three groups, as
// `parley bench --users 30 --group-size 10` makes) and into one hot
// conversation that every sender shares. On PostgreSQL the cluster cases
// open three DBs on one schema, as three nodes with four writers and an
// outbox each, and spread the senders over them.
func BenchmarkSendMessageConversations(b *testing.B) {
	cases := []struct {
		name         string
		nodes, convs int
	}{
		{"convs=3", 1, 3},
		{"convs=1", 1, 1},
		{"nodes=3/convs=3", 3, 3},
		{"nodes=3/convs=1", 3, 1},
	}
	for _, engine := range engines {
		for _, c := range cases {
			if c.nodes > 1 && engine != "postgres" {
				continue
			}
			b.Run(engine+"/"+c.name, func(b *testing.B) { benchmarkConversations(b, engine, c.nodes, c.convs, 0) })
		}
	}
}

// BenchmarkSendMessageAtRate sends as BenchmarkSendMessageConversations
// does into 3 conversations, but at 100 messages a second (each send in a
// goroutine of its own, as from a client of its own) instead of as fast as
// possible: the latencies of a light load, from the DBs' first send, as
// `parley bench --users 30 --group-size 10 --rate 100` makes. Its ns/op is
// the rate's interval; -benchtime 1000x sends 10 s.
func BenchmarkSendMessageAtRate(b *testing.B) {
	for _, engine := range engines {
		nodes := 1
		if engine == "postgres" {
			nodes = 3
		}
		b.Run(fmt.Sprintf("%s/nodes=%d/convs=3/rate=100", engine, nodes), func(b *testing.B) {
			benchmarkConversations(b, engine, nodes, 3, 100)
		})
	}
}

// benchmarkConversations sends b.N messages through nodes DBs on one
// database into convs groups of 10, as fast as 32 clients can, or at rate
// messages a second if rate is positive.
func benchmarkConversations(b *testing.B, engine string, nodes, convs int, rate float64) {
	ctx := context.Background()
	loc := newLocation(b, engine)
	// Several nodes keep an outbox, as a cluster's nodes do.
	opts := Options{PushPlatforms: []parley.Platform{parley.PlatformWeb}, Outbox: nodes > 1}
	var dbs []*DB
	for range nodes {
		db, err := loc.open(ctx, discard{}, opts)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		dbs = append(dbs, db)
	}

	// Groups of 10; sender i of a group writes to it through node i%nodes.
	const groupSize = 10
	members := make([][]string, convs)
	convIDs := make([]string, convs)
	for c := range convs {
		for i := range groupSize {
			members[c] = append(members[c], newUser(b, dbs[0], fmt.Sprintf("bench%d-%d", c, i)).ID)
		}
		convIDs[c] = newGroup(b, dbs[0], members[c][0], members[c][1:]...).ID
	}

	// send sends message n and returns how long it took.
	send := func(n int64) (time.Duration, error) {
		c, i := int(n)%convs, int(n/int64(convs))%groupSize
		start := time.Now()
		_, _, err := dbs[i%nodes].SendMessage(ctx, parley.NewMessage{
			ConversationID:  convIDs[c],
			SenderID:        members[c][i],
			ClientMessageID: fmt.Sprint(n),
			Kind:            parley.KindText,
			Text:            "a benchmark message of a typical length, about eighty bytes long.",
		})
		return time.Since(start), err
	}
	var mu sync.Mutex // guards latencies
	var latencies []time.Duration
	b.ResetTimer()
	if rate > 0 {
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		var wg sync.WaitGroup
		for n := range int64(b.N) {
			<-tick.C
			wg.Go(func() {
				d, err := send(n)
				if err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				latencies = append(latencies, d)
				mu.Unlock()
			})
		}
		wg.Wait()
	} else {
		var next atomic.Int64
		b.SetParallelism(16) // many clients per CPU, as a chat server has
		b.RunParallel(func(pb *testing.PB) {
			var mine []time.Duration
			for pb.Next() {
				d, err := send(next.Add(1))
				if err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, d)
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		})
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if len(latencies) > 0 {
		slices.Sort(latencies)
		at := func(q float64) float64 {
			return float64(latencies[min(len(latencies)-1, int(q*float64(len(latencies))))]) / 1e6
		}
		b.ReportMetric(at(.5), "p50-ms")
		b.ReportMetric(at(.99), "p99-ms")
		b.ReportMetric(float64(latencies[len(latencies)-1])/1e6, "max-ms")
	}
}

// discard is a Publisher that drops every event.
type discard struct{}

func (discard) Publish(context.Context, *parley.Event) error { return nil }
