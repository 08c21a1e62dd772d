package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/parley-chat/parley"
)

// CreateUser stores u with its password hash. u.ID must be set; a zero
// u.CreatedAt is set to now. The username must already be normalized; a
// taken one is conflict.
func (db *DB) CreateUser(ctx context.Context, u parley.User, passwordHash string) error {
	if u.ID == "" || u.Username == "" {
		return parley.Errorf(parley.CodeInvalidArgument, "user id and username are required")
	}
	// A taken username stays conflict when two nodes race for it: the
	// second insert waits for the first and then does nothing.
	return db.write(ctx, "create_user", lockKey("n", u.Username), func(w *writeTx) error {
		created := u.CreatedAt
		if created.IsZero() {
			created = w.now
		}
		// The username of an account deleted long enough ago is free: its
		// row keeps an impossible one ("~" and its id).
		if _, err := w.exec(`UPDATE users SET username = '~' || id
			WHERE username = ? AND deleted_at IS NOT NULL AND deleted_at <= ?`,
			u.Username, millis(w.now)-usernameHeld.Milliseconds()); err != nil {
			return fmt.Errorf("create user: free a deleted account's username: %w", err)
		}
		res, err := w.exec(`INSERT INTO users (id, username, display_name, password_hash, created_at, last_seen_at)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (username) DO NOTHING`,
			// A user who never connected was last seen registering, so that
			// presence always carries a time that clients can decode.
			u.ID, u.Username, u.DisplayName, passwordHash, millis(created), millis(created))
		if err != nil {
			return fmt.Errorf("create user: %w", err)
		}
		if n, err := rowsAffected(res); err != nil {
			return fmt.Errorf("create user: %w", err)
		} else if n == 0 {
			return parley.Errorf(parley.CodeConflict, "username is taken")
		}
		return nil
	})
}

// UserByUsername returns the user with that (normalized) username and its
// password hash; not_found if there is none.
func (db *DB) UserByUsername(ctx context.Context, username string) (parley.User, string, error) {
	var u parley.User
	var hash string
	err := db.read(ctx, "user_by_username", false, func(s *session) error {
		var err error
		u, err = scanUser(s.queryRow(`SELECT `+userCols+`, u.password_hash FROM users u WHERE u.username = ?`, username), &hash)
		if errors.Is(err, sql.ErrNoRows) {
			return parley.Errorf(parley.CodeNotFound, "user not found")
		}
		if err != nil {
			return fmt.Errorf("user by username: %w", err)
		}
		return nil
	})
	return u, hash, err
}

// UserByID returns a user; not_found if there is none.
func (db *DB) UserByID(ctx context.Context, id string) (parley.User, error) {
	var u parley.User
	err := db.read(ctx, "user_by_id", false, func(s *session) error {
		var err error
		u, err = scanUser(s.queryRow(`SELECT `+userCols+` FROM users u WHERE u.id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return parley.Errorf(parley.CodeNotFound, "user not found")
		}
		if err != nil {
			return fmt.Errorf("user by id: %w", err)
		}
		return nil
	})
	return u, err
}

// SearchUsers returns at most limit users whose username starts with
// prefix, in username order. Usernames are lower case, so prefix is
// lower-cased first; LIKE's wildcards in it match only themselves.
func (db *DB) SearchUsers(ctx context.Context, prefix string, limit int) ([]parley.User, error) {
	users := []parley.User{}
	if limit <= 0 {
		return users, nil
	}
	prefix = strings.ToLower(prefix)
	err := db.read(ctx, "search_users", false, func(s *session) error {
		var rows *sql.Rows
		var err error
		if upper, ok := prefixEnd(prefix); ok {
			// The range lets the username index find the start and the end;
			// LIKE (case-insensitive in SQLite, exact in PostgreSQL) alone
			// would scan the table.
			rows, err = s.query(`SELECT `+userCols+` FROM users u
				WHERE u.username >= ? AND u.username < ? AND u.username LIKE ? ESCAPE '\'
				AND u.deleted_at IS NULL
				ORDER BY u.username LIMIT ?`, prefix, upper, likePrefix(prefix), limit)
		} else {
			rows, err = s.query(`SELECT `+userCols+` FROM users u
				WHERE u.username >= ? AND u.username LIKE ? ESCAPE '\'
				AND u.deleted_at IS NULL
				ORDER BY u.username LIMIT ?`, prefix, likePrefix(prefix), limit)
		}
		if err != nil {
			return fmt.Errorf("search users: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			u, err := scanUser(rows)
			if err != nil {
				return fmt.Errorf("search users: %w", err)
			}
			users = append(users, u)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("search users: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return users, nil
}

// likePrefix returns the LIKE pattern (with \ as the escape) that matches
// the strings starting with p.
func likePrefix(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(p) + "%"
}

// prefixEnd returns the least string greater than every string that starts
// with p, in byte order, and false if there is none (p empty or all 0xff).
func prefixEnd(p string) (string, bool) {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}

// SetLastSeen records that userID was last connected at at. An earlier time
// than the one stored (from a slower node) changes nothing; an unknown user
// is ignored.
func (db *DB) SetLastSeen(ctx context.Context, userID string, at parley.Time) error {
	return db.write(ctx, "set_last_seen", lockKey("u", userID), func(w *writeTx) error {
		if _, err := w.exec(`UPDATE users SET last_seen_at = ?
			WHERE id = ? AND (last_seen_at IS NULL OR last_seen_at < ?)`,
			millis(at), userID, millis(at)); err != nil {
			return fmt.Errorf("set last seen: %w", err)
		}
		return nil
	})
}

// LastSeen returns the last-seen times of those of userIDs that have one.
func (db *DB) LastSeen(ctx context.Context, userIDs []string) (map[string]parley.Time, error) {
	seen := make(map[string]parley.Time, len(userIDs))
	if len(userIDs) == 0 {
		return seen, nil
	}
	list, err := jsonList(userIDs)
	if err != nil {
		return nil, err
	}
	err = db.read(ctx, "last_seen", false, func(s *session) error {
		// A user never seen connected was last seen registering: every
		// presence entry carries a time, as the contract says.
		rows, err := s.query(`SELECT id, COALESCE(last_seen_at, created_at) FROM users
			WHERE id `+s.d.inList(), list)
		if err != nil {
			return fmt.Errorf("last seen: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var at int64
			if err := rows.Scan(&id, &at); err != nil {
				return fmt.Errorf("last seen: %w", err)
			}
			seen[id] = fromMillis(at)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("last seen: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return seen, nil
}
