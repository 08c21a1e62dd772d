package tui

import (
	"fmt"
	"strings"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/client"
)

// MediaLabel describes the photo, video or file of a message in brackets:
// its type, name and size ("[photo holiday.jpg 48 KB]"), a video's
// length when known ("[video clip.mp4 1.2 MB 0:42]"), and how much of a
// pending one is uploaded ("[photo holiday.jpg 48 KB, uploading 35%]").
// A message without media has none: "".
func MediaLabel(m client.Message) string {
	md := m.Media
	if md == nil {
		return ""
	}
	parts := []string{kindName(m.Kind)}
	if name := strings.Join(strings.Fields(md.Name), " "); name != "" {
		parts = append(parts, name)
	}
	parts = append(parts, FormatSize(md.Size))
	if d := md.DurationMS; d != nil && *d > 0 {
		s := (*d + 500) / 1000
		parts = append(parts, fmt.Sprintf("%d:%02d", s/60, s%60))
	}
	label := strings.Join(parts, " ")
	if u := m.Upload; u != nil && m.Status == client.StatusPending {
		pct := int64(0)
		if u.Total > 0 {
			pct = u.Sent * 100 / u.Total
		}
		label += fmt.Sprintf(", uploading %d%%", pct)
	}
	return "[" + label + "]"
}

// MessageText is what a message says on one line of a terminal: its media
// label, if any, then its text (a media message's caption).
func MessageText(m client.Message) string {
	label := MediaLabel(m)
	switch {
	case label == "":
		return m.Text
	case m.Text == "":
		return label
	}
	return label + " " + m.Text
}

// kindName is how a message kind reads in a label.
func kindName(k parley.MessageKind) string {
	switch k {
	case parley.KindImage:
		return "photo"
	case parley.KindVideo, parley.KindFile:
		return string(k)
	case "":
		return "file"
	}
	return string(k)
}

// FormatSize writes a byte count in decimal units, as file managers do:
// "512 B", "48 KB", "4.8 MB".
func FormatSize(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	for _, unit := range []string{"KB", "MB", "GB", "TB"} {
		v /= 1000
		if v < 999.5 || unit == "TB" {
			if v < 9.95 {
				return fmt.Sprintf("%.1f %s", v, unit)
			}
			return fmt.Sprintf("%.0f %s", v, unit)
		}
	}
	return fmt.Sprintf("%d B", n) // not reached
}
