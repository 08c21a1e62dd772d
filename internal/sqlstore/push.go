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
const qQueuePush = `WITH recipients AS MATERIALIZED (
		SELECT r.user_id,
			(SELECT COALESCE(SUM(me.unread_count), 0) FROM members me WHERE me.user_id = r.user_id)
			- (SELECT COALESCE(SUM(me.unread_count), 0) FROM mutes mu
				JOIN members me ON me.conversation_id = mu.conversation_id AND me.user_id = mu.user_id
				WHERE mu.user_id = r.user_id AND (mu.until IS NULL OR mu.until > ?2)) AS badge
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

// qDuePush reads the due jobs (?1 now, ?2 limit) with what a push needs,
// and whether the job has become pointless since it was queued (?1 is also
// the time mutes are judged at): the recipient read the message, left the
// conversation, muted it, or the token moved to another user.
const qDuePush = `SELECT j.id, j.badge, j.attempts, j.queued_at,
		d.token, d.user_id, d.platform, d.environment, d.created_at,
		` + msgCols + `, u.display_name, c.type, c.title,
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
	WHERE j.due_at <= ?1
	ORDER BY j.due_at, j.id
	LIMIT ?2`

// qNextPush is when the earliest job is due, NULL if there is none.
const qNextPush = `SELECT MIN(due_at) FROM push_jobs`

// ClaimPushJobs takes up to limit jobs due at now and leases them: none of
// them is due again before now+lease, so that a worker that dies while
// sending sends them again after the lease (at least once). Jobs that have
// become pointless (the recipient read the message, left, or muted the
// conversation) are deleted instead of returned. next is when the earliest
// job left in the queue is due (a lease's end included), or the zero time
// if the queue is empty; next not after now means more are due already.
// When no job is due it only reads, on the read pool: it writes, through a
// writer, only to claim.
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
		// On PostgreSQL the due jobs are locked, and those that another
		// claim (of any node) holds are skipped: no job is claimed twice.
		// A job another claim leased just now is no longer due when its
		// row is read again after the lock.
		rows, err := w.query(qDuePush+w.d.skipLocked("j"), nowMS, limit)
		if err != nil {
			return fmt.Errorf("claim push jobs: %w", err)
		}
		for rows.Next() {
			var (
				j                 parley.PushJob
				queued, tokenTime int64
				convType          string
				title             sql.NullString
				dead              bool
				m                 parley.Message
				created           int64
			)
			if err := rows.Scan(&j.ID, &j.Badge, &j.Attempts, &queued,
				&j.Device.Token, &j.Device.UserID, &j.Device.Platform, &j.Device.Environment, &tokenTime,
				&m.ID, &m.ConversationID, &m.Seq, &m.SenderID, &m.ClientMessageID, &m.Kind, &m.Text, &created,
				&j.SenderName, &convType, &title, &dead); err != nil {
				rows.Close()
				return fmt.Errorf("claim push jobs: %w", err)
			}
			if dead {
				obsolete = append(obsolete, j.ID)
				continue
			}
			m.CreatedAt = fromMillis(created)
			j.Message = m
			j.QueuedAt = fromMillis(queued)
			j.Device.CreatedAt = fromMillis(tokenTime)
			j.ConversationType = parley.ConversationType(convType)
			if title.Valid {
				j.Title = &title.String
			}
			jobs = append(jobs, j)
		}
		err = rows.Err()
		rows.Close() // before the next statement on this connection
		if err != nil {
			return fmt.Errorf("claim push jobs: %w", err)
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
			if _, err := w.exec(`UPDATE push_jobs SET due_at = ? WHERE id `+w.d.inInt64List(),
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

// FinishPushJob removes a job: it was sent, or it is dropped. An unknown
// job (already finished) changes nothing.
func (db *DB) FinishPushJob(ctx context.Context, id int64) error {
	return db.write(ctx, "finish_push_job", lockKey("p", strconv.FormatInt(id, 10)), func(w *writeTx) error {
		if _, err := w.exec(`DELETE FROM push_jobs WHERE id = ?`, id); err != nil {
			return fmt.Errorf("finish push job: %w", err)
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
