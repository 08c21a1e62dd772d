package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// migrations holds the schema of each engine, one file per version named
// migrations/ENGINE/NNNN_what.sql. A migration is never edited once
// released: changes go in a new file, for each engine. The versions of the
// two engines need not match (PostgreSQL started at SQLite's third).
//
//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrations embed.FS

// migration is one numbered schema change.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations returns the embedded migrations of engine ("sqlite" or
// "postgres") in version order.
func loadMigrations(fsys fs.FS, engine string) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/"+engine+"/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var ms []migration
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive version and _", base)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", base, err)
		}
		ms = append(ms, migration{version: v, name: engine + "/" + base, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s have the same version", ms[i-1].name, ms[i].name)
		}
	}
	return ms, nil
}

// The table of applied versions, on each engine.
const (
	qCreateMigrationsSQLite = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at INTEGER NOT NULL
	)`
	qCreateMigrationsPostgres = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`
)

// migrateSQLite applies, in order, each migration not yet recorded in
// schema_migrations, each in its own transaction together with its record,
// so that a failed migration leaves the schema at the previous version.
func migrateSQLite(ctx context.Context, conn *sql.Conn) error {
	ms, err := loadMigrations(migrations, "sqlite")
	if err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, qCreateMigrationsSQLite); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for _, m := range ms {
		// Serializable maps to BEGIN IMMEDIATE: the check and the change
		// happen under the write lock, even if another process opens the
		// file at once.
		tx, err := conn.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable})
		if err != nil {
			return fmt.Errorf("migration %s: begin: %w", m.name, err)
		}
		if err := applyMigration(ctx, tx, &dialect{}, m); err != nil {
			return err
		}
	}
	return nil
}

// migrationLockClass is the first key of the advisory lock that serializes
// the migrations of the nodes sharing a PostgreSQL database; the second is
// the schema's name, so that schemas migrate independently.
const migrationLockClass = 0x7061726c // "parl"

// migratePostgres applies the PostgreSQL migrations that the current schema
// (the first of search_path) lacks, each in its own transaction with its
// record. It holds a session advisory lock meanwhile, so that nodes
// starting at once apply each migration once: the others wait, then find
// it recorded and do nothing.
func migratePostgres(ctx context.Context, pool *sql.DB) (err error) {
	ms, err := loadMigrations(migrations, "postgres")
	if err != nil {
		return err
	}
	// The lock belongs to a session: one connection throughout.
	conn, err := pool.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate postgres: connect: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1, hashtext(current_schema()))`, migrationLockClass); err != nil {
		return fmt.Errorf("migrate postgres: lock: %w", err)
	}
	defer func() {
		// A lock left behind by a broken connection goes with it.
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, uerr := conn.ExecContext(uctx, `SELECT pg_advisory_unlock($1, hashtext(current_schema()))`,
			migrationLockClass); uerr != nil && err == nil {
			err = fmt.Errorf("migrate postgres: unlock: %w", uerr)
		}
	}()
	if _, err := conn.ExecContext(ctx, qCreateMigrationsPostgres); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for _, m := range ms {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migration %s: begin: %w", m.name, err)
		}
		if err := applyMigration(ctx, tx, &dialect{postgres: true}, m); err != nil {
			return err
		}
	}
	return nil
}

// applyMigration applies m in tx, and records it, unless it is recorded
// already; it commits or rolls back tx.
func applyMigration(ctx context.Context, tx *sql.Tx, d *dialect, m migration) (err error) {
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	var n int
	if err := tx.QueryRowContext(ctx, d.rebind(`SELECT COUNT(*) FROM schema_migrations WHERE version = ?`), m.version).Scan(&n); err != nil {
		return fmt.Errorf("migration %s: check: %w", m.name, err)
	}
	if n == 0 {
		// Without arguments both drivers run every statement of the script.
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, d.rebind(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`),
			m.version, nowMillis()); err != nil {
			return fmt.Errorf("migration %s: record: %w", m.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration %s: commit: %w", m.name, err)
	}
	return nil
}
