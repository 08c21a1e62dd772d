package media

import (
	"context"
	"time"

	tusd "github.com/tus/tusd/v2/pkg/handler"
)

// TryLocker takes cluster-wide locks: *sqlstore.DB's, rows with a lease
// in the database every node shares.
type TryLocker interface {
	TryLock(ctx context.Context, key string) (release func(), ok bool, err error)
}

// ClusterLocker is tusd's Locker over a TryLocker, so that two nodes never
// append to one upload at once. A lock another node holds is retried
// until the request's lock timeout; that node cannot be asked to let go
// early (tusd's requestRelease), so a client that lost its connection
// mid-PATCH may wait for the old request to end before it resumes.
func ClusterLocker(l TryLocker) tusd.Locker { return clusterLocker{l} }

type clusterLocker struct{ l TryLocker }

func (c clusterLocker) NewLock(id string) (tusd.Lock, error) {
	return &clusterLock{l: c.l, key: "tus upload " + id}, nil
}

type clusterLock struct {
	l       TryLocker
	key     string
	release func()
}

// lockRetry is how often a lock held elsewhere is tried again.
const lockRetry = 50 * time.Millisecond

func (c *clusterLock) Lock(ctx context.Context, _ func()) error {
	t := time.NewTicker(lockRetry)
	defer t.Stop()
	for {
		release, ok, err := c.l.TryLock(ctx, c.key)
		if err != nil {
			return err
		}
		if ok {
			c.release = release
			return nil
		}
		select {
		case <-ctx.Done():
			return tusd.ErrLockTimeout
		case <-t.C:
		}
	}
}

func (c *clusterLock) Unlock() error {
	if c.release != nil {
		c.release()
		c.release = nil
	}
	return nil
}
