package localbus

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley"
)

func TestBusDeliversInOrderToEverySubscriber(t *testing.T) {
	b := New(4) // smaller than the number of events: Publish must wait, not drop
	const n = 100
	var mu sync.Mutex
	got := map[int][]int64{}
	for i := range 2 {
		b.Subscribe(func(ev *parley.Event) {
			mu.Lock()
			got[i] = append(got[i], ev.Message.Seq)
			mu.Unlock()
		})
	}
	ctx := context.Background()
	for i := int64(1); i <= n; i++ {
		if err := b.Publish(ctx, &parley.Event{Type: parley.EventMessageNew, Message: &parley.Message{Seq: i}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if len(got[i]) != n {
			t.Fatalf("subscriber %d got %d events, want %d", i, len(got[i]), n)
		}
		for j, seq := range got[i] {
			if seq != int64(j+1) {
				t.Fatalf("subscriber %d: event %d has seq %d", i, j, seq)
			}
		}
	}
	if err := b.Publish(ctx, &parley.Event{}); err != ErrClosed {
		t.Fatalf("Publish after Close = %v, want ErrClosed", err)
	}
}

func TestPublishHonoursContextWhenFull(t *testing.T) {
	b := New(1)
	defer b.Close()
	block := make(chan struct{})
	b.Subscribe(func(*parley.Event) { <-block })
	defer close(block)
	ctx := context.Background()
	// One event is taken by the blocked handler, one fills the queue.
	_ = b.Publish(ctx, &parley.Event{})
	_ = b.Publish(ctx, &parley.Event{})
	ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := b.Publish(ctx, &parley.Event{}); err == nil {
		// The handler may not have taken the first event yet; one more must block.
		if err := b.Publish(ctx, &parley.Event{}); err == nil {
			t.Fatal("Publish into a full queue returned without waiting")
		}
	}
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	b := New(8)
	var mu sync.Mutex
	count := 0
	unsub := b.Subscribe(func(*parley.Event) { mu.Lock(); count++; mu.Unlock() })
	ctx := context.Background()
	_ = b.Publish(ctx, &parley.Event{})
	b.Close()
	unsub()
	mu.Lock()
	defer mu.Unlock()
	if count != 1 {
		t.Fatalf("count = %d, want 1", count)
	}
}
