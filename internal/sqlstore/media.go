package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley"
)

// The media of uploads (photos, videos, files): the rows that follow an
// upload from its creation to its attachment to a message. SendMessage
// attaches them (attachMedia); the bytes are in the blob store.

// mediaCols are the columns scanMediaFile reads, from a table aliased md.
const mediaCols = `md.id, md.uploader_id, md.state, md.name, md.claimed_type, md.mime_type, md.kind, md.size,
	md.width, md.height, md.duration_ms, md.has_thumbnail <> 0, md.error, md.conversation_id, md.upload_ref, md.created_at`

func scanMediaFile(s scanner) (parley.MediaFile, error) {
	var (
		f                       parley.MediaFile
		width, height, duration sql.NullInt64
		conv                    sql.NullString
		created                 int64
	)
	if err := s.Scan(&f.ID, &f.UploaderID, &f.State, &f.Name, &f.ClaimedType, &f.MIMEType, &f.Kind, &f.Size,
		&width, &height, &duration, &f.HasThumbnail, &f.Error, &conv, &f.UploadRef, &created); err != nil {
		return parley.MediaFile{}, err
	}
	f.Width, f.Height, f.DurationMS = intPtr(width), intPtr(height), int64Ptr(duration)
	f.ConversationID = conv.String
	f.CreatedAt = fromMillis(created)
	return f, nil
}

func errMediaNotFound() error { return parley.Errorf(parley.CodeNotFound, "media not found") }

// nullable returns nil for a nil pointer, else what it points to.
func nullable[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// CreateMedia records a new upload of f.UploaderID (state, name, claimed
// type and size as given; a zero CreatedAt is now).
func (db *DB) CreateMedia(ctx context.Context, f parley.MediaFile) error {
	if f.ID == "" || f.UploaderID == "" || f.State == "" {
		return parley.Errorf(parley.CodeInvalidArgument, "media id, uploader and state are required")
	}
	if f.Kind == "" {
		f.Kind = parley.KindFile
	}
	return db.write(ctx, "create_media", lockKey("m", f.ID), func(w *writeTx) error {
		created := f.CreatedAt
		if created.IsZero() {
			created = w.now
		}
		if _, err := w.exec(`INSERT INTO media (id, uploader_id, state, name, claimed_type, mime_type, kind, size,
			width, height, duration_ms, has_thumbnail, error, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			f.ID, f.UploaderID, string(f.State), f.Name, f.ClaimedType, f.MIMEType, string(f.Kind), f.Size,
			nullable(f.Width), nullable(f.Height), nullable(f.DurationMS), boolInt(f.HasThumbnail), f.Error, millis(created)); err != nil {
			return fmt.Errorf("create media: %w", err)
		}
		return nil
	})
}

// UpdateMedia records what became of an upload that is not attached: its
// state, and what processing found (type, kind, size, dimensions,
// duration, thumbnail, error). An attached or unknown upload is not_found.
func (db *DB) UpdateMedia(ctx context.Context, f parley.MediaFile) error {
	return db.write(ctx, "update_media", lockKey("m", f.ID), func(w *writeTx) error {
		res, err := w.exec(`UPDATE media SET state = ?, mime_type = ?, kind = ?, size = ?, width = ?, height = ?,
			duration_ms = ?, has_thumbnail = ?, error = ?
			WHERE id = ? AND conversation_id IS NULL`,
			string(f.State), f.MIMEType, string(f.Kind), f.Size, nullable(f.Width), nullable(f.Height),
			nullable(f.DurationMS), boolInt(f.HasThumbnail), f.Error, f.ID)
		if err != nil {
			return fmt.Errorf("update media: %w", err)
		}
		if n, err := rowsAffected(res); err != nil {
			return fmt.Errorf("update media: %w", err)
		} else if n == 0 {
			return errMediaNotFound()
		}
		return nil
	})
}

// SetUploadRef records the tus store's id of an upload in progress.
func (db *DB) SetUploadRef(ctx context.Context, id, ref string) error {
	return db.write(ctx, "set_upload_ref", lockKey("m", id), func(w *writeTx) error {
		if _, err := w.exec(`UPDATE media SET upload_ref = ? WHERE id = ?`, ref, id); err != nil {
			return fmt.Errorf("set upload ref: %w", err)
		}
		return nil
	})
}

// MediaFile returns the record of an upload, whoever asks; not_found if
// there is none. Callers decide who may see it (MediaFor).
func (db *DB) MediaFile(ctx context.Context, id string) (parley.MediaFile, error) {
	var f parley.MediaFile
	err := db.read(ctx, "media_file", false, func(s *session) error {
		var err error
		f, err = scanMediaFile(s.queryRow(`SELECT `+mediaCols+` FROM media md WHERE md.id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return errMediaNotFound()
		}
		return wrapInternal("media file", err)
	})
	return f, err
}

// MediaFor returns an upload as callerID may see it: their own, or one
// attached to a conversation they are a member of. Any other, or an
// unknown id, is not_found, as a conversation is to a non-member.
func (db *DB) MediaFor(ctx context.Context, callerID, mediaID string) (parley.MediaFile, error) {
	var f parley.MediaFile
	err := db.read(ctx, "media_for", false, func(s *session) error {
		var err error
		f, err = scanMediaFile(s.queryRow(`SELECT `+mediaCols+` FROM media md
			WHERE md.id = ? AND (md.uploader_id = ? OR EXISTS (SELECT 1 FROM members me
				WHERE me.conversation_id = md.conversation_id AND me.user_id = ?))`, mediaID, callerID, callerID))
		if errors.Is(err, sql.ErrNoRows) {
			return errMediaNotFound()
		}
		return wrapInternal("media for", err)
	})
	return f, err
}

// UnattachedMedia returns the ids of at most limit uploads never attached
// to a message and created before before, oldest first.
func (db *DB) UnattachedMedia(ctx context.Context, before time.Time, limit int) ([]string, error) {
	var ids []string
	err := db.read(ctx, "unattached_media", false, func(s *session) error {
		rows, err := s.query(`SELECT id FROM media WHERE conversation_id IS NULL AND created_at < ?
			ORDER BY created_at LIMIT ?`, before.UnixMilli(), limit)
		if err != nil {
			return fmt.Errorf("unattached media: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return fmt.Errorf("unattached media: %w", err)
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	return ids, err
}

// DeleteMedia deletes the record of an upload that is not attached,
// reporting whether it did: an attached one (a send won the race) stays.
// Its blobs are the caller's to delete, after a true answer only.
func (db *DB) DeleteMedia(ctx context.Context, id string) (bool, error) {
	var deleted bool
	err := db.write(ctx, "delete_media", lockKey("m", id), func(w *writeTx) error {
		res, err := w.exec(`DELETE FROM media WHERE id = ? AND conversation_id IS NULL`, id)
		if err != nil {
			return fmt.Errorf("delete media: %w", err)
		}
		n, err := rowsAffected(res)
		deleted = n == 1
		return err
	})
	return deleted, err
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
