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

// querier is what statements run on directly, without a statement cache:
// a pool (*sql.DB), a connection (*sql.Conn) or a transaction (*sql.Tx).
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// session runs the package's statements with one context, for reads and
// writes alike, so that loaders such as conversationFor serve both.
//
// On SQLite it runs cached prepared statements (cache), optionally inside a
// read-only transaction (tx, for reads that need one snapshot); the writer's
// session has no *sql.Tx: it runs BEGIN and COMMIT itself on its dedicated
// connection. On PostgreSQL it runs statements directly on q (the read pool,
// a read transaction or a writer's connection), rewritten by the dialect;
// the driver prepares and caches them per connection itself, and a
// connection that is lost takes its statements with it.
type session struct {
	ctx   context.Context
	d     *dialect
	cache *stmtCache // SQLite
	tx    *sql.Tx    // SQLite
	q     querier    // PostgreSQL
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
	if s.q != nil {
		return s.q.ExecContext(s.ctx, s.d.rebind(query), args...)
	}
	st, err := s.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(s.ctx, args...)
}

func (s *session) query(query string, args ...any) (*sql.Rows, error) {
	if s.q != nil {
		return s.q.QueryContext(s.ctx, s.d.rebind(query), args...)
	}
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
	if s.q != nil {
		return row{r: s.q.QueryRowContext(s.ctx, s.d.rebind(query), args...)}
	}
	st, err := s.stmt(query)
	if err != nil {
		return row{err: err}
	}
	return row{r: st.QueryRowContext(s.ctx, args...)}
}

// rowsAffected returns how many rows a statement changed.
func rowsAffected(res sql.Result) (int64, error) {
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("rows affected: %w", err)
	}
	return n, nil
}
