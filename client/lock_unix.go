//go:build unix

package client

import (
	"fmt"
	"os"
	"syscall"
)

// lockProfile takes an exclusive advisory lock on the profile's lock file
// and returns its release. Refresh tokens rotate and a reused one revokes
// the whole login, so every process that shares a profile (the chat UI, a
// CLI command beside it) refreshes under this lock, one at a time.
func (p *profile) lockProfile() (unlock func(), err error) {
	f, err := os.OpenFile(p.path(lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock profile: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock profile: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// tryLock takes an exclusive advisory lock on f without waiting, and
// reports whether it got it; closing f releases it. Processes sharing a
// profile lock a file they upload, so that one uploads it at a time.
func tryLock(f *os.File) (bool, error) {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch err {
		case nil:
			return true, nil
		case syscall.EINTR:
			continue
		case syscall.EWOULDBLOCK:
			return false, nil
		}
		return false, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
}
