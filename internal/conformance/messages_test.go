package conformance

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/server"
)

func TestSendMessage(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	us := n.users(t, "snd", "rcv")
	a, b := us[0], us[1]
	id := n.createDirect(t, a, b)["id"].(string)
	post := func(by user, body any) *resp {
		return n.do(t, "POST", "/api/conversations/"+id+"/messages", by.access, body)
	}

	m := post(a, obj{"client_message_id": "first", "kind": "text", "text": "héllo"}).want(t, http.StatusCreated)
	checkMessage(t, "message", m)
	if m["conversation_id"] != id || m["sender_id"] != a.id || m["client_message_id"] != "first" ||
		m["kind"] != "text" || m["text"] != "héllo" || intOf(m["seq"]) != 1 {
		t.Errorf("message %v", m)
	}

	// A repeated client_message_id answers 200 with the original, stored once.
	again := post(a, obj{"client_message_id": "first", "kind": "text", "text": "something else"}).want(t, http.StatusOK)
	if again["id"] != m["id"] || intOf(again["seq"]) != 1 || again["text"] != "héllo" || again["created_at"] != m["created_at"] {
		t.Errorf("retry answered %v, want the original %v", again, m)
	}
	// The same client_message_id from another sender is another message.
	bm := post(b, obj{"client_message_id": "first", "kind": "text", "text": "mine"}).want(t, http.StatusCreated)
	if intOf(bm["seq"]) != 2 {
		t.Errorf("other sender's message has seq %v, want 2", bm["seq"])
	}
	msgs, _ := n.history(t, a, id, "")
	if got := seqs(msgs); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("history seqs %v, want [1 2]", got)
	}

	// seq starts at 1, with no gaps and no repeats.
	for i := 3; i <= 8; i++ {
		if got := intOf(n.send(t, a, id, fmt.Sprint(i))["seq"]); got != int64(i) {
			t.Errorf("seq %d, want %d", got, i)
		}
	}

	t.Run("refused", func(t *testing.T) {
		cases := []struct {
			name   string
			body   any
			status int
			code   string
		}{
			{"system kind", obj{"client_message_id": "s", "kind": "system", "text": "x"}, 400, "invalid_argument"},
			{"unknown kind", obj{"client_message_id": "u", "kind": "sticker", "text": "x"}, 400, "invalid_argument"},
			{"no client_message_id", obj{"kind": "text", "text": "x"}, 400, "invalid_argument"},
			{"empty client_message_id", obj{"client_message_id": "", "kind": "text", "text": "x"}, 400, "invalid_argument"},
			{"client_message_id of 65", obj{"client_message_id": strings.Repeat("c", 65), "kind": "text", "text": "x"}, 400, "invalid_argument"},
			{"text over 16 KiB", obj{"client_message_id": "big", "kind": "text", "text": strings.Repeat("x", 16<<10+1)}, 413, "payload_too_large"},
			{"text over 16 KiB in multibyte", obj{"client_message_id": "big2", "kind": "text", "text": strings.Repeat("é", 8<<10) + "x"}, 413, "payload_too_large"},
			{"not an object", `["x"]`, 400, "invalid_argument"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				post(a, c.body).wantProblem(t, c.status, c.code)
			})
		}
		// Nothing was stored.
		msgs, _ := n.history(t, a, id, "")
		if len(msgs) != 8 {
			t.Errorf("%d messages after refused sends, want 8", len(msgs))
		}
	})

	t.Run("limits allowed", func(t *testing.T) {
		post(a, obj{"client_message_id": strings.Repeat("c", 64), "kind": "text", "text": "x"}).want(t, http.StatusCreated)
		post(a, obj{"client_message_id": "exact", "kind": "text", "text": strings.Repeat("x", 16<<10)}).want(t, http.StatusCreated)
		post(a, obj{"client_message_id": "exact-mb", "kind": "text", "text": strings.Repeat("é", 8<<10)}).want(t, http.StatusCreated)
	})
}

func TestHistory(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *server.Config) {
		c.Limits = chat.Limits{SendBurst: 1000, SendPerSecond: 1000}
	})
	us := n.users(t, "hist", "peer")
	a, b := us[0], us[1]
	id := n.createDirect(t, a, b)["id"].(string)
	empty, more := n.history(t, a, id, "")
	if len(empty) != 0 || more {
		t.Errorf("empty history: %v has_more %v", empty, more)
	}
	for i := 1; i <= 7; i++ {
		n.send(t, a, id, fmt.Sprint(i))
	}
	rng := func(from, to int64) []int64 {
		var out []int64
		for i := from; i <= to; i++ {
			out = append(out, i)
		}
		return out
	}
	cases := []struct {
		query    string
		want     []int64
		wantMore bool
	}{
		{"", rng(1, 7), false},
		{"limit=3", rng(5, 7), true},
		{"limit=7", rng(1, 7), false},
		{"before_seq=5&limit=2", rng(3, 4), true},
		{"before_seq=3&limit=5", rng(1, 2), false},
		{"before_seq=3&limit=2", rng(1, 2), false},
		{"before_seq=1", nil, false},
		{"after_seq=2&limit=3", rng(3, 5), true},
		{"after_seq=5&limit=5", rng(6, 7), false},
		{"after_seq=4&limit=3", rng(5, 7), false},
		{"after_seq=0&limit=2", rng(1, 2), true},
		{"after_seq=7", nil, false},
		{"after_seq=1&before_seq=6&limit=2", rng(2, 3), true},
		{"after_seq=1&before_seq=6&limit=4", rng(2, 5), false},
		{"after_seq=1&before_seq=6", rng(2, 5), false},
		{"after_seq=3&before_seq=4", nil, false},
		{"limit=500", rng(1, 7), false},
	}
	for _, c := range cases {
		t.Run("?"+c.query, func(t *testing.T) {
			msgs, more := n.history(t, b, id, c.query)
			if got := seqs(msgs); !slices.Equal(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
				t.Errorf("seqs %v, want %v", got, c.want)
			}
			if more != c.wantMore {
				t.Errorf("has_more %v, want %v", more, c.wantMore)
			}
		})
	}
	for _, q := range []string{"limit=0", "limit=-1", "limit=abc", "limit=", "limit=1.5"} {
		t.Run("refused ?"+q, func(t *testing.T) {
			n.do(t, "GET", "/api/conversations/"+id+"/messages?"+q, a.access, nil).wantProblem(t, 400, "invalid_argument")
		})
	}

	// limit defaults to 50 and is clamped to 200.
	for i := 8; i <= 210; i++ {
		n.do(t, "POST", "/api/conversations/"+id+"/messages", a.access,
			obj{"client_message_id": newCMID(), "kind": "text", "text": "x"}).want(t, http.StatusCreated)
	}
	msgs, more := n.history(t, a, id, "")
	if len(msgs) != 50 || !more || intOf(msgs[0]["seq"]) != 161 || intOf(msgs[49]["seq"]) != 210 {
		t.Errorf("default page: %d messages from %v, has_more %v; want 161..210, true", len(msgs), seqs(msgs)[:min(1, len(msgs))], more)
	}
	msgs, more = n.history(t, a, id, "limit=100000")
	if len(msgs) != 200 || !more || intOf(msgs[0]["seq"]) != 11 {
		t.Errorf("limit above 200: %d messages, has_more %v; want 200 (11..210), true", len(msgs), more)
	}
	msgs, more = n.history(t, a, id, "after_seq=0&limit=201")
	if len(msgs) != 200 || !more || intOf(msgs[0]["seq"]) != 1 {
		t.Errorf("after_seq with limit above 200: %d messages, has_more %v; want 200 (1..200), true", len(msgs), more)
	}
}

func TestReceiptsREST(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	us := n.users(t, "rr", "rs")
	a, b := us[0], us[1]
	id := n.createDirect(t, a, b)["id"].(string)
	for i := 0; i < 3; i++ {
		n.send(t, a, id, "m")
	}
	post := func(body any) *resp { return n.do(t, "POST", "/api/conversations/"+id+"/receipts", b.access, body) }
	bView := func() (delivered, read int64) {
		m := memberOf(t, n.getConversation(t, a, id), b.id)
		return intOf(m["delivered_seq"]), intOf(m["read_seq"])
	}
	steps := []struct {
		kind          string
		seq           int64
		wantDelivered int64
		wantRead      int64
	}{
		{"delivered", 2, 2, 0},
		{"delivered", 1, 2, 0}, // never back
		{"read", 1, 2, 1},
		{"read", 3, 3, 3}, // read moves delivered
		{"read", 2, 3, 3},
		{"delivered", 50, 3, 3}, // clamped to last_seq
	}
	for _, s := range steps {
		post(obj{"kind": s.kind, "seq": s.seq}).want(t, http.StatusNoContent)
		if d, r := bView(); d != s.wantDelivered || r != s.wantRead {
			t.Errorf("after %s %d: delivered %d read %d, want %d %d", s.kind, s.seq, d, r, s.wantDelivered, s.wantRead)
		}
	}
	post(obj{"kind": "seen", "seq": 1}).wantProblem(t, 400, "invalid_argument")
	post(obj{"kind": "read"}).wantProblem(t, 400, "invalid_argument")
	post(obj{"kind": "read", "seq": "2"}).wantProblem(t, 400, "invalid_argument")
}

func TestDeviceTokens(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	us := n.users(t, "dev", "dev")
	a, b := us[0], us[1]
	reg := func(by user, body obj) *resp { return n.do(t, "POST", "/api/device-tokens", by.access, body) }
	del := func(by user, escaped string) *resp {
		return n.do(t, "DELETE", "/api/device-tokens/"+escaped, by.access, nil)
	}
	apns := strings.Repeat("0a1b2c3d", 8)
	ios := obj{"platform": "ios", "token": apns, "environment": "production"}

	reg(a, ios).want(t, http.StatusCreated)
	reg(a, ios).want(t, http.StatusOK)
	reg(a, obj{"platform": "ios", "token": apns, "environment": "sandbox"}).want(t, http.StatusOK)
	reg(b, ios).want(t, http.StatusCreated) // moves to b
	reg(b, ios).want(t, http.StatusOK)
	del(a, apns).want(t, http.StatusNoContent) // foreign: changes nothing
	reg(b, ios).want(t, http.StatusOK)
	del(b, apns).want(t, http.StatusNoContent)
	reg(b, ios).want(t, http.StatusCreated)
	del(a, "ffffffffffffffffffffffffffffffff").want(t, http.StatusNoContent)

	web := `{"endpoint":"https://push.example/wp/abc+/=?x=1","keys":{"p256dh":"BOr/x+y=","auth":"a/b+c="}}`
	reg(a, obj{"platform": "web", "token": web}).want(t, http.StatusCreated)
	reg(a, obj{"platform": "web", "token": web, "environment": "whatever"}).want(t, http.StatusOK)
	del(a, url.PathEscape(web)).want(t, http.StatusNoContent)
	reg(a, obj{"platform": "web", "token": web}).want(t, http.StatusCreated)
	del(a, url.QueryEscape(web)).want(t, http.StatusNoContent)
	reg(a, obj{"platform": "web", "token": web}).want(t, http.StatusCreated)

	for name, body := range map[string]obj{
		"ios without environment":  {"platform": "ios", "token": apns},
		"ios with bad environment": {"platform": "ios", "token": apns, "environment": "dev"},
		"ios token not hex":        {"platform": "ios", "token": "zz" + apns, "environment": "sandbox"},
		"unknown platform":         {"platform": "android", "token": apns, "environment": "sandbox"},
		"no token":                 {"platform": "web"},
	} {
		t.Run(name, func(t *testing.T) { reg(a, body).wantProblem(t, 400, "invalid_argument") })
	}
	n.do(t, "POST", "/api/device-tokens", "", ios).wantProblem(t, 401, "unauthenticated")
}

func TestOperationalEndpoints(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		r := n.do(t, "GET", p, "", nil)
		if r.status != http.StatusOK {
			t.Errorf("%v, want 200", r)
		}
		if p == "/metrics" {
			mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type"))
			if mt != "text/plain" {
				t.Errorf("/metrics Content-Type %q, want the Prometheus text format", r.header.Get("Content-Type"))
			}
			if !strings.Contains(string(r.body), "# TYPE ") {
				t.Errorf("/metrics body is not Prometheus text: %q", truncate(string(r.body), 200))
			}
		}
	}
	n.do(t, "GET", "/api/nothing-here", "", nil).wantProblem(t, 404, "not_found")
}

func TestRateLimitREST(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *server.Config) {
		c.Limits = chat.Limits{SendBurst: 3, SendPerSecond: 0.01}
	})
	us := n.users(t, "rl", "rl")
	a, b := us[0], us[1]
	id := n.createDirect(t, a, b)["id"].(string)
	for i := 0; i < 3; i++ {
		n.send(t, a, id, "ok")
	}
	r := n.do(t, "POST", "/api/conversations/"+id+"/messages", a.access, obj{"client_message_id": "over", "kind": "text", "text": "over"})
	p := r.wantProblem(t, 429, "rate_limited")
	ms := wantInt(t, "problem", p, "retry_after_ms")
	if ms <= 0 {
		t.Errorf("retry_after_ms %d, want positive", ms)
	}
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || ra < 1 {
		t.Errorf("Retry-After %q, want a positive number of seconds", r.header.Get("Retry-After"))
	}
	// It changed nothing.
	msgs, _ := n.history(t, b, id, "")
	if len(msgs) != 3 {
		t.Errorf("%d messages stored, want 3", len(msgs))
	}
}

// TestDefaultSendBurst checks that the default limits let a user send a
// burst of 100 messages.
func TestDefaultSendBurst(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	us := n.users(t, "burst", "burst")
	a, b := us[0], us[1]
	id := n.createDirect(t, a, b)["id"].(string)
	w, _ := n.connect(t, a, "burster")
	for i := 0; i < 100; i++ {
		w.request("message.send", fmt.Sprint("b", i), obj{"conversation_id": id, "client_message_id": fmt.Sprint("burst-", i), "kind": "text", "text": "x"})
	}
	for i := 0; i < 100; i++ {
		if f := w.reply(fmt.Sprint("b", i)); f.typ != "message.ack" {
			t.Fatalf("message %d of a burst of 100 answered %v", i, f)
		}
	}
}
