package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/wire"
)

// Sync and gap-filling sizes and timings.
const (
	// syncLimit is the messages per conversation asked of sync.
	syncLimit = 100
	// fillPage is the page size of the REST history used to fill gaps
	// (the contract's maximum).
	fillPage = 200
	// newestPage is how many of the newest messages a conversation new to
	// this client starts with; older ones come from History on demand.
	newestPage = 50
	// gapGrace is how long the filler waits after a gap is seen: within
	// one connection a reply (message.ack) may overtake a message.new of
	// a lower seq, which then fills the gap without a REST call.
	gapGrace = 250 * time.Millisecond
	// maxFillPages bounds one fill of one conversation; the rest waits for
	// the next round, so that one huge backlog does not starve the others.
	maxFillPages = 50
)

// syncLoop runs the syncer of a session: the initial sync, then the gap
// filler until the session ends. A sync that fails (other than by rate
// limiting) ends the session, and the reconnect syncs again.
func (c *Client) syncLoop(s *session) {
	defer s.wg.Done()
	c.rejoinRooms(s)
	if err := c.initialSync(s); err != nil {
		if s.ctx.Err() == nil {
			s.cancel(fmt.Errorf("sync: %w", err))
		}
		return
	}
	c.mu.Lock()
	if c.sess == s {
		c.synced = s
		c.notifyLocked()
	}
	c.mu.Unlock()
	signal(c.sendKick)
	signal(c.receiptKick)

	failures := 0
	var retry <-chan time.Time
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.fillKick:
			t := time.NewTimer(gapGrace)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		case <-retry:
		}
		retry = nil
		var failed bool
		for id, need := range s.takeDirty() {
			if err := c.fill(s, id, need); err != nil {
				if s.ctx.Err() != nil {
					return
				}
				c.log.Warn("parley: filling a gap failed, retrying", "conversation", id, "err", err)
				s.markDirtyQuiet(id, need)
				failed = true
				if d := parley.RetryAfter(err); d > 0 {
					retry = time.After(d)
				}
			}
		}
		if failed {
			failures++
			if retry == nil {
				retry = time.After(backoff(failures, time.Second, 30*time.Second) + 100*time.Millisecond)
			}
		} else {
			failures = 0
		}
	}
}

// markDirtyQuiet records a conversation to fill without waking the filler
// (it retries on its own timer).
func (s *session) markDirtyQuiet(convID string, need fillNeed) {
	s.mu.Lock()
	s.dirty[convID] |= need
	s.mu.Unlock()
}

// initialSync sends sync with the contiguous last seq of every
// conversation that has one, follows the next cursors, and applies each
// page. Conversations that need more (has_more after a listed seq, a
// gap, a conversation known here that sync did not mention) are left to
// the gap filler.
func (c *Client) initialSync(s *session) error {
	have, known, err := c.store.syncState(s.ctx)
	if err != nil {
		return err
	}
	req := wire.Sync{Conversations: have, Limit: syncLimit}
	seen := map[string]bool{}
	for {
		f, err := s.request(s.ctx, wire.TypeSync, req)
		if d := parley.RetryAfter(err); d > 0 {
			if err := sleep(s.ctx, d); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		var res wire.SyncResult
		if err := wire.DecodePayload(f, &res); err != nil {
			return fmt.Errorf("decode sync.result: %w", err)
		}
		for _, sc := range res.Conversations {
			id := sc.Conversation.ID
			seen[id] = true
			if sc.Removed {
				if err := c.removeConversation(c.ctx, id); err != nil {
					return err
				}
				continue
			}
			row, changed, err := c.store.upsertConversation(c.ctx, sc.Conversation, s.me)
			if err != nil {
				return err
			}
			if changed {
				c.emitConversation(c.ctx, row)
			}
			_, listed := have[id]
			res, err := c.store.applyMessages(c.ctx, id, s.me, sc.Messages, !listed)
			if err != nil {
				return err
			}
			c.emitApplied(c.ctx, res)
			if res.Gap || res.Row.HaveSeq < res.Row.LastSeq {
				s.markDirty(id, fillMessages)
			}
		}
		if res.Next == nil || *res.Next == "" {
			break
		}
		req.Cursor = *res.Next
	}
	// A known conversation that sync did not mention may have been left
	// while this client was away (sync reports removed only for listed
	// ones), or may have moved in the order between pages: ask for it.
	for _, id := range known {
		if !seen[id] {
			s.markDirty(id, fillObject|fillMessages)
		}
	}
	return nil
}

// fill brings one conversation up to date from the REST API: its object
// if needed, its newest page if the client has no run yet, then the
// messages after the run up to the last seq known.
func (c *Client) fill(s *session, id string, need fillNeed) error {
	err := c.fillOnce(s, id, need)
	if parley.ErrorCode(err) == parley.CodeNotFound {
		return nil // removed from the conversation; history recorded it
	}
	return err
}

func (c *Client) fillOnce(s *session, id string, need fillNeed) error {
	row, err := c.store.conv(s.ctx, id)
	if err != nil || !row.exists || row.Removed {
		return err
	}
	if need&fillObject != 0 || row.Stub {
		var (
			conv    parley.Conversation
			changed bool
		)
		err := c.call(s.ctx, http.MethodGet, "/api/conversations/"+url.PathEscape(id), nil, nil, &conv, true)
		if parley.ErrorCode(err) == parley.CodeNotFound {
			return c.removeConversation(c.ctx, id)
		}
		if err != nil {
			return err
		}
		row, changed, err = c.store.upsertConversation(c.ctx, conv, s.me)
		if err != nil {
			return err
		}
		if changed {
			c.emitConversation(c.ctx, row)
		}
		if row.Removed {
			return nil
		}
	}
	if row.HaveSeq == 0 {
		if _, _, err := c.history(s.ctx, id, parley.HistoryQuery{Limit: newestPage}); err != nil {
			return err
		}
	}
	for range maxFillPages {
		row, err = c.store.conv(s.ctx, id)
		if err != nil {
			return err
		}
		if row.HaveSeq == 0 || row.HaveSeq >= row.LastSeq {
			return nil
		}
		before := row.HaveSeq
		msgs, more, err := c.history(s.ctx, id, parley.HistoryQuery{AfterSeq: row.HaveSeq, Limit: fillPage})
		if err != nil {
			return err
		}
		if len(msgs) == 0 && !more {
			return nil // the last seq known was stale
		}
		if row, err = c.store.conv(s.ctx, id); err != nil {
			return err
		}
		if row.HaveSeq == before {
			return fmt.Errorf("history after seq %d of %s did not extend the run", before, id)
		}
	}
	s.markDirty(id, fillMessages) // more next round
	return nil
}

// history fetches a page of history, stores it, emits what was new, and
// returns the page.
func (c *Client) history(ctx context.Context, convID string, q parley.HistoryQuery) ([]parley.Message, bool, error) {
	v := url.Values{}
	if q.HasAfter || q.AfterSeq > 0 {
		// after_seq=0 is a bound too: from the start.
		v.Set("after_seq", strconv.FormatInt(q.AfterSeq, 10))
	}
	if q.BeforeSeq > 0 {
		v.Set("before_seq", strconv.FormatInt(q.BeforeSeq, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var page struct {
		Messages []parley.Message `json:"messages"`
		HasMore  bool             `json:"has_more"`
	}
	err := c.call(ctx, http.MethodGet, "/api/conversations/"+url.PathEscape(convID)+"/messages", v, nil, &page, true)
	if parley.ErrorCode(err) == parley.CodeNotFound {
		if rerr := c.removeConversation(context.WithoutCancel(ctx), convID); rerr != nil {
			return nil, false, errors.Join(err, rerr)
		}
	}
	if err != nil {
		return nil, false, err
	}
	// What arrived is stored even if the caller gives up now.
	sctx := context.WithoutCancel(ctx)
	me := c.me()
	newest := !q.HasAfter && q.AfterSeq == 0 && q.BeforeSeq == 0
	res, err := c.store.applyMessages(sctx, convID, me, page.Messages, newest)
	if err != nil {
		return nil, false, err
	}
	c.emitApplied(sctx, res)
	if res.NewConversation {
		c.markDirty(convID, fillObject)
	}
	if len(res.Added) > 0 {
		signal(c.receiptKick)
	}
	return page.Messages, page.HasMore, nil
}

// markDirty asks the current session's filler, if any, to look at a
// conversation.
func (c *Client) markDirty(convID string, need fillNeed) {
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s != nil {
		s.markDirty(convID, need)
	}
}

// removeConversation records that the user left or was removed, and
// emits it.
func (c *Client) removeConversation(ctx context.Context, id string) error {
	changed, err := c.store.markRemoved(ctx, id)
	if err != nil || !changed {
		return err
	}
	row, err := c.store.conv(ctx, id)
	if err != nil {
		return err
	}
	c.emitConversation(ctx, row)
	return nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
