package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/parley-chat/parley"
)

// PutDeviceToken registers t.Token to t.UserID's device t.DeviceID (the
// login that registered it; empty for none). created is false when the
// caller already had it (its device, platform and environment are
// updated); a token of another user moves to the caller, with created
// true, and the pushes queued to it for the other user are dropped.
func (db *DB) PutDeviceToken(ctx context.Context, t parley.DeviceToken) (bool, error) {
	if t.Platform != parley.PlatformIOS && t.Platform != parley.PlatformWeb {
		return false, parley.Errorf(parley.CodeInvalidArgument, "platform must be ios or web")
	}
	if t.Token == "" || t.UserID == "" {
		return false, parley.Errorf(parley.CodeInvalidArgument, "token and user are required")
	}
	var created bool
	err := db.write(ctx, "put_device_token", lockKey("t", t.Token), func(w *writeTx) error {
		created = false
		// owner reads the token's owner, locking the row on PostgreSQL so
		// that a concurrent registration of the same token waits.
		owner := func() (string, error) {
			var owner string
			err := w.queryRow(`SELECT user_id FROM device_tokens WHERE token = ?`+w.d.lockSuffix(forUpdate, ""),
				t.Token).Scan(&owner)
			if errors.Is(err, sql.ErrNoRows) {
				return "", nil
			}
			return owner, err
		}
		was, err := owner()
		if err != nil {
			return fmt.Errorf("put device token: %w", err)
		}
		if was == "" {
			// Another node may register the same token at once: the insert
			// then waits for it and does nothing, and the token is updated
			// below as one that existed.
			res, err := w.exec(`INSERT INTO device_tokens (token, user_id, family_id, platform, environment, created_at)
				VALUES (?, ?, NULLIF(?, ''), ?, ?, ?) ON CONFLICT (token) DO NOTHING`,
				t.Token, t.UserID, t.DeviceID, string(t.Platform), t.Environment, millis(w.now))
			if err != nil {
				return fmt.Errorf("put device token: %w", err)
			}
			n, err := rowsAffected(res)
			if err != nil {
				return fmt.Errorf("put device token: %w", err)
			}
			if n == 1 {
				created = true
				return nil
			}
			if was, err = owner(); err != nil {
				return fmt.Errorf("put device token: %w", err)
			}
		}
		if was == t.UserID {
			if _, err := w.exec(`UPDATE device_tokens SET family_id = NULLIF(?, ''), platform = ?, environment = ? WHERE token = ?`,
				t.DeviceID, string(t.Platform), t.Environment, t.Token); err != nil {
				return fmt.Errorf("put device token: %w", err)
			}
			return nil
		}
		// A device now signed in as someone else: it is theirs, new,
		// and the pushes queued for the previous user are not theirs.
		if _, err := w.exec(`DELETE FROM push_jobs WHERE token = ?`, t.Token); err != nil {
			return fmt.Errorf("put device token: drop queued pushes: %w", err)
		}
		if _, err := w.exec(`UPDATE device_tokens SET user_id = ?, family_id = NULLIF(?, ''), platform = ?, environment = ?,
			created_at = ?, badge = 0, badge_at = 0
			WHERE token = ?`, t.UserID, t.DeviceID, string(t.Platform), t.Environment, millis(w.now), t.Token); err != nil {
			return fmt.Errorf("put device token: %w", err)
		}
		created = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return created, nil
}

// DeleteDeviceToken deletes userID's token and the pushes queued to it; an
// unknown token, or another user's, changes nothing.
func (db *DB) DeleteDeviceToken(ctx context.Context, userID, token string) error {
	return db.write(ctx, "delete_device_token", lockKey("t", token), func(w *writeTx) error {
		if _, err := w.exec(`DELETE FROM device_tokens WHERE token = ? AND user_id = ?`, token, userID); err != nil {
			return fmt.Errorf("delete device token: %w", err)
		}
		return nil
	})
}
