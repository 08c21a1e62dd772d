package sqlstore

import (
	"strconv"
	"strings"
	"sync"
)

// The statements of this package are written once, in the SQL that SQLite
// and PostgreSQL share: ? placeholders (?NNN where one is used twice),
// ON CONFLICT upserts, RETURNING, CASE instead of the two-argument MAX,
// CAST(? AS BIGINT) where PostgreSQL cannot infer a parameter's type (in a
// select list). What differs is named here, as fragments that the
// statements splice in, and as the rewriting of placeholders.

// dialect is what one engine needs different. Its methods are safe for
// concurrent use.
type dialect struct {
	// postgres selects PostgreSQL; the zero dialect is SQLite's.
	postgres bool
	// rebound caches rebind's answers: the statements are constants of
	// this package (and one per DB for the push queue), so it is bounded.
	rebound sync.Map // string -> string
}

// name is the engine's name, for errors and logs.
func (d *dialect) name() string {
	if d.postgres {
		return "postgres"
	}
	return "sqlite"
}

// rebind returns query with its placeholders in the engine's syntax:
// unchanged for SQLite; for PostgreSQL ?NNN becomes $NNN and each plain ?
// the next number after the largest used so far (SQLite's own rule), so
// that both engines bind the same arguments. Quoted strings, quoted
// identifiers and comments are left alone. Each statement is rewritten
// once.
func (d *dialect) rebind(query string) string {
	if !d.postgres {
		return query
	}
	if q, ok := d.rebound.Load(query); ok {
		return q.(string)
	}
	q := rebindDollar(query)
	d.rebound.Store(query, q)
	return q
}

// rebindDollar rewrites ? and ?NNN placeholders as $n.
func rebindDollar(query string) string {
	var b strings.Builder
	b.Grow(len(query) + 16)
	largest := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'' || c == '"':
			// Copy the quoted part whole; a doubled quote inside it is
			// two quoted parts in a row, which comes out the same.
			end := strings.IndexByte(query[i+1:], c)
			if end < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+end+2])
			i += end + 1
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			end := strings.IndexByte(query[i:], '\n')
			if end < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+end+1])
			i += end
		case c == '?':
			j := i + 1
			for j < len(query) && query[j] >= '0' && query[j] <= '9' {
				j++
			}
			n := largest + 1
			if j > i+1 {
				n, _ = strconv.Atoi(query[i+1 : j]) // digits only: cannot fail
			}
			largest = max(largest, n)
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			i = j - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// jsonEach is a table of the strings of a JSON array bound as one
// parameter, in a column named value: statements with a list stay constant
// (cacheable) whatever its length. See jsonList.
func (d *dialect) jsonEach() string {
	if d.postgres {
		return `json_array_elements_text(CAST(? AS json))`
	}
	return `json_each(?)`
}

// inList is "IN (the strings of the JSON array bound here)".
func (d *dialect) inList() string {
	return `IN (SELECT value FROM ` + d.jsonEach() + `)`
}

// inInt64List is "IN (the integers of the JSON array bound here)".
func (d *dialect) inInt64List() string {
	return `IN (SELECT CAST(value AS BIGINT) FROM ` + d.jsonEach() + `)`
}

// beginWrite starts a write transaction. SQLite takes the database's write
// lock at once (IMMEDIATE), so that a transaction never fails half-way for
// want of it; PostgreSQL runs at READ COMMITTED, whatever the server's
// default, and each write locks the rows it depends on (lockConversation).
func (d *dialect) beginWrite() string {
	if d.postgres {
		return `BEGIN ISOLATION LEVEL READ COMMITTED`
	}
	return `BEGIN IMMEDIATE`
}

// lock modes for lockSuffix and lockConversation.
type lockMode int

const (
	// forShare lets other readers of the row lock it too, excluding only
	// forUpdate: enough for writes that must not run alongside a change of
	// the conversation but not against each other.
	forShare lockMode = iota
	forUpdate
)

// lockSuffix is the clause that locks the rows a SELECT reads (of the
// tables named in of, all if empty) until the transaction ends: empty on
// SQLite, whose single writer serializes every write anyway.
func (d *dialect) lockSuffix(mode lockMode, of string) string {
	if !d.postgres {
		return ""
	}
	s := ` FOR SHARE`
	if mode == forUpdate {
		s = ` FOR UPDATE`
	}
	if of != "" {
		s += ` OF ` + of
	}
	return s
}

// skipLocked is the clause that claims rows no other transaction holds,
// skipping the others (FOR UPDATE SKIP LOCKED), so that concurrent
// claimers never take the same row; empty on SQLite.
func (d *dialect) skipLocked(of string) string {
	if !d.postgres {
		return ""
	}
	return ` FOR UPDATE OF ` + of + ` SKIP LOCKED`
}
