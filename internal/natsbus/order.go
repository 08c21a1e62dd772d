package natsbus

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley"
)

// orderKey names the message.new stream of one conversation on one subject.
type orderKey struct {
	stream int // shard, or -1 for the subject of every node
	conv   string
}

// orderState is what the event goroutine knows of one stream: the last seq
// it delivered and the events held back because one before them is
// missing. Only the event goroutine touches it.
type orderState struct {
	gen     uint64 // the shard subscription's generation it belongs to
	last    int64
	pending map[int64]*parley.Event
	// due is when to stop waiting for the missing ones; zero when none is
	// pending.
	due     time.Time
	filling bool
	touched time.Time
}

// filled is the answer of a store read that filled a gap.
type filled struct {
	key  orderKey
	gen  uint64
	msgs []parley.Message
	err  error
}

// runEvents is the event goroutine: it decodes what NATS delivers,
// resequences message.new, and hands every event to the handlers.
func (b *Bus) runEvents() {
	states := make(map[orderKey]*orderState)
	held := make(map[orderKey]struct{})
	fills := make(chan filled, 16)
	var fillers int
	tick := time.NewTicker(b.opts.GapWait / 3)
	defer tick.Stop()
	lastSweep := time.Now()
	o := &orderer{b: b, states: states, held: held, fills: fills}
	defer func() {
		// Let the store reads under way finish before returning.
		for ; fillers > 0; fillers-- {
			<-fills
		}
	}()
	for {
		select {
		case <-b.stop:
			return
		case <-b.reset:
			o.flushAll()
		case m := <-b.events:
			o.receive(m)
		case f := <-fills:
			fillers--
			o.finishFill(f)
		case now := <-tick.C:
			fillers += o.startFills(now)
			if now.Sub(lastSweep) > time.Minute {
				lastSweep = now
				for k, st := range states {
					if st.due.IsZero() && !st.filling && now.Sub(st.touched) > idleState {
						delete(states, k)
					}
				}
			}
		}
	}
}

// orderer is the event goroutine's state.
type orderer struct {
	b      *Bus
	states map[orderKey]*orderState
	held   map[orderKey]struct{}
	fills  chan filled
}

func (o *orderer) receive(m *nats.Msg) {
	stream, ok := o.b.streamOf(m.Subject)
	if !ok {
		return
	}
	ev := new(parley.Event)
	if err := json.Unmarshal(m.Data, ev); err != nil {
		o.b.log.Warn("bad event", "subject", m.Subject, "err", err)
		return
	}
	o.b.opts.Metrics.BusEventsReceived.Inc()
	if ev.Type != parley.EventMessageNew || ev.Message == nil {
		o.b.dispatch(ev)
		return
	}
	var gen uint64
	if stream >= 0 {
		gen = o.b.shards[stream].gen.Load()
	}
	key := orderKey{stream: stream, conv: ev.Message.ConversationID}
	now := time.Now()
	seq := ev.Message.Seq
	st := o.states[key]
	if st == nil || st.gen != gen {
		if now.Sub(ev.Message.CreatedAt.Time) > staleAfter {
			// An old event published again: nothing to order it with.
			o.b.dispatch(ev)
			return
		}
		o.states[key] = &orderState{gen: gen, last: seq, touched: now}
		o.b.dispatch(ev)
		return
	}
	st.touched = now
	switch {
	case seq <= st.last:
		// Delivered already (the outbox published it again) or filled.
		o.b.opts.Metrics.BusDuplicates.Inc()
		return
	case seq == st.last+1 && len(st.pending) == 0 && !st.filling:
		st.last = seq
		o.b.dispatch(ev)
		return
	}
	if st.pending == nil {
		st.pending = make(map[int64]*parley.Event)
	}
	st.pending[seq] = ev
	o.drain(key, st)
	if len(st.pending) > 0 && st.due.IsZero() {
		st.due = now.Add(o.b.opts.GapWait)
		o.held[key] = struct{}{}
	}
}

// drain delivers the pending events that follow last without a gap.
func (o *orderer) drain(key orderKey, st *orderState) {
	if st.filling {
		return
	}
	for {
		ev, ok := st.pending[st.last+1]
		if !ok {
			break
		}
		delete(st.pending, st.last+1)
		st.last++
		o.b.dispatch(ev)
	}
	// Anything at or below last is a duplicate.
	for seq := range st.pending {
		if seq <= st.last {
			delete(st.pending, seq)
			o.b.opts.Metrics.BusDuplicates.Inc()
		}
	}
	if len(st.pending) == 0 {
		st.due = time.Time{}
		delete(o.held, key)
	}
}

// startFills starts a store read for every gap that waited long enough. It
// returns the number of reads started.
func (o *orderer) startFills(now time.Time) int {
	started := 0
	for key := range o.held {
		st := o.states[key]
		if st == nil || st.filling || st.due.IsZero() || now.Before(st.due) {
			continue
		}
		first := minKey(st.pending)
		st.filling = true
		started++
		after, gen, fill := st.last, st.gen, o.b.opts.Fill
		go func() {
			f := filled{key: key, gen: gen}
			if fill == nil {
				f.err = errUnavailable(nil)
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), fillTimeout)
				f.msgs, f.err = fill(ctx, key.conv, after, first, fillLimit)
				cancel()
			}
			o.fills <- f
		}()
	}
	return started
}

// finishFill delivers what a store read found, then the held events. What
// is still missing after it (a gap wider than fillLimit, or a failed read)
// is skipped: the clients notice the gap in seq and page the history.
func (o *orderer) finishFill(f filled) {
	st := o.states[f.key]
	if st == nil || st.gen != f.gen {
		return
	}
	st.filling = false
	if len(st.pending) == 0 {
		return
	}
	first := minKey(st.pending)
	template := st.pending[first]
	if f.err != nil {
		o.b.log.Warn("could not fill a gap in a conversation's events", "conversation", f.key.conv,
			"after", st.last, "before", first, "err", f.err)
	}
	for i := range f.msgs {
		m := f.msgs[i]
		if m.Seq <= st.last || m.Seq >= first {
			continue
		}
		// The filled message goes to the same recipients as the held one;
		// with no origin, the sender's own connections get it too, and
		// drop it as a duplicate of their ack.
		o.b.dispatch(&parley.Event{Type: parley.EventMessageNew, Recipients: template.Recipients, Message: &m})
		o.b.opts.Metrics.BusGapFills.Inc()
		st.last = m.Seq
	}
	if st.last < first-1 {
		o.b.opts.Metrics.BusGapsSkipped.Add(float64(first - 1 - st.last))
		o.b.log.Warn("gap in a conversation's events not filled", "conversation", f.key.conv,
			"from", st.last+1, "to", first-1)
		st.last = first - 1
	}
	o.drain(f.key, st)
	if len(st.pending) > 0 {
		st.due = time.Now().Add(o.b.opts.GapWait)
		o.held[f.key] = struct{}{}
	}
}

// flushAll delivers every held event in seq order and forgets every order
// state: after a disconnection nothing is known of what was missed (and
// the clients that could have missed something were disconnected).
func (o *orderer) flushAll() {
	for key := range o.held {
		st := o.states[key]
		if st == nil {
			continue
		}
		seqs := make([]int64, 0, len(st.pending))
		for seq := range st.pending {
			seqs = append(seqs, seq)
		}
		slices.Sort(seqs)
		for _, seq := range seqs {
			o.b.dispatch(st.pending[seq])
		}
	}
	// Reads under way find no state and are ignored.
	clear(o.states)
	clear(o.held)
}

func minKey(m map[int64]*parley.Event) int64 {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return slices.Min(keys)
}

// dispatch hands ev to every handler.
func (b *Bus) dispatch(ev *parley.Event) { b.handlers.Dispatch(ev) }
