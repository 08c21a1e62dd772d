package client

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/uuid"

	"github.com/parley-chat/parley"
)

// SearchUsers returns up to 20 users whose username starts with prefix.
func (c *Client) SearchUsers(ctx context.Context, prefix string) ([]parley.User, error) {
	var res struct {
		Users []parley.User `json:"users"`
	}
	if err := c.call(ctx, http.MethodGet, "/api/users", url.Values{"q": {prefix}}, nil, &res, true); err != nil {
		return nil, err
	}
	return res.Users, nil
}

// LookupUser returns a user given by id or by username (matched exactly,
// without regard to case, with or without a leading @). An unknown one is
// not_found.
func (c *Client) LookupUser(ctx context.Context, who string) (parley.User, error) {
	who = strings.TrimSpace(who)
	if _, err := uuid.Parse(who); err == nil {
		var u parley.User
		if err := c.call(ctx, http.MethodGet, "/api/users/"+url.PathEscape(who), nil, nil, &u, true); err != nil {
			return parley.User{}, err
		}
		return u, nil
	}
	return c.findUsername(ctx, who)
}

// findUsername returns the user whose username is exactly name. The
// search answers prefixes, so the exact match is picked from them.
func (c *Client) findUsername(ctx context.Context, name string) (parley.User, error) {
	want := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(name), "@"))
	users, err := c.SearchUsers(ctx, want)
	if err != nil {
		return parley.User{}, err
	}
	for _, u := range users {
		if u.Username == want {
			return u, nil
		}
	}
	return parley.User{}, parley.Errorf(parley.CodeNotFound, "no user %q", name)
}

// resolveUser turns a username or a user id into a user id. A username
// that matches no user exactly is not_found.
func (c *Client) resolveUser(ctx context.Context, who string) (string, error) {
	who = strings.TrimSpace(who)
	if _, err := uuid.Parse(who); err == nil {
		return who, nil
	}
	u, err := c.findUsername(ctx, who)
	return u.ID, err
}

// CreateDirect opens the direct conversation with a user, given by
// username or id; the existing one if there is one.
func (c *Client) CreateDirect(ctx context.Context, who string) (Conversation, error) {
	id, err := c.resolveUser(ctx, who)
	if err != nil {
		return Conversation{}, err
	}
	return c.createConversation(ctx, map[string]any{"type": parley.Direct, "member_ids": []string{id}})
}

// CreateGroup creates a group with a title and members given by username
// or id; the user becomes its admin.
func (c *Client) CreateGroup(ctx context.Context, title string, members []string) (Conversation, error) {
	ids := make([]string, 0, len(members))
	for _, who := range members {
		id, err := c.resolveUser(ctx, who)
		if err != nil {
			return Conversation{}, err
		}
		ids = append(ids, id)
	}
	return c.createConversation(ctx, map[string]any{"type": parley.Group, "title": title, "member_ids": ids})
}

func (c *Client) createConversation(ctx context.Context, body any) (Conversation, error) {
	var conv parley.Conversation
	if err := c.call(ctx, http.MethodPost, "/api/conversations", nil, body, &conv, true); err != nil {
		return Conversation{}, err
	}
	return c.storeConversation(ctx, conv)
}

// storeConversation stores a server object and returns its view.
func (c *Client) storeConversation(ctx context.Context, conv parley.Conversation) (Conversation, error) {
	me := c.me()
	row, changed, err := c.store.upsertConversation(ctx, conv, me)
	if err != nil {
		return Conversation{}, err
	}
	if changed {
		c.emitConversation(ctx, row)
	}
	if !row.Removed && row.HaveSeq < row.LastSeq {
		c.markDirty(row.ID, fillMessages)
	}
	return c.view(ctx, row, me)
}

// FetchConversations reads the conversation list from the server, stores
// it, and returns the local view of it (what Conversations returns next).
// The live connection keeps the store current by itself: this is for
// programs that do not wait for a sync, such as a one-shot CLI command.
func (c *Client) FetchConversations(ctx context.Context) ([]Conversation, error) {
	var res struct {
		Conversations []parley.Conversation `json:"conversations"`
	}
	if err := c.call(ctx, http.MethodGet, "/api/conversations", nil, nil, &res, true); err != nil {
		return nil, err
	}
	for _, conv := range res.Conversations {
		if _, err := c.storeConversation(ctx, conv); err != nil {
			return nil, err
		}
	}
	return c.Conversations(ctx)
}

// History fetches a page of a conversation's history from the server (see
// the contract for the bounds; Limit 0 means 50), stores it, and returns
// it ascending by seq with has_more. Use it to page back beyond what
// Messages has.
func (c *Client) History(ctx context.Context, convID string, q parley.HistoryQuery) ([]Message, bool, error) {
	msgs, more, err := c.history(ctx, convID, q)
	if err != nil {
		return nil, false, err
	}
	row, err := c.store.conv(ctx, convID)
	if err != nil {
		return nil, false, err
	}
	if row.HaveSeq < row.LastSeq {
		// The page may lie beyond the contiguous run.
		c.markDirty(convID, fillMessages)
	}
	me := c.me()
	out := make([]Message, len(msgs))
	for i, m := range msgs {
		out[i] = Message{Message: m, Status: statusOf(m, row.Data, me)}
	}
	return out, more, nil
}
