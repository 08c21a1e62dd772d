package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/parley-chat/parley"
)

// SetMute mutes a conversation for callerID until until, or for ever when
// until is nil, replacing any mute before; not_found if callerID is not a
// member. Leaving the conversation ends the mute. It publishes
// conversation.updated to callerID alone (their other devices learn of the
// mute) and queues badge updates for their devices, whose badge may now be
// too high.
func (db *DB) SetMute(ctx context.Context, conversationID, callerID string, until *parley.Time) error {
	var untilMS any // NULL: for ever
	if until != nil {
		untilMS = millis(*until)
	}
	return db.write(ctx, "set_mute", lockConversationKey(conversationID, forShare), func(w *writeTx) error {
		// A removal of the member, which drops the mute, waits: the mute
		// is never inserted for a member just gone.
		if err := lockConversation(w, conversationID, forShare); err != nil {
			return fmt.Errorf("set mute: %w", err)
		}
		if err := isMember(&w.session, conversationID, callerID); err != nil {
			return wrapInternal("set mute", err)
		}
		if _, err := w.exec(`INSERT INTO mutes (user_id, conversation_id, until) VALUES (?, ?, ?)
			ON CONFLICT (user_id, conversation_id) DO UPDATE SET until = excluded.until`,
			callerID, conversationID, untilMS); err != nil {
			return fmt.Errorf("set mute: %w", err)
		}
		if err := db.queueBadge(w, callerID); err != nil {
			return fmt.Errorf("set mute: %w", err)
		}
		return publishMute(w, conversationID, callerID, "set mute")
	})
}

// ClearMute unmutes a conversation for callerID; not_found if callerID is
// not a member. A conversation that is not muted stays so. It publishes
// conversation.updated to callerID alone.
func (db *DB) ClearMute(ctx context.Context, conversationID, callerID string) error {
	return db.write(ctx, "clear_mute", lockConversationKey(conversationID, forShare), func(w *writeTx) error {
		if err := isMember(&w.session, conversationID, callerID); err != nil {
			return wrapInternal("clear mute", err)
		}
		if _, err := w.exec(`DELETE FROM mutes WHERE user_id = ? AND conversation_id = ?`,
			callerID, conversationID); err != nil {
			return fmt.Errorf("clear mute: %w", err)
		}
		return publishMute(w, conversationID, callerID, "clear mute")
	})
}

// publishMute tells callerID's connections, with conversation.updated, of
// their new mute of a conversation.
func publishMute(w *writeTx, conversationID, callerID, op string) error {
	change, err := loadChange(&w.session, conversationID)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	w.publish(&parley.Event{
		Type:         parley.EventConversationUpdated,
		Recipients:   []string{callerID},
		Conversation: change,
	})
	return nil
}

// MuteOf returns callerID's mute of a conversation; one that has ended is
// no mute. not_found if callerID is not a member.
func (db *DB) MuteOf(ctx context.Context, conversationID, callerID string) (parley.Mute, error) {
	var mute parley.Mute
	err := db.read(ctx, "mute_of", false, func(s *session) error {
		var v memberView
		err := s.queryRow(`SELECT `+muteCols+` FROM members me `+muteOfMe+`
			WHERE me.conversation_id = ? AND me.user_id = ?`, conversationID, callerID).Scan(&v.muted, &v.until)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return errConversationNotFound()
		case err != nil:
			return fmt.Errorf("mute of: %w", err)
		}
		// One reading of a mute for both: a Conversation's muted_until,
		// and this (for ever is MutedForever there, a nil Until here).
		if until := v.mutedUntil(nowMillis()); until != nil {
			mute.Muted = true
			if v.until.Valid {
				mute.Until = until
			}
		}
		return nil
	})
	if err != nil {
		return parley.Mute{}, err
	}
	return mute, nil
}

// isMember answers not_found unless userID is a member of the conversation.
func isMember(s *session, conversationID, userID string) error {
	var n int
	if err := s.queryRow(qIsMember, conversationID, userID).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return errConversationNotFound()
	}
	return nil
}
