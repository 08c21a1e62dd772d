package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley"
)

// The push outbox. SendMessage queues one job per device of each recipient
// in its own transaction (queuePush); the push worker claims due jobs with a
// lease, and finishes, reschedules or drops them. All the writes run on the
// writers: on SQLite the one writer serializes them, on PostgreSQL a claim
// locks the jobs it takes and skips those another claim holds, so that no
// job is claimed twice. Whether any job is due is read first, on the read
// pool.

// qQueuePush queues the pushes of a new message: ?1 message id, ?2 now (ms),
// ?3 conversation, ?4 sender; %[1]s is the list of platforms (see
// pushPlatformList). Recipients are the other members who have a device of
// those platforms and have not muted the conversation. Each gets the badge
// computed once (the MATERIALIZED CTE): the unread counts of all their
// memberships less those of their muted ones (usually none, so one index
// seek instead of a mute probe per membership). Members without devices
// cost one index probe and no badge.
var qQueuePush = `WITH recipients AS MATERIALIZED (
		SELECT r.user_id, ` + badgeOf("r.user_id", "?2") + ` AS badge
		FROM members r
		WHERE r.conversation_id = ?3 AND r.user_id <> ?4
		AND EXISTS (SELECT 1 FROM device_tokens d
			WHERE d.user_id = r.user_id AND d.platform IN (%[1]s))
		AND NOT EXISTS (SELECT 1 FROM mutes mu
			WHERE mu.user_id = r.user_id AND mu.conversation_id = r.conversation_id
			AND (mu.until IS NULL OR mu.until > ?2)))
	INSERT INTO push_jobs (message_id, token, user_id, badge, due_at, queued_at)
	SELECT ?1, d.token, rc.user_id, rc.badge, CAST(?2 AS BIGINT), CAST(?2 AS BIGINT)
	FROM recipients rc JOIN device_tokens d ON d.user_id = rc.user_id
	WHERE d.platform IN (%[1]s)`

// qSendPush is qQueuePush as CTEs of qSendInOne (PostgreSQL), whose
// parameters it uses (?1 conversation, ?2 sender, ?4 message id, ?7 now);
// %[1]s is the list of platforms. The recipients are the rows of unread,
// the member rows that the send has just updated, whose unread counts are
// therefore current and include the message; the other memberships' counts
// are summed as qQueuePush does. Nothing is queued unless unread updated
// rows, that is unless the message was inserted.
const qSendPush = `,
	recipients AS MATERIALIZED (
		SELECT r.user_id, r.unread_count
			+ (SELECT COALESCE(SUM(me.unread_count), 0) FROM members me
				WHERE me.user_id = r.user_id AND me.conversation_id <> ?1)
			- (SELECT COALESCE(SUM(me.unread_count), 0) FROM mutes mu
				JOIN members me ON me.conversation_id = mu.conversation_id AND me.user_id = mu.user_id
				WHERE mu.user_id = r.user_id AND mu.conversation_id <> ?1
				AND (mu.until IS NULL OR mu.until > ?7)) AS badge
		FROM unread r
		WHERE EXISTS (SELECT 1 FROM device_tokens d
			WHERE d.user_id = r.user_id AND d.platform IN (%[1]s))
		AND NOT EXISTS (SELECT 1 FROM mutes mu
			WHERE mu.user_id = r.user_id AND mu.conversation_id = ?1
			AND (mu.until IS NULL OR mu.until > ?7))),
	pushed AS (
		INSERT INTO push_jobs (message_id, token, user_id, badge, due_at, queued_at)
		SELECT CAST(?4 AS TEXT), d.token, rc.user_id, rc.badge, ?7, ?7
		FROM recipients rc JOIN device_tokens d ON d.user_id = rc.user_id
		WHERE d.platform IN (%[1]s))`

// queuePush queues the pushes of the message just inserted, inside its
// transaction; the unread counts must already include it. Without push
// platforms it does nothing.
func (db *DB) queuePush(w *writeTx, messageID, conversationID, senderID string) error {
	if db.qQueuePush == "" {
		return nil
	}
	if _, err := w.exec(db.qQueuePush, messageID, millis(w.now), conversationID, senderID); err != nil {
		return fmt.Errorf("queue push: %w", err)
	}
	return nil
}

// badgeOf is the badge of the user in the column or parameter user at the
// time now (Unix ms): the unread counts of all their memberships less those
// of the conversations they have muted.
func badgeOf(user, now string) string {
	return `((SELECT COALESCE(SUM(me.unread_count), 0) FROM members me WHERE me.user_id = ` + user + `)
		- (SELECT COALESCE(SUM(me.unread_count), 0) FROM mutes mu
			JOIN members me ON me.conversation_id = mu.conversation_id AND me.user_id = mu.user_id
			WHERE mu.user_id = ` + user + ` AND (mu.until IS NULL OR mu.until > ` + now + `)))`
}

// qQueueBadge queues a badge update (a job without a message) for each
// device of the user ?1 that was last pushed a badge higher than the one
// the user has now (?2 now, Unix ms), due when the device's last badge-only
// push is ?3 ms old; %[1]s is the list of platforms. A device with an
// update pending keeps it (its badge is computed when it is sent), marked
// dirty in case it is being sent right now with an older badge. The badge
// (a sum over all of the user's memberships) is computed only when one of
// their devices shows one: for most users, a read queues nothing and sums
// nothing.
var qQueueBadge = `WITH b AS MATERIALIZED (SELECT ` + badgeOf("?1", "CAST(?2 AS BIGINT)") + ` AS badge
		WHERE EXISTS (SELECT 1 FROM device_tokens s WHERE s.user_id = ?1 AND s.badge > 0 AND s.platform IN (%[1]s)))
	INSERT INTO push_jobs (message_id, token, user_id, badge, due_at, queued_at)
	SELECT NULL, d.token, d.user_id, b.badge,
		CASE WHEN d.badge_at + CAST(?3 AS BIGINT) > CAST(?2 AS BIGINT)
			THEN d.badge_at + CAST(?3 AS BIGINT) ELSE CAST(?2 AS BIGINT) END,
		CAST(?2 AS BIGINT)
	FROM device_tokens d, b
	WHERE d.user_id = ?1 AND d.platform IN (%[1]s) AND d.badge > b.badge
	ON CONFLICT (token) WHERE message_id IS NULL DO UPDATE SET dirty = 1`

// queueBadge queues badge updates for the devices of userID whose badge
// is now too high, inside a write that may have lowered it (a read
// receipt, a mute, leaving a conversation). Without push platforms it does
// nothing.
func (db *DB) queueBadge(w *writeTx, userID string) error {
	if db.qQueueBadge == "" {
		return nil
	}
	if _, err := w.exec(db.qQueueBadge, userID, millis(w.now), db.badgeInterval.Milliseconds()); err != nil {
		return fmt.Errorf("queue badge update: %w", err)
	}
	return nil
}

// qDeviceReceipt records that the device (login) ?1 has received the
// messages of conversation ?2 up to ?3 (clamped to its last seq), if the
// device has a push token: only those need it. Never backwards.
const qDeviceReceipt = `INSERT INTO device_receipts (family_id, conversation_id, delivered_seq)
	SELECT ?1, c.id, CASE WHEN c.last_seq < CAST(?3 AS BIGINT) THEN c.last_seq ELSE CAST(?3 AS BIGINT) END
	FROM conversations c
	WHERE c.id = ?2 AND EXISTS (SELECT 1 FROM device_tokens d WHERE d.family_id = ?1)
	ON CONFLICT (family_id, conversation_id) DO UPDATE SET delivered_seq = excluded.delivered_seq
	WHERE device_receipts.delivered_seq < excluded.delivered_seq`

// deviceCols are the columns of a job's device d that scanDevice reads.
const deviceCols = `d.token, d.user_id, COALESCE(d.family_id, ''), d.platform, d.environment, d.created_at`

// qDuePush reads the due message jobs (?1 now, ?2 limit) with what a push
// needs; whether the device has confirmed the message (its own delivered
// watermark covers it; for a token registered before devices were told
// apart, the user's); and whether the job has become pointless since it
// was queued (?1 is also the time mutes are judged at): the recipient read
// the message, left the conversation, muted it, or the token moved to
// another user.
const qDuePush = `SELECT j.id, j.badge, j.attempts, j.queued_at, j.held, ` + deviceCols + `,
		` + msgCols + `, u.display_name, c.type, c.title,
		CASE WHEN d.family_id IS NULL THEN COALESCE(me.delivered_seq, 0) >= m.seq
			ELSE EXISTS (SELECT 1 FROM device_receipts dr
				WHERE dr.family_id = d.family_id AND dr.conversation_id = m.conversation_id
				AND dr.delivered_seq >= m.seq) END AS confirmed,
		(me.user_id IS NULL OR me.read_seq >= m.seq OR d.user_id <> j.user_id
			OR EXISTS (SELECT 1 FROM mutes mu
				WHERE mu.user_id = j.user_id AND mu.conversation_id = m.conversation_id
				AND (mu.until IS NULL OR mu.until > ?1))) AS obsolete
	FROM push_jobs j
	JOIN device_tokens d ON d.token = j.token
	JOIN messages m ON m.id = j.message_id
	JOIN conversations c ON c.id = m.conversation_id
	JOIN users u ON u.id = m.sender_id
	LEFT JOIN members me ON me.conversation_id = m.conversation_id AND me.user_id = j.user_id
	WHERE j.due_at <= ?1 AND j.message_id IS NOT NULL
	ORDER BY j.due_at, j.id
	LIMIT ?2`

// qDueBadge reads the due badge updates (?1 now, ?2 limit) with the badge
// the device was last pushed, the user's badge now, and whether the token
// moved to another user.
var qDueBadge = `SELECT j.id, j.attempts, j.queued_at, ` + deviceCols + `, d.badge,
		` + badgeOf("d.user_id", "?1") + `, d.user_id <> j.user_id
	FROM push_jobs j
	JOIN device_tokens d ON d.token = j.token
	WHERE j.due_at <= ?1 AND j.message_id IS NULL
	ORDER BY j.due_at, j.id
	LIMIT ?2`

// qNextPush is when the earliest job is due, NULL if there is none.
const qNextPush = `SELECT MIN(due_at) FROM push_jobs`

// ClaimPushJobs takes up to limit jobs due at now, message pushes first,
// and leases them: none of them is due again before now+lease, so that a
// worker that dies while sending sends them again after the lease (at
// least once). Jobs that have become pointless are deleted instead of
// returned: the recipient read the message, left, or muted the
// conversation; a badge update whose device shows the right badge already.
// (A held push whose device confirmed the message is returned, Confirmed,
// for the worker to count it as skipped.) next is when the
// earliest job left in the queue is due (a lease's end included), or the
// zero time if the queue is empty; next not after now means more are due
// already. When no job is due it only reads, on the read pool: it writes,
// through a writer, only to claim.
func (db *DB) ClaimPushJobs(ctx context.Context, now time.Time, lease time.Duration, limit int) (jobs []parley.PushJob, next time.Time, err error) {
	if limit <= 0 {
		return nil, time.Time{}, parley.Errorf(parley.CodeInvalidArgument, "limit must be positive")
	}
	defer db.observeSince("claim_push_jobs", time.Now())
	nowMS := now.UnixMilli()
	// The push worker asks after every message, most of which queue no job
	// (no recipient has a device): that answer must not cost a write.
	if err := db.health.check(); err != nil {
		return nil, time.Time{}, err
	}
	var due sql.NullInt64
	err = db.readChecked(ctx, false, func(s *session) error {
		if err := s.queryRow(qNextPush).Scan(&due); err != nil {
			return fmt.Errorf("claim push jobs: next: %w", err)
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, time.Time{}, err
	case !due.Valid:
		return nil, time.Time{}, nil
	case due.Int64 > nowMS:
		return nil, time.UnixMilli(due.Int64), nil
	}
	err = db.writeUnobserved(ctx, lockKey("p", ""), func(w *writeTx) error {
		jobs, next = jobs[:0], time.Time{}
		var obsolete []int64
		var err error
		// On PostgreSQL the due jobs are locked, and those that another
		// claim (of any node) holds are skipped: no job is claimed twice.
		// A job another claim leased just now is no longer due when its
		// row is read again after the lock.
		if jobs, obsolete, err = dueMessagePushes(w, nowMS, limit, jobs, obsolete); err != nil {
			return err
		}
		if len(jobs) < limit {
			if jobs, obsolete, err = dueBadgeUpdates(w, nowMS, limit-len(jobs), jobs, obsolete); err != nil {
				return err
			}
		}
		if len(obsolete) > 0 {
			if _, err := w.exec(`DELETE FROM push_jobs WHERE id `+w.d.inInt64List(),
				int64List(obsolete)); err != nil {
				return fmt.Errorf("claim push jobs: drop obsolete: %w", err)
			}
		}
		if len(jobs) > 0 {
			ids := make([]int64, len(jobs))
			for i, j := range jobs {
				ids[i] = j.ID
			}
			if _, err := w.exec(`UPDATE push_jobs SET due_at = ?, dirty = 0 WHERE id `+w.d.inInt64List(),
				now.Add(lease).UnixMilli(), int64List(ids)); err != nil {
				return fmt.Errorf("claim push jobs: lease: %w", err)
			}
		}
		var due sql.NullInt64
		if err := w.queryRow(qNextPush).Scan(&due); err != nil {
			return fmt.Errorf("claim push jobs: next: %w", err)
		}
		next = time.Time{}
		if due.Valid {
			next = time.UnixMilli(due.Int64)
		}
		return nil
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	return jobs, next, nil
}

// scanDevice returns the destinations of deviceCols, then extra.
func scanDevice(t *parley.DeviceToken, created *int64, extra ...any) []any {
	return append([]any{&t.Token, &t.UserID, &t.DeviceID, &t.Platform, &t.Environment, created}, extra...)
}

// dueMessagePushes appends the due message pushes to jobs, and those that
// became pointless to obsolete.
func dueMessagePushes(w *writeTx, nowMS int64, limit int, jobs []parley.PushJob, obsolete []int64) ([]parley.PushJob, []int64, error) {
	rows, err := w.query(qDuePush+w.d.skipLocked("j"), nowMS, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("claim push jobs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			j                 parley.PushJob
			queued, tokenTime int64
			convType          string
			title             sql.NullString
			dead              bool
			m                 nullMessage
		)
		dest := append([]any{&j.ID, &j.Badge, &j.Attempts, &queued, &j.Held}, scanDevice(&j.Device, &tokenTime,
			append(m.dest(), &j.SenderName, &convType, &title, &j.Confirmed, &dead)...)...)
		if err := rows.Scan(dest...); err != nil {
			return nil, nil, fmt.Errorf("claim push jobs: %w", err)
		}
		if dead {
			obsolete = append(obsolete, j.ID)
			continue
		}
		j.Message = *m.message()
		j.QueuedAt = fromMillis(queued)
		j.Device.CreatedAt = fromMillis(tokenTime)
		j.ConversationType = parley.ConversationType(convType)
		if title.Valid {
			j.Title = &title.String
		}
		jobs = append(jobs, j)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("claim push jobs: %w", err)
	}
	return jobs, obsolete, nil
}

// dueBadgeUpdates appends the due badge updates to jobs, and those that
// became pointless to obsolete.
func dueBadgeUpdates(w *writeTx, nowMS int64, limit int, jobs []parley.PushJob, obsolete []int64) ([]parley.PushJob, []int64, error) {
	rows, err := w.query(qDueBadge+w.d.skipLocked("j"), nowMS, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("claim badge updates: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			j                 parley.PushJob
			queued, tokenTime int64
			shown, badge      int
			moved             bool
		)
		dest := append([]any{&j.ID, &j.Attempts, &queued}, scanDevice(&j.Device, &tokenTime, &shown, &badge, &moved)...)
		if err := rows.Scan(dest...); err != nil {
			return nil, nil, fmt.Errorf("claim badge updates: %w", err)
		}
		if moved || badge == shown {
			obsolete = append(obsolete, j.ID)
			continue
		}
		j.BadgeOnly, j.Badge = true, max(badge, 0)
		j.QueuedAt = fromMillis(queued)
		j.Device.CreatedAt = fromMillis(tokenTime)
		jobs = append(jobs, j)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("claim badge updates: %w", err)
	}
	return jobs, obsolete, nil
}

// FinishPushJob ends a job that was sent (sent true) or dropped, and
// records, for a sent one, the badge its device now shows. A badge update
// whose badge changed while it was being sent is due again, once the badge
// interval has passed, instead of ended. An unknown job (already finished)
// changes nothing.
func (db *DB) FinishPushJob(ctx context.Context, j parley.PushJob, sent bool) error {
	return db.write(ctx, "finish_push_job", lockKey("p", strconv.FormatInt(j.ID, 10)), func(w *writeTx) error {
		res, err := w.exec(`DELETE FROM push_jobs WHERE id = ? AND dirty = 0`, j.ID)
		if err != nil {
			return fmt.Errorf("finish push job: %w", err)
		}
		if n, err := rowsAffected(res); err != nil {
			return fmt.Errorf("finish push job: %w", err)
		} else if n == 0 {
			if _, err := w.exec(`UPDATE push_jobs SET dirty = 0, attempts = 0, due_at = ? WHERE id = ?`,
				millis(w.now)+db.badgeInterval.Milliseconds(), j.ID); err != nil {
				return fmt.Errorf("finish push job: again: %w", err)
			}
		}
		if !sent {
			return nil
		}
		if j.BadgeOnly {
			_, err = w.exec(`UPDATE device_tokens SET badge = ?, badge_at = ? WHERE token = ? AND user_id = ?`,
				j.Badge, millis(w.now), j.Device.Token, j.Device.UserID)
		} else {
			_, err = w.exec(`UPDATE device_tokens SET badge = ? WHERE token = ? AND user_id = ?`,
				j.Badge, j.Device.Token, j.Device.UserID)
		}
		if err != nil {
			return fmt.Errorf("finish push job: record the badge: %w", err)
		}
		return nil
	})
}

// HoldPushJob holds a message push back until at, because its device had
// a connection in the foreground: if the device has not confirmed the
// message by then, the push is sent. An unknown job changes nothing.
func (db *DB) HoldPushJob(ctx context.Context, id int64, at time.Time) error {
	return db.write(ctx, "hold_push_job", lockKey("p", strconv.FormatInt(id, 10)), func(w *writeTx) error {
		if _, err := w.exec(`UPDATE push_jobs SET held = 1, due_at = ? WHERE id = ?`, at.UnixMilli(), id); err != nil {
			return fmt.Errorf("hold push job: %w", err)
		}
		return nil
	})
}

// RetryPushJob records attempts failed attempts of a job and makes it due
// again at at (which also ends its lease). An unknown job changes nothing.
func (db *DB) RetryPushJob(ctx context.Context, id int64, attempts int, at time.Time) error {
	return db.write(ctx, "retry_push_job", lockKey("p", strconv.FormatInt(id, 10)), func(w *writeTx) error {
		if _, err := w.exec(`UPDATE push_jobs SET attempts = ?, due_at = ? WHERE id = ?`,
			attempts, at.UnixMilli(), id); err != nil {
			return fmt.Errorf("retry push job: %w", err)
		}
		return nil
	})
}

// RemoveDeviceToken deletes a token that its push service said is no
// longer valid, whoever owns it, with the jobs queued to it.
func (db *DB) RemoveDeviceToken(ctx context.Context, token string) error {
	return db.write(ctx, "remove_device_token", lockKey("t", token), func(w *writeTx) error {
		if _, err := w.exec(`DELETE FROM device_tokens WHERE token = ?`, token); err != nil {
			return fmt.Errorf("remove device token: %w", err)
		}
		return nil
	})
}

// int64List encodes ids as a JSON array for dialect.inInt64List.
func int64List(ids []int64) string {
	b := make([]byte, 0, 2+len(ids)*8)
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(append(b, ']'))
}

// pushPlatformList returns the platforms for qQueuePush and qSendPush,
// named in the statements as constants (a fixed list costs nothing per
// message, where a bound one is expanded each time), or "" for none.
func pushPlatformList(platforms []parley.Platform) (string, error) {
	var names []string
	for _, p := range platforms {
		if p != parley.PlatformIOS && p != parley.PlatformWeb {
			return "", fmt.Errorf("unknown push platform %q", p)
		}
		names = append(names, "'"+string(p)+"'")
	}
	return strings.Join(names, ", "), nil
}
