package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley"
)

// errBadRefresh is the one answer to every refresh token that cannot be
// used, so that a client cannot tell unknown from revoked or reused.
func errBadRefresh() error {
	return parley.Errorf(parley.CodeUnauthenticated, "invalid refresh token")
}

// CreateSession starts the family first.FamilyID of first.UserID with first
// as its only token.
func (db *DB) CreateSession(ctx context.Context, first parley.RefreshToken) error {
	if first.Hash == "" || first.FamilyID == "" || first.UserID == "" {
		return parley.Errorf(parley.CodeInvalidArgument, "token hash, family and user are required")
	}
	return db.write(ctx, "create_session", "", func(w *writeTx) error {
		if _, err := w.exec(`INSERT INTO session_families (id, user_id, created_at) VALUES (?, ?, ?)`,
			first.FamilyID, first.UserID, millis(w.now)); err != nil {
			return fmt.Errorf("create session: family: %w", err)
		}
		if _, err := w.exec(`INSERT INTO refresh_tokens (hash, family_id, user_id, expires_at, created_at)
			VALUES (?, ?, ?, ?, ?)`,
			first.Hash, first.FamilyID, first.UserID, millis(first.ExpiresAt), millis(w.now)); err != nil {
			return fmt.Errorf("create session: token: %w", err)
		}
		return nil
	})
}

// RotateRefreshToken exchanges the active token oldHash for next, which
// joins the old token's family and user and is returned with them filled
// in. Presenting a token that was already rotated is taken as theft: its
// whole family is revoked (and that is committed) and EventSessionRevoked
// published, and the answer is unauthenticated, as it is for an unknown,
// expired or revoked token. One exception (the refresh grace period): the
// token rotated last, presented again within grace of its rotation while
// none of its children has been used, gets another child, because the
// answer that carried the first one may have been lost. When a child is
// used, its unused siblings (answers lost, or a thief's) are deleted.
func (db *DB) RotateRefreshToken(ctx context.Context, oldHash string, next parley.RefreshToken, grace time.Duration) (parley.RefreshToken, error) {
	if next.Hash == "" {
		return parley.RefreshToken{}, parley.Errorf(parley.CodeInvalidArgument, "next token hash is required")
	}
	var out parley.RefreshToken
	// reply is the caller's answer when the write itself must commit: a
	// reused token revokes the family and still answers unauthenticated.
	var reply error
	err := db.write(ctx, "rotate_refresh_token", lockKey("r", oldHash), func(w *writeTx) error {
		out, reply = parley.RefreshToken{}, nil
		var familyID, userID string
		var parent sql.NullString
		var expiresAt int64
		var rotatedAt, revokedAt sql.NullInt64
		// On PostgreSQL the token and its family are locked: a concurrent
		// rotation of the same token, or a logout, waits, and this one
		// reads what it committed.
		err := w.queryRow(`SELECT t.family_id, t.user_id, t.parent_hash, t.expires_at, t.rotated_at, f.revoked_at
			FROM refresh_tokens t JOIN session_families f ON f.id = t.family_id
			WHERE t.hash = ?`+w.d.lockSuffix(forUpdate, "t, f"), oldHash).Scan(&familyID, &userID, &parent, &expiresAt, &rotatedAt, &revokedAt)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			reply = errBadRefresh()
			return nil
		case err != nil:
			return fmt.Errorf("rotate refresh token: %w", err)
		case revokedAt.Valid:
			reply = errBadRefresh()
			return nil
		case expiresAt <= millis(w.now):
			reply = errBadRefresh()
			return nil
		}
		// reused answers a token presented again: another child within the
		// grace period, else the family's end.
		reused := func(rotated int64) error {
			if grace <= 0 || millis(w.now)-rotated > grace.Milliseconds() {
				reply = errBadRefresh()
				return revokeFamily(w, familyID, userID, "rotate refresh token")
			}
			var used bool
			if err := w.queryRow(`SELECT EXISTS (SELECT 1 FROM refresh_tokens
				WHERE parent_hash = ? AND rotated_at IS NOT NULL)`, oldHash).Scan(&used); err != nil {
				return fmt.Errorf("rotate refresh token: children: %w", err)
			}
			if used {
				reply = errBadRefresh()
				return revokeFamily(w, familyID, userID, "rotate refresh token")
			}
			return nil
		}
		if rotatedAt.Valid {
			if err := reused(rotatedAt.Int64); err != nil || reply != nil {
				return err
			}
		} else {
			// Conditional, so that of two rotations of the same token only
			// one marks it: the other is a token presented again.
			res, err := w.exec(`UPDATE refresh_tokens SET rotated_at = ? WHERE hash = ? AND rotated_at IS NULL`, millis(w.now), oldHash)
			if err != nil {
				return fmt.Errorf("rotate refresh token: mark rotated: %w", err)
			}
			if n, err := rowsAffected(res); err != nil {
				return fmt.Errorf("rotate refresh token: %w", err)
			} else if n == 0 {
				if err := reused(millis(w.now)); err != nil || reply != nil {
					return err
				}
			}
			if parent.Valid {
				// This token is used: its siblings never will be.
				if _, err := w.exec(`DELETE FROM refresh_tokens
					WHERE parent_hash = ? AND hash <> ? AND rotated_at IS NULL`, parent.String, oldHash); err != nil {
					return fmt.Errorf("rotate refresh token: drop siblings: %w", err)
				}
			}
		}
		if _, err := w.exec(`INSERT INTO refresh_tokens (hash, family_id, user_id, parent_hash, expires_at, created_at)
			VALUES (?, ?, ?, ?, ?, ?)`,
			next.Hash, familyID, userID, oldHash, millis(next.ExpiresAt), millis(w.now)); err != nil {
			return fmt.Errorf("rotate refresh token: insert next: %w", err)
		}
		out = next
		out.FamilyID, out.UserID = familyID, userID
		return nil
	})
	if err != nil {
		return parley.RefreshToken{}, err
	}
	if reply != nil {
		return parley.RefreshToken{}, reply
	}
	return out, nil
}

// revokeFamily revokes a family and publishes EventSessionRevoked, unless
// it was revoked already (by another writer meanwhile).
func revokeFamily(w *writeTx, familyID, userID, op string) error {
	res, err := w.exec(`UPDATE session_families SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`,
		millis(w.now), familyID)
	if err != nil {
		return fmt.Errorf("%s: revoke family: %w", op, err)
	}
	if n, err := rowsAffected(res); err != nil {
		return fmt.Errorf("%s: revoke family: %w", op, err)
	} else if n == 0 {
		return nil
	}
	// The device is signed out: it must get no more pushes of this user.
	if _, err := w.exec(`DELETE FROM device_tokens WHERE family_id = ?`, familyID); err != nil {
		return fmt.Errorf("%s: drop the device's push tokens: %w", op, err)
	}
	if _, err := w.exec(`DELETE FROM device_receipts WHERE family_id = ?`, familyID); err != nil {
		return fmt.Errorf("%s: drop the device's receipts: %w", op, err)
	}
	w.publish(&parley.Event{
		Type:       parley.EventSessionRevoked,
		Recipients: []string{userID},
		Session:    &parley.SessionRevoked{UserID: userID, FamilyID: familyID},
	})
	return nil
}

// RevokeSession revokes the family of the token whose hash is given (logout)
// and publishes EventSessionRevoked. An unknown token, or one of a family
// already revoked, changes nothing and publishes nothing.
func (db *DB) RevokeSession(ctx context.Context, tokenHash string) error {
	return db.write(ctx, "revoke_session", lockKey("r", tokenHash), func(w *writeTx) error {
		var familyID, userID string
		var revokedAt sql.NullInt64
		err := w.queryRow(`SELECT f.id, f.user_id, f.revoked_at
			FROM refresh_tokens t JOIN session_families f ON f.id = t.family_id
			WHERE t.hash = ?`, tokenHash).Scan(&familyID, &userID, &revokedAt)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && revokedAt.Valid) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("revoke session: %w", err)
		}
		return revokeFamily(w, familyID, userID, "revoke session")
	})
}

// SessionActive reports whether the family exists and is not revoked.
func (db *DB) SessionActive(ctx context.Context, familyID string) (bool, error) {
	var active bool
	err := db.read(ctx, "session_active", false, func(s *session) error {
		var revokedAt sql.NullInt64
		err := s.queryRow(`SELECT revoked_at FROM session_families WHERE id = ?`, familyID).Scan(&revokedAt)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("session active: %w", err)
		}
		active = !revokedAt.Valid
		return nil
	})
	return active, err
}
