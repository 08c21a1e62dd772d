package chat

import (
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
	if err := s.allow(ctx, LimitRequest, callerID); err != nil {
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
	var from *parley.ActivityCursor
	if req.Cursor != "" {
		c, err := parseSyncCursor(req.Cursor)
		if err != nil {
			return wire.SyncResult{}, err
		}
		from = &c
	}
	// One page of conversations, and one more to know where the next
	// page starts: a sync never reads the user's whole list.
	convs, err := s.store.ConversationsPage(ctx, callerID, from, maxSyncPage+1)
	if err != nil {
		return wire.SyncResult{}, fmt.Errorf("sync: %w", err)
	}

	res := wire.SyncResult{Conversations: []wire.SyncConversation{}}
	used := 0
	if from == nil && len(req.Conversations) > 0 {
		removed, err := s.removed(ctx, callerID, req.Conversations)
		if err != nil {
			return wire.SyncResult{}, fmt.Errorf("sync: %w", err)
		}
		for _, id := range removed {
			res.Conversations = append(res.Conversations, wire.SyncConversation{
				Conversation: parley.Conversation{ID: id, Members: []parley.Member{}},
				Messages:     []parley.Message{},
				Removed:      true,
			})
			used += 200 + len(id)
		}
	}
	page := convs[:min(len(convs), maxSyncPage)]
	for _, c := range page {
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
			// Signed before they are measured: the URLs count too.
			parley.SignMessages(s.media, msgs)
		}
		parley.SignConversation(s.media, &c)
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
	if len(convs) > maxSyncPage {
		return withNext(res, convs[maxSyncPage]), nil
	}
	return res, nil
}

// removed returns the listed conversations that callerID is not a member
// of (any more), in a stable order.
func (s *Service) removed(ctx context.Context, callerID string, listed map[string]int64) ([]string, error) {
	ids := make([]string, 0, len(listed))
	var out []string
	for id := range listed {
		if validID(id) {
			ids = append(ids, id)
		} else {
			out = append(out, id) // never one of ours
		}
	}
	member, err := s.store.Memberships(ctx, callerID, ids)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if !member[id] {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
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
	s := formatSyncCursor(parley.ActivityCursor{UpdatedAt: next.UpdatedAt, ID: next.ID})
	res.Next = &s
	return res
}

// A sync cursor is the position, in the most-recent-activity order, of the
// first conversation of the next page: "UPDATED_AT_MS/ID" in unpadded
// base64url. The page starts at it, inclusive.

func formatSyncCursor(c parley.ActivityCursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.UpdatedAt.UnixMilli(), 10) + "/" + c.ID))
}

func parseSyncCursor(s string) (parley.ActivityCursor, error) {
	bad := parley.Errorf(parley.CodeInvalidArgument, "malformed cursor")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return parley.ActivityCursor{}, bad
	}
	ts, id, ok := strings.Cut(string(b), "/")
	if !ok || !validID(id) {
		return parley.ActivityCursor{}, bad
	}
	u, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return parley.ActivityCursor{}, bad
	}
	return parley.ActivityCursor{UpdatedAt: parley.TimeFromMillis(u), ID: id}, nil
}

func jsonSize(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return 0
	}
	return len(b)
}
