package conformance

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/server"
)

func TestAccounts(t *testing.T) {
	t.Parallel()
	n := startNode(t)

	t.Run("register", func(t *testing.T) {
		r := n.do(t, "POST", "/api/auth/register", "", obj{"username": "Mixed.Case_1", "password": "12345678", "display_name": "Mixed Case"})
		toks := r.want(t, http.StatusCreated)
		checkTokens(t, "register", toks)
		u := toks["user"].(obj)
		if u["username"] != "mixed.case_1" {
			t.Errorf("username %q, want it lower-cased", u["username"])
		}
		if u["display_name"] != "Mixed Case" {
			t.Errorf("display_name %q", u["display_name"])
		}
		// Access tokens live 15 minutes by default.
		if got := intOf(toks["expires_in"]); got != 900 {
			t.Errorf("expires_in %d, want 900", got)
		}
		// display_name is optional.
		n.do(t, "POST", "/api/auth/register", "", obj{"username": "noname", "password": "12345678"}).want(t, http.StatusCreated)
	})

	t.Run("register refused", func(t *testing.T) {
		long := strings.Repeat("p", 1025)
		cases := []struct {
			name   string
			body   any
			status int
			code   string
		}{
			{"differs only in case", obj{"username": "MIXED.CASE_1", "password": "12345678"}, 409, "conflict"},
			{"too short", obj{"username": "ab", "password": "12345678"}, 400, "invalid_argument"},
			{"too long", obj{"username": strings.Repeat("a", 33), "password": "12345678"}, 400, "invalid_argument"},
			{"space", obj{"username": "a b c", "password": "12345678"}, 400, "invalid_argument"},
			{"dash", obj{"username": "a-b-c", "password": "12345678"}, 400, "invalid_argument"},
			{"password 7 bytes", obj{"username": "shortpw", "password": "1234567"}, 400, "invalid_argument"},
			{"password 1025 bytes", obj{"username": "longpw", "password": long}, 400, "invalid_argument"},
			{"not JSON", "{", 400, "invalid_argument"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				n.do(t, "POST", "/api/auth/register", "", c.body).wantProblem(t, c.status, c.code)
			})
		}
		// The limits themselves are allowed.
		n.do(t, "POST", "/api/auth/register", "", obj{"username": strings.Repeat("b", 32), "password": strings.Repeat("p", 1024)}).want(t, http.StatusCreated)
		n.do(t, "POST", "/api/auth/register", "", obj{"username": "abc", "password": "12345678"}).want(t, http.StatusCreated)
	})

	t.Run("login", func(t *testing.T) {
		toks := n.do(t, "POST", "/api/auth/login", "", obj{"username": "MiXeD.cAsE_1", "password": "12345678"}).want(t, http.StatusOK)
		checkTokens(t, "login", toks)
		wrong := n.do(t, "POST", "/api/auth/login", "", obj{"username": "mixed.case_1", "password": "wrong password"})
		unknown := n.do(t, "POST", "/api/auth/login", "", obj{"username": "nobody_here", "password": "wrong password"})
		wp := wrong.wantProblem(t, 401, "unauthenticated")
		up := unknown.wantProblem(t, 401, "unauthenticated")
		if fmt.Sprint(wp) != fmt.Sprint(up) {
			t.Errorf("a wrong password (%v) and an unknown user (%v) answer differently", wp, up)
		}
	})

	t.Run("users", func(t *testing.T) {
		a := n.register(t, "usr")
		me := n.do(t, "GET", "/api/users/me", a.access, nil).want(t, http.StatusOK)
		checkUser(t, "me", me)
		if me["id"] != a.id || me["username"] != a.name {
			t.Errorf("me %v, want %s", me, a.name)
		}
		byID := n.do(t, "GET", "/api/users/"+a.id, a.access, nil).want(t, http.StatusOK)
		checkUser(t, "user", byID)
		if byID["id"] != a.id {
			t.Errorf("user %v, want %s", byID, a.id)
		}
		n.do(t, "GET", "/api/users/0190a0a0-0000-7000-8000-000000000000", a.access, nil).wantProblem(t, 404, "not_found")
		n.do(t, "GET", "/api/users/me", "", nil).wantProblem(t, 401, "unauthenticated")
		n.do(t, "GET", "/api/users/me", "not-a-token", nil).wantProblem(t, 401, "unauthenticated")
	})

	t.Run("search", func(t *testing.T) {
		a := n.register(t, "seeker")
		for i := 0; i < 22; i++ {
			n.do(t, "POST", "/api/auth/register", "", obj{"username": fmt.Sprintf("zq_find_%02d", i), "password": "12345678"}).want(t, http.StatusCreated)
		}
		o := n.do(t, "GET", "/api/users?q="+url.QueryEscape("ZQ_find_"), a.access, nil).want(t, http.StatusOK)
		users := wantObjects(t, "search", o, "users")
		if len(users) != 20 {
			t.Errorf("%d users, want at most 20 (and 22 match)", len(users))
		}
		for i, u := range users {
			checkUser(t, fmt.Sprintf("users[%d]", i), u)
			if !strings.HasPrefix(u["username"].(string), "zq_find_") {
				t.Errorf("user %v does not match the prefix", u)
			}
		}
		o = n.do(t, "GET", "/api/users?q=zq_find_1", a.access, nil).want(t, http.StatusOK)
		if got := len(wantObjects(t, "search", o, "users")); got != 10 {
			t.Errorf("%d users for zq_find_1, want 10", got)
		}
		o = n.do(t, "GET", "/api/users?q=nomatchprefix", a.access, nil).want(t, http.StatusOK)
		if got := wantArray(t, "search", o, "users"); len(got) != 0 {
			t.Errorf("users %v, want []", got)
		}
		n.do(t, "GET", "/api/users?q=zq", "", nil).wantProblem(t, 401, "unauthenticated")
	})
}

// TestRefreshAfterGrace presents a rotated refresh token again after the
// grace period: that is reuse, and the family is revoked.
func TestRefreshAfterGrace(t *testing.T) {
	t.Parallel()
	const grace = 500 * time.Millisecond
	n := startNode(t, func(c *server.Config) { c.RefreshGrace = grace })
	u := n.register(t, "late")
	pair := n.do(t, "POST", "/api/auth/refresh", "", obj{"refresh_token": u.refresh}).want(t, http.StatusOK)
	time.Sleep(grace + 200*time.Millisecond)
	n.do(t, "POST", "/api/auth/refresh", "", obj{"refresh_token": u.refresh}).wantProblem(t, 401, "unauthenticated")
	n.do(t, "GET", "/api/users/me", pair["access_token"].(string), nil).wantProblem(t, 401, "unauthenticated")
	n.do(t, "POST", "/api/auth/refresh", "", obj{"refresh_token": pair["refresh_token"]}).wantProblem(t, 401, "unauthenticated")
}

func TestRefreshAndLogout(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	login := func(name string) obj {
		return n.do(t, "POST", "/api/auth/login", "", obj{"username": name, "password": "correct horse"}).want(t, http.StatusOK)
	}
	me := func(access string) *resp { return n.do(t, "GET", "/api/users/me", access, nil) }

	t.Run("rotation and reuse", func(t *testing.T) {
		u := n.register(t, "rot")
		first := n.do(t, "POST", "/api/auth/refresh", "", obj{"refresh_token": u.refresh}).want(t, http.StatusOK)
		checkTokens(t, "refresh", first)
		if first["refresh_token"] == u.refresh {
			t.Fatal("refresh returned the same refresh token")
		}
		me(first["access_token"].(string)).want(t, http.StatusOK)
		second := n.do(t, "POST", "/api/auth/refresh", "", obj{"refresh_token": first["refresh_token"]}).want(t, http.StatusOK)
		// Presenting a rotated token is theft: 401, and the whole family is
		// revoked, the newest pair included.
		n.do(t, "POST", "/api/auth/refresh", "", obj{"refresh_token": u.refresh}).wantProblem(t, 401, "unauthenticated")
		n.do(t, "POST", "/api/auth/refresh", "", obj{"refresh_token": second["refresh_token"]}).wantProblem(t, 401, "unauthenticated")
		me(second["access_token"].(string)).wantProblem(t, 401, "unauthenticated")
		me(u.access).wantProblem(t, 401, "unauthenticated")
		// Another login of the same user is not of that family.
		other := login(u.name)
		me(other["access_token"].(string)).want(t, http.StatusOK)
	})

	t.Run("a lost refresh answer", func(t *testing.T) {
		u := n.register(t, "lost")
		// The answer carrying lost is lost: the client presents its token
		// again, within the grace period, and gets a pair that works.
		lost := n.do(t, "POST", "/api/auth/refresh", "", obj{"refresh_token": u.refresh}).want(t, http.StatusOK)
		again := n.do(t, "POST", "/api/auth/refresh", "", obj{"refresh_token": u.refresh}).want(t, http.StatusOK)
		checkTokens(t, "refresh again", again)
		if again["refresh_token"] == lost["refresh_token"] {
			t.Fatal("the repeated refresh returned the same refresh token")
		}
		me(again["access_token"].(string)).want(t, http.StatusOK)
		next := n.do(t, "POST", "/api/auth/refresh", "", obj{"refresh_token": again["refresh_token"]}).want(t, http.StatusOK)
		me(next["access_token"].(string)).want(t, http.StatusOK)
		// The pair nobody received is void, and presenting it ends nothing.
		n.do(t, "POST", "/api/auth/refresh", "", obj{"refresh_token": lost["refresh_token"]}).wantProblem(t, 401, "unauthenticated")
		me(next["access_token"].(string)).want(t, http.StatusOK)
		// Once a child was used, the first token again is theft.
		n.do(t, "POST", "/api/auth/refresh", "", obj{"refresh_token": u.refresh}).wantProblem(t, 401, "unauthenticated")
		me(next["access_token"].(string)).wantProblem(t, 401, "unauthenticated")
	})

	t.Run("logout", func(t *testing.T) {
		u := n.register(t, "out")
		other := login(u.name)
		n.do(t, "POST", "/api/auth/logout", "", obj{"refresh_token": u.refresh}).want(t, http.StatusNoContent)
		me(u.access).wantProblem(t, 401, "unauthenticated")
		n.do(t, "POST", "/api/auth/refresh", "", obj{"refresh_token": u.refresh}).wantProblem(t, 401, "unauthenticated")
		// Other logins stay.
		me(other["access_token"].(string)).want(t, http.StatusOK)
		n.do(t, "POST", "/api/auth/refresh", "", obj{"refresh_token": other["refresh_token"]}).want(t, http.StatusOK)
		// Logging out again, or with an unknown token, is harmless.
		n.do(t, "POST", "/api/auth/logout", "", obj{"refresh_token": u.refresh}).want(t, http.StatusNoContent)
		n.do(t, "POST", "/api/auth/logout", "", obj{"refresh_token": "unknown"}).want(t, http.StatusNoContent)
	})

	t.Run("logout closes the family's sockets with 4001", func(t *testing.T) {
		u := n.register(t, "wsout")
		other := login(u.name)
		w1, _ := n.connect(t, u, "logged out")
		w2, _ := n.connect(t, user{id: u.id, access: other["access_token"].(string)}, "other login")
		n.do(t, "POST", "/api/auth/logout", "", obj{"refresh_token": u.refresh}).want(t, http.StatusNoContent)
		if code := w1.closed(); code != 4001 {
			t.Errorf("close code %d, want 4001", code)
		}
		// The other login's socket stays and still answers.
		w2.request("room.leave", "still", obj{"conversation_id": "0190a0a0-0000-7000-8000-000000000000"})
		if f := w2.reply("still"); f.typ != "ok" {
			t.Errorf("other login's socket answered %v, want ok", f)
		}
	})
}

func TestAccessTokenExpiry(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *server.Config) { c.AccessTTL = time.Second })
	u := n.register(t, "short")
	w, _ := n.connect(t, u, "expiring")
	start := time.Now()
	if code := w.closed(); code != 4001 {
		t.Errorf("close code %d when the token expired, want 4001", code)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("closed %v after connecting with a 1 s token", d)
	}
}

// TestDeleteAccount: a user deletes their account. Every socket of theirs
// closes with 4003 (do not reconnect), every token stops working, groups
// see them leave, and they answer as a deleted account wherever they are
// referenced.
func TestDeleteAccount(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	us := n.users(t, "alice", "bob", "carol")
	alice, bob, carol := us[0], us[1], us[2]
	g := wantString(t, "group", n.createGroup(t, alice, "Trip", bob, carol), "id")
	n.createDirect(t, alice, bob)
	phone := n.login(t, bob)
	n.registerIOS(t, phone, newAPNsToken())
	ws1, _ := n.connect(t, bob, "bob's laptop")
	ws2, _ := n.connect(t, phone, "bob's phone")
	aliceWS, _ := n.connect(t, alice, "alice")

	del := func(u user, body any) *resp { return n.do(t, "DELETE", "/api/users/me", u.access, body) }
	del(bob, obj{"password": "wrong horse"}).wantProblem(t, http.StatusForbidden, "forbidden")
	del(bob, obj{}).wantProblem(t, http.StatusBadRequest, "invalid_argument")
	n.do(t, "DELETE", "/api/users/me", "", obj{"password": "correct horse"}).wantProblem(t, http.StatusUnauthorized, "unauthenticated")
	del(bob, obj{"password": "correct horse"}).want(t, http.StatusNoContent)

	for _, ws := range []*wsClient{ws1, ws2} {
		if code := ws.closed(); code != 4003 {
			t.Errorf("%s closed with %d, want 4003", ws.name, code)
		}
	}
	f, _ := aliceWS.event("conversation.updated", func(p obj) bool {
		c, _ := p["conversation"].(obj)
		return c["id"] == g
	})
	if ms := wantObjects(t, "conversation.updated", wantObject(t, "conversation.updated", f.payload, "conversation"), "members"); len(ms) != 2 {
		t.Errorf("the group after bob left has %d members, want 2", len(ms))
	}
	for _, access := range []string{bob.access, phone.access} {
		n.do(t, "GET", "/api/users/me", access, nil).wantProblem(t, http.StatusUnauthorized, "unauthenticated")
	}
	n.do(t, "POST", "/api/auth/refresh", "", obj{"refresh_token": phone.refresh}).wantProblem(t, http.StatusUnauthorized, "unauthenticated")
	n.do(t, "POST", "/api/auth/login", "", obj{"username": bob.name, "password": "correct horse"}).wantProblem(t, http.StatusUnauthorized, "unauthenticated")
	if c, _, err := n.dialRaw(t, dialOpts{token: bob.access}); err == nil {
		c.CloseNow()
		t.Error("a deleted account's token opened a WebSocket")
	}

	got := n.do(t, "GET", "/api/users/"+bob.id, carol.access, nil).want(t, http.StatusOK)
	want := obj{"id": bob.id, "username": nil, "display_name": "Deleted account", "deleted": true}
	if len(got) != len(want) {
		t.Errorf("deleted user %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("deleted user %s = %#v, want %#v", k, got[k], v)
		}
	}
	// The username stays taken (for 30 days), and nobody finds it.
	n.do(t, "POST", "/api/auth/register", "", obj{"username": bob.name, "password": "correct horse"}).wantProblem(t, http.StatusConflict, "conflict")
	found := n.do(t, "GET", "/api/users?q="+bob.name, carol.access, nil).want(t, http.StatusOK)
	if us := wantArray(t, "search", found, "users"); len(us) != 0 {
		t.Errorf("search finds the deleted account: %v", us)
	}
}
