package push

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/parley-chat/parley"
)

func TestCut(t *testing.T) {
	long := strings.Repeat("a", 250)
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{"empty", "", 200, ""},
		{"short", "hello", 200, "hello"},
		{"exactly n", strings.Repeat("a", 200), 200, strings.Repeat("a", 200)},
		{"one over", strings.Repeat("a", 201), 200, strings.Repeat("a", 200) + "…"},
		{"long", long, 200, long[:200] + "…"},
		// 200 characters of 2, 3 and 4 bytes are more than 200 bytes but
		// are not cut.
		{"200 two-byte", strings.Repeat("é", 200), 200, strings.Repeat("é", 200)},
		{"200 emoji", strings.Repeat("😀", 200), 200, strings.Repeat("😀", 200)},
		{"201 emoji", strings.Repeat("😀", 201), 200, strings.Repeat("😀", 200) + "…"},
		{"mixed, cut inside multi-byte runs", strings.Repeat("aé€😀", 60), 200, strings.Repeat("aé€😀", 50) + "…"},
		{"small n", "日本語のテキスト", 3, "日本語…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Cut(tt.in, tt.n)
			if got != tt.want {
				t.Errorf("Cut(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("Cut returned invalid UTF-8 %q", got)
			}
		})
	}
}

func TestBody(t *testing.T) {
	tests := []struct {
		kind parley.MessageKind
		text string
		want string
	}{
		{parley.KindText, "hi there", "hi there"},
		{parley.KindText, strings.Repeat("x", 300), strings.Repeat("x", 200) + "…"},
		{parley.KindImage, "caption", "Photo: caption"},
		{parley.KindImage, "  ", "Photo"},
		{parley.KindVideo, "", "Video"},
		{parley.KindFile, "", "File"},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			if got := Body(tt.kind, tt.text); got != tt.want {
				t.Errorf("Body(%s, %q) = %q, want %q", tt.kind, tt.text, got, tt.want)
			}
		})
	}
}

func TestNewAlert(t *testing.T) {
	msg := parley.Message{ID: "m1", ConversationID: "c1", Seq: 7, SenderID: "u1", Kind: parley.KindText, Text: "hello"}
	direct := NewAlert(parley.PushJob{Message: msg, SenderName: "Carol", ConversationType: parley.Direct, Badge: 3})
	want := Alert{Title: "Carol", Body: "hello", Badge: 3, ConversationID: "c1", SenderID: "u1", MessageID: "m1", Seq: 7}
	if direct != want {
		t.Errorf("direct: %+v, want %+v", direct, want)
	}
	title := "Trip planning"
	group := NewAlert(parley.PushJob{Message: msg, SenderName: "Carol", ConversationType: parley.Group, Title: &title, Badge: 1})
	want = Alert{Title: "Trip planning", Subtitle: "Carol", Body: "hello", Badge: 1, ConversationID: "c1", SenderID: "u1", MessageID: "m1", Seq: 7}
	if group != want {
		t.Errorf("group: %+v, want %+v", group, want)
	}
}
