package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/parley-chat/parley"
)

// usernameHeld is how long a deleted account's username stays taken, so
// that nobody can pass for the person who just left.
const usernameHeld = 30 * 24 * time.Hour

// DeleteUser closes userID's account. In one transaction: every login is
// revoked and every refresh token, push token (with its queued pushes) and
// device confirmation deleted; the user leaves every group (each group's
// members get conversation.updated); the row keeps the id (their messages
// stay in others' conversations and still name them) but loses the
// password and becomes "Deleted account", its username held for 30 days.
// It publishes EventAccountClosed, which closes the user's connections
// with 4003. Direct conversations keep the deleted account as a member,
// so that the other side still sees whom they talked to. An unknown or
// already deleted user is not_found.
func (db *DB) DeleteUser(ctx context.Context, userID string) error {
	return db.write(ctx, "delete_user", lockKey("u", userID), func(w *writeTx) error {
		var deleted sql.NullInt64
		err := w.queryRow(`SELECT deleted_at FROM users WHERE id = ?`+w.d.lockSuffix(forUpdate, ""), userID).Scan(&deleted)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && deleted.Valid) {
			return parley.Errorf(parley.CodeNotFound, "user not found")
		}
		if err != nil {
			return fmt.Errorf("delete user: %w", err)
		}
		now := millis(w.now)
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`UPDATE users SET deleted_at = ?, password_hash = '', display_name = ? WHERE id = ?`,
				[]any{now, parley.DeletedDisplayName, userID}},
			{`UPDATE session_families SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL`, []any{now, userID}},
			{`DELETE FROM device_receipts WHERE family_id IN (SELECT id FROM session_families WHERE user_id = ?)`, []any{userID}},
			{`DELETE FROM refresh_tokens WHERE user_id = ?`, []any{userID}},
			// Deleting the tokens deletes their queued pushes (a token
			// that moved to another user took none of them along).
			{`DELETE FROM device_tokens WHERE user_id = ?`, []any{userID}},
			{`DELETE FROM mutes WHERE user_id = ?`, []any{userID}},
		} {
			if _, err := w.exec(q.sql, q.args...); err != nil {
				return fmt.Errorf("delete user: %w", err)
			}
		}
		groups, err := groupsOf(w, userID)
		if err != nil {
			return fmt.Errorf("delete user: %w", err)
		}
		// In id order, so that two writes locking several conversations
		// on PostgreSQL lock them in the same order.
		slices.Sort(groups)
		for _, id := range groups {
			if err := lockConversation(w, id, forUpdate); err != nil {
				return fmt.Errorf("delete user: %w", err)
			}
			change, _, err := leaveGroup(w, id, userID)
			if err != nil {
				return wrapInternal("delete user", err)
			}
			delete(change.Views, userID)
			publishChange(w, change, "")
		}
		w.publish(&parley.Event{
			Type:       parley.EventAccountClosed,
			Recipients: []string{userID},
			Session:    &parley.SessionRevoked{UserID: userID},
		})
		return nil
	})
}

// groupsOf returns the groups userID is a member of.
func groupsOf(w *writeTx, userID string) ([]string, error) {
	rows, err := w.query(`SELECT me.conversation_id FROM members me
		JOIN conversations c ON c.id = me.conversation_id
		WHERE me.user_id = ? AND c.type = 'group'`, userID)
	if err != nil {
		return nil, fmt.Errorf("groups of: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("groups of: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
