package client

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3/driver"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/server"
	"github.com/parley-chat/parley/wire"
)

// wireLog records the frames a client writes (Config.sentFrame).
type wireLog struct {
	mu     sync.Mutex
	frames []loggedFrame
}

type loggedFrame struct {
	typ     string
	payload any
}

func (l *wireLog) hook(typ string, payload any) {
	l.mu.Lock()
	l.frames = append(l.frames, loggedFrame{typ, payload})
	l.mu.Unlock()
}

// delivered returns the highest seq of the delivered receipts sent for a
// conversation.
func (l *wireLog) delivered(convID string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var seq int64
	for _, f := range l.frames {
		if r, ok := f.payload.(wire.ReceiptSend); ok && f.typ == wire.TypeReceipt &&
			r.ConversationID == convID && r.Kind == parley.Delivered {
			seq = max(seq, r.Seq)
		}
	}
	return seq
}

// confirmed returns what a client's store says its device confirmed in a
// conversation.
func confirmed(c *Client, convID string) int64 {
	row, err := c.store.conv(context.Background(), convID)
	if err != nil {
		return -1
	}
	return row.DevDelivered
}

// TestDeliveredPerDevice: every device of a user confirms a message with a
// delivered receipt of its own, even when another device of the user has
// already moved the user's delivered watermark past it (the server sends a
// push to a connected device that does not confirm).
func TestDeliveredPerDevice(t *testing.T) {
	ts := startServer(t, server.Config{})
	px := startProxy(t, ts.URL)
	var webLog, phoneLog wireLog
	web := openClientConfig(t, Config{Servers: []string{ts.URL}, sentFrame: webLog.hook})
	phone := openClientConfig(t, Config{Servers: []string{px.URL}, sentFrame: phoneLog.hook})
	bob := openClient(t, "", ts.URL)
	conv := pair(t, web, bob)
	if _, err := phone.Login(ctxT(t, 10*time.Second), "alice", "password-alice"); err != nil {
		t.Fatal(err)
	}
	waitSynced(t, phone)

	// Both devices online: each confirms.
	m1, err := bob.WaitSent(ctxT(t, 10*time.Second), send(t, bob, conv, "one"))
	if err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string]*wireLog{"web": &webLog, "phone": &phoneLog} {
		eventually(t, 10*time.Second, func() error {
			if got := l.delivered(conv); got < m1.Seq {
				return fmt.Errorf("the %s sent delivered up to %d, want %d", name, got, m1.Seq)
			}
			return nil
		})
	}
	eventually(t, 10*time.Second, func() error {
		if got := confirmed(phone, conv); got < m1.Seq {
			return fmt.Errorf("the phone's confirmed watermark is %d, want %d", got, m1.Seq)
		}
		return nil
	})

	// The phone is away while the web tab confirms the next message: the
	// user's watermark has moved when the phone syncs, and the phone must
	// still confirm it itself.
	px.setDown(true)
	eventually(t, 10*time.Second, func() error {
		if st := phone.State(); st == StateOnline {
			return errors.New("the phone is still online")
		}
		return nil
	})
	m2, err := bob.WaitSent(ctxT(t, 10*time.Second), send(t, bob, conv, "two"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if got := confirmed(web, conv); got < m2.Seq {
			return fmt.Errorf("the web tab confirmed %d, want %d", got, m2.Seq)
		}
		return nil
	})
	if got := phoneLog.delivered(conv); got >= m2.Seq {
		t.Fatalf("the phone confirmed %d while away", got)
	}
	px.setDown(false)
	phone.Reconnect()
	eventually(t, 10*time.Second, func() error {
		if got := phoneLog.delivered(conv); got < m2.Seq {
			return fmt.Errorf("the phone sent delivered up to %d, want %d", got, m2.Seq)
		}
		if got := confirmed(phone, conv); got < m2.Seq {
			return fmt.Errorf("the phone's confirmed watermark is %d, want %d", got, m2.Seq)
		}
		return nil
	})
	row, err := phone.store.conv(context.Background(), conv)
	if err != nil || row.SrvDelivered < m2.Seq {
		t.Fatalf("the phone's copy of the user's delivered watermark is %d (%v), want %d", row.SrvDelivered, err, m2.Seq)
	}
}

// TestStoreMigration opens a database of schema version 1 (before
// dev_delivered and media): it is migrated, its rows kept, what the device
// confirmed starts at the user's delivered watermark, and the messages and
// outbox items of before read as text ones.
func TestStoreMigration(t *testing.T) {
	ctx := ctxT(t, 10*time.Second)
	path := filepath.Join(t.TempDir(), "parley.db")
	db, err := driver.Open("file:" + path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		schema,
		`INSERT INTO meta (key, value) VALUES ('schema_version', '1')`,
		`INSERT INTO conversations (id, data, have_seq, floor_seq, last_seq, srv_delivered) VALUES ('c1', '{"id":"c1"}', 7, 1, 7, 5)`,
		`INSERT INTO messages (id, conversation_id, seq, sender_id, client_message_id, kind, text, created_at)
			VALUES ('m1', 'c1', 7, 'u1', 'x1', 'text', 'old', '2025-01-01T00:00:00Z')`,
		`INSERT INTO outbox (client_message_id, conversation_id, kind, text, created_at, state)
			VALUES ('x2', 'c1', 'text', 'queued', '2025-01-01T00:00:00Z', 'pending')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	for range 2 { // migrated, then opened as is
		s, err := openStore(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		v, err := s.meta(ctx, "schema_version")
		if err != nil || v != fmt.Sprint(schemaVersion) || schemaVersion != 3 {
			t.Fatalf("schema version %q (%v), want %d", v, err, schemaVersion)
		}
		row, err := s.conv(ctx, "c1")
		if err != nil || !row.exists || row.HaveSeq != 7 || row.SrvDelivered != 5 || row.DevDelivered != 5 {
			t.Fatalf("migrated row %+v (%v)", row, err)
		}
		if msgs, err := s.messages(ctx, "c1", 0, 10); err != nil || len(msgs) != 1 || msgs[0].Text != "old" || msgs[0].Media != nil {
			t.Fatalf("migrated messages %+v (%v)", msgs, err)
		}
		if items, err := s.outbox(ctx, "c1"); err != nil || len(items) != 1 || items[0].Text != "queued" || items[0].File != nil {
			t.Fatalf("migrated outbox %+v (%v)", items, err)
		}
		s.close()
	}

	// A newer file is refused rather than misread.
	s, err := openStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.setMeta(ctx, "schema_version", "99"); err != nil {
		t.Fatal(err)
	}
	s.close()
	if s, err := openStore(ctx, path); err == nil {
		s.close()
		t.Fatal("a database of a newer schema opened")
	}
}
