package httpapi_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/parley-chat/parley"
)

func TestUsers(t *testing.T) {
	n := startNode(t)
	alice := n.register("alice")
	bob := n.register("bob")

	t.Run("me", func(t *testing.T) {
		var u parley.User
		n.do("GET", "/api/users/me", alice.AccessToken, nil).want(t, http.StatusOK, &u)
		if u != alice.User {
			t.Errorf("me = %+v, want %+v", u, alice.User)
		}
	})
	t.Run("by id", func(t *testing.T) {
		var u parley.User
		n.do("GET", "/api/users/"+bob.User.ID, alice.AccessToken, nil).want(t, http.StatusOK, &u)
		if u != bob.User {
			t.Errorf("user = %+v, want %+v", u, bob.User)
		}
	})
	for _, id := range []string{"0190d1f0-0000-7000-8000-000000000000", "not-a-uuid"} {
		t.Run("unknown id "+id, func(t *testing.T) {
			n.do("GET", "/api/users/"+id, alice.AccessToken, nil).wantProblem(t, parley.CodeNotFound)
		})
	}
}

func TestSearchUsers(t *testing.T) {
	n := startNode(t)
	caller := n.register("caller")
	for i := range 25 {
		n.register(fmt.Sprintf("many%02d", i))
	}
	n.users("a_b", "axb", "a_bc", "zed")

	search := func(t *testing.T, q string) []string {
		t.Helper()
		var res struct {
			Users []parley.User `json:"users"`
		}
		n.do("GET", "/api/users?q="+url.QueryEscape(q), caller.AccessToken, nil).want(t, http.StatusOK, &res)
		if res.Users == nil {
			t.Fatalf("users is null")
		}
		names := make([]string, len(res.Users))
		for i, u := range res.Users {
			names[i] = u.Username
		}
		return names
	}

	cases := []struct {
		q    string
		want []string
	}{
		{"a_", []string{"a_b", "a_bc"}}, // _ is a literal, not a LIKE wildcard
		{"A_B", []string{"a_b", "a_bc"}},
		{"axb", []string{"axb"}},
		{"ze", []string{"zed"}},
		{"nobody", []string{}},
		{"", []string{}},
		{"%", []string{}},
	}
	for _, c := range cases {
		t.Run(c.q, func(t *testing.T) {
			if got := search(t, c.q); !slices.Equal(got, c.want) {
				t.Errorf("q=%q: %v, want %v", c.q, got, c.want)
			}
		})
	}
	t.Run("at most 20", func(t *testing.T) {
		got := search(t, "many")
		if len(got) != 20 {
			t.Fatalf("%d users, want 20: %v", len(got), got)
		}
		if !slices.IsSorted(got) {
			t.Errorf("not in username order: %v", got)
		}
	})
	t.Run("no q", func(t *testing.T) {
		var res map[string][]parley.User
		n.do("GET", "/api/users", caller.AccessToken, nil).want(t, http.StatusOK, &res)
		if us, ok := res["users"]; !ok || us == nil {
			t.Errorf("answer %v, want an empty users list", res)
		}
	})
}
