package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/parley-chat/parley"
)

func TestMute(t *testing.T) {
	n := startNode(t)
	us := n.users("alice", "bob", "carol")
	alice, bob, carol := us[0], us[1], us[2]
	c := n.direct(alice, bob)
	path := "/api/conversations/" + c.ID + "/mute"

	type mute struct {
		Muted bool         `json:"muted"`
		Until *parley.Time `json:"until"`
	}
	get := func(who tokens) mute {
		t.Helper()
		var m mute
		n.do("GET", path, who.AccessToken, nil).want(t, http.StatusOK, &m)
		return m
	}
	if m := get(alice); m.Muted || m.Until != nil {
		t.Fatalf("initially %+v", m)
	}

	n.do("PUT", path, alice.AccessToken, map[string]any{"until": nil}).want(t, http.StatusNoContent, nil)
	if m := get(alice); !m.Muted || m.Until != nil {
		t.Fatalf("muted for ever: %+v", m)
	}
	if m := get(bob); m.Muted {
		t.Fatalf("bob sees alice's mute: %+v", m)
	}
	until := time.Now().Add(8 * time.Hour).UTC().Truncate(time.Millisecond)
	n.do("PUT", path, alice.AccessToken, map[string]any{"until": until.Format(time.RFC3339Nano)}).want(t, http.StatusNoContent, nil)
	if m := get(alice); !m.Muted || m.Until == nil || !m.Until.Equal(until) {
		t.Fatalf("muted until %v: %+v", until, m)
	}
	// An empty body is "for ever" too.
	n.do("PUT", path, alice.AccessToken, map[string]any{}).want(t, http.StatusNoContent, nil)
	if m := get(alice); !m.Muted || m.Until != nil {
		t.Fatalf("muted with {}: %+v", m)
	}
	n.do("DELETE", path, alice.AccessToken, nil).want(t, http.StatusNoContent, nil)
	if m := get(alice); m.Muted {
		t.Fatalf("after DELETE: %+v", m)
	}
	n.do("DELETE", path, alice.AccessToken, nil).want(t, http.StatusNoContent, nil)

	for name, body := range map[string]any{
		"a past time":   map[string]any{"until": time.Now().Add(-time.Minute).Format(time.RFC3339)},
		"not a time":    map[string]any{"until": "tomorrow"},
		"a number":      map[string]any{"until": 12},
		"not an object": raw(`"forever"`),
	} {
		t.Run(name, func(t *testing.T) {
			n.do("PUT", path, alice.AccessToken, body).wantProblem(t, parley.CodeInvalidArgument)
		})
	}
	// Not a member, or no such conversation: not_found.
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		n.do(m, path, carol.AccessToken, map[string]any{"until": nil}).wantProblem(t, parley.CodeNotFound)
		n.do(m, "/api/conversations/not-an-id/mute", alice.AccessToken, map[string]any{"until": nil}).wantProblem(t, parley.CodeNotFound)
		n.do(m, path, "", nil).wantProblem(t, parley.CodeUnauthenticated)
	}
}
