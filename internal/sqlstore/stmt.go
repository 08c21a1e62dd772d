package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// preparer is what statements are prepared on: the read pool (*sql.DB), whose
// statements database/sql re-prepares on each connection as needed, or the
// writer's one *sql.Conn.
type preparer interface {
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// stmtCache prepares each query once and keeps it until close. The queries
// are constants of this package, so the cache is bounded.
type stmtCache struct {
	prep preparer
	mu   sync.RWMutex // guards m
	m    map[string]*sql.Stmt
}

func newStmtCache(p preparer) *stmtCache {
	return &stmtCache{prep: p, m: make(map[string]*sql.Stmt)}
}

func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	if s, ok := c.lookup(query); ok {
		return s, nil
	}
	// Prepare without the lock: on the read pool it may wait for a free
	// connection, and lookups of other statements must not wait with it.
	s, err := c.prep.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[query]; ok {
		s.Close() // another goroutine won the race
		return prev, nil
	}
	c.m[query] = s
	return s, nil
}

func (c *stmtCache) lookup(query string) (*sql.Stmt, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s, ok := c.m[query]
	return s, ok
}

func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for q, s := range c.m {
		errs = append(errs, s.Close())
		delete(c.m, q)
	}
	return errors.Join(errs...)
}

// session runs cached statements with one context, optionally inside a
// read-only transaction (reads that need one snapshot). The writer's session
// has no *sql.Tx: it runs BEGIN and COMMIT itself on its dedicated
// connection. Reads and writes share the query helpers, so that loaders such
// as conversationFor serve both.
type session struct {
	ctx   context.Context
	cache *stmtCache
	tx    *sql.Tx
}

func (s *session) stmt(query string) (*sql.Stmt, error) {
	if s.tx == nil {
		return s.cache.get(s.ctx, query)
	}
	// Inside a transaction, preparing on the pool would need a second
	// connection while this one is held: with every connection held by such
	// a transaction, none would come. So a statement not prepared yet (the
	// ones used in transactions are prepared at Open) is prepared on the
	// transaction's own connection, and closed with it.
	if st, ok := s.cache.lookup(query); ok {
		return s.tx.StmtContext(s.ctx, st), nil
	}
	return s.tx.PrepareContext(s.ctx, query)
}

func (s *session) exec(query string, args ...any) (sql.Result, error) {
	st, err := s.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(s.ctx, args...)
}

func (s *session) query(query string, args ...any) (*sql.Rows, error) {
	st, err := s.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(s.ctx, args...)
}

// row is a *sql.Row that can also carry a prepare error.
type row struct {
	r   *sql.Row
	err error
}

// Scan is (*sql.Row).Scan, or the error that kept the query from running.
func (r row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	return r.r.Scan(dest...)
}

func (s *session) queryRow(query string, args ...any) row {
	st, err := s.stmt(query)
	if err != nil {
		return row{err: err}
	}
	return row{r: st.QueryRowContext(s.ctx, args...)}
}
