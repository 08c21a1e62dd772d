package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/parley-chat/parley"
)

// The statements that read conversations. convCols are the columns
// scanConversation reads: a conversation c with its last message m joined by
// lastMessage.
const (
	convCols    = `c.id, c.type, c.title, c.last_seq, c.created_at, c.updated_at, ` + msgCols
	lastMessage = `LEFT JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_seq`

	// The unread count of the member row me (or o): the messages after its
	// read_seq that others sent, kept in the row by SendMessage,
	// MarkReceipt and AddMember.
	unreadMe = `me.unread_count`
	unreadO  = `o.unread_count`

	memberColsO = `o.user_id, o.role, o.joined_at, o.delivered_seq, o.read_seq`

	// The member me's mute of the conversation, and the columns of a mute
	// that memberView scans after read_seq and unread_count.
	muteOfMe = `LEFT JOIN mutes mu ON mu.user_id = me.user_id AND mu.conversation_id = me.conversation_id`
	muteCols = `mu.user_id IS NOT NULL, mu.until`

	// One conversation as the member me sees it; no row if not a member.
	qConversationFor = `SELECT ` + convCols + `, me.read_seq, ` + unreadMe + `, ` + muteCols + `
		FROM members me JOIN conversations c ON c.id = me.conversation_id ` + lastMessage + ` ` + muteOfMe + `
		WHERE me.conversation_id = ? AND me.user_id = ?`
	// All of a member's conversations, most recent activity first.
	qConversationsFor = `SELECT ` + convCols + `, me.read_seq, ` + unreadMe + `, ` + muteCols + `
		FROM members me JOIN conversations c ON c.id = me.conversation_id ` + lastMessage + ` ` + muteOfMe + `
		WHERE me.user_id = ?
		ORDER BY c.updated_at DESC, c.id DESC`
	// The members of all of a member's conversations.
	qMembersOfConversationsFor = `SELECT o.conversation_id, ` + memberColsO + `
		FROM members me JOIN members o ON o.conversation_id = me.conversation_id
		WHERE me.user_id = ?
		ORDER BY o.conversation_id, o.joined_at, o.user_id`
	// One conversation without caller-specific fields.
	qConversation = `SELECT ` + convCols + ` FROM conversations c ` + lastMessage + ` WHERE c.id = ?`
	// Its members, each with their own unread count and mute.
	qMembersWithUnread = `SELECT ` + memberColsO + `, ` + unreadO + `, ` + muteCols + `
		FROM members o LEFT JOIN mutes mu ON mu.user_id = o.user_id AND mu.conversation_id = o.conversation_id
		WHERE o.conversation_id = ?
		ORDER BY o.joined_at, o.user_id`
	qMembers = `SELECT ` + memberColsO + `
		FROM members o WHERE o.conversation_id = ?
		ORDER BY o.joined_at, o.user_id`
	// The caller's role and the conversation's type; no row if the caller
	// is not a member.
	qRoleAndType = `SELECT c.type, me.role
		FROM members me JOIN conversations c ON c.id = me.conversation_id
		WHERE me.conversation_id = ? AND me.user_id = ?`
	qMemberIDs = `SELECT user_id FROM members WHERE conversation_id = ? ORDER BY joined_at, user_id`

	// A page of a member's conversations in activity order (updated_at
	// DESC, id DESC), from the start (qPageFirst: ?1 user, ?2 limit) or from
	// a cursor on (qPageFrom: also ?3 updated_at, ?4 id, inclusive). The
	// subquery picks the page from the memberships (members_user_id, then
	// conversations_activity: index only) and only the rows of the page
	// are read whole, with their last message.
	qPageFirst = `SELECT ` + convCols + `, p.read_seq, p.unread_count, ` + muteCols + `
		FROM (SELECT me.conversation_id, me.read_seq, me.unread_count, c.updated_at, c.id
			FROM members me JOIN conversations c ON c.id = me.conversation_id
			WHERE me.user_id = ?1
			ORDER BY c.updated_at DESC, c.id DESC LIMIT ?2) p
		JOIN conversations c ON c.id = p.conversation_id ` + lastMessage + `
		LEFT JOIN mutes mu ON mu.user_id = ?1 AND mu.conversation_id = p.conversation_id
		ORDER BY p.updated_at DESC, p.id DESC`
	qPageFrom = `SELECT ` + convCols + `, p.read_seq, p.unread_count, ` + muteCols + `
		FROM (SELECT me.conversation_id, me.read_seq, me.unread_count, c.updated_at, c.id
			FROM members me JOIN conversations c ON c.id = me.conversation_id
			WHERE me.user_id = ?1 AND (c.updated_at < ?3 OR (c.updated_at = ?3 AND c.id <= ?4))
			ORDER BY c.updated_at DESC, c.id DESC LIMIT ?2) p
		JOIN conversations c ON c.id = p.conversation_id ` + lastMessage + `
		LEFT JOIN mutes mu ON mu.user_id = ?1 AND mu.conversation_id = p.conversation_id
		ORDER BY p.updated_at DESC, p.id DESC`
)

// qMembersOfList returns the members of the conversations in a JSON list.
func qMembersOfList(d *dialect) string {
	return `SELECT o.conversation_id, ` + memberColsO + `
		FROM members o WHERE o.conversation_id ` + d.inList() + `
		ORDER BY o.conversation_id, o.joined_at, o.user_id`
}

// lockConversation locks the conversation row on PostgreSQL until the
// transaction ends: forUpdate for a write that changes what others rely on
// (its seq, its members), forShare for one that only relies on it (a
// receipt, a mute). It is the first thing such a write does, so that it
// then reads what the writes before it committed. A conversation that does
// not exist locks nothing, and the caller finds it missing. On SQLite it
// does nothing: the single writer serializes every write.
func lockConversation(w *writeTx, id string, mode lockMode) error {
	if !w.d.postgres {
		return nil
	}
	var got string
	err := w.queryRow(`SELECT id FROM conversations WHERE id = ?`+w.d.lockSuffix(mode, ""), id).Scan(&got)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("lock conversation: %w", err)
	}
	return nil
}

func scanMember(s scanner, extra ...any) (parley.Member, error) {
	var m parley.Member
	var joined int64
	if err := s.Scan(append([]any{&m.UserID, &m.Role, &joined, &m.DeliveredSeq, &m.ReadSeq}, extra...)...); err != nil {
		return parley.Member{}, err
	}
	m.JoinedAt = fromMillis(joined)
	return m, nil
}

// scanConversation reads convCols, then extra.
func scanConversation(s scanner, extra ...any) (parley.Conversation, error) {
	var c parley.Conversation
	var title sql.NullString
	var created, updated int64
	var last nullMessage
	dest := append([]any{&c.ID, &c.Type, &title, &c.LastSeq, &created, &updated}, last.dest()...)
	if err := s.Scan(append(dest, extra...)...); err != nil {
		return parley.Conversation{}, err
	}
	if title.Valid {
		c.Title = &title.String
	}
	c.CreatedAt, c.UpdatedAt = fromMillis(created), fromMillis(updated)
	c.LastMessage = last.message()
	c.Members = []parley.Member{}
	return c, nil
}

// memberView is the caller-specific part of a conversation as the
// statements above read it: read_seq, unread_count, then muteCols.
type memberView struct {
	readSeq, unread int64
	muted           bool
	until           sql.NullInt64
}

func (v *memberView) dest() []any { return []any{&v.readSeq, &v.unread, &v.muted, &v.until} }

// mutedUntil is the conversation's MutedUntil at now (Unix ms): nil unless
// muted, MutedForever for a mute without end.
func (v *memberView) mutedUntil(now int64) *parley.Time {
	switch {
	case !v.muted:
		return nil
	case !v.until.Valid:
		t := parley.MutedForever
		return &t
	case v.until.Int64 > now:
		t := fromMillis(v.until.Int64)
		return &t
	}
	return nil
}

// apply sets c's caller-specific fields.
func (v *memberView) apply(c *parley.Conversation, now int64) {
	c.ReadSeq, c.UnreadCount, c.MutedUntil = v.readSeq, v.unread, v.mutedUntil(now)
}

func errConversationNotFound() error {
	return parley.Errorf(parley.CodeNotFound, "conversation not found")
}

// conversationFor loads conversation id as callerID sees it: not_found if
// callerID is not a member.
func conversationFor(s *session, id, callerID string) (parley.Conversation, error) {
	var v memberView
	c, err := scanConversation(s.queryRow(qConversationFor, id, callerID), v.dest()...)
	if errors.Is(err, sql.ErrNoRows) {
		return parley.Conversation{}, errConversationNotFound()
	}
	if err != nil {
		return parley.Conversation{}, fmt.Errorf("load conversation: %w", err)
	}
	v.apply(&c, nowMillis())
	rows, err := s.query(qMembers, id)
	if err != nil {
		return parley.Conversation{}, fmt.Errorf("load members: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		m, err := scanMember(rows)
		if err != nil {
			return parley.Conversation{}, fmt.Errorf("load members: %w", err)
		}
		c.Members = append(c.Members, m)
	}
	if err := rows.Err(); err != nil {
		return parley.Conversation{}, fmt.Errorf("load members: %w", err)
	}
	return c, nil
}

// loadChange loads conversation id with every member's own view, for
// conversation.updated; the conversation must exist.
func loadChange(s *session, id string) (*parley.ConversationChange, error) {
	c, err := scanConversation(s.queryRow(qConversation, id))
	if err != nil {
		return nil, fmt.Errorf("load conversation: %w", err)
	}
	views := make(map[string]parley.MemberView)
	rows, err := s.query(qMembersWithUnread, id)
	if err != nil {
		return nil, fmt.Errorf("load members: %w", err)
	}
	defer rows.Close()
	now := nowMillis()
	for rows.Next() {
		var v memberView
		m, err := scanMember(rows, &v.unread, &v.muted, &v.until)
		if err != nil {
			return nil, fmt.Errorf("load members: %w", err)
		}
		c.Members = append(c.Members, m)
		views[m.UserID] = parley.MemberView{ReadSeq: m.ReadSeq, UnreadCount: v.unread, MutedUntil: v.mutedUntil(now)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load members: %w", err)
	}
	return &parley.ConversationChange{Conversation: c, Views: views}, nil
}

// publishChange publishes conversation.updated for change to its members
// and to extra recipients (a user just removed), and returns the
// conversation as viewer sees it. The returned value shares nothing with
// the event, which must not change once published.
func publishChange(w *writeTx, change *parley.ConversationChange, viewer string, extra ...string) parley.Conversation {
	recipients := append(change.Conversation.MemberIDs(), extra...)
	w.publish(&parley.Event{
		Type:         parley.EventConversationUpdated,
		Recipients:   recipients,
		Conversation: change,
	})
	return cloneConversation(change.For(viewer))
}

// cloneConversation copies what c shares by reference.
func cloneConversation(c parley.Conversation) parley.Conversation {
	c.Members = slices.Clone(c.Members)
	if c.Title != nil {
		t := *c.Title
		c.Title = &t
	}
	if c.LastMessage != nil {
		m := *c.LastMessage
		c.LastMessage = &m
	}
	if c.MutedUntil != nil {
		t := *c.MutedUntil
		c.MutedUntil = &t
	}
	return c
}

// directKey is the direct_key of the pair a, b: the same for both orders.
func directKey(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return a + " " + b
}

// CreateConversation creates a direct conversation or a group of
// p.CreatorID and p.MemberIDs (duplicates and the creator among them are
// ignored) and publishes conversation.updated to its members. A direct
// conversation names exactly one other user and no title; if the pair
// already has one, that one is returned with created false and nothing is
// published. A group needs at least one other member; its creator is admin.
// Unknown users are invalid_argument.
func (db *DB) CreateConversation(ctx context.Context, p parley.NewConversation) (parley.Conversation, bool, error) {
	if p.CreatorID == "" {
		return parley.Conversation{}, false, parley.Errorf(parley.CodeInvalidArgument, "creator is required")
	}
	others := make([]string, 0, len(p.MemberIDs))
	for _, id := range p.MemberIDs {
		if id != p.CreatorID && !slices.Contains(others, id) {
			others = append(others, id)
		}
	}
	creatorRole := parley.RoleAdmin
	switch p.Type {
	case parley.Direct:
		if len(others) != 1 {
			return parley.Conversation{}, false, parley.Errorf(parley.CodeInvalidArgument, "a direct conversation names exactly one other user")
		}
		if p.Title != nil {
			return parley.Conversation{}, false, parley.Errorf(parley.CodeInvalidArgument, "a direct conversation has no title")
		}
		creatorRole = parley.RoleMember
	case parley.Group:
		if len(others) == 0 {
			return parley.Conversation{}, false, parley.Errorf(parley.CodeInvalidArgument, "a group needs at least one other member")
		}
	default:
		return parley.Conversation{}, false, parley.Errorf(parley.CodeInvalidArgument, "type must be direct or group")
	}
	everyone, err := jsonList(append([]string{p.CreatorID}, others...))
	if err != nil {
		return parley.Conversation{}, false, err
	}
	othersList, err := jsonList(others)
	if err != nil {
		return parley.Conversation{}, false, err
	}

	var conv parley.Conversation
	var created bool
	key := ""
	if p.Type == parley.Direct {
		key = lockKey("d", directKey(p.CreatorID, others[0]))
	}
	err = db.write(ctx, "create_conversation", key, func(w *writeTx) error {
		conv, created = parley.Conversation{}, false
		var known int
		if err := w.queryRow(`SELECT COUNT(*) FROM users WHERE deleted_at IS NULL AND id `+w.d.inList(),
			everyone).Scan(&known); err != nil {
			return fmt.Errorf("create conversation: check users: %w", err)
		}
		if known != len(others)+1 {
			return parley.Errorf(parley.CodeInvalidArgument, "unknown user id")
		}

		var title any // NULL unless set
		if p.Title != nil {
			title = *p.Title
		}
		// existing returns the pair's direct conversation, if it has one.
		existing := func() (bool, error) {
			var id string
			err := w.queryRow(`SELECT id FROM conversations WHERE direct_key = ?`, directKey(p.CreatorID, others[0])).Scan(&id)
			if errors.Is(err, sql.ErrNoRows) {
				return false, nil
			}
			if err != nil {
				return false, fmt.Errorf("create conversation: find direct: %w", err)
			}
			if conv, err = conversationFor(&w.session, id, p.CreatorID); err != nil {
				return false, fmt.Errorf("create conversation: %w", err)
			}
			return true, nil
		}
		var dkey any // NULL for a group
		if p.Type == parley.Direct {
			dkey = directKey(p.CreatorID, others[0])
			if found, err := existing(); found || err != nil {
				return err
			}
		}

		id, err := newID()
		if err != nil {
			return fmt.Errorf("create conversation: %w", err)
		}
		now := millis(w.now)
		// Another node may be creating the same pair's conversation: the
		// unique direct_key makes this wait for it, and then do nothing.
		res, err := w.exec(`INSERT INTO conversations (id, type, title, direct_key, last_seq, created_at, updated_at)
			VALUES (?, ?, ?, ?, 0, ?, ?) ON CONFLICT (direct_key) DO NOTHING`, id, string(p.Type), title, dkey, now, now)
		if err != nil {
			return fmt.Errorf("create conversation: %w", err)
		}
		if n, err := rowsAffected(res); err != nil {
			return fmt.Errorf("create conversation: %w", err)
		} else if n == 0 {
			// This statement sees what the other committed.
			if found, err := existing(); found || err != nil {
				return err
			}
			return fmt.Errorf("create conversation: direct conversation neither inserted nor found")
		}
		if _, err := w.exec(`INSERT INTO members (conversation_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)`,
			id, p.CreatorID, string(creatorRole), now); err != nil {
			return fmt.Errorf("create conversation: add creator: %w", err)
		}
		if _, err := w.exec(`INSERT INTO members (conversation_id, user_id, role, joined_at)
			SELECT ?, value, ?, CAST(? AS BIGINT) FROM `+w.d.jsonEach(), id, string(parley.RoleMember), now, othersList); err != nil {
			return fmt.Errorf("create conversation: add members: %w", err)
		}
		change, err := loadChange(&w.session, id)
		if err != nil {
			return fmt.Errorf("create conversation: %w", err)
		}
		conv = publishChange(w, change, p.CreatorID)
		created = true
		return nil
	})
	if err != nil {
		return parley.Conversation{}, false, err
	}
	return conv, created, nil
}

// Conversation returns conversation id as callerID sees it; not_found if
// callerID is not a member.
func (db *DB) Conversation(ctx context.Context, id, callerID string) (parley.Conversation, error) {
	var c parley.Conversation
	err := db.read(ctx, "conversation", true, func(s *session) error {
		var err error
		c, err = conversationFor(s, id, callerID)
		return err
	})
	return c, err
}

// Conversations returns callerID's conversations as they see them, most
// recent activity (updated_at) first. It reads in two queries however many
// conversations there are.
func (db *DB) Conversations(ctx context.Context, callerID string) ([]parley.Conversation, error) {
	convs := []parley.Conversation{}
	err := db.read(ctx, "conversations", true, func(s *session) error {
		rows, err := s.query(qConversationsFor, callerID)
		if err != nil {
			return fmt.Errorf("conversations: %w", err)
		}
		defer rows.Close()
		index := make(map[string]int)
		now := nowMillis()
		for rows.Next() {
			var v memberView
			c, err := scanConversation(rows, v.dest()...)
			if err != nil {
				return fmt.Errorf("conversations: %w", err)
			}
			v.apply(&c, now)
			index[c.ID] = len(convs)
			convs = append(convs, c)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("conversations: %w", err)
		}
		rows.Close()

		mrows, err := s.query(qMembersOfConversationsFor, callerID)
		if err != nil {
			return fmt.Errorf("conversations: members: %w", err)
		}
		// Both queries read one snapshot, so every conversation is known.
		return wrapInternal("conversations: members", attachMembers(mrows, convs, index))
	})
	if err != nil {
		return nil, err
	}
	return convs, nil
}

// ConversationsPage returns at most limit of callerID's conversations as
// they see them (each with its members, read_seq and unread_count, as
// Conversations returns them), in activity order: updated_at descending,
// then id descending. It starts at from, inclusive: a conversation whose
// (updated_at, id) equals the cursor is the first returned, and those
// before it in that order are not. A nil from starts with the most recent.
// To page, ask for one more than wanted and start the next page at the
// extra one. It reads two queries, in one snapshot, whatever the length of
// the user's list; limit must be positive (invalid_argument).
func (db *DB) ConversationsPage(ctx context.Context, callerID string, from *parley.ActivityCursor, limit int) ([]parley.Conversation, error) {
	if limit <= 0 {
		return nil, parley.Errorf(parley.CodeInvalidArgument, "limit must be positive")
	}
	convs := []parley.Conversation{}
	err := db.read(ctx, "conversations_page", true, func(s *session) error {
		var rows *sql.Rows
		var err error
		if from == nil {
			rows, err = s.query(qPageFirst, callerID, limit)
		} else {
			rows, err = s.query(qPageFrom, callerID, limit, millis(from.UpdatedAt), from.ID)
		}
		if err != nil {
			return fmt.Errorf("conversations page: %w", err)
		}
		defer rows.Close()
		index := make(map[string]int)
		var ids []string
		now := nowMillis()
		for rows.Next() {
			var v memberView
			c, err := scanConversation(rows, v.dest()...)
			if err != nil {
				return fmt.Errorf("conversations page: %w", err)
			}
			v.apply(&c, now)
			index[c.ID] = len(convs)
			convs = append(convs, c)
			ids = append(ids, c.ID)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("conversations page: %w", err)
		}
		rows.Close()
		if len(ids) == 0 {
			return nil
		}
		list, err := jsonList(ids)
		if err != nil {
			return err
		}
		mrows, err := s.query(qMembersOfList(db.d), list)
		if err != nil {
			return fmt.Errorf("conversations page: members: %w", err)
		}
		return wrapInternal("conversations page: members", attachMembers(mrows, convs, index))
	})
	if err != nil {
		return nil, err
	}
	return convs, nil
}

// attachMembers reads rows of (conversation id, memberColsO) and appends
// each member to its conversation in convs, found by index; it closes rows.
func attachMembers(rows *sql.Rows, convs []parley.Conversation, index map[string]int) error {
	defer rows.Close()
	for rows.Next() {
		var convID string
		var m parley.Member
		var joined int64
		if err := rows.Scan(&convID, &m.UserID, &m.Role, &joined, &m.DeliveredSeq, &m.ReadSeq); err != nil {
			return err
		}
		m.JoinedAt = fromMillis(joined)
		if i, ok := index[convID]; ok {
			convs[i].Members = append(convs[i].Members, m)
		}
	}
	return rows.Err()
}

// Memberships reports which of conversationIDs callerID is a member of:
// the map holds true for each of them, and nothing for the others. It reads
// one query however many ids there are.
func (db *DB) Memberships(ctx context.Context, callerID string, conversationIDs []string) (map[string]bool, error) {
	member := make(map[string]bool)
	if len(conversationIDs) == 0 {
		return member, nil
	}
	list, err := jsonList(conversationIDs)
	if err != nil {
		return nil, err
	}
	err = db.read(ctx, "memberships", false, func(s *session) error {
		rows, err := s.query(`SELECT conversation_id FROM members
			WHERE user_id = ? AND conversation_id `+s.d.inList(), callerID, list)
		if err != nil {
			return fmt.Errorf("memberships: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return fmt.Errorf("memberships: %w", err)
			}
			member[id] = true
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("memberships: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return member, nil
}

// MemberIDs returns the members of a conversation callerID belongs to, in
// joining order; not_found if callerID is not a member.
func (db *DB) MemberIDs(ctx context.Context, conversationID, callerID string) ([]string, error) {
	var ids []string
	err := db.read(ctx, "member_ids", false, func(s *session) error {
		var err error
		ids, err = memberIDs(s, conversationID)
		if err != nil {
			return fmt.Errorf("member ids: %w", err)
		}
		if !slices.Contains(ids, callerID) {
			return errConversationNotFound()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// memberIDs returns the member ids of a conversation, in joining order.
func memberIDs(s *session, conversationID string) ([]string, error) {
	rows, err := s.query(qMemberIDs, conversationID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// roleAndType returns actorID's role in a conversation and its type:
// not_found if actorID is not a member.
func roleAndType(s *session, conversationID, actorID string) (parley.Role, parley.ConversationType, error) {
	var typ, role string
	err := s.queryRow(qRoleAndType, conversationID, actorID).Scan(&typ, &role)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", errConversationNotFound()
	}
	if err != nil {
		return "", "", err
	}
	return parley.Role(role), parley.ConversationType(typ), nil
}

// AddMember adds userID to a group as a member, bumps updated_at and
// publishes conversation.updated to all members, the new one included. Only
// an admin may (forbidden), a direct conversation cannot change (forbidden),
// an unknown user is invalid_argument, and a non-member actor gets
// not_found. Adding a member again changes and publishes nothing. It returns
// the conversation as actorID sees it.
func (db *DB) AddMember(ctx context.Context, conversationID, actorID, userID string) (parley.Conversation, error) {
	var conv parley.Conversation
	err := db.write(ctx, "add_member", lockConversationKey(conversationID, forUpdate), func(w *writeTx) error {
		conv = parley.Conversation{}
		if err := lockConversation(w, conversationID, forUpdate); err != nil {
			return fmt.Errorf("add member: %w", err)
		}
		role, typ, err := roleAndType(&w.session, conversationID, actorID)
		if err != nil {
			return wrapInternal("add member", err)
		}
		if typ == parley.Direct {
			return parley.Errorf(parley.CodeForbidden, "the members of a direct conversation cannot change")
		}
		if role != parley.RoleAdmin {
			return parley.Errorf(parley.CodeForbidden, "only a group admin can add members")
		}
		var userKnown, already int
		if err := w.queryRow(`SELECT
			(SELECT COUNT(*) FROM users WHERE id = ? AND deleted_at IS NULL),
			(SELECT COUNT(*) FROM members WHERE conversation_id = ? AND user_id = ?)`,
			userID, conversationID, userID).Scan(&userKnown, &already); err != nil {
			return fmt.Errorf("add member: %w", err)
		}
		if userKnown == 0 {
			return parley.Errorf(parley.CodeInvalidArgument, "unknown user id")
		}
		if already > 0 {
			conv, err = conversationFor(&w.session, conversationID, actorID)
			return wrapInternal("add member", err)
		}
		now := millis(w.now)
		// A new member has read nothing: every message of the others is
		// unread (one who left and came back may have sent some).
		if _, err := w.exec(`INSERT INTO members (conversation_id, user_id, role, joined_at, unread_count)
			VALUES (?, ?, ?, ?, (SELECT COUNT(*) FROM messages x WHERE x.conversation_id = ? AND x.sender_id <> ?))`,
			conversationID, userID, string(parley.RoleMember), now, conversationID, userID); err != nil {
			return fmt.Errorf("add member: %w", err)
		}
		if _, err := w.exec(`UPDATE conversations SET updated_at = ? WHERE id = ?`, now, conversationID); err != nil {
			return fmt.Errorf("add member: touch conversation: %w", err)
		}
		change, err := loadChange(&w.session, conversationID)
		if err != nil {
			return fmt.Errorf("add member: %w", err)
		}
		conv = publishChange(w, change, actorID)
		return nil
	})
	if err != nil {
		return parley.Conversation{}, err
	}
	return conv, nil
}

// RemoveMember removes userID from a group: an admin may remove anyone,
// anyone may remove themselves (forbidden otherwise, and always in a direct
// conversation). A non-member actor, or a target who is not a member, is
// not_found. When no admin remains, the longest-standing member becomes
// admin. It bumps updated_at and publishes conversation.updated to the
// remaining members and to userID.
func (db *DB) RemoveMember(ctx context.Context, conversationID, actorID, userID string) error {
	return db.write(ctx, "remove_member", lockConversationKey(conversationID, forUpdate), func(w *writeTx) error {
		if err := lockConversation(w, conversationID, forUpdate); err != nil {
			return fmt.Errorf("remove member: %w", err)
		}
		role, typ, err := roleAndType(&w.session, conversationID, actorID)
		if err != nil {
			return wrapInternal("remove member", err)
		}
		if typ == parley.Direct {
			return parley.Errorf(parley.CodeForbidden, "the members of a direct conversation cannot change")
		}
		if actorID != userID && role != parley.RoleAdmin {
			return parley.Errorf(parley.CodeForbidden, "only a group admin can remove others")
		}
		change, unread, err := leaveGroup(w, conversationID, userID)
		if err != nil {
			return wrapInternal("remove member", err)
		}
		publishChange(w, change, userID, userID)
		// What they had unread there no longer counts in their badge.
		if unread > 0 {
			if err := db.queueBadge(w, userID); err != nil {
				return fmt.Errorf("remove member: %w", err)
			}
		}
		return nil
	})
}

// leaveGroup removes userID from a group (the conversation is locked):
// when no admin remains, the longest-standing member becomes admin, and
// updated_at moves. It returns the change to publish, with the removed
// user's own last view of it, and how many messages they had unread there.
// not_found if userID is not a member.
func leaveGroup(w *writeTx, conversationID, userID string) (*parley.ConversationChange, int64, error) {
	// The removed user's own view, for their copy of the event.
	var readSeq, unread int64
	err := w.queryRow(`SELECT me.read_seq, `+unreadMe+` FROM members me
			WHERE me.conversation_id = ? AND me.user_id = ?`, conversationID, userID).Scan(&readSeq, &unread)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, parley.Errorf(parley.CodeNotFound, "user is not a member")
	}
	if err != nil {
		return nil, 0, fmt.Errorf("leave group: %w", err)
	}
	if _, err := w.exec(`DELETE FROM members WHERE conversation_id = ? AND user_id = ?`, conversationID, userID); err != nil {
		return nil, 0, fmt.Errorf("leave group: %w", err)
	}
	// A group keeps an admin while it has members: the longest-standing
	// member takes over. With nobody left, nothing happens.
	if _, err := w.exec(`UPDATE members SET role = 'admin'
			WHERE conversation_id = ?
			AND NOT EXISTS (SELECT 1 FROM members a WHERE a.conversation_id = ? AND a.role = 'admin')
			AND user_id = (SELECT f.user_id FROM members f WHERE f.conversation_id = ?
				ORDER BY f.joined_at, f.user_id LIMIT 1)`,
		conversationID, conversationID, conversationID); err != nil {
		return nil, 0, fmt.Errorf("leave group: promote admin: %w", err)
	}
	if _, err := w.exec(`UPDATE conversations SET updated_at = ? WHERE id = ?`, millis(w.now), conversationID); err != nil {
		return nil, 0, fmt.Errorf("leave group: touch conversation: %w", err)
	}
	change, err := loadChange(&w.session, conversationID)
	if err != nil {
		return nil, 0, fmt.Errorf("leave group: %w", err)
	}
	change.Views[userID] = parley.MemberView{ReadSeq: readSeq, UnreadCount: unread}
	return change, unread, nil
}

// wrapInternal adds context to an internal error and passes a client error
// (a *parley.Error) through unchanged, so callers can still match its type.
func wrapInternal(op string, err error) error {
	if err == nil {
		return nil
	}
	var pe *parley.Error
	if errors.As(err, &pe) {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}
