package chat

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/parley-chat/parley"
)

// Limits are the service's size and rate limits. The defaults let a normal
// client work without ever seeing them, as the contract requires.
type Limits struct {
	// MaxTextBytes is the largest message text in bytes (default 16 KiB).
	MaxTextBytes int
	// SendBurst and SendPerSecond bound messages per user (default 100, 20).
	SendBurst     int
	SendPerSecond float64
	// RequestBurst and RequestPerSecond bound every other request per user:
	// receipts, room joins, syncs, conversation changes (default 200, 50).
	RequestBurst     int
	RequestPerSecond float64
	// TypingBurst and TypingPerSecond bound typing frames per user; extra
	// ones are dropped silently (default 20, 5).
	TypingBurst     int
	TypingPerSecond float64
	// UploadBurst and UploadPerSecond bound the uploads (photos, videos,
	// files) a user starts (default 30, 1: an album at once, then one a
	// second).
	UploadBurst     int
	UploadPerSecond float64
	// MaxGroupMembers bounds a group's size (default 1024).
	MaxGroupMembers int
}

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{
		MaxTextBytes:     16 * 1024,
		SendBurst:        100,
		SendPerSecond:    20,
		RequestBurst:     200,
		RequestPerSecond: 50,
		TypingBurst:      20,
		TypingPerSecond:  5,
		UploadBurst:      30,
		UploadPerSecond:  1,
		MaxGroupMembers:  1024,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxTextBytes <= 0 {
		l.MaxTextBytes = d.MaxTextBytes
	}
	if l.SendBurst <= 0 {
		l.SendBurst = d.SendBurst
	}
	if l.SendPerSecond <= 0 {
		l.SendPerSecond = d.SendPerSecond
	}
	if l.RequestBurst <= 0 {
		l.RequestBurst = d.RequestBurst
	}
	if l.RequestPerSecond <= 0 {
		l.RequestPerSecond = d.RequestPerSecond
	}
	if l.TypingBurst <= 0 {
		l.TypingBurst = d.TypingBurst
	}
	if l.TypingPerSecond <= 0 {
		l.TypingPerSecond = d.TypingPerSecond
	}
	if l.UploadBurst <= 0 {
		l.UploadBurst = d.UploadBurst
	}
	if l.UploadPerSecond <= 0 {
		l.UploadPerSecond = d.UploadPerSecond
	}
	if l.MaxGroupMembers <= 0 {
		l.MaxGroupMembers = d.MaxGroupMembers
	}
	return l
}

// The kinds of rate limit, as RateLimiter.Allow names them.
const (
	// LimitSend bounds the messages a user sends.
	LimitSend = "send"
	// LimitRequest bounds every other request: receipts, room joins,
	// syncs, conversation changes.
	LimitRequest = "request"
	// LimitTyping bounds typing frames; those over it are dropped.
	LimitTyping = "typing"
	// LimitUpload bounds the uploads a user starts.
	LimitUpload = "upload"
)

// RateLimiter decides whether a user may make one more request of a kind:
// nil, or rate_limited with the time until one is allowed. A refused
// request spends nothing. LocalLimiter is the one of a single node; a
// cluster shares one (natsbus).
type RateLimiter interface {
	Allow(ctx context.Context, kind, userID string) error
}

// LocalLimiter holds the token buckets of this process. It is safe for
// concurrent use.
type LocalLimiter struct {
	sends, requests, typing, uploads *rateLimiter
}

var _ RateLimiter = (*LocalLimiter)(nil)

// NewLocalLimiter returns the buckets of limits (zero values take the
// defaults).
func NewLocalLimiter(limits Limits) *LocalLimiter {
	l := limits.withDefaults()
	return &LocalLimiter{
		sends:    newRateLimiter(l.SendPerSecond, l.SendBurst),
		requests: newRateLimiter(l.RequestPerSecond, l.RequestBurst),
		typing:   newRateLimiter(l.TypingPerSecond, l.TypingBurst),
		uploads:  newRateLimiter(l.UploadPerSecond, l.UploadBurst),
	}
}

// Allow takes one token of userID's bucket of kind; an unknown kind is an
// internal error.
func (l *LocalLimiter) Allow(_ context.Context, kind, userID string) error {
	switch kind {
	case LimitSend:
		return l.sends.allow(userID)
	case LimitRequest:
		return l.requests.allow(userID)
	case LimitTyping:
		return l.typing.allow(userID)
	case LimitUpload:
		return l.uploads.allow(userID)
	}
	return fmt.Errorf("rate limit: unknown kind %q", kind)
}

// limiterShards spreads the per-user limiters over independently locked
// maps, so that checking a limit never takes a process-wide lock.
const limiterShards = 64

// sweepAbove is the shard size above which idle limiters are swept.
const sweepAbove = 1024

// rateLimiter holds one token bucket per user.
type rateLimiter struct {
	limit  rate.Limit
	burst  int
	seed   maphash.Seed
	shards [limiterShards]limiterShard
}

type limiterShard struct {
	mu sync.Mutex // guards m
	m  map[string]*rate.Limiter
}

func newRateLimiter(perSecond float64, burst int) *rateLimiter {
	r := &rateLimiter{limit: rate.Limit(perSecond), burst: burst, seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].m = make(map[string]*rate.Limiter)
	}
	return r
}

// allow takes one token of userID's bucket, or returns rate_limited with
// the time until one is available.
func (r *rateLimiter) allow(userID string) error {
	sh := &r.shards[maphash.String(r.seed, userID)%limiterShards]
	now := time.Now()
	sh.mu.Lock()
	lim, ok := sh.m[userID]
	if !ok {
		if len(sh.m) >= sweepAbove {
			sh.sweepLocked(now, r.burst)
		}
		lim = rate.NewLimiter(r.limit, r.burst)
		sh.m[userID] = lim
	}
	res := lim.ReserveN(now, 1)
	var wait time.Duration
	if res.OK() {
		wait = res.DelayFrom(now)
		if wait > 0 {
			// Over the limit: give the token back, so that a refused request
			// changes nothing, not even the bucket.
			res.CancelAt(now)
		}
	}
	sh.mu.Unlock()
	if !res.OK() {
		return parley.RateLimited(time.Second)
	}
	if wait > 0 {
		return parley.RateLimited(wait)
	}
	return nil
}

// sweepLocked forgets limiters whose bucket is full again: they carry no
// state that a fresh limiter would not.
func (sh *limiterShard) sweepLocked(now time.Time, burst int) {
	for id, lim := range sh.m {
		if lim.TokensAt(now) >= float64(burst) {
			delete(sh.m, id)
		}
	}
}
