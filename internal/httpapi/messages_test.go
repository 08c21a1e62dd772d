package httpapi_test

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/chat"
)

func TestHistory(t *testing.T) {
	// 205 messages: enough to see both the default limit (50) and the
	// clamp (200).
	const total = 205
	n := limitsNode(t, chat.Limits{SendBurst: 1000, SendPerSecond: 1000})
	us := n.users("alice", "bob", "eve")
	alice, bob, eve := us[0], us[1], us[2]
	c := n.direct(alice, bob)
	for i := 1; i <= total; i++ {
		from := alice
		if i%2 == 0 {
			from = bob
		}
		if m := n.sendText(from, c.ID, "m"+strconv.Itoa(i)); m.Seq != int64(i) {
			t.Fatalf("message %d got seq %d", i, m.Seq)
		}
	}

	get := func(t *testing.T, query string) *response {
		t.Helper()
		return n.do("GET", "/api/conversations/"+c.ID+"/messages"+query, alice.AccessToken, nil)
	}
	cases := []struct {
		name     string
		query    string
		from, to int64 // expected seqs, inclusive; from > to means none
		hasMore  bool
	}{
		{"newest, default limit", "", total - 49, total, true},
		{"newest, limit", "?limit=3", total - 2, total, true},
		{"newest, all", "?limit=200&before_seq=150", 1, 149, false},
		{"limit clamped to 200", "?limit=1000", total - 199, total, true},
		{"huge limit clamped", "?limit=99999999999999999999999", total - 199, total, true},
		{"before, more older", "?before_seq=10&limit=3", 7, 9, true},
		{"before, no more older", "?before_seq=4&limit=3", 1, 3, false},
		{"before the first", "?before_seq=1", 1, 0, false},
		{"before zero", "?before_seq=0", 1, 0, false},
		{"before beyond the last", "?before_seq=1000&limit=2", total - 1, total, true},
		{"after, more newer", "?after_seq=200&limit=3", 201, 203, true},
		{"after, no more newer", "?after_seq=202&limit=3", 203, 205, false},
		{"after the last", "?after_seq=205", 1, 0, false},
		{"after, default limit", "?after_seq=100", 101, 150, true},
		{"between, more in the interval", "?after_seq=10&before_seq=20&limit=5", 11, 15, true},
		{"between, exactly the interval", "?after_seq=10&before_seq=16&limit=5", 11, 15, false},
		{"between, fewer than the limit", "?after_seq=10&before_seq=13&limit=5", 11, 12, false},
		{"between, empty", "?after_seq=10&before_seq=11", 1, 0, false},
		{"between, upside down", "?after_seq=20&before_seq=10", 1, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h history
			get(t, tc.query).want(t, http.StatusOK, &h)
			if h.Messages == nil {
				t.Fatal("messages is null")
			}
			var want []int64
			for s := tc.from; s <= tc.to; s++ {
				want = append(want, s)
			}
			got := make([]int64, len(h.Messages))
			for i, m := range h.Messages {
				got[i] = m.Seq
				if m.ConversationID != c.ID || m.Text != "m"+strconv.FormatInt(m.Seq, 10) {
					t.Errorf("message %+v", m)
				}
			}
			if !slices.Equal(got, want) || h.HasMore != tc.hasMore {
				t.Errorf("seqs %s has_more %v, want %s has_more %v", seqRange(got), h.HasMore, seqRange(want), tc.hasMore)
			}
		})
	}

	t.Run("after zero, from the start", func(t *testing.T) {
		// after_seq=0 asks for the oldest messages, not the newest.
		var h history
		get(t, "?after_seq=0&limit=2").want(t, http.StatusOK, &h)
		if len(h.Messages) != 2 || h.Messages[0].Seq != 1 || !h.HasMore {
			t.Fatalf("after_seq=0 gave %s has_more %v, want 1-2 with has_more", seqRange(seqsOf(h.Messages)), h.HasMore)
		}
	})

	bad := []string{
		"?limit=0", "?limit=-1", "?limit=abc", "?limit=1.5", "?limit=", "?limit=-99999999999999999999999",
		"?after_seq=-1", "?after_seq=x", "?after_seq=", "?after_seq=1e3",
		"?before_seq=-1", "?before_seq=x", "?before_seq=99999999999999999999999",
	}
	for _, q := range bad {
		t.Run(q, func(t *testing.T) {
			get(t, q).wantProblem(t, parley.CodeInvalidArgument)
		})
	}

	t.Run("non-member", func(t *testing.T) {
		n.do("GET", "/api/conversations/"+c.ID+"/messages", eve.AccessToken, nil).wantProblem(t, parley.CodeNotFound)
	})
	t.Run("empty conversation", func(t *testing.T) {
		empty := n.direct(alice, eve)
		r := n.do("GET", "/api/conversations/"+empty.ID+"/messages", alice.AccessToken, nil)
		r.want(t, http.StatusOK, nil)
		if got := strings.TrimSpace(string(r.Body)); got != `{"messages":[],"has_more":false}` {
			t.Errorf("body %s", got)
		}
	})
}

func TestSend(t *testing.T) {
	n := startNode(t)
	us := n.users("alice", "bob")
	alice, bob := us[0], us[1]
	c := n.direct(alice, bob)
	path := "/api/conversations/" + c.ID + "/messages"

	var first parley.Message
	t.Run("created", func(t *testing.T) {
		n.do("POST", path, alice.AccessToken, map[string]string{"client_message_id": "cm-1", "kind": "text", "text": "hello"}).
			want(t, http.StatusCreated, &first)
		if first.ID == "" || first.Seq != 1 || first.SenderID != alice.User.ID || first.ConversationID != c.ID ||
			first.ClientMessageID != "cm-1" || first.Kind != parley.KindText || first.Text != "hello" || first.CreatedAt.IsZero() {
			t.Errorf("message %+v", first)
		}
	})
	t.Run("repeated client_message_id", func(t *testing.T) {
		var again parley.Message
		n.do("POST", path, alice.AccessToken, map[string]string{"client_message_id": "cm-1", "kind": "text", "text": "hello again"}).
			want(t, http.StatusOK, &again)
		if again != first {
			t.Errorf("repeat answered %+v, want the original %+v", again, first)
		}
		var h history
		n.do("GET", path, bob.AccessToken, nil).want(t, http.StatusOK, &h)
		if len(h.Messages) != 1 {
			t.Errorf("stored %d messages, want 1", len(h.Messages))
		}
	})
	t.Run("same client_message_id from the other sender", func(t *testing.T) {
		var m parley.Message
		n.do("POST", path, bob.AccessToken, map[string]string{"client_message_id": "cm-1", "text": "mine"}).
			want(t, http.StatusCreated, &m)
		if m.Seq != 2 || m.Kind != parley.KindText {
			t.Errorf("message %+v", m)
		}
	})

	ok := []struct {
		name string
		body map[string]any
	}{
		{"text of 16 KiB", map[string]any{"client_message_id": "big", "kind": "text", "text": strings.Repeat("x", 16<<10)}},
		{"text of 16 KiB escaped in JSON", map[string]any{"client_message_id": "esc", "kind": "text", "text": strings.Repeat("\x01", 16<<10)}},
		{"client_message_id of 64", map[string]any{"client_message_id": strings.Repeat("c", 64), "kind": "text", "text": "hi"}},
		{"client_message_id of 64 characters, more bytes", map[string]any{"client_message_id": strings.Repeat("é", 64), "kind": "text", "text": "hi"}},
		{"kind defaults to text", map[string]any{"client_message_id": "nokind", "text": "hi"}},
	}
	for _, c := range ok {
		t.Run(c.name, func(t *testing.T) {
			var m parley.Message
			n.do("POST", path, alice.AccessToken, c.body).want(t, http.StatusCreated, &m)
			if m.Text != c.body["text"] {
				t.Errorf("text of %d bytes came back as %d", len(c.body["text"].(string)), len(m.Text))
			}
		})
	}

	bad := []struct {
		name string
		body any
		code parley.Code
	}{
		{"kind system", map[string]any{"client_message_id": "s", "kind": "system", "text": "hi"}, parley.CodeInvalidArgument},
		{"unknown kind", map[string]any{"client_message_id": "s", "kind": "sticker", "text": "hi"}, parley.CodeInvalidArgument},
		{"text over 16 KiB", map[string]any{"client_message_id": "s", "kind": "text", "text": strings.Repeat("x", 16<<10+1)}, parley.CodePayloadTooLarge},
		{"body over the limit", map[string]any{"client_message_id": "s", "kind": "text", "text": strings.Repeat("\x01", 64<<10)}, parley.CodePayloadTooLarge},
		{"missing client_message_id", map[string]any{"kind": "text", "text": "hi"}, parley.CodeInvalidArgument},
		{"client_message_id of 65", map[string]any{"client_message_id": strings.Repeat("c", 65), "kind": "text", "text": "hi"}, parley.CodeInvalidArgument},
		{"client_message_id not a string", map[string]any{"client_message_id": 5, "kind": "text", "text": "hi"}, parley.CodeInvalidArgument},
		{"empty text", map[string]any{"client_message_id": "s", "kind": "text", "text": ""}, parley.CodeInvalidArgument},
		{"malformed JSON", raw(`{"client_message_id":"s","text":`), parley.CodeInvalidArgument},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			n.do("POST", path, alice.AccessToken, c.body).wantProblem(t, c.code)
		})
	}

	t.Run("nothing refused was stored", func(t *testing.T) {
		var h history
		n.do("GET", path, alice.AccessToken, nil).want(t, http.StatusOK, &h)
		if got := len(h.Messages); got != 2+len(ok) {
			t.Errorf("%d messages stored, want %d", got, 2+len(ok))
		}
	})
}

func TestReceipts(t *testing.T) {
	n := startNode(t)
	us := n.users("alice", "bob")
	alice, bob := us[0], us[1]
	c := n.direct(alice, bob)
	for range 5 {
		n.sendText(alice, c.ID, "hi")
	}
	n.sendText(bob, c.ID, "mine")
	path := "/api/conversations/" + c.ID + "/receipts"

	type view struct{ read, unread, delivered int64 }
	bobView := func(t *testing.T) view {
		t.Helper()
		conv := n.conversation(bob, c.ID)
		m, _ := conv.Member(bob.User.ID)
		if m.ReadSeq != conv.ReadSeq {
			t.Errorf("member read_seq %d, conversation read_seq %d", m.ReadSeq, conv.ReadSeq)
		}
		return view{read: conv.ReadSeq, unread: conv.UnreadCount, delivered: m.DeliveredSeq}
	}

	steps := []struct {
		name string
		kind string
		seq  int64
		want view
	}{
		{"delivered", "delivered", 2, view{read: 0, unread: 5, delivered: 2}},
		{"read", "read", 3, view{read: 3, unread: 2, delivered: 3}},
		{"read never moves back", "read", 1, view{read: 3, unread: 2, delivered: 3}},
		{"delivered never moves back", "delivered", 1, view{read: 3, unread: 2, delivered: 3}},
		{"delivered beyond read", "delivered", 5, view{read: 3, unread: 2, delivered: 5}},
		// Bob's own message (seq 6) is never unread for him.
		{"read clamped to last_seq", "read", 1000, view{read: 6, unread: 0, delivered: 6}},
		{"nothing moves", "read", 4, view{read: 6, unread: 0, delivered: 6}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r := n.do("POST", path, bob.AccessToken, map[string]any{"kind": s.kind, "seq": s.seq})
			r.want(t, http.StatusNoContent, nil)
			if len(r.Body) != 0 {
				t.Errorf("204 with body %q", r.Body)
			}
			if got := bobView(t); got != s.want {
				t.Errorf("bob sees %+v, want %+v", got, s.want)
			}
		})
	}

	bad := []struct {
		name string
		body any
	}{
		{"unknown kind", map[string]any{"kind": "seen", "seq": 1}},
		{"no kind", map[string]any{"seq": 1}},
		{"no seq", map[string]any{"kind": "read"}},
		{"negative seq", map[string]any{"kind": "read", "seq": -1}},
		{"seq not an integer", map[string]any{"kind": "read", "seq": 1.5}},
		{"seq a string", map[string]any{"kind": "read", "seq": "1"}},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			n.do("POST", path, bob.AccessToken, b.body).wantProblem(t, parley.CodeInvalidArgument)
		})
	}
}

func TestRateLimit(t *testing.T) {
	// A burst of 3 and then one message every 2 seconds.
	n := limitsNode(t, chat.Limits{SendBurst: 3, SendPerSecond: 0.5})
	us := n.users("alice", "bob")
	alice, bob := us[0], us[1]
	c := n.direct(alice, bob)
	path := "/api/conversations/" + c.ID + "/messages"

	for range 3 {
		n.sendText(alice, c.ID, "burst")
	}
	r := n.do("POST", path, alice.AccessToken, map[string]string{"client_message_id": "refused", "text": "one too many"})
	p := r.wantProblem(t, parley.CodeRateLimited)
	if *p.RetryAfterMS <= 0 || *p.RetryAfterMS > 2000 {
		t.Errorf("retry_after_ms %d, want within the 2 s refill", *p.RetryAfterMS)
	}
	secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > 2 || int64(secs)*1000 < *p.RetryAfterMS {
		t.Errorf("Retry-After %q for retry_after_ms %d: want whole seconds, rounded up", r.Header.Get("Retry-After"), *p.RetryAfterMS)
	}

	// The refused message changed nothing.
	var h history
	n.do("GET", path, bob.AccessToken, nil).want(t, http.StatusOK, &h)
	if len(h.Messages) != 3 {
		t.Errorf("%d messages stored, want 3", len(h.Messages))
	}
	for _, m := range h.Messages {
		if m.ClientMessageID == "refused" {
			t.Errorf("refused message was stored: %+v", m)
		}
	}
	// Other users have their own budget.
	n.sendText(bob, c.ID, "bob is fine")

	var metrics string
	r = n.do("GET", "/metrics", "", nil)
	r.want(t, http.StatusOK, nil)
	metrics = string(r.Body)
	for _, want := range []string{
		"parley_rate_limited_total 1",
		`parley_http_requests_total{route="POST /api/conversations/{id}/messages",status="429"} 1`,
		`parley_http_requests_total{route="POST /api/conversations/{id}/messages",status="201"} 4`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func seqsOf(msgs []parley.Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

// seqRange describes seqs briefly: "[]", "[4]" or "[4..9 (6)]".
func seqRange(seqs []int64) string {
	switch len(seqs) {
	case 0:
		return "[]"
	case 1:
		return "[" + strconv.FormatInt(seqs[0], 10) + "]"
	}
	return "[" + strconv.FormatInt(seqs[0], 10) + ".." + strconv.FormatInt(seqs[len(seqs)-1], 10) + " (" + strconv.Itoa(len(seqs)) + ")]"
}
