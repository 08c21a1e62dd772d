package parley

// ActivityCursor is a position in the most-recent-activity order of a
// user's conversations: updated_at descending, then id descending (in byte
// order). A page that starts at a cursor includes the conversation whose
// (UpdatedAt, ID) equals it, and everything after it in that order.
type ActivityCursor struct {
	UpdatedAt Time
	ID        string
}
