package wire

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		typ, id string
		wantErr bool
	}{
		{name: "full", in: `{"type":"message.send","id":"7","payload":{"text":"hi"}}`, typ: "message.send", id: "7"},
		{name: "no payload", in: `{"type":"room.leave"}`, typ: "room.leave"},
		{name: "null payload", in: `{"type":"sync","payload":null}`, typ: "sync"},
		{name: "extra fields", in: `{"type":"typing","x":1}`, typ: "typing"},
		{name: "surrounding space", in: " \n{\"type\":\"auth\"}\n ", typ: "auth"},
		{name: "empty", in: ``, wantErr: true},
		{name: "not json", in: `hello`, wantErr: true},
		{name: "array", in: `[1,2]`, wantErr: true},
		{name: "missing type", in: `{"id":"1"}`, wantErr: true},
		{name: "type not string", in: `{"type":3}`, wantErr: true},
		{name: "payload not object", in: `{"type":"auth","payload":"x"}`, wantErr: true},
		{name: "trailing data", in: `{"type":"auth"}{"type":"auth"}`, wantErr: true},
		{name: "truncated", in: `{"type":"auth"`, wantErr: true},
		{name: "id too long", in: `{"type":"auth","id":"` + strings.Repeat("x", MaxIDLen+1) + `"}`, wantErr: true},
		{name: "id at the limit", in: `{"type":"auth","id":"` + strings.Repeat("x", MaxIDLen) + `"}`, typ: "auth", id: strings.Repeat("x", MaxIDLen)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Decode([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Decode(%q) error = %v, want ErrMalformed", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%q): %v", tt.in, err)
			}
			if f.Type != tt.typ || f.ID != tt.id {
				t.Fatalf("Decode(%q) = type %q id %q, want %q %q", tt.in, f.Type, f.ID, tt.typ, tt.id)
			}
		})
	}
}

func TestDecodePayloadTypeMismatchIsInvalidArgument(t *testing.T) {
	f, err := Decode([]byte(`{"type":"receipt","payload":{"seq":"five"}}`))
	if err != nil {
		t.Fatal(err)
	}
	var r ReceiptSend
	err = DecodePayload(f, &r)
	if parley.ErrorCode(err) != parley.CodeInvalidArgument {
		t.Fatalf("DecodePayload error = %v, want invalid_argument", err)
	}
}

// TestGolden pins the exact bytes of the server's frames, so that a change
// of shape that clients would notice shows up as a diff in testdata/.
func TestGolden(t *testing.T) {
	at := parley.NewTime(time.Date(2026, 11, 22, 1, 30, 0, 123_000_000, time.UTC))
	title := "Friends"
	msg := parley.Message{
		ID: "0193a5c2-0000-7000-8000-000000000001", ConversationID: "0193a5c2-0000-7000-8000-0000000000c1",
		Seq: 42, SenderID: "0193a5c2-0000-7000-8000-0000000000a1", ClientMessageID: "c-1",
		Kind: parley.KindText, Text: "hello <b>world</b> ✓", CreatedAt: at,
	}
	conv := parley.Conversation{
		ID: msg.ConversationID, Type: parley.Group, Title: &title,
		Members: []parley.Member{
			{UserID: msg.SenderID, Role: parley.RoleAdmin, JoinedAt: at, DeliveredSeq: 42, ReadSeq: 42},
			{UserID: "0193a5c2-0000-7000-8000-0000000000a2", Role: parley.RoleMember, JoinedAt: at, DeliveredSeq: 41, ReadSeq: 40},
		},
		LastSeq: 42, LastMessage: &msg, ReadSeq: 40, UnreadCount: 2, CreatedAt: at, UpdatedAt: at,
	}
	// The extensions: a direct conversation, empty, muted until a time; the
	// group muted for ever, in a sync page that is not the last.
	mutedUntil := parley.NewTime(time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC))
	direct := parley.Conversation{
		ID: "0193a5c2-0000-7000-8000-0000000000c2", Type: parley.Direct,
		Members: []parley.Member{
			{UserID: msg.SenderID, Role: parley.RoleMember, JoinedAt: at},
			{UserID: "0193a5c2-0000-7000-8000-0000000000a2", Role: parley.RoleMember, JoinedAt: at},
		},
		MutedUntil: &mutedUntil, CreatedAt: at, UpdatedAt: at,
	}
	forever := conv
	forever.MutedUntil = &parley.MutedForever
	cursor := "MTc5NTMxMTA2NzI1MC8wMTkzYTVjMi0wMDAwLTcwMDAtODAwMC0wMDAwMDAwMDAwYzE"
	// Media (docs/protocol.md section 19): a photo with its size and a
	// thumbnail, its caption in text; a file, whose width, height, duration
	// and thumbnail are null.
	width, height := 1600, 1200
	photoID := "0193a5c2-0000-7000-8000-0000000000b1"
	thumb := "/media/" + photoID + "/thumbnail?exp=1795311300&sig=Qk1hX2V4YW1wbGVfc2lnbmF0dXJlX29mX3RodW1ibmFpbA"
	photo := msg
	photo.ID, photo.Seq, photo.ClientMessageID = "0193a5c2-0000-7000-8000-000000000002", 43, "c-2"
	photo.Kind, photo.Text = parley.KindImage, "the beach"
	photo.Media = &parley.Media{
		ID: photoID, MIMEType: "image/jpeg", Size: 48213, Name: "holiday.jpg", Width: &width, Height: &height,
		URL:          "/media/" + photoID + "?exp=1795311300&sig=M25fZXhhbXBsZV9zaWduYXR1cmVfb2ZfdGhlX3Bob3Rv",
		ThumbnailURL: &thumb,
	}
	fileID := "0193a5c2-0000-7000-8000-0000000000b2"
	file := msg
	file.ID, file.Seq, file.ClientMessageID = "0193a5c2-0000-7000-8000-000000000003", 44, "c-3"
	file.Kind, file.Text = parley.KindFile, ""
	file.Media = &parley.Media{
		ID: fileID, MIMEType: "application/pdf", Size: 301544, Name: "report.pdf",
		URL: "/media/" + fileID + "?exp=1795311300&sig=ZmlsZV9leGFtcGxlX3NpZ25hdHVyZV9vZl90aGVfcGRm",
	}
	frames := []struct {
		name    string
		typ, id string
		payload any
	}{
		{"hello", TypeHello, "", Hello{UserID: msg.SenderID, SessionID: "0193a5c2-0000-7000-8000-0000000000f1", ServerTime: at, HeartbeatS: 25}},
		{"auth_ok", TypeAuthOK, "a1", AuthOK{UserID: msg.SenderID, ExpiresAt: at}},
		{"message_ack", TypeMessageAck, "m1", MessageAck{ClientMessageID: "c-1", Message: msg}},
		{"message_new", TypeMessageNew, "", MessageNew{Message: &msg}},
		{"receipt", TypeReceipt, "", parley.Receipt{ConversationID: conv.ID, UserID: msg.SenderID, Kind: parley.Read, Seq: 42}},
		{"typing", TypeTyping, "", parley.Typing{ConversationID: conv.ID, UserID: msg.SenderID, State: parley.TypingStarted}},
		{"presence", TypePresence, "", parley.Presence{UserID: msg.SenderID, Status: parley.Online, LastSeenAt: at}},
		{"room_state", TypeOK, "j1", RoomState{Presence: []parley.Presence{{UserID: msg.SenderID, Status: parley.Offline, LastSeenAt: at}}, Typing: []string{}}},
		{"conversation_updated", TypeConversationUpdated, "", ConversationUpdated{Conversation: conv}},
		{"sync_result", TypeSyncResult, "s1", SyncResult{Conversations: []SyncConversation{{Conversation: conv, Messages: []parley.Message{msg}, HasMore: true}}}},
		{"sync_result_removed", TypeSyncResult, "s2", SyncResult{Conversations: []SyncConversation{{Conversation: parley.Conversation{ID: conv.ID, Members: []parley.Member{}}, Removed: true}}}},
		{"error_rate_limited", TypeError, "m2", ErrorFrom(parley.RateLimited(1500 * time.Millisecond))},
		{"error_internal", TypeError, "", ErrorFrom(errors.New("disk on fire"))},
		{"ok", TypeOK, "r1", nil},
		{"hello_device", TypeHello, "", Hello{UserID: msg.SenderID, SessionID: "0193a5c2-0000-7000-8000-0000000000f1", DeviceID: "0193a5c2-0000-7000-8000-0000000000d1", ServerTime: at, HeartbeatS: 25}},
		{"conversation_updated_muted", TypeConversationUpdated, "", ConversationUpdated{Conversation: direct}},
		{"sync_result_muted", TypeSyncResult, "s3", SyncResult{Conversations: []SyncConversation{{Conversation: forever, Messages: []parley.Message{msg}}}, Next: &cursor}},
		{"message_new_media", TypeMessageNew, "", MessageNew{Message: &photo}},
		{"message_ack_media", TypeMessageAck, "m3", MessageAck{ClientMessageID: "c-3", Message: file}},
	}
	for _, f := range frames {
		t.Run(f.name, func(t *testing.T) {
			got, err := Encode(f.typ, f.id, f.payload)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", f.name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./wire -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("frame %s:\n got %s\nwant %s", f.name, got, want)
			}
			if _, err := Decode(got); err != nil {
				t.Errorf("own frame does not decode: %v", err)
			}
		})
	}
}

// FuzzDecode checks that no input crashes the decoder, and that whatever it
// accepts re-encodes to a frame it accepts again with the same type and id.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"message.send","id":"1","payload":{"conversation_id":"x","client_message_id":"c","kind":"text","text":"hi"}}`,
		`{"type":"sync","payload":{"conversations":{"a":1},"limit":50,"cursor":"x"}}`,
		`{"type":"auth","payload":{"token":"t"}}`,
		`{"type":"receipt","payload":{"seq":-1}}`,
		`{"type":""}`, `{}`, `[]`, `null`, `{"type":"a"} x`, "{\"type\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		var (
			ms MessageSend
			rs ReceiptSend
			sy Sync
		)
		_ = DecodePayload(fr, &ms)
		_ = DecodePayload(fr, &rs)
		_ = DecodePayload(fr, &sy)
		b, err := Encode(fr.Type, fr.ID, fr.Payload)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := Decode(b)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", b, err)
		}
		if again.Type != fr.Type || again.ID != fr.ID {
			t.Fatalf("round trip changed type/id: %q/%q → %q/%q", fr.Type, fr.ID, again.Type, again.ID)
		}
	})
}
