package pgtest

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestDSN(t *testing.T) {
	ctx := context.Background()
	a, b := DSN(t), DSN(t)
	if a == b {
		t.Fatalf("two tests got the same schema: %s", a)
	}
	ua, _ := url.Parse(a)
	ub, _ := url.Parse(b)
	if ua.Path != ub.Path {
		t.Errorf("schemas in different databases: %s, %s", a, b)
	}
	// Each URL puts its connections in its own empty schema.
	conn := connect(t, a)
	var schema string
	var tables int
	if err := conn.QueryRow(ctx, `SELECT current_schema(),
		(SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema())`).Scan(&schema, &tables); err != nil {
		t.Fatal(err)
	}
	if schema != ua.Query().Get("search_path") || tables != 0 {
		t.Errorf("current schema %q with %d tables, want %q, empty", schema, tables, ua.Query().Get("search_path"))
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE t (x int)`); err != nil {
		t.Fatal(err)
	}
	other := connect(t, b)
	if err := other.QueryRow(ctx, `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()`).Scan(&tables); err != nil || tables != 0 {
		t.Errorf("the other schema has %d tables (%v)", tables, err)
	}
}
