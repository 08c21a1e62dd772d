package parley

import (
	"fmt"
	"time"
)

// TimeLayout is the contract's time format: RFC 3339, UTC, milliseconds.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// Time is a server-assigned instant that encodes as the contract requires:
// RFC 3339 in UTC with exactly three fractional digits.
type Time struct{ time.Time }

// NewTime returns t in UTC, truncated to milliseconds.
func NewTime(t time.Time) Time { return Time{t.UTC().Truncate(time.Millisecond)} }

// Now returns the current time as a Time.
func Now() Time { return NewTime(time.Now()) }

// TimeFromMillis returns the Time for Unix milliseconds ms.
func TimeFromMillis(ms int64) Time { return Time{time.UnixMilli(ms).UTC()} }

// String formats t in TimeLayout.
func (t Time) String() string { return t.UTC().Format(TimeLayout) }

// MarshalJSON encodes t as a JSON string in TimeLayout; the zero Time is null.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	b := make([]byte, 0, len(TimeLayout)+2)
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, TimeLayout)
	return append(b, '"'), nil
}

// UnmarshalJSON accepts any RFC 3339 string, or null for the zero Time.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = Time{}
		return nil
	}
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return fmt.Errorf("time: not a JSON string")
	}
	v, err := time.Parse(time.RFC3339Nano, string(b[1:len(b)-1]))
	if err != nil {
		return fmt.Errorf("time: %w", err)
	}
	*t = NewTime(v)
	return nil
}

// MutedForever is the MutedUntil of a conversation muted for ever: the last
// millisecond of year 9999, a time every client library parses and no
// clock reaches.
var MutedForever = Time{time.Date(9999, 12, 31, 23, 59, 59, int(999*time.Millisecond), time.UTC)}
