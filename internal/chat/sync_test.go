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

// syncStore is a parley.Store with just the reads that Sync makes.
type syncStore struct {
	parley.Store
	convs []parley.Conversation
}

func (s *syncStore) Conversations(context.Context, string) ([]parley.Conversation, error) {
	return slices.Clone(s.convs), nil
}

func (s *syncStore) Messages(context.Context, string, string, parley.HistoryQuery) ([]parley.Message, bool, error) {
	return nil, false, nil
}

// TestSyncPagesWithTies pages through more conversations than fit in one
// sync.result, many of them with the same updated_at, and checks that each
// comes exactly once, whatever order the store gives ties in.
func TestSyncPagesWithTies(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var convs []parley.Conversation
	for i := range 3 * maxSyncPage {
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
	for name, tieOrder := range map[string]func(a, b string) int{
		"ties by id descending": func(a, b string) int { return -cmpString(a, b) },
		"ties by id ascending":  cmpString,
	} {
		t.Run(name, func(t *testing.T) {
			st := &syncStore{convs: slices.Clone(convs)}
			slices.SortStableFunc(st.convs, func(a, b parley.Conversation) int {
				if !a.UpdatedAt.Equal(b.UpdatedAt.Time) {
					return b.UpdatedAt.Compare(a.UpdatedAt.Time)
				}
				return tieOrder(a.ID, b.ID)
			})
			s := New(st, nil, Limits{}, nil)
			seen := map[string]int{}
			req := wire.Sync{Conversations: map[string]int64{}}
			for page := 0; ; page++ {
				if page > len(convs) {
					t.Fatal("pages never end")
				}
				res, err := s.Sync(context.Background(), "caller", req)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range res.Conversations {
					seen[c.Conversation.ID]++
				}
				if res.Next == nil {
					break
				}
				req.Cursor = *res.Next
			}
			for _, c := range convs {
				if seen[c.ID] != 1 {
					t.Errorf("conversation %s came %d times, want once", c.ID, seen[c.ID])
				}
			}
		})
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
