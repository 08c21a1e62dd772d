package httpapi_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/parley-chat/parley"
)

func TestDeviceTokens(t *testing.T) {
	n := startNode(t)
	us := n.users("alice", "bob")
	alice, bob := us[0], us[1]

	register := func(by tokens, body map[string]string) *response {
		return n.do("POST", "/api/device-tokens", by.AccessToken, body)
	}
	del := func(by tokens, escapedToken string) *response {
		return n.do("DELETE", "/api/device-tokens/"+escapedToken, by.AccessToken, nil)
	}
	apns := strings.Repeat("ab12", 16)
	ios := map[string]string{"platform": "ios", "token": apns, "environment": "sandbox"}

	steps := []struct {
		name string
		do   func() *response
		want int
	}{
		{"register", func() *response { return register(alice, ios) }, http.StatusCreated},
		{"register again", func() *response { return register(alice, ios) }, http.StatusOK},
		{"register again in upper case", func() *response {
			return register(alice, map[string]string{"platform": "ios", "token": strings.ToUpper(apns), "environment": "sandbox"})
		}, http.StatusOK},
		{"moves to another user", func() *response { return register(bob, ios) }, http.StatusCreated},
		{"foreign delete changes nothing", func() *response { return del(alice, apns) }, http.StatusNoContent},
		{"still bob's", func() *response { return register(bob, ios) }, http.StatusOK},
		{"owner deletes", func() *response { return del(bob, apns) }, http.StatusNoContent},
		{"deleted", func() *response { return register(bob, ios) }, http.StatusCreated},
		{"delete unknown", func() *response { return del(alice, "00ff00ff00ff00ff00ff") }, http.StatusNoContent},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r := s.do()
			r.want(t, s.want, nil)
			if s.want == http.StatusNoContent && len(r.Body) != 0 {
				t.Errorf("204 with body %q", r.Body)
			}
		})
	}

	// A web token is a PushSubscription as a JSON string: it has "/", "+",
	// "=", ":" and "%" in it, and clients URL-encode it into the path.
	sub := `{"endpoint":"https://push.example/send/a+b/c%2Fd==","keys":{"p256dh":"BN+x/y==","auth":"q/w+e="}}`
	for _, enc := range []struct {
		name   string
		escape func(string) string
	}{
		{"PathEscape", url.PathEscape},
		{"every reserved byte", escapeAll},
	} {
		t.Run("web token, "+enc.name, func(t *testing.T) {
			web := map[string]string{"platform": "web", "token": sub, "environment": "ignored"}
			register(alice, web).want(t, http.StatusCreated, nil)
			register(alice, web).want(t, http.StatusOK, nil)
			del(alice, enc.escape(sub)).want(t, http.StatusNoContent, nil)
			// Created again, so the delete found the token.
			register(alice, web).want(t, http.StatusCreated, nil)
			del(alice, enc.escape(sub)).want(t, http.StatusNoContent, nil)
		})
	}

	bad := []struct {
		name string
		body map[string]string
	}{
		{"ios without environment", map[string]string{"platform": "ios", "token": apns}},
		{"ios with unknown environment", map[string]string{"platform": "ios", "token": apns, "environment": "staging"}},
		{"ios token not hex", map[string]string{"platform": "ios", "token": "not hex at all, really", "environment": "sandbox"}},
		{"unknown platform", map[string]string{"platform": "android", "token": apns, "environment": "sandbox"}},
		{"no token", map[string]string{"platform": "web"}},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			register(alice, b.body).wantProblem(t, parley.CodeInvalidArgument)
		})
	}
	t.Run("delete without a token", func(t *testing.T) {
		del(alice, "").wantProblem(t, parley.CodeInvalidArgument)
	})
}

// escapeAll percent-encodes every byte that is not unreserved (RFC 3986).
func escapeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
