package conformance

import (
	"net/http"
	"testing"

	"github.com/parley-chat/parley/internal/server"
	"github.com/parley-chat/parley/internal/webpush/webpushtest"
)

// TestWebPushOfflineRecipient: a browser subscription registered as a web
// device token gets one encrypted push per message while its user is
// offline, signed with the VAPID key the API hands out, which the stand-in
// decrypts as a browser would; none while the user is online.
func TestWebPushOfflineRecipient(t *testing.T) {
	n := startNode(t, func(c *server.Config) {
		c.WebPush = server.WebPushConfig{Subject: "mailto:ops@example.com", AllowInsecureEndpoints: true}
	})
	us := n.users(t, "alice", "bob")
	alice, bob := us[0], us[1]
	conv := wantString(t, "direct", n.createDirect(t, alice, bob), "id")

	key := wantString(t, "vapid key", n.do(t, "GET", "/api/push/vapid-public-key", bob.access, nil).want(t, http.StatusOK), "public_key")
	ps := webpushtest.New(t, key, "mailto:ops@example.com")
	sub := ps.Subscribe(nil)
	if r := n.do(t, "POST", "/api/device-tokens", bob.access, obj{"platform": "web", "token": ps.Token(sub)}); r.status != http.StatusCreated {
		t.Fatalf("register web token: %v", r)
	}

	m1 := n.send(t, alice, conv, "hello <b>bob</b>")
	m2 := n.send(t, alice, conv, "second")
	poll(t, "two web pushes", func() bool { got, _ := sub.Pushes(); return len(got) >= 2 })
	got, problems := sub.Pushes()
	if len(problems) > 0 {
		t.Fatalf("the push service refused pushes: %v", problems)
	}
	for i, m := range []obj{m1, m2} {
		p := got[i].Payload
		if p["message_id"] != m["id"] || p["conversation_id"] != conv || p["body"] != m["text"] || p["tag"] != conv {
			t.Errorf("push %d payload %v, want message %v", i, p, m)
		}
		if p["badge"] != float64(i+1) {
			t.Errorf("push %d badge %v, want %d", i, p["badge"], i+1)
		}
	}

	// Online (foreground) now, on the browser that subscribed, which
	// confirms what it receives: the next message is not pushed.
	ws, _ := n.connect(t, bob, "bob")
	before := n.metric(t, `parley_push_skipped_total{platform="web"}`)
	m3 := n.send(t, alice, conv, "while online")
	ws.event("message.new", nil)
	ws.confirm(conv, wantInt(t, "m3", m3, "seq"))
	poll(t, "the push to be skipped", func() bool {
		return n.metric(t, `parley_push_skipped_total{platform="web"}`) > before
	})
	if got, _ := sub.Pushes(); len(got) != 2 {
		t.Fatalf("%d pushes, want none more while online", len(got))
	}
}

func TestVAPIDKeyNeedsAuthAndWebPush(t *testing.T) {
	n := startNode(t, func(c *server.Config) { c.WebPush.Disabled = true })
	u := n.users(t, "carol")[0]
	n.do(t, "GET", "/api/push/vapid-public-key", "", nil).wantProblem(t, http.StatusUnauthorized, "unauthenticated")
	n.do(t, "GET", "/api/push/vapid-public-key", u.access, nil).wantProblem(t, http.StatusNotFound, "not_found")
}
