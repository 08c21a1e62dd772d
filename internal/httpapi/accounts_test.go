package httpapi_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/parley-chat/parley"
)

func TestRegister(t *testing.T) {
	n := startNode(t)

	r := n.do("POST", "/api/auth/register", "", map[string]string{
		"username": "Alice.Smith_1", "password": password, "display_name": "Alice", "ignored": "x",
	})
	var tok tokens
	r.want(t, http.StatusCreated, &tok)
	if tok.User.Username != "alice.smith_1" {
		t.Errorf("username %q, want it lower-cased", tok.User.Username)
	}
	if tok.User.DisplayName != "Alice" || tok.User.ID == "" || tok.User.CreatedAt.IsZero() {
		t.Errorf("user %+v", tok.User)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.TokenType != "Bearer" || tok.ExpiresIn != 15*60 {
		t.Errorf("tokens %+v", tok)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}

	t.Run("duplicate differing in case", func(t *testing.T) {
		n.do("POST", "/api/auth/register", "", map[string]string{"username": "ALICE.smith_1", "password": password}).
			wantProblem(t, parley.CodeConflict)
	})

	t.Run("display name defaults to the username", func(t *testing.T) {
		var tok tokens
		n.do("POST", "/api/auth/register", "", map[string]string{"username": "bob", "password": password}).want(t, http.StatusCreated, &tok)
		if tok.User.DisplayName != "bob" {
			t.Errorf("display_name %q, want bob", tok.User.DisplayName)
		}
	})

	valid := []struct{ name, username, password string }{
		{"password of 8 bytes", "pw8", strings.Repeat("p", 8)},
		{"password of 1024 bytes", "pw1024", strings.Repeat("p", 1024)},
		{"username of 3", "abc", password},
		{"username of 32", strings.Repeat("u", 32), password},
	}
	for _, c := range valid {
		t.Run(c.name, func(t *testing.T) {
			n.do("POST", "/api/auth/register", "", map[string]string{"username": c.username, "password": c.password}).
				want(t, http.StatusCreated, nil)
		})
	}

	invalid := []struct{ name, username, password string }{
		{"password of 7 bytes", "pw7", strings.Repeat("p", 7)},
		{"password of 1025 bytes", "pw1025", strings.Repeat("p", 1025)},
		{"no password", "nopw", ""},
		{"username of 2", "ab", password},
		{"username of 33", strings.Repeat("u", 33), password},
		{"username with a space", "a b c", password},
		{"username with a dash", "a-b-c", password},
		{"username not ASCII", "ünïcode", password},
		{"no username", "", password},
	}
	for _, c := range invalid {
		t.Run(c.name, func(t *testing.T) {
			n.do("POST", "/api/auth/register", "", map[string]string{"username": c.username, "password": c.password}).
				wantProblem(t, parley.CodeInvalidArgument)
		})
	}
}

func TestLogin(t *testing.T) {
	n := startNode(t)
	alice := n.register("alice")

	for _, name := range []string{"alice", "ALICE", "AlIcE"} {
		t.Run(name, func(t *testing.T) {
			var tok tokens
			r := n.do("POST", "/api/auth/login", "", map[string]string{"username": name, "password": password})
			r.want(t, http.StatusOK, &tok)
			if tok.User != alice.User || tok.AccessToken == "" || tok.RefreshToken == "" || tok.RefreshToken == alice.RefreshToken {
				t.Errorf("login answered %+v", tok)
			}
			if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
		})
	}

	wrongPassword := n.do("POST", "/api/auth/login", "", map[string]string{"username": "alice", "password": "wrong password"})
	wrongPassword.wantProblem(t, parley.CodeUnauthenticated)
	for _, c := range []struct{ name, username string }{
		{"unknown user", "nobody"},
		{"invalid username", "x"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := n.do("POST", "/api/auth/login", "", map[string]string{"username": c.username, "password": "wrong password"})
			r.wantProblem(t, parley.CodeUnauthenticated)
			if !bytes.Equal(r.Body, wrongPassword.Body) {
				t.Errorf("body %s differs from a wrong password's %s", r.Body, wrongPassword.Body)
			}
		})
	}
}

func TestRefresh(t *testing.T) {
	n := startNode(t)
	first := n.register("alice")

	refresh := func(rt string) *response {
		return n.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": rt})
	}
	me := func(at string) *response { return n.do("GET", "/api/users/me", at, nil) }

	var second tokens
	r := refresh(first.RefreshToken)
	r.want(t, http.StatusOK, &second)
	if second.RefreshToken == first.RefreshToken || second.AccessToken == "" || second.User != first.User {
		t.Fatalf("refresh answered %+v", second)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	me(second.AccessToken).want(t, http.StatusOK, nil)

	var third tokens
	refresh(second.RefreshToken).want(t, http.StatusOK, &third)

	// A login of the same user is another family, untouched by the theft.
	var other tokens
	n.do("POST", "/api/auth/login", "", map[string]string{"username": "alice", "password": password}).want(t, http.StatusOK, &other)

	// Reusing a rotated token is theft: 401, and the whole family dies.
	refresh(first.RefreshToken).wantProblem(t, parley.CodeUnauthenticated)
	refresh(third.RefreshToken).wantProblem(t, parley.CodeUnauthenticated)
	for _, at := range []string{first.AccessToken, second.AccessToken, third.AccessToken} {
		r := me(at)
		r.wantProblem(t, parley.CodeUnauthenticated)
		if got := r.Header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
			t.Errorf("WWW-Authenticate %q for a refused token", got)
		}
	}
	me(other.AccessToken).want(t, http.StatusOK, nil)
	refresh(other.RefreshToken).want(t, http.StatusOK, nil)

	t.Run("unknown token", func(t *testing.T) {
		refresh("not-a-token").wantProblem(t, parley.CodeUnauthenticated)
	})
	t.Run("missing token", func(t *testing.T) {
		n.do("POST", "/api/auth/refresh", "", map[string]string{}).wantProblem(t, parley.CodeInvalidArgument)
	})
}

func TestLogout(t *testing.T) {
	n := startNode(t)
	phone := n.register("alice")
	var laptop tokens
	n.do("POST", "/api/auth/login", "", map[string]string{"username": "alice", "password": password}).want(t, http.StatusOK, &laptop)

	logout := func(rt string) *response {
		return n.do("POST", "/api/auth/logout", "", map[string]string{"refresh_token": rt})
	}
	r := logout(phone.RefreshToken)
	r.want(t, http.StatusNoContent, nil)
	if len(r.Body) != 0 {
		t.Errorf("204 with body %q", r.Body)
	}

	n.do("GET", "/api/users/me", phone.AccessToken, nil).wantProblem(t, parley.CodeUnauthenticated)
	n.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": phone.RefreshToken}).wantProblem(t, parley.CodeUnauthenticated)

	n.do("GET", "/api/users/me", laptop.AccessToken, nil).want(t, http.StatusOK, nil)
	n.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": laptop.RefreshToken}).want(t, http.StatusOK, nil)

	t.Run("again", func(t *testing.T) { logout(phone.RefreshToken).want(t, http.StatusNoContent, nil) })
	t.Run("unknown token", func(t *testing.T) { logout("not-a-token").want(t, http.StatusNoContent, nil) })
	t.Run("missing token", func(t *testing.T) {
		n.do("POST", "/api/auth/logout", "", map[string]string{}).wantProblem(t, parley.CodeInvalidArgument)
	})
}

func TestAuthorizationHeader(t *testing.T) {
	n := startNode(t)
	alice := n.register("alice")

	cases := []struct {
		name   string
		header string
		want   int
		// challenge is the WWW-Authenticate of a 401.
		challenge string
	}{
		{"valid", "Bearer " + alice.AccessToken, http.StatusOK, ""},
		{"scheme in lower case", "bearer " + alice.AccessToken, http.StatusOK, ""},
		{"missing", "", http.StatusUnauthorized, "Bearer"},
		{"other scheme", "Basic YWxpY2U6cGFzc3dvcmQ=", http.StatusUnauthorized, "Bearer"},
		{"scheme alone", "Bearer", http.StatusUnauthorized, "Bearer"},
		{"garbage token", "Bearer not.a.jwt", http.StatusUnauthorized, `Bearer error="invalid_token"`},
		{"refresh token as access token", "Bearer " + alice.RefreshToken, http.StatusUnauthorized, `Bearer error="invalid_token"`},
		{"tampered token", "Bearer " + alice.AccessToken[:len(alice.AccessToken)-2] + "xx", http.StatusUnauthorized, `Bearer error="invalid_token"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest("GET", n.url+"/api/users/me", nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.header != "" {
				req.Header.Set("Authorization", c.header)
			}
			r := n.send(req)
			if c.want == http.StatusOK {
				r.want(t, http.StatusOK, nil)
				return
			}
			r.wantProblem(t, parley.CodeUnauthenticated)
			if got := r.Header.Get("WWW-Authenticate"); got != c.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, c.challenge)
			}
		})
	}

	t.Run("token in the query is not accepted", func(t *testing.T) {
		n.do("GET", "/api/users/me?access_token="+alice.AccessToken, "", nil).wantProblem(t, parley.CodeUnauthenticated)
	})

	// Every route but the account ones and the operational ones needs a
	// token; without one it is 401 before anything else is looked at.
	for _, route := range []struct{ method, path string }{
		{"GET", "/api/users/me"},
		{"GET", "/api/users/" + alice.User.ID},
		{"GET", "/api/users?q=al"},
		{"POST", "/api/conversations"},
		{"GET", "/api/conversations"},
		{"GET", "/api/conversations/" + alice.User.ID},
		{"POST", "/api/conversations/" + alice.User.ID + "/members"},
		{"DELETE", "/api/conversations/" + alice.User.ID + "/members/" + alice.User.ID},
		{"GET", "/api/conversations/" + alice.User.ID + "/messages"},
		{"POST", "/api/conversations/" + alice.User.ID + "/messages"},
		{"POST", "/api/conversations/" + alice.User.ID + "/receipts"},
		{"POST", "/api/device-tokens"},
		{"DELETE", "/api/device-tokens/abc"},
	} {
		t.Run(route.method+" "+route.path, func(t *testing.T) {
			n.do(route.method, route.path, "", raw(`{`)).wantProblem(t, parley.CodeUnauthenticated)
		})
	}
}
