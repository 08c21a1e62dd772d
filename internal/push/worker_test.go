package push

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/localbus"
	"github.com/parley-chat/parley/internal/metrics"
)

const wait = 10 * time.Second

// fakeQueue is an in-memory Queue with the store's claim semantics.
type fakeQueue struct {
	mu       sync.Mutex
	jobs     map[int64]*queuedJob
	nextID   int64
	removed  []string
	finished []int64
	retries  map[int64][]time.Time // id → due times set by RetryPushJob
	claims   int
}

func (q *fakeQueue) claimCount() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.claims
}

type queuedJob struct {
	job parley.PushJob
	due time.Time
	// confirmed: the device has confirmed the message (a receipt of its
	// own).
	confirmed bool
}

func newFakeQueue() *fakeQueue {
	return &fakeQueue{jobs: map[int64]*queuedJob{}, retries: map[int64][]time.Time{}}
}

// add queues a job for token (the user is "u-"+token) and returns its id.
func (q *fakeQueue) add(platform parley.Platform, token string, queuedAt time.Time) int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.nextID++
	j := parley.PushJob{
		ID:               q.nextID,
		Device:           parley.DeviceToken{UserID: "u-" + token, Platform: platform, Token: token},
		Message:          parley.Message{ID: fmt.Sprintf("m%d", q.nextID), ConversationID: "c", Seq: q.nextID, SenderID: "s", Kind: parley.KindText, Text: "hi"},
		SenderName:       "Sender",
		ConversationType: parley.Direct,
		Badge:            int(q.nextID),
		QueuedAt:         parley.NewTime(queuedAt),
	}
	q.jobs[j.ID] = &queuedJob{job: j, due: queuedAt}
	return j.ID
}

func (q *fakeQueue) ClaimPushJobs(_ context.Context, now time.Time, lease time.Duration, limit int) ([]parley.PushJob, time.Time, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.claims++
	var due []*queuedJob
	for _, qj := range q.jobs {
		if !qj.due.After(now) {
			due = append(due, qj)
		}
	}
	slices.SortFunc(due, func(a, b *queuedJob) int { return a.due.Compare(b.due) })
	var out []parley.PushJob
	for _, qj := range due {
		if len(out) == limit {
			break
		}
		qj.due = now.Add(lease)
		j := qj.job
		j.Confirmed = qj.confirmed
		out = append(out, j)
	}
	var next time.Time
	for _, qj := range q.jobs {
		if next.IsZero() || qj.due.Before(next) {
			next = qj.due
		}
	}
	return out, next, nil
}

func (q *fakeQueue) FinishPushJob(_ context.Context, j parley.PushJob, _ bool) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.jobs, j.ID)
	q.finished = append(q.finished, j.ID)
	return nil
}

func (q *fakeQueue) HoldPushJob(_ context.Context, id int64, at time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if qj := q.jobs[id]; qj != nil {
		qj.job.Held, qj.due = true, at
	}
	return nil
}

// confirm records that the device of the job id confirmed its message.
func (q *fakeQueue) confirm(id int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if qj := q.jobs[id]; qj != nil {
		qj.confirmed = true
	}
}

func (q *fakeQueue) RetryPushJob(_ context.Context, id int64, attempts int, at time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if qj := q.jobs[id]; qj != nil {
		qj.job.Attempts, qj.due = attempts, at
		q.retries[id] = append(q.retries[id], at)
	}
	return nil
}

func (q *fakeQueue) RemoveDeviceToken(_ context.Context, token string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.removed = append(q.removed, token)
	for id, qj := range q.jobs {
		if qj.job.Device.Token == token {
			delete(q.jobs, id)
		}
	}
	return nil
}

func (q *fakeQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.jobs)
}

// fakeSender answers each token's attempts from a script (nil once the
// script is used up) and records them.
type fakeSender struct {
	mu       sync.Mutex
	script   map[string][]error
	attempts map[string][]time.Time
	alerts   []Alert
	block    chan struct{} // if not nil, Send waits for it or ctx
}

func newFakeSender() *fakeSender {
	return &fakeSender{script: map[string][]error{}, attempts: map[string][]time.Time{}}
}

func (s *fakeSender) Send(ctx context.Context, t parley.DeviceToken, a Alert) error {
	s.mu.Lock()
	s.attempts[t.Token] = append(s.attempts[t.Token], time.Now())
	s.alerts = append(s.alerts, a)
	var err error
	if sc := s.script[t.Token]; len(sc) > 0 {
		err, s.script[t.Token] = sc[0], sc[1:]
	}
	block := s.block
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return &RetryError{Err: ctx.Err()}
		}
	}
	return err
}

func (s *fakeSender) tries(token string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.attempts[token])
}

// value reads a counter.
func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// livePresence holds the users ("user") and devices ("user/device") with a
// foreground connection.
type livePresence map[string]bool

func (l livePresence) HasForegroundConnection(userID, deviceID string) bool {
	if deviceID == "" {
		return l[userID]
	}
	return l[userID+"/"+deviceID]
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// run starts w and stops it when the test ends.
func run(t *testing.T, w *Worker) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(wait):
				t.Error("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestWorkerOutcomes(t *testing.T) {
	q := newFakeQueue()
	ios, web := newFakeSender(), newFakeSender()
	m := metrics.New(nil)
	now := time.Now()
	ids := map[string]int64{}
	for _, tok := range []string{"ok", "gone", "bad", "retry", "after", "live", "late"} {
		ids[tok] = q.add(parley.PlatformIOS, tok, now)
	}
	ids["web"] = q.add(parley.PlatformWeb, "web", now)
	ids["nosender"] = q.add("android", "nosender", now)
	ids["old"] = q.add(parley.PlatformIOS, "old", now.Add(-25*time.Hour))
	// live is in the foreground and has confirmed the message: no push.
	q.jobs[ids["live"]].confirmed = true
	// late is a day old but for 2 s: its retry would come after that.
	q.jobs[ids["late"]].job.QueuedAt = parley.NewTime(now.Add(-24*time.Hour + 2*time.Second))

	ios.script["gone"] = []error{fmt.Errorf("apns: 410: %w", ErrTokenGone)}
	ios.script["bad"] = []error{errors.New("apns: 400 BadTopic")}
	ios.script["retry"] = []error{&RetryError{Err: errors.New("503")}, &RetryError{Err: errors.New("503")}}
	ios.script["after"] = []error{&RetryError{After: 300 * time.Millisecond, Err: errors.New("429")}}
	ios.script["late"] = []error{&RetryError{After: 5 * time.Second, Err: errors.New("429")}}

	w := NewWorker(q, livePresence{"u-live": true}, nil, map[parley.Platform]Sender{parley.PlatformIOS: ios, parley.PlatformWeb: web}, Options{
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 40 * time.Millisecond, Logger: quiet(), Metrics: m,
	})
	run(t, w)
	eventually(t, "an empty queue", func() bool { return q.len() == 0 })

	wantTries := map[string]int{"ok": 1, "gone": 1, "bad": 1, "retry": 3, "after": 2, "live": 0, "late": 1, "old": 0}
	for tok, n := range wantTries {
		if got := len(ios.tries(tok)); got != n {
			t.Errorf("%s: %d attempts, want %d", tok, got, n)
		}
	}
	if got := len(web.tries("web")); got != 1 {
		t.Errorf("web: %d attempts, want 1", got)
	}
	if tr := ios.tries("after"); len(tr) == 2 && tr[1].Sub(tr[0]) < 300*time.Millisecond {
		t.Errorf("Retry-After 300ms honoured after only %v", tr[1].Sub(tr[0]))
	}
	if tr := ios.tries("retry"); len(tr) == 3 {
		if d := tr[1].Sub(tr[0]); d < 10*time.Millisecond {
			t.Errorf("first retry after %v, want at least half the minimum backoff", d)
		}
	}
	q.mu.Lock()
	removed := slices.Clone(q.removed)
	q.mu.Unlock()
	if !slices.Equal(removed, []string{"gone"}) {
		t.Errorf("removed tokens %v, want [gone]", removed)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"sent ios", value(m.PushSent.WithLabelValues("ios")), 3}, // ok, retry, after
		{"sent web", value(m.PushSent.WithLabelValues("web")), 1},
		{"failed ios", value(m.PushFailed.WithLabelValues("ios")), 3}, // bad, late, old
		{"failed android", value(m.PushFailed.WithLabelValues("android")), 1},
		{"retried ios", value(m.PushRetried.WithLabelValues("ios")), 3},
		{"tokens deleted ios", value(m.PushTokensDeleted.WithLabelValues("ios")), 1},
		{"skipped ios", value(m.PushSkipped.WithLabelValues("ios")), 1}, // live
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// The alerts carry the job's badge and an expiry a day after it was queued.
	ios.mu.Lock()
	defer ios.mu.Unlock()
	for _, a := range ios.alerts {
		if a.Badge == 0 || a.Expires.IsZero() || a.Title != "Sender" || a.Body != "hi" {
			t.Errorf("alert %+v", a)
		}
	}
}

func TestWorkerWakesOnMessage(t *testing.T) {
	q := newFakeQueue()
	s := newFakeSender()
	bus := localbus.New(16)
	defer bus.Close()
	w := NewWorker(q, nil, bus, map[parley.Platform]Sender{parley.PlatformIOS: s}, Options{Logger: quiet()})
	run(t, w)
	// Once Run has found the queue empty, only a message wakes it (there
	// is no timer to fire): queue a job as the store does and publish the
	// message.
	eventually(t, "the first claim", func() bool { return q.claimCount() > 0 })
	start := time.Now()
	q.add(parley.PlatformIOS, "tok", time.Now())
	if err := bus.Publish(context.Background(), &parley.Event{Type: parley.EventMessageNew, Message: &parley.Message{}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the push", func() bool { return len(s.tries("tok")) == 1 })
	if d := time.Since(start); d > time.Second {
		t.Errorf("push %v after the message, want well within a second", d)
	}
}

// TestWorkerPolls: a job that no wake announces (its node died before
// waking its worker) is claimed by the next poll.
func TestWorkerPolls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeQueue()
		s := newFakeSender()
		w := NewWorker(q, nil, nil, map[parley.Platform]Sender{parley.PlatformIOS: s}, Options{Logger: quiet(), PollEvery: 5 * time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go w.Run(ctx)
		synctest.Wait() // the first claim found nothing
		q.add(parley.PlatformIOS, "tok", time.Now())
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if n := len(s.tries("tok")); n != 0 {
			t.Fatalf("sent before the poll: %d", n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n := len(s.tries("tok")); n != 1 {
			t.Fatalf("%d attempts after the poll, want 1", n)
		}
		cancel()
		synctest.Wait()
	})
}

func TestWorkerShutdownKeepsJobs(t *testing.T) {
	q := newFakeQueue()
	s := newFakeSender()
	s.block = make(chan struct{}) // never answers
	id := q.add(parley.PlatformIOS, "tok", time.Now())
	w := NewWorker(q, nil, nil, map[parley.Platform]Sender{parley.PlatformIOS: s}, Options{Logger: quiet()})
	stop := run(t, w)
	eventually(t, "the attempt", func() bool { return len(s.tries("tok")) == 1 })
	stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	qj := q.jobs[id]
	if qj == nil {
		t.Fatal("the job was finished by a shutdown")
	}
	if qj.job.Attempts != 0 || qj.due.After(time.Now()) {
		t.Errorf("after shutdown: attempts %d due %v; want 0 and due now (not after the lease)", qj.job.Attempts, qj.due)
	}
}

func TestBackoff(t *testing.T) {
	w := NewWorker(newFakeQueue(), nil, nil, nil, Options{Logger: quiet()})
	for failures, bound := range map[int]time.Duration{
		1: 500 * time.Millisecond, 2: time.Second, 3: 2 * time.Second, 7: 32 * time.Second, 8: time.Minute, 50: time.Minute,
	} {
		for range 100 {
			d := w.backoff(failures)
			if d < bound/2 || d > bound {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", failures, d, bound/2, bound)
			}
		}
	}
}

// TestWorkerDevices checks that pushes go to devices, not users: a device
// in the foreground gets no push if it confirms the message, and gets it
// after ConfirmDelay if it does not (its socket may be dead); another
// device of the same user (the phone, while a browser tab is open) gets
// its push at once; a badge update is sent whatever the connections.
func TestWorkerDevices(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeQueue()
		ios, web := newFakeSender(), newFakeSender()
		m := metrics.New(nil)
		now := time.Now()
		add := func(platform parley.Platform, token, device string) int64 {
			id := q.add(platform, token, now)
			q.jobs[id].job.Device.UserID = "u"
			q.jobs[id].job.Device.DeviceID = device
			return id
		}
		tab := add(parley.PlatformWeb, "tab", "browser")      // the open tab
		add(parley.PlatformIOS, "phone", "iphone")            // in the background
		add(parley.PlatformIOS, "dead", "ipad")               // its socket died silently
		confirms := add(parley.PlatformIOS, "ok", "ipad-two") // confirms while held
		badge := add(parley.PlatformIOS, "badge", "browser")
		q.jobs[badge].job.BadgeOnly, q.jobs[badge].job.Badge = true, 0
		live := livePresence{"u/browser": true, "u/ipad": true, "u/ipad-two": true}
		const delay = 5 * time.Second
		w := NewWorker(q, live, nil, map[parley.Platform]Sender{parley.PlatformIOS: ios, parley.PlatformWeb: web}, Options{
			ConfirmDelay: delay, Logger: quiet(), Metrics: m,
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); w.Run(ctx) }()
		defer func() { cancel(); <-done }()

		synctest.Wait()
		if got := len(ios.tries("phone")); got != 1 {
			t.Errorf("the phone got %d pushes at once, want 1: the browser tab must not silence it", got)
		}
		if got := len(ios.tries("badge")); got != 1 {
			t.Errorf("badge update: %d attempts, want 1", got)
		}
		for _, tok := range []string{"tab", "dead", "ok"} {
			if got := len(ios.tries(tok)) + len(web.tries(tok)); got != 0 {
				t.Errorf("%s: %d pushes while its device is in the foreground, want 0 yet", tok, got)
			}
		}
		// The tab and one iPad confirm; the other iPad never does.
		q.confirm(tab)
		q.confirm(confirms)
		time.Sleep(delay - time.Second)
		synctest.Wait()
		if got := len(ios.tries("dead")); got != 0 {
			t.Errorf("the unconfirmed push went after %v, before the confirm delay", delay-time.Second)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := len(ios.tries("dead")); got != 1 {
			t.Errorf("the device whose socket died got %d pushes after the confirm delay, want 1", got)
		}
		if got := len(web.tries("tab")) + len(ios.tries("ok")); got != 0 {
			t.Errorf("devices that confirmed got %d pushes, want 0", got)
		}
		if q.len() != 0 {
			t.Errorf("%d jobs left", q.len())
		}
		if got := value(m.PushHeld.WithLabelValues("ios")); got != 2 {
			t.Errorf("held ios = %v, want 2", got)
		}
		if got := value(m.PushUnconfirmed.WithLabelValues("ios")); got != 1 {
			t.Errorf("unconfirmed ios = %v, want 1 (the dead socket's)", got)
		}
		if got := value(m.PushSkipped.WithLabelValues("ios")) + value(m.PushSkipped.WithLabelValues("web")); got != 2 {
			t.Errorf("skipped = %v, want 2 (the tab and the iPad that confirmed)", got)
		}
		if got := value(m.PushBadgeSent.WithLabelValues("ios")); got != 1 {
			t.Errorf("badge sent ios = %v, want 1", got)
		}
	})
}
