// Package loadgen drives a running Parley server the way many chat clients
// would: it registers users, puts them in groups, holds a WebSocket per
// user, sends messages at a fixed total rate, and measures how long the
// server takes to acknowledge a send (durable store) and to deliver it to
// the other members (fan-out). It is the engine of `parley bench`.
package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sync/errgroup"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/wire"
)

// Config says how much load to make.
type Config struct {
	// Servers are the base URLs of the nodes, e.g. http://127.0.0.1:8080;
	// user i connects to Servers[i % len(Servers)], so that a group's
	// members are spread over a cluster's nodes.
	Servers []string
	// Users is the number of users, each with one WebSocket.
	Users int
	// GroupSize is the members per group; users are split into groups.
	GroupSize int
	// Rate is the total messages per second sent, spread over the users.
	Rate float64
	// Duration is how long to send.
	Duration time.Duration
	// Password is used for every generated user.
	Password string
}

// Result is what a run measured.
type Result struct {
	Sent, Acked, Errors int64
	Delivered           int64
	// ExpectedDeliveries is Acked × (GroupSize−1).
	ExpectedDeliveries int64
	Elapsed            time.Duration
	AckLatency         Percentiles
	DeliveryLatency    Percentiles
	// CrossNode is the delivery latency to members connected to another
	// node than the sender (several servers only), with its count.
	CrossNode          Percentiles
	CrossNodeDelivered int64
}

// Percentiles of a latency sample.
type Percentiles struct{ P50, P90, P99, Max time.Duration }

func (p Percentiles) String() string {
	return fmt.Sprintf("p50 %v  p90 %v  p99 %v  max %v", p.P50.Round(10*time.Microsecond),
		p.P90.Round(10*time.Microsecond), p.P99.Round(10*time.Microsecond), p.Max.Round(10*time.Microsecond))
}

// String formats the result for a terminal.
func (r Result) String() string {
	secs := r.Elapsed.Seconds()
	out := fmt.Sprintf("sent %d, acked %d (%.0f/s), errors %d\n"+
		"ack latency       %v\n"+
		"delivered %d of %d expected (%.0f/s)\n"+
		"delivery latency  %v\n",
		r.Sent, r.Acked, float64(r.Acked)/secs, r.Errors, r.AckLatency,
		r.Delivered, r.ExpectedDeliveries, float64(r.Delivered)/secs, r.DeliveryLatency)
	if r.CrossNodeDelivered > 0 {
		out += fmt.Sprintf("cross-node        %v (%d deliveries)\n", r.CrossNode, r.CrossNodeDelivered)
	}
	return out
}

type user struct {
	id, token string
	conv      string
	node      int // index in Config.Servers
	conn      *websocket.Conn
}

// Run makes the load and returns the measurements. Users are named with a
// random prefix, so runs against the same server do not collide.
func Run(ctx context.Context, cfg Config, log io.Writer) (Result, error) {
	if cfg.Users < 2 || cfg.GroupSize < 2 || cfg.Rate <= 0 || cfg.Duration <= 0 {
		return Result{}, fmt.Errorf("loadgen: need at least 2 users, a group size of 2, a rate and a duration")
	}
	if cfg.Password == "" {
		cfg.Password = "load test password"
	}
	if len(cfg.Servers) == 0 {
		return Result{}, fmt.Errorf("loadgen: no server")
	}
	bases := make([]string, len(cfg.Servers))
	for i, s := range cfg.Servers {
		bases[i] = strings.TrimRight(s, "/")
	}
	base := bases[0]
	prefix := fmt.Sprintf("lg%06d", rand.IntN(1_000_000))
	users := make([]*user, cfg.Users)

	fmt.Fprintf(log, "registering %d users\n", cfg.Users)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range users {
		g.Go(func() error {
			var tok struct {
				User        parley.User `json:"user"`
				AccessToken string      `json:"access_token"`
			}
			err := post(gctx, base+"/api/auth/register", "", map[string]string{
				"username": fmt.Sprintf("%s_%d", prefix, i), "password": cfg.Password,
			}, &tok)
			users[i] = &user{id: tok.User.ID, token: tok.AccessToken, node: i % len(bases)}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return Result{}, err
	}
	groups := 0
	for start := 0; start+1 < len(users); start += cfg.GroupSize {
		end := min(start+cfg.GroupSize, len(users))
		var ids []string
		for _, u := range users[start+1 : end] {
			ids = append(ids, u.id)
		}
		var conv parley.Conversation
		if err := post(ctx, base+"/api/conversations", users[start].token, map[string]any{
			"type": "group", "title": fmt.Sprintf("load %d", groups), "member_ids": ids,
		}, &conv); err != nil {
			return Result{}, err
		}
		for _, u := range users[start:end] {
			u.conv = conv.ID
		}
		groups++
	}
	if users[len(users)-1].conv == "" {
		users = users[:len(users)-1] // a lone user left over has no group
	}

	fmt.Fprintf(log, "connecting %d WebSockets in %d groups\n", len(users), groups)
	for _, u := range users {
		wsURL := "ws" + strings.TrimPrefix(bases[u.node], "http") + "/ws"
		c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{
			HTTPHeader:   http.Header{"Authorization": {"Bearer " + u.token}},
			Subprotocols: []string{wire.Subprotocol},
		})
		if err != nil {
			return Result{}, fmt.Errorf("dial: %w", err)
		}
		c.SetReadLimit(1 << 20)
		u.conn = c
	}
	defer func() {
		for _, u := range users {
			u.conn.CloseNow()
		}
	}()

	var (
		res       Result
		mu        sync.Mutex // guards the latency samples
		acks      []time.Duration
		delivery  []time.Duration
		cross     []time.Duration
		delivered atomic.Int64
		acked     atomic.Int64
		errs      atomic.Int64
	)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var readers sync.WaitGroup
	pending := make([]sync.Map, len(users)) // client_message_id → send time, per user
	for i, u := range users {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				_, data, err := u.conn.Read(runCtx)
				if err != nil {
					return
				}
				now := time.Now()
				f, err := wire.Decode(data)
				if err != nil {
					continue
				}
				switch f.Type {
				case wire.TypeMessageAck:
					if t0, ok := pending[i].LoadAndDelete(f.ID); ok {
						acked.Add(1)
						mu.Lock()
						acks = append(acks, now.Sub(t0.(time.Time)))
						mu.Unlock()
					}
				case wire.TypeMessageNew:
					var mn struct {
						Message struct {
							Text string `json:"text"`
						} `json:"message"`
					}
					if json.Unmarshal(f.Payload, &mn) == nil {
						// The text carries the send time and the sender's
						// node, so delivery latency needs no shared state
						// between connections.
						var t0 int64
						var from int
						if _, err := fmt.Sscanf(mn.Message.Text, "t=%d n=%d", &t0, &from); err == nil {
							delivered.Add(1)
							d := now.Sub(time.Unix(0, t0))
							mu.Lock()
							delivery = append(delivery, d)
							if from != u.node {
								cross = append(cross, d)
							}
							mu.Unlock()
						}
					}
				case wire.TypeError:
					errs.Add(1)
				}
			}
		}()
	}

	fmt.Fprintf(log, "sending %.0f messages/s for %v\n", cfg.Rate, cfg.Duration)
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	start := time.Now()
	end := start.Add(cfg.Duration)
	var n int64
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-tick.C:
		}
		i := int(n % int64(len(users)))
		u := users[i]
		cmid := fmt.Sprintf("m%d", n)
		now := time.Now()
		frame, _ := wire.Encode(wire.TypeMessageSend, cmid, wire.MessageSend{
			ConversationID: u.conv, ClientMessageID: cmid, Kind: parley.KindText,
			Text: fmt.Sprintf("t=%d n=%d", now.UnixNano(), u.node),
		})
		pending[i].Store(cmid, now)
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := u.conn.Write(wctx, websocket.MessageText, frame)
		cancel()
		if err != nil {
			return Result{}, fmt.Errorf("send: %w", err)
		}
		n++
	}
	// Let the last acks and deliveries arrive.
	want := func() int64 { return n * int64(cfg.GroupSize-1) }
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if acked.Load()+errs.Load() >= n && delivered.Load() >= want() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.Elapsed = time.Since(start)
	stop()
	for _, u := range users {
		u.conn.CloseNow()
	}
	readers.Wait()

	res.Sent, res.Acked, res.Errors, res.Delivered = n, acked.Load(), errs.Load(), delivered.Load()
	res.ExpectedDeliveries = expectedDeliveries(users, res.Acked, n)
	res.AckLatency = percentiles(acks)
	res.DeliveryLatency = percentiles(delivery)
	res.CrossNode, res.CrossNodeDelivered = percentiles(cross), int64(len(cross))
	return res, nil
}

// expectedDeliveries counts, for the acked share of the sends, one delivery
// to every other member of the sender's group.
func expectedDeliveries(users []*user, acked, sent int64) int64 {
	size := map[string]int64{}
	for _, u := range users {
		size[u.conv]++
	}
	var total int64
	for i := int64(0); i < sent; i++ {
		total += size[users[i%int64(len(users))].conv] - 1
	}
	if sent == 0 {
		return 0
	}
	return total * acked / sent
}

func percentiles(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return Percentiles{P50: at(.5), P90: at(.9), P99: at(.99), Max: d[len(d)-1]}
}

func post(ctx context.Context, url, token string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(b)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, data)
	}
	return json.Unmarshal(data, out)
}
