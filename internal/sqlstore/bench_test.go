package sqlstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

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

// discard is a Publisher that drops every event.
type discard struct{}

func (discard) Publish(context.Context, *parley.Event) error { return nil }
