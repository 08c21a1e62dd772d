package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/chat"
)

// BenchmarkFanout measures one message.new reaching every one of N
// connections (one per member of a group), over real sockets:
//
//   - via=bus publishes the event on the bus, as the store does after a
//     commit: the gateway's encode, index look-up, queueing and writes;
//   - via=store sends it through chat.Send, adding the durable write.
//
// An operation ends when every client has read the frame. allocs/op counts
// the whole process, clients included; allocs/recipient divides by N.
func BenchmarkFanout(b *testing.B) {
	for _, via := range []string{"bus", "store"} {
		for _, n := range []int{10, 100, 1000} {
			b.Run(fmt.Sprintf("via=%s/conns=%d", via, n), func(b *testing.B) {
				benchmarkFanout(b, via, n)
			})
		}
	}
}

func benchmarkFanout(b *testing.B, via string, n int) {
	s := newStack(b, 0)
	ids, tokens := s.register(b, n+1)
	sender, members := ids[0], ids[1:]
	ctx := context.Background()
	title := "bench"
	conv, _, err := s.chat.CreateConversation(ctx, sender, parley.Group, &title, members)
	if err != nil {
		b.Fatalf("create group: %v", err)
	}

	// One connection per member; each reader signals got once per frame.
	got := make(chan struct{}, n)
	for _, tok := range tokens[1:] {
		ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.url, "http")+"/ws", &websocket.DialOptions{
			HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}},
		})
		if err != nil {
			b.Fatalf("dial: %v", err)
		}
		b.Cleanup(func() { _ = ws.CloseNow() })
		go func() {
			for {
				_, r, err := ws.Reader(ctx)
				if err != nil {
					return
				}
				if _, err := io.Copy(io.Discard, r); err != nil {
					return
				}
				got <- struct{}{}
			}
		}()
	}
	for range n { // hello
		<-got
	}

	msg := parley.Message{
		ID: "0190a0a0-0000-7000-8000-000000000000", ConversationID: conv.ID, SenderID: sender,
		Kind: parley.KindText, Text: strings.Repeat("lorem ipsum ", 10), CreatedAt: parley.Now(),
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		switch via {
		case "bus":
			m := msg
			m.Seq = int64(i + 1)
			err = s.bus.Publish(ctx, &parley.Event{Type: parley.EventMessageNew, Recipients: conv.MemberIDs(), Message: &m})
		case "store":
			_, _, err = s.chat.Send(ctx, sender, chat.SendParams{ConversationID: conv.ID, ClientMessageID: strconv.Itoa(i), Text: msg.Text})
		}
		if err != nil {
			b.Fatalf("publish: %v", err)
		}
		for range n {
			<-got
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N*n), "allocs/recipient")
}
