package chat

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/wire"
)

// syncBudget keeps a sync.result under the contract's 1 MiB frame limit,
// with room for the frame envelope.
const syncBudget = 1<<20 - 16<<10

// maxSyncPage bounds the conversations of one sync.result, so that one
// request never reads the history of thousands of conversations at once.
const maxSyncPage = 100

// Sync answers a client's sync: for each of callerID's conversations, most
// recent activity first, the messages after the seq the client has (or the
// newest ones for a conversation it does not list). Listed conversations
// the caller is no longer in come back removed, on the first page.
func (s *Service) Sync(ctx context.Context, callerID string, req wire.Sync) (wire.SyncResult, error) {
	if err := s.requests.allow(callerID); err != nil {
		return wire.SyncResult{}, err
	}
	if req.Limit < 0 {
		return wire.SyncResult{}, parley.Errorf(parley.CodeInvalidArgument, "limit must not be negative")
	}
	limit := clampLimit(req.Limit)
	for id, seq := range req.Conversations {
		if seq < 0 {
			return wire.SyncResult{}, parley.Errorf(parley.CodeInvalidArgument, "last seq of %q must not be negative", truncate(id, 64))
		}
	}
	var after *syncCursor
	if req.Cursor != "" {
		c, err := parseSyncCursor(req.Cursor)
		if err != nil {
			return wire.SyncResult{}, err
		}
		after = &c
	}
	convs, err := s.store.Conversations(ctx, callerID)
	if err != nil {
		return wire.SyncResult{}, fmt.Errorf("sync: %w", err)
	}
	// The cursor is a position in this order, so it is fixed here rather
	// than left to the store, which promises most recent first but no
	// order among conversations of the same updated_at.
	slices.SortStableFunc(convs, activityOrder)

	res := wire.SyncResult{Conversations: []wire.SyncConversation{}}
	used := 0
	if after == nil {
		member := make(map[string]bool, len(convs))
		for _, c := range convs {
			member[c.ID] = true
		}
		for id := range req.Conversations {
			if !member[id] {
				res.Conversations = append(res.Conversations, wire.SyncConversation{
					Conversation: parley.Conversation{ID: id, Members: []parley.Member{}},
					Messages:     []parley.Message{},
					Removed:      true,
				})
				used += 200 + len(id)
			}
		}
	}
	for _, c := range convs {
		if after != nil && !after.before(c) {
			continue
		}
		if len(res.Conversations) >= maxSyncPage {
			return withNext(res, c), nil
		}
		q := parley.HistoryQuery{Limit: limit}
		if last, ok := req.Conversations[c.ID]; ok {
			q.AfterSeq, q.HasAfter = last, true
		}
		var msgs []parley.Message
		more := false
		if !(q.HasAfter && q.AfterSeq >= c.LastSeq) {
			msgs, more, err = s.store.Messages(ctx, c.ID, callerID, q)
			if err != nil {
				if parley.ErrorCode(err) == parley.CodeNotFound {
					continue // removed since the list was read
				}
				return wire.SyncResult{}, fmt.Errorf("sync %s: %w", c.ID, err)
			}
		}
		size := jsonSize(c)
		if used+size > syncBudget && len(res.Conversations) > 0 {
			return withNext(res, c), nil
		}
		used += size
		kept, n := fitMessages(msgs, !q.HasAfter, syncBudget-used)
		used += n
		if len(kept) < len(msgs) {
			// Fewer messages for this conversation: has_more says so, and
			// the client pages the rest from the REST history.
			more = true
		}
		if kept == nil {
			kept = []parley.Message{}
		}
		res.Conversations = append(res.Conversations, wire.SyncConversation{Conversation: c, Messages: kept, HasMore: more})
	}
	return res, nil
}

// fitMessages keeps as many of msgs as fit in budget bytes of JSON: the
// oldest ones when catching up after a seq, the newest ones (newest is true)
// for a conversation the client does not have yet. It returns them with
// their size.
func fitMessages(msgs []parley.Message, newest bool, budget int) ([]parley.Message, int) {
	used, n := 0, 0
	for n < len(msgs) {
		i := n
		if newest {
			i = len(msgs) - 1 - n
		}
		size := jsonSize(msgs[i]) + 1
		if used+size > budget {
			break
		}
		used += size
		n++
	}
	if newest {
		return msgs[len(msgs)-n:], used
	}
	return msgs[:n], used
}

func withNext(res wire.SyncResult, next parley.Conversation) wire.SyncResult {
	// The cursor names the first conversation not returned; the next page
	// starts there.
	cur := syncCursor{updatedAt: next.UpdatedAt.UnixMilli(), id: next.ID, inclusive: true}
	s := cur.String()
	res.Next = &s
	return res
}

// activityOrder is the order of a sync: most recent activity (updated_at)
// first, and among conversations of the same updated_at, greater id first.
// Every page of a sync must use it, or a cursor between two conversations
// of the same updated_at would skip some of them.
func activityOrder(a, b parley.Conversation) int {
	if c := cmp.Compare(b.UpdatedAt.UnixMilli(), a.UpdatedAt.UnixMilli()); c != 0 {
		return c
	}
	return strings.Compare(b.ID, a.ID)
}

// syncCursor is a position in the most-recent-first conversation order.
type syncCursor struct {
	updatedAt int64
	id        string
	inclusive bool
}

// before reports whether c comes at or after the cursor in activityOrder.
func (cur syncCursor) before(c parley.Conversation) bool {
	u := c.UpdatedAt.UnixMilli()
	switch {
	case u < cur.updatedAt:
		return true
	case u > cur.updatedAt:
		return false
	case c.ID == cur.id:
		return cur.inclusive
	default:
		return c.ID < cur.id
	}
}

func (cur syncCursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(cur.updatedAt, 10) + "/" + cur.id))
}

func parseSyncCursor(s string) (syncCursor, error) {
	bad := parley.Errorf(parley.CodeInvalidArgument, "malformed cursor")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return syncCursor{}, bad
	}
	ts, id, ok := strings.Cut(string(b), "/")
	if !ok {
		return syncCursor{}, bad
	}
	u, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return syncCursor{}, bad
	}
	return syncCursor{updatedAt: u, id: id, inclusive: true}, nil
}

func jsonSize(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return 0
	}
	return len(b)
}
