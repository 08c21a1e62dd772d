package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Secret returns the bytes stored under name. If there are none, it calls
// create and stores what it returns, unless another node stored a value
// first, in which case it returns that one: every node, however many ask
// at once, gets the same value. create is called at most once per call, and
// not at all when the secret exists; its error is returned wrapped. It is
// for the keys every node must share (the access-token signing key, the
// VAPID key).
func (db *DB) Secret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error) {
	var value []byte
	err := db.read(ctx, "secret", false, func(s *session) error {
		err := s.queryRow(`SELECT value FROM secrets WHERE name = ?`, name).Scan(&value)
		if errors.Is(err, sql.ErrNoRows) {
			value = nil
			return nil
		}
		if err != nil {
			return fmt.Errorf("secret %s: %w", name, err)
		}
		return nil
	})
	if err != nil || value != nil {
		return value, err
	}
	fresh, err := create()
	if err != nil {
		return nil, fmt.Errorf("secret %s: create: %w", name, err)
	}
	if fresh == nil { // NOT NULL
		fresh = []byte{}
	}
	err = db.write(ctx, "secret", lockKey("s", name), func(w *writeTx) error {
		// A node that stored one first wins: this insert waits for it,
		// does nothing, and the read after it sees the winner's value.
		if _, err := w.exec(`INSERT INTO secrets (name, value, created_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO NOTHING`, name, fresh, millis(w.now)); err != nil {
			return fmt.Errorf("secret %s: store: %w", name, err)
		}
		if err := w.queryRow(`SELECT value FROM secrets WHERE name = ?`, name).Scan(&value); err != nil {
			return fmt.Errorf("secret %s: read back: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return value, nil
}
