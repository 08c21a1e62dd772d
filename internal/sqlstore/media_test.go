package sqlstore

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley"
)

// newMedia records a ready upload of uploader and returns its id.
func newMedia(t *testing.T, db *DB, uploader string, kind parley.MessageKind, mime string) string {
	t.Helper()
	id := mustID(t)
	w, h := 640, 480
	f := parley.MediaFile{
		Media:      parley.Media{ID: id, MIMEType: mime, Size: 1234, Name: "holiday.jpg", Width: &w, Height: &h, HasThumbnail: true},
		UploaderID: uploader, State: parley.MediaReady, Kind: kind, ClaimedType: "image/png",
	}
	if err := db.CreateMedia(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestMediaMessages(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		db, rec := openTestDB(t, engine)
		alice, bob, eve := newUser(t, db, "alice"), newUser(t, db, "bob"), newUser(t, db, "eve")
		d := newDirect(t, db, alice.ID, bob.ID)
		photo := newMedia(t, db, alice.ID, parley.KindImage, "image/jpeg")
		sendMedia := func(sender string, kind parley.MessageKind, mediaID, cmid string) (parley.Message, error) {
			m, _, err := db.SendMessage(ctx, parley.NewMessage{ConversationID: d.ID, SenderID: sender,
				ClientMessageID: cmid, Kind: kind, Text: "caption", MediaID: mediaID})
			return m, err
		}

		// Refused, changing nothing: another's upload, an unknown one, a
		// kind the content does not allow, a text message with media, a
		// media kind without.
		_, err := sendMedia(bob.ID, parley.KindImage, photo, "b1")
		wantCode(t, err, parley.CodeInvalidArgument)
		_, err = sendMedia(alice.ID, parley.KindImage, mustID(t), "a0")
		wantCode(t, err, parley.CodeInvalidArgument)
		_, err = sendMedia(alice.ID, parley.KindVideo, photo, "a1")
		wantCode(t, err, parley.CodeInvalidArgument)
		_, err = sendMedia(alice.ID, parley.KindText, photo, "a2")
		wantCode(t, err, parley.CodeInvalidArgument)
		_, err = sendMedia(alice.ID, parley.KindImage, "", "a3")
		wantCode(t, err, parley.CodeInvalidArgument)
		processing := mustID(t)
		if err := db.CreateMedia(ctx, parley.MediaFile{Media: parley.Media{ID: processing, Name: "x"}, UploaderID: alice.ID, State: parley.MediaProcessing}); err != nil {
			t.Fatal(err)
		}
		_, err = sendMedia(alice.ID, parley.KindFile, processing, "a4")
		wantCode(t, err, parley.CodeInvalidArgument)
		if c, _ := db.Conversation(ctx, d.ID, alice.ID); c.LastSeq != 0 {
			t.Fatalf("refused sends took seqs: last_seq %d", c.LastSeq)
		}
		rec.take()

		// Sent: the message carries the media, as stored and in history;
		// a retry is the same message; the media is attached once.
		m, err := sendMedia(alice.ID, parley.KindImage, photo, "ok")
		if err != nil {
			t.Fatal(err)
		}
		if m.Media == nil || m.Media.ID != photo || m.Media.MIMEType != "image/jpeg" || *m.Media.Width != 640 || !m.Media.HasThumbnail || m.Text != "caption" {
			t.Fatalf("message %+v media %+v", m, m.Media)
		}
		if evs := rec.take(); len(evs) != 1 || evs[0].Message.Media == nil || evs[0].Message.Media.ID != photo {
			t.Fatalf("events %s, want message.new with the media", describe(evs))
		}
		again, err := sendMedia(alice.ID, parley.KindImage, photo, "ok")
		if err != nil || again.ID != m.ID || again.Media == nil {
			t.Fatalf("retry: %+v, %v", again, err)
		}
		_, err = sendMedia(alice.ID, parley.KindImage, photo, "twice")
		wantCode(t, err, parley.CodeInvalidArgument)
		hist, _, err := db.Messages(ctx, d.ID, bob.ID, parley.HistoryQuery{Limit: 10})
		if err != nil || len(hist) != 1 || hist[0].Media == nil || hist[0].Media.Name != "holiday.jpg" {
			t.Fatalf("history %+v, %v", hist, err)
		}
		if c, _ := db.Conversation(ctx, d.ID, bob.ID); c.LastMessage == nil || c.LastMessage.Media == nil {
			t.Fatalf("last message %+v without its media", c.LastMessage)
		}

		// Who may see it: the uploader, and members once attached.
		for _, who := range []string{alice.ID, bob.ID} {
			if f, err := db.MediaFor(ctx, who, photo); err != nil || f.ConversationID != d.ID {
				t.Errorf("MediaFor(%s): %+v, %v", who, f, err)
			}
		}
		_, err = db.MediaFor(ctx, eve.ID, photo)
		wantCode(t, err, parley.CodeNotFound)
		_, err = db.MediaFor(ctx, bob.ID, processing) // alice's, not attached
		wantCode(t, err, parley.CodeNotFound)

		// The janitor's view: unattached uploads, and an attached one stays.
		ids, err := db.UnattachedMedia(ctx, time.Now().Add(time.Minute), 10)
		if err != nil || len(ids) != 1 || ids[0] != processing {
			t.Fatalf("unattached %v, %v; want only the processing one", ids, err)
		}
		if ok, err := db.DeleteMedia(ctx, photo); err != nil || ok {
			t.Errorf("deleting attached media: %v, %v", ok, err)
		}
		if ok, err := db.DeleteMedia(ctx, processing); err != nil || !ok {
			t.Errorf("deleting unattached media: %v, %v", ok, err)
		}
		wantCode(t, db.UpdateMedia(ctx, parley.MediaFile{Media: parley.Media{ID: photo}, State: parley.MediaFailed}), parley.CodeNotFound)
	})
}
