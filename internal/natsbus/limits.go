package natsbus

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley"
)

// Limiter decides whether a user may make one more request of a kind (the
// chat service's rate limits).
type Limiter interface {
	Allow(ctx context.Context, kind, userID string) error
}

// limitTimeout bounds a question to another node about a rate limit; past
// it, this node's own limiter answers.
const limitTimeout = 250 * time.Millisecond

// limitRequest and limitReply are the rate-limit questions between nodes.
type limitRequest struct {
	Kind string `json:"k"`
	User string `json:"u"`
}

type limitReply struct {
	// RetryAfterMS is 0 when the request is allowed.
	RetryAfterMS int64 `json:"r"`
}

// Limiter returns a rate limiter shared by the cluster: each user's budget
// is kept by one node, the owner, and the others ask it over NATS (a
// request of ~0.2 ms on a local network). The owner is picked by
// rendezvous hashing of the user among the live nodes, whatever node the
// user's requests arrive at: three connections on three nodes, or REST
// calls spread by a load balancer, or a client hopping from node to node,
// all share one budget. If the owner does not answer in time (it died), or
// NATS is down, this node's own limiter answers; a change of the live
// nodes moves some users to a new owner with a fresh budget. Limits are
// exact while the cluster is steady.
// Options.Limiter is the node's own limiter, which answers for the users
// it owns.
func (b *Bus) Limiter() Limiter {
	return &clusterLimiter{b: b, local: b.opts.Limiter}
}

type clusterLimiter struct {
	b     *Bus
	local Limiter
}

func (l *clusterLimiter) Allow(ctx context.Context, kind, userID string) error {
	owner := l.b.ownerOf(userID)
	if owner == l.b.opts.Node || !l.b.up.Load() {
		return l.local.Allow(ctx, kind, userID)
	}
	data, err := json.Marshal(limitRequest{Kind: kind, User: userID})
	if err != nil {
		return l.local.Allow(ctx, kind, userID)
	}
	rctx, cancel := context.WithTimeout(ctx, limitTimeout)
	defer cancel()
	msg, err := l.b.nc.RequestWithContext(rctx, l.b.limitSubject(owner), data)
	if err != nil {
		l.b.log.Debug("rate limit owner did not answer: deciding here", "owner", owner, "err", err)
		return l.local.Allow(ctx, kind, userID)
	}
	var r limitReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return l.local.Allow(ctx, kind, userID)
	}
	if r.RetryAfterMS > 0 {
		return parley.RateLimited(time.Duration(r.RetryAfterMS) * time.Millisecond)
	}
	return nil
}

// ownerOf picks the node that keeps userID's budget.
func (b *Bus) ownerOf(userID string) string {
	nodes := b.dir.LiveNodes()
	best, bestScore := b.opts.Node, uint64(0)
	for _, n := range nodes {
		h := fnv.New64a()
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write([]byte(userID))
		if s := h.Sum64(); s >= bestScore {
			best, bestScore = n, s
		}
	}
	return best
}

func (b *Bus) limitSubject(node string) string { return b.opts.Prefix + ".limit." + node }

// serveLimit answers another node's question about a user this node owns.
func (b *Bus) serveLimit(m *nats.Msg) {
	var req limitRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return
	}
	var reply limitReply
	if err := b.opts.Limiter.Allow(context.Background(), req.Kind, req.User); err != nil {
		reply.RetryAfterMS = max(1, parley.RetryAfter(err).Milliseconds())
	}
	data, err := json.Marshal(reply)
	if err != nil {
		return
	}
	_ = m.Respond(data)
}
