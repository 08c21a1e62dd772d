package push

import (
	"strings"
	"unicode/utf8"

	"github.com/parley-chat/parley"
)

// MaxBodyChars is the most characters of a message's text that a push
// carries; a longer text is cut there and ends with "…".
const MaxBodyChars = 200

// NewAlert builds the alert of a queued job as the contract's Push section
// says: the title is the sender's display name, or for a group the group's
// title with the sender as subtitle; the body is Body of the message. A
// badge update carries only its badge. Expires is left zero.
func NewAlert(j parley.PushJob) Alert {
	if j.BadgeOnly {
		return Alert{BadgeOnly: true, Badge: j.Badge}
	}
	a := Alert{
		Title:          j.SenderName,
		Body:           Body(j.Message.Kind, j.Message.Text),
		Badge:          j.Badge,
		ConversationID: j.Message.ConversationID,
		SenderID:       j.Message.SenderID,
		MessageID:      j.Message.ID,
		Seq:            j.Message.Seq,
	}
	if j.ConversationType == parley.Group && j.Title != nil {
		a.Title, a.Subtitle = *j.Title, j.SenderName
	}
	return a
}

// Body is what a push says of a message: its text cut to MaxBodyChars
// characters (Unicode code points, never a split UTF-8 sequence) followed
// by "…" when cut, or what the message is when it carries media ("Photo",
// "Video", "File"), then ": " and its caption if it has one.
func Body(kind parley.MessageKind, text string) string {
	var what string
	switch kind {
	case parley.KindImage:
		what = "Photo"
	case parley.KindVideo:
		what = "Video"
	case parley.KindFile:
		what = "File"
	default:
		return Cut(text, MaxBodyChars)
	}
	if strings.TrimSpace(text) == "" {
		return what
	}
	return what + ": " + Cut(text, MaxBodyChars)
}

// Cut returns s if it has at most n characters (code points), else its
// first n characters followed by "…".
func Cut(s string, n int) string {
	if len(s) <= n { // n bytes hold at most n characters
		return s
	}
	i, count := 0, 0
	for i < len(s) && count < n {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
		count++
	}
	if i == len(s) {
		return s
	}
	return s[:i] + "…"
}
