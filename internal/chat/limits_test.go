package chat

import (
	"fmt"
	"testing"

	"github.com/parley-chat/parley"
)

func TestRateLimiterAllowsBurstThenRefusesWithRetryAfter(t *testing.T) {
	r := newRateLimiter(20, 100)
	for i := range 100 {
		if err := r.allow("u1"); err != nil {
			t.Fatalf("request %d of the burst refused: %v", i, err)
		}
	}
	err := r.allow("u1")
	if parley.ErrorCode(err) != parley.CodeRateLimited {
		t.Fatalf("request past the burst = %v, want rate_limited", err)
	}
	if d := parley.RetryAfter(err); d <= 0 || d > 60_000_000 {
		t.Fatalf("retry after %v, want about 50ms", d)
	}
	// Another user has a bucket of their own.
	if err := r.allow("u2"); err != nil {
		t.Fatalf("other user refused: %v", err)
	}
}

func TestRefusedRequestDoesNotSpendAToken(t *testing.T) {
	r := newRateLimiter(0.001, 1)
	if err := r.allow("u"); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if r.allow("u") == nil {
			t.Fatal("allowed past an empty bucket")
		}
	}
	sh := &r.shards[0]
	for i := range r.shards {
		if _, ok := r.shards[i].m["u"]; ok {
			sh = &r.shards[i]
		}
	}
	if tokens := sh.m["u"].Tokens(); tokens < -0.01 {
		t.Fatalf("refused requests went into debt: %v tokens", tokens)
	}
}

func TestIdleLimitersAreSwept(t *testing.T) {
	r := newRateLimiter(1000, 1)
	for i := range limiterShards * (sweepAbove + 10) {
		_ = r.allow(fmt.Sprintf("user-%d", i))
	}
	total := 0
	for i := range r.shards {
		total += len(r.shards[i].m)
	}
	if total > limiterShards*(sweepAbove+1) {
		t.Fatalf("%d limiters kept: idle ones were not swept", total)
	}
}

func TestClampLimit(t *testing.T) {
	for in, want := range map[int]int{0: 50, 1: 1, 200: 200, 201: 200, 5000: 200} {
		if got := clampLimit(in); got != want {
			t.Errorf("clampLimit(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestValidID(t *testing.T) {
	for in, want := range map[string]bool{
		"0193a5c2-0000-7000-8000-000000000001": true,
		"0193A5C2-0000-7000-8000-000000000001": true,
		"0193a5c2-0000-7000-8000-00000000000":  false,
		"0193a5c2x0000-7000-8000-000000000001": false,
		"' OR 1=1 --                         ": false,
		"":                                     false,
	} {
		if got := validID(in); got != want {
			t.Errorf("validID(%q) = %v, want %v", in, got, want)
		}
	}
}
