package push

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/metrics"
)

// Queue is the push outbox as the worker uses it: the store queues a job
// per device of each recipient in the write that stores a message, and the
// worker claims, sends and finishes them. *sqlstore.DB implements it.
type Queue interface {
	// ClaimPushJobs leases up to limit due jobs until now+lease and
	// returns them, with when the next job (a lease's end included) is due,
	// or the zero time when none is queued. Jobs that have become
	// pointless (the recipient read the message, left or muted) are
	// dropped by the store, not returned.
	ClaimPushJobs(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]parley.PushJob, time.Time, error)
	// FinishPushJob ends a sent (sent true) or dropped job, recording for
	// a sent one the badge its device now shows.
	FinishPushJob(ctx context.Context, j parley.PushJob, sent bool) error
	// HoldPushJob makes a message push due at at, marked held: it is then
	// sent unless its device has confirmed the message.
	HoldPushJob(ctx context.Context, id int64, at time.Time) error
	// RetryPushJob records the attempts of a job and makes it due at at.
	RetryPushJob(ctx context.Context, id int64, attempts int, at time.Time) error
	// RemoveDeviceToken deletes a token, whoever owns it, and its jobs.
	RemoveDeviceToken(ctx context.Context, token string) error
}

// Presence tells whether a device would show a new message without a
// push. *gateway.Gateway implements it.
type Presence interface {
	// HasForegroundConnection reports whether the user's device (a login;
	// "" for any device) has a WebSocket whose app is not in the
	// background. It must not block.
	HasForegroundConnection(userID, deviceID string) bool
}

// Defaults of Options.
const (
	DefaultConcurrency = 32
	DefaultLease       = time.Minute
	DefaultSendTimeout = 30 * time.Second
	DefaultMaxAge      = 24 * time.Hour
	DefaultMinBackoff  = 500 * time.Millisecond
	DefaultMaxBackoff  = time.Minute
	// DefaultConfirmDelay is how long a push held back for a foreground
	// device waits for that device's delivered receipt.
	DefaultConfirmDelay = 5 * time.Second
	// DefaultExpiry is how long a push service keeps a push for a device
	// that is off: a week, so that a phone off for a day or two still
	// gets the latest when it comes back.
	DefaultExpiry = 7 * 24 * time.Hour
)

// Options tunes a Worker. Zero values take the defaults.
type Options struct {
	// Concurrency is the most pushes being sent at once (default 32).
	Concurrency int
	// Lease is how long a claimed job is held before it is due again if
	// the worker never finished it, say because the process died (default
	// 1 min). It must be longer than SendTimeout.
	Lease time.Duration
	// SendTimeout bounds one attempt (default 30 s).
	SendTimeout time.Duration
	// MaxAge is how long after the message a push is given up (default a
	// day).
	MaxAge time.Duration
	// MinBackoff and MaxBackoff bound the delay before a retry, which
	// doubles with each failed attempt (defaults 500 ms and 1 min); a
	// Retry-After from the push service is honoured when longer.
	MinBackoff, MaxBackoff time.Duration
	// ConfirmDelay is how long a message push is held back when its device
	// has a connection in the foreground: if the device has not confirmed
	// the message with a delivered receipt by then (its socket may be dead
	// without anyone knowing yet), the push is sent (default 5 s).
	ConfirmDelay time.Duration
	// Expiry is how long after sending the push service keeps a push for
	// a device that is off (APNs's apns-expiration, Web Push's TTL;
	// default a week).
	Expiry time.Duration
	// PollEvery, if set, is the longest the worker waits before it looks
	// for due jobs again without being woken. A node of a cluster needs it:
	// jobs queued by a node that died before waking its own worker are
	// claimed by another node's poll.
	PollEvery time.Duration
	// Logger receives the worker's logs (default slog.Default()).
	Logger *slog.Logger
	// Metrics receives the push counters; nil uses a private registry.
	Metrics *metrics.Metrics
}

func (o Options) withDefaults() Options {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = DefaultSendTimeout
	}
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	if o.Lease <= o.SendTimeout {
		o.Lease = o.SendTimeout + 10*time.Second
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.ConfirmDelay <= 0 {
		o.ConfirmDelay = DefaultConfirmDelay
	}
	if o.Expiry <= 0 {
		o.Expiry = DefaultExpiry
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New(nil)
	}
	return o
}

const (
	// claimRetry is how long the worker waits after a failed claim (the
	// store is closing, or failing) before it tries again.
	claimRetry = time.Second
	// recordTimeout bounds the store write that records an outcome.
	recordTimeout = 10 * time.Second
)

// Worker sends the queued pushes. It wakes when a message is stored (a
// message.new event on the bus) and when a retry falls due, claims the due
// jobs, and sends each to its platform's Sender, a bounded number at once.
//
// Pushes go to devices, not users: a message push to a device (a login)
// that has a connection in the foreground is held back, since the socket
// shows the message; if the device has not confirmed the message with a
// delivered receipt of its own within ConfirmDelay (a socket can be dead
// without anyone knowing yet), the push is sent after all. A device that
// confirmed gets none. Badge updates (BadgeOnly jobs) are sent whatever
// the device's connections.
//
// Outcomes: nil finishes the job; ErrTokenGone deletes the token and its
// jobs; a *RetryError schedules the job again with exponential backoff (or
// the push service's Retry-After), until it is a day old; any other error,
// or a platform without a Sender, drops it. Delivery is at least once: a
// job being sent when the process dies is sent again after its lease.
//
// Create it with NewWorker and run it with Run.
type Worker struct {
	q       Queue
	live    Presence
	bus     parley.Bus
	senders map[parley.Platform]Sender
	opts    Options
	log     *slog.Logger
	m       *metrics.Metrics
	// wake is a one-slot signal: something may be due now.
	wake chan struct{}
}

// NewWorker returns a worker over the queue q that asks live whether a
// recipient is connected, wakes on bus's message.new events, and sends
// through senders (one per platform; a platform without one has its jobs
// dropped). live may be nil (nobody is ever connected).
func NewWorker(q Queue, live Presence, bus parley.Bus, senders map[parley.Platform]Sender, opts Options) *Worker {
	opts = opts.withDefaults()
	return &Worker{
		q:       q,
		live:    live,
		bus:     bus,
		senders: senders,
		opts:    opts,
		log:     opts.Logger.With("component", "push"),
		m:       opts.Metrics,
		wake:    make(chan struct{}, 1),
	}
}

// Wake makes the worker look for due jobs now. It never blocks and is safe
// for concurrent use.
func (w *Worker) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run sends pushes until ctx ends, then waits for the attempts under way
// (which ctx's end cancels; their jobs are due again at the next start)
// and returns. The queue must stay open until Run has returned. Run starts
// with whatever is due, so pushes queued before a restart go out.
func (w *Worker) Run(ctx context.Context) {
	if w.bus != nil {
		unsubscribe := w.bus.Subscribe(func(ev *parley.Event) {
			if ev.Type == parley.EventMessageNew {
				w.Wake()
			}
		})
		defer unsubscribe()
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	// done receives, from each finished attempt, when its job is due again
	// (zero if never); it has room for every attempt, so none waits.
	done := make(chan time.Time, w.opts.Concurrency)
	inflight := 0

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var timerAt time.Time // when timer fires; zero when stopped
	setTimer := func(at time.Time) {
		if at.IsZero() || (!timerAt.IsZero() && !at.Before(timerAt)) {
			return
		}
		timerAt = at
		timer.Reset(time.Until(at))
	}

	claim := true
	for {
		if claim && inflight < w.opts.Concurrency {
			claim = false
			now := time.Now()
			jobs, next, err := w.q.ClaimPushJobs(ctx, now, w.opts.Lease, w.opts.Concurrency-inflight)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				w.log.Error("claim push jobs", "err", err)
				next = now.Add(claimRetry)
			}
			if ctx.Err() != nil {
				// Claimed as the stop came: due again at the next start.
				for _, j := range jobs {
					w.retry(ctx, j, j.Attempts, now)
				}
				return
			}
			for _, j := range jobs {
				inflight++
				wg.Add(1)
				go func() {
					defer wg.Done()
					done <- w.attempt(ctx, j)
				}()
			}
			if w.opts.PollEvery > 0 {
				setTimer(now.Add(w.opts.PollEvery))
			}
			switch {
			case next.IsZero():
			case next.After(now):
				setTimer(next)
			case len(jobs) == 0:
				// Due but not claimable: never spin on it.
				setTimer(now.Add(claimRetry))
			default:
				claim = true // more are due: claim when there is room
				continue
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
			claim = true
		case <-timer.C:
			timerAt = time.Time{}
			claim = true
		case at := <-done:
			inflight--
			setTimer(at)
		}
	}
}

// attempt sends one job and records the outcome; it returns when the job
// is due again, or the zero time when it is finished.
func (w *Worker) attempt(ctx context.Context, j parley.PushJob) time.Time {
	platform := string(j.Device.Platform)
	expires := j.QueuedAt.Add(w.opts.MaxAge)
	log := w.log.With("user", j.Device.UserID, "device", j.Device.DeviceID, "platform", platform, "message", j.Message.ID)
	if !time.Now().Before(expires) {
		w.m.PushFailed.WithLabelValues(platform).Inc()
		log.Warn("push given up: too old", "attempts", j.Attempts)
		w.finish(ctx, j)
		return time.Time{}
	}
	foreground := !j.BadgeOnly && !j.Held && w.live != nil && w.live.HasForegroundConnection(j.Device.UserID, j.Device.DeviceID)
	if j.Confirmed && (j.Held || foreground) {
		// The device's open socket delivered the message: a push is noise.
		w.m.PushSkipped.WithLabelValues(platform).Inc()
		w.finish(ctx, j)
		return time.Time{}
	}
	if foreground {
		// The socket should deliver it, but may be dead without anyone
		// knowing yet: wait for the device to confirm.
		at := time.Now().Add(w.opts.ConfirmDelay)
		rctx, cancel := recordContext(ctx)
		defer cancel()
		if err := w.q.HoldPushJob(rctx, j.ID, at); err != nil {
			// The job stays leased and is due at the lease's end.
			log.Error("hold push job", "err", err)
			return time.Time{}
		}
		w.m.PushHeld.WithLabelValues(platform).Inc()
		return at
	}
	s := w.senders[j.Device.Platform]
	if s == nil {
		w.m.PushFailed.WithLabelValues(platform).Inc()
		log.Warn("push dropped: no sender for the platform")
		w.finish(ctx, j)
		return time.Time{}
	}

	a := NewAlert(j)
	a.Expires = time.Now().Add(w.opts.Expiry)
	sctx, cancel := context.WithTimeout(ctx, w.opts.SendTimeout)
	err := s.Send(sctx, j.Device, a)
	cancel()

	var re *RetryError
	switch {
	case err == nil:
		switch {
		case j.BadgeOnly:
			w.m.PushBadgeSent.WithLabelValues(platform).Inc()
		case j.Held:
			w.m.PushUnconfirmed.WithLabelValues(platform).Inc()
			fallthrough
		default:
			w.m.PushSent.WithLabelValues(platform).Inc()
		}
		log.Debug("push sent", "badge", a.Badge, "badge_only", j.BadgeOnly, "held", j.Held)
		w.sent(ctx, j)
	case ctx.Err() != nil:
		// Shutting down: this attempt does not count, and the job is due
		// at the next start.
		w.retry(ctx, j, j.Attempts, time.Now())
	case errors.Is(err, ErrTokenGone):
		w.m.PushTokensDeleted.WithLabelValues(platform).Inc()
		log.Info("device token no longer valid: deleted", "err", err)
		rctx, cancel := recordContext(ctx)
		defer cancel()
		if err := w.q.RemoveDeviceToken(rctx, j.Device.Token); err != nil {
			log.Error("delete device token", "err", err)
		}
	case errors.As(err, &re):
		attempts := j.Attempts + 1
		at := time.Now().Add(max(w.backoff(attempts), re.After))
		if at.After(expires) {
			w.m.PushFailed.WithLabelValues(platform).Inc()
			log.Warn("push given up: retried for too long", "attempts", attempts, "err", err)
			w.finish(ctx, j)
			return time.Time{}
		}
		w.m.PushRetried.WithLabelValues(platform).Inc()
		log.Info("push will be retried", "attempts", attempts, "at", at, "err", err)
		if w.retry(ctx, j, attempts, at) {
			return at
		}
	default:
		w.m.PushFailed.WithLabelValues(platform).Inc()
		log.Warn("push dropped", "err", err)
		w.finish(ctx, j)
	}
	return time.Time{}
}

// finish removes a job that was not sent from the queue.
func (w *Worker) finish(ctx context.Context, j parley.PushJob) { w.end(ctx, j, false) }

// sent removes a sent job from the queue and records the badge its device
// shows now.
func (w *Worker) sent(ctx context.Context, j parley.PushJob) { w.end(ctx, j, true) }

// end removes a job from the queue, sent or not.
func (w *Worker) end(ctx context.Context, j parley.PushJob, sent bool) {
	rctx, cancel := recordContext(ctx)
	defer cancel()
	if err := w.q.FinishPushJob(rctx, j, sent); err != nil {
		// The job stays leased and is sent again after the lease.
		w.log.Error("finish push job", "err", err)
	}
}

// retry makes a job due at at with the given number of failed attempts,
// reporting whether that was recorded; if not, the job stays leased and is
// due at the lease's end.
func (w *Worker) retry(ctx context.Context, j parley.PushJob, attempts int, at time.Time) bool {
	rctx, cancel := recordContext(ctx)
	defer cancel()
	if err := w.q.RetryPushJob(rctx, j.ID, attempts, at); err != nil {
		w.log.Error("reschedule push job", "err", err)
		return false
	}
	return true
}

// recordContext is the context of a store write that records an outcome:
// it outlives ctx, so that what happened is recorded during a shutdown.
func recordContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
}

// backoff is the delay before the attempt after the given number of
// failed ones: MinBackoff doubled per failure, capped at MaxBackoff, with
// "equal jitter" (between half of it and all of it) so that pushes failed
// together do not come back together.
func (w *Worker) backoff(failures int) time.Duration {
	d := w.opts.MinBackoff
	for i := 1; i < failures && d < w.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, w.opts.MaxBackoff)
	half := d / 2
	return half + rand.N(d-half+1)
}
