package sqlstore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley"
)

// deviceFixture is a store with pushes on, alice and bob in a direct
// conversation, and bob signed in on two devices (logins): his phone, with
// an iOS token, and his browser, with a Web Push subscription.
type deviceFixture struct {
	db             *DB
	rec            *recorder
	alice, bob     parley.User
	conv           parley.Conversation
	phone, browser string // bob's logins
}

const badgeInterval = 10 * time.Second

func newDeviceFixture(t *testing.T, engine string) *deviceFixture {
	t.Helper()
	ctx := context.Background()
	f := &deviceFixture{rec: &recorder{}}
	f.db = newLocation(t, engine).mustOpen(t, f.rec, Options{
		PushPlatforms: []parley.Platform{parley.PlatformIOS, parley.PlatformWeb},
		BadgeInterval: badgeInterval,
	})
	f.alice, f.bob = newUser(t, f.db, "alice"), newUser(t, f.db, "bob")
	f.conv = newDirect(t, f.db, f.alice.ID, f.bob.ID)
	future := parley.NewTime(time.Now().Add(time.Hour))
	for _, d := range []*string{&f.phone, &f.browser} {
		*d = mustID(t)
		if err := f.db.CreateSession(ctx, parley.RefreshToken{Hash: "r-" + *d, FamilyID: *d, UserID: f.bob.ID, ExpiresAt: future}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tok := range []parley.DeviceToken{
		{UserID: f.bob.ID, DeviceID: f.phone, Platform: parley.PlatformIOS, Token: "a1", Environment: "sandbox"},
		{UserID: f.bob.ID, DeviceID: f.browser, Platform: parley.PlatformWeb, Token: "w1"},
	} {
		if _, err := f.db.PutDeviceToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	f.rec.take()
	return f
}

// claim claims every job due at at, by token.
func (f *deviceFixture) claim(t *testing.T, at time.Time) map[string]parley.PushJob {
	t.Helper()
	jobs, _, err := f.db.ClaimPushJobs(context.Background(), at, time.Minute, 100)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]parley.PushJob{}
	for _, j := range jobs {
		if _, dup := out[j.Device.Token]; dup {
			t.Fatalf("two jobs for %s claimed at once", j.Device.Token)
		}
		out[j.Device.Token] = j
	}
	return out
}

func (f *deviceFixture) receipt(t *testing.T, kind parley.ReceiptKind, seq int64, device string) bool {
	t.Helper()
	moved, err := f.db.MarkReceipt(context.Background(), f.bob.ID, f.conv.ID, kind, seq, device)
	if err != nil {
		t.Fatal(err)
	}
	return moved
}

// TestDeviceConfirmations checks the store's half of "no push lost to a
// dead socket": a device's own delivered receipts are recorded even when
// the user's watermark does not move, a held push of a device that
// confirmed is dropped, and one of a device that did not is returned.
func TestDeviceConfirmations(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		f := newDeviceFixture(t, engine)
		m1 := send(t, f.db, f.conv.ID, f.alice.ID, "one")
		f.rec.take()
		now := time.Now()
		jobs := f.claim(t, now)
		if len(jobs) != 2 || jobs["a1"].Device.DeviceID != f.phone || jobs["w1"].Device.DeviceID != f.browser {
			t.Fatalf("jobs %+v, want one per device, each with its login", jobs)
		}
		if jobs["a1"].Confirmed || jobs["a1"].Held {
			t.Errorf("a fresh job is confirmed or held: %+v", jobs["a1"])
		}
		// Both devices looked connected: both pushes are held.
		for _, j := range jobs {
			if err := f.db.HoldPushJob(ctx, j.ID, now); err != nil {
				t.Fatal(err)
			}
		}
		// The browser confirms; then the phone's receipt moves nothing for
		// the user, but still counts for the phone.
		if !f.receipt(t, parley.Delivered, m1.Seq, f.browser) {
			t.Fatal("the first delivered receipt did not move the watermark")
		}
		if evs := f.rec.take(); len(evs) != 1 {
			t.Fatalf("%d events, want the receipt", len(evs))
		}
		jobs = f.claim(t, now)
		if len(jobs) != 2 || !jobs["a1"].Held || jobs["a1"].Confirmed || !jobs["w1"].Held || !jobs["w1"].Confirmed {
			t.Fatalf("after the browser confirmed: %+v, want both held, the browser's confirmed", jobs)
		}
		if err := f.db.FinishPushJob(ctx, jobs["w1"], false); err != nil {
			t.Fatal(err)
		}
		m2 := send(t, f.db, f.conv.ID, f.alice.ID, "two")
		if f.receipt(t, parley.Delivered, m1.Seq, f.browser) {
			t.Fatal("a repeated receipt moved the watermark")
		}
		if !f.receipt(t, parley.Delivered, m2.Seq, f.phone) {
			t.Fatal("the phone's receipt of m2 did not move the watermark")
		}
		f.rec.take()
		// The phone confirmed m2 (and so m1) but the browser did not: the
		// claim says so.
		all, _, err := f.db.ClaimPushJobs(ctx, now.Add(2*time.Minute), time.Minute, 100) // past the lease
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, j := range all {
			got[fmt.Sprintf("%s %s held=%t confirmed=%t", j.Device.Token, j.Message.Text, j.Held, j.Confirmed)] = true
		}
		want := map[string]bool{
			"a1 one held=true confirmed=true":   true,
			"a1 two held=false confirmed=true":  true,
			"w1 two held=false confirmed=false": true,
		}
		if !maps.Equal(got, want) {
			t.Errorf("claimed %v, want %v", got, want)
		}

		// A receipt beyond the last seq confirms only what exists.
		if f.receipt(t, parley.Delivered, 99, f.browser) {
			f.rec.take()
		}
		m3 := send(t, f.db, f.conv.ID, f.alice.ID, "three")
		all, _, err = f.db.ClaimPushJobs(ctx, now.Add(4*time.Minute), time.Minute, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range all {
			if j.Message.ID == m3.ID && j.Confirmed {
				t.Errorf("%s: m3 confirmed by a receipt sent before it existed", j.Device.Token)
			}
		}

		// A login without a push token records nothing.
		laptop := mustID(t)
		if err := f.db.CreateSession(ctx, parley.RefreshToken{Hash: "r-laptop", FamilyID: laptop, UserID: f.bob.ID, ExpiresAt: parley.NewTime(time.Now().Add(time.Hour))}); err != nil {
			t.Fatal(err)
		}
		f.receipt(t, parley.Delivered, m3.Seq, laptop)
		var n int
		if err := rawQueryRow(f.db, `SELECT COUNT(*) FROM device_receipts WHERE family_id = ?`, laptop).Scan(&n); err != nil || n != 0 {
			t.Errorf("device receipts of a login without tokens: %d, %v", n, err)
		}

		// Signing the browser out deletes its token and what it confirmed.
		if err := f.db.RevokeSession(ctx, "r-"+f.browser); err != nil {
			t.Fatal(err)
		}
		if got := pushQueue(t, f.db); slices.ContainsFunc(got, func(s string) bool { return s[:2] == "w1" }) {
			t.Errorf("jobs %v left for the signed-out browser", got)
		}
		if err := rawQueryRow(f.db, `SELECT COUNT(*) FROM device_tokens WHERE family_id = ?`, f.browser).Scan(&n); err != nil || n != 0 {
			t.Errorf("tokens of the signed-out browser: %d, %v", n, err)
		}
	})
}

// TestBadgeUpdates checks that reading lowers the badge of each device
// that was pushed a higher one, by one badge update per device, coalesced
// to one every BadgeInterval, and that muted conversations do not count.
func TestBadgeUpdates(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		f := newDeviceFixture(t, engine)
		send(t, f.db, f.conv.ID, f.alice.ID, "one")
		m2 := send(t, f.db, f.conv.ID, f.alice.ID, "two")
		now := time.Now()
		// Both pushes went to the phone, whose badge is now 2; none to the
		// browser.
		jobs, _, err := f.db.ClaimPushJobs(ctx, now, time.Minute, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			if err := f.db.FinishPushJob(ctx, j, j.Device.Token == "a1"); err != nil {
				t.Fatal(err)
			}
		}
		// Bob reads the first in the browser: the phone's badge must go to
		// 1; the browser was never pushed a badge.
		f.receipt(t, parley.Read, m2.Seq-1, f.browser)
		jobs2 := f.claim(t, time.Now())
		if len(jobs2) != 1 {
			t.Fatalf("claimed %+v, want one badge update for the phone", jobs2)
		}
		b := jobs2["a1"]
		if !b.BadgeOnly || b.Badge != 1 || b.Message.ID != "" || b.Device.DeviceID != f.phone {
			t.Fatalf("badge update %+v, want a1 to 1", b)
		}
		// While it is being sent, bob reads the rest: the update is due
		// again after the interval, with the badge then, not lost.
		f.receipt(t, parley.Read, m2.Seq, f.browser)
		if err := f.db.FinishPushJob(ctx, b, true); err != nil {
			t.Fatal(err)
		}
		if got := f.claim(t, time.Now()); len(got) != 0 {
			t.Fatalf("claimed %+v within the interval, want nothing", got)
		}
		later := f.claim(t, time.Now().Add(badgeInterval+time.Second))
		if j := later["a1"]; !j.BadgeOnly || j.Badge != 0 {
			t.Fatalf("after the interval: %+v, want a1 to 0", later)
		}
		if err := f.db.FinishPushJob(ctx, later["a1"], true); err != nil {
			t.Fatal(err)
		}
		if got := pushQueue(t, f.db); len(got) != 0 {
			t.Fatalf("queue %v, want empty", got)
		}
		// Reading again changes nothing: the phone shows 0 already.
		f.receipt(t, parley.Read, m2.Seq, f.phone)
		if got := pushQueue(t, f.db); len(got) != 0 {
			t.Fatalf("queue %v after a read that lowered nothing", got)
		}

		// Muting a conversation with unread messages lowers the badge too.
		other := newUser(t, f.db, "carol")
		g := newGroup(t, f.db, other.ID, f.bob.ID)
		send(t, f.db, g.ID, other.ID, "hi")
		push := f.claim(t, time.Now().Add(time.Hour))["a1"]
		if push.Badge != 1 {
			t.Fatalf("push %+v, want badge 1", push)
		}
		if err := f.db.FinishPushJob(ctx, push, true); err != nil {
			t.Fatal(err)
		}
		f.claim(t, time.Now().Add(time.Hour)) // the browser's, unsent
		if err := f.db.SetMute(ctx, g.ID, f.bob.ID, nil); err != nil {
			t.Fatal(err)
		}
		if j := f.claim(t, time.Now().Add(2*time.Hour))["a1"]; !j.BadgeOnly || j.Badge != 0 {
			t.Fatalf("after muting: %+v, want a1 to 0", j)
		}
	})
}

// TestMutedUntil checks the caller's mute in the Conversation object and
// the conversation.updated that tells their own connections.
func TestMutedUntil(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		f := newDeviceFixture(t, engine)
		conv := func(user string) parley.Conversation {
			t.Helper()
			c, err := f.db.Conversation(ctx, f.conv.ID, user)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		if c := conv(f.bob.ID); c.MutedUntil != nil {
			t.Fatalf("muted_until %v before any mute", c.MutedUntil)
		}
		// For ever.
		if err := f.db.SetMute(ctx, f.conv.ID, f.bob.ID, nil); err != nil {
			t.Fatal(err)
		}
		if c := conv(f.bob.ID); c.MutedUntil == nil || !c.MutedUntil.Equal(parley.MutedForever.Time) {
			t.Fatalf("muted for ever: muted_until %v", c.MutedUntil)
		}
		if c := conv(f.alice.ID); c.MutedUntil != nil {
			t.Fatalf("bob's mute shows for alice: %v", c.MutedUntil)
		}
		evs := f.rec.take()
		if len(evs) != 1 || evs[0].Type != parley.EventConversationUpdated || !slices.Equal(evs[0].Recipients, []string{f.bob.ID}) {
			t.Fatalf("events %s, want conversation.updated to bob alone", describe(evs))
		}
		if mu := evs[0].Conversation.For(f.bob.ID).MutedUntil; mu == nil || !mu.Equal(parley.MutedForever.Time) {
			t.Fatalf("the event's muted_until %v", mu)
		}
		// Until a time: the list and the pages say so too.
		until := parley.NewTime(time.Now().Add(time.Hour))
		if err := f.db.SetMute(ctx, f.conv.ID, f.bob.ID, &until); err != nil {
			t.Fatal(err)
		}
		list, err := f.db.Conversations(ctx, f.bob.ID)
		if err != nil || len(list) != 1 || list[0].MutedUntil == nil || !list[0].MutedUntil.Equal(until.Time) {
			t.Fatalf("Conversations: %+v, %v", list, err)
		}
		page, err := f.db.ConversationsPage(ctx, f.bob.ID, nil, 10)
		if err != nil || len(page) != 1 || page[0].MutedUntil == nil || !page[0].MutedUntil.Equal(until.Time) {
			t.Fatalf("ConversationsPage: %+v, %v", page, err)
		}
		// Unmuted.
		f.rec.take()
		if err := f.db.ClearMute(ctx, f.conv.ID, f.bob.ID); err != nil {
			t.Fatal(err)
		}
		if c := conv(f.bob.ID); c.MutedUntil != nil {
			t.Fatalf("muted_until %v after unmuting", c.MutedUntil)
		}
		if evs := f.rec.take(); len(evs) != 1 || evs[0].Conversation.For(f.bob.ID).MutedUntil != nil {
			t.Fatalf("events %s, want one conversation.updated without a mute", describe(evs))
		}
	})
}
