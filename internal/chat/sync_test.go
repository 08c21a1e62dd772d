package chat

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/wire"
)

// syncStore is a Store with just the reads that Sync makes; it keeps the
// conversations in activity order, as ConversationsPage promises.
type syncStore struct {
	parley.Store
	convs []parley.Conversation
	pages int // ConversationsPage calls
}

func (s *syncStore) ConversationsPage(_ context.Context, _ string, from *parley.ActivityCursor, limit int) ([]parley.Conversation, error) {
	s.pages++
	start := 0
	if from != nil {
		start = len(s.convs)
		for i, c := range s.convs {
			if c.UpdatedAt.Before(from.UpdatedAt.Time) || c.UpdatedAt.Equal(from.UpdatedAt.Time) && c.ID <= from.ID {
				start = i
				break
			}
		}
	}
	return slices.Clone(s.convs[start:min(len(s.convs), start+limit)]), nil
}

func (s *syncStore) Memberships(_ context.Context, _ string, ids []string) (map[string]bool, error) {
	m := map[string]bool{}
	for _, id := range ids {
		for _, c := range s.convs {
			if c.ID == id {
				m[id] = true
			}
		}
	}
	return m, nil
}

func (s *syncStore) Messages(context.Context, string, string, parley.HistoryQuery) ([]parley.Message, bool, error) {
	return nil, false, nil
}

// TestSyncPagesWithTies pages through more conversations than fit in one
// sync.result, many of them with the same updated_at, and checks that each
// comes exactly once, one store page per sync page, and that listed
// conversations the caller left come back removed on the first page only.
func TestSyncPagesWithTies(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var convs []parley.Conversation
	for i := range 3*maxSyncPage + 7 {
		// Groups of 7 conversations share a millisecond.
		at := parley.NewTime(base.Add(-time.Duration(i/7) * time.Millisecond))
		convs = append(convs, parley.Conversation{
			ID:        fmt.Sprintf("0190a0a0-0000-7000-8000-%012d", (i*7919)%100000),
			Type:      parley.Group,
			Members:   []parley.Member{},
			CreatedAt: at,
			UpdatedAt: at,
		})
	}
	st := &syncStore{convs: slices.Clone(convs)}
	slices.SortStableFunc(st.convs, func(a, b parley.Conversation) int {
		if !a.UpdatedAt.Equal(b.UpdatedAt.Time) {
			return b.UpdatedAt.Compare(a.UpdatedAt.Time)
		}
		return -cmpString(a.ID, b.ID)
	})
	s := New(st, nil, Options{})
	left := "0190a0a0-0000-7000-8000-999999999999"
	seen := map[string]int{}
	req := wire.Sync{Conversations: map[string]int64{left: 3, "not-an-id": 1, convs[5].ID: 0}}
	removed := 0
	pages := 0
	for ; ; pages++ {
		if pages > len(convs) {
			t.Fatal("pages never end")
		}
		res, err := s.Sync(context.Background(), "caller", req)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range res.Conversations {
			if c.Removed {
				removed++
				if pages != 0 || (c.Conversation.ID != left && c.Conversation.ID != "not-an-id") {
					t.Errorf("page %d: %s removed", pages, c.Conversation.ID)
				}
				continue
			}
			seen[c.Conversation.ID]++
		}
		if res.Next == nil {
			break
		}
		req.Cursor = *res.Next
	}
	if removed != 2 {
		t.Errorf("%d conversations removed, want 2", removed)
	}
	for _, c := range convs {
		if seen[c.ID] != 1 {
			t.Errorf("conversation %s came %d times, want once", c.ID, seen[c.ID])
		}
	}
	if st.pages != pages+1 {
		t.Errorf("%d store pages for %d sync pages", st.pages, pages+1)
	}
}

func TestSyncRefusesMalformedCursor(t *testing.T) {
	s := New(&syncStore{}, nil, Options{})
	for _, cur := range []string{"!!", "bm8tc2xhc2g", "MTIzL25vdC1hbi1pZA"} {
		_, err := s.Sync(context.Background(), "caller", wire.Sync{Cursor: cur})
		if parley.ErrorCode(err) != parley.CodeInvalidArgument {
			t.Errorf("cursor %q: %v, want invalid_argument", cur, err)
		}
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
