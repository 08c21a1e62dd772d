package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// lockLease is how long a lock is held without renewal; a holder renews it
// every third of that while it works, so that only a dead holder's lock
// runs out.
const lockLease = 30 * time.Second

// TryLock takes the cluster-wide lock named key if nobody holds it (or its
// holder's lease ran out: that node died), for work that must not run on
// two nodes at once for longer than a transaction, such as appending to
// one resumable upload. ok is false when another holder has it. While
// held, the lease is renewed in the background; release ends it. Locks
// are rows with a lease (table locks), not connections held open.
func (db *DB) TryLock(ctx context.Context, key string) (release func(), ok bool, err error) {
	holder, err := newID()
	if err != nil {
		return nil, false, fmt.Errorf("try lock: %w", err)
	}
	take := func(ctx context.Context) (bool, error) {
		var got string
		var took bool
		err := db.write(ctx, "try_lock", lockKey("l", key), func(w *writeTx) error {
			now := millis(w.now)
			took = false
			err := w.queryRow(`INSERT INTO locks (key, holder, expires_at) VALUES (?, ?, ?)
				ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
				WHERE locks.expires_at < ? OR locks.holder = excluded.holder
				RETURNING holder`, key, holder, now+lockLease.Milliseconds(), now).Scan(&got)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			took = got == holder
			return nil
		})
		return took, err
	}
	if ok, err = take(ctx); err != nil || !ok {
		if err != nil {
			err = fmt.Errorf("try lock: %w", err)
		}
		return nil, false, err
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(lockLease / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if ok, err := take(context.Background()); err != nil || !ok {
					db.log.Warn("renew a lock", "key", key, "held", ok, "err", err)
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := db.write(ctx, "release_lock", lockKey("l", key), func(w *writeTx) error {
			_, err := w.exec(`DELETE FROM locks WHERE key = ? AND holder = ?`, key, holder)
			return err
		}); err != nil {
			db.log.Warn("release a lock: it ends with its lease", "key", key, "err", err)
		}
	}, true, nil
}
