package tui

import (
	"fmt"
	"sort"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/client"
)

// Screen layout: a banner line, the body (conversation list beside the
// open conversation), a rule, the input line and a help line.
const (
	chromeRows   = 4 // banner, rule, input, help
	paneChrome   = 2 // the conversation's header and typing lines
	minWidth     = 40
	minHeight    = 10
	maxListWidth = 28
	maxNameWidth = 12
)

var (
	styleBanner  = lipgloss.NewStyle().Bold(true)
	styleDim     = lipgloss.NewStyle().Faint(true)
	styleBold    = lipgloss.NewStyle().Bold(true)
	styleOnline  = lipgloss.NewStyle().Foreground(lipgloss.Color("2")).Bold(true)
	styleWarn    = lipgloss.NewStyle().Foreground(lipgloss.Color("3")).Bold(true)
	styleOffline = lipgloss.NewStyle().Foreground(lipgloss.Color("1")).Bold(true)
	styleMe      = lipgloss.NewStyle().Foreground(lipgloss.Color("6"))
	styleThem    = lipgloss.NewStyle().Foreground(lipgloss.Color("5"))
	styleUnread  = lipgloss.NewStyle().Reverse(true).Bold(true)
	styleChosen  = lipgloss.NewStyle().Reverse(true)
	styleMedia   = lipgloss.NewStyle().Foreground(lipgloss.Color("4"))
)

func (m *model) View() tea.View {
	v := tea.NewView(m.render())
	v.AltScreen = true
	v.WindowTitle = "parley · " + m.me.Username
	if m.focus == focusInput && m.width >= minWidth && m.height >= minHeight {
		if cur := m.input.Cursor(); cur != nil {
			cur.Y += m.height - 2
			v.Cursor = cur
		}
	}
	return v
}

func (m *model) render() string {
	if m.width == 0 {
		return ""
	}
	if m.width < minWidth || m.height < minHeight {
		return fmt.Sprintf("window too small (%dx%d): parley needs %dx%d", m.width, m.height, minWidth, minHeight)
	}
	lines := make([]string, 0, m.height)
	lines = append(lines, m.banner())
	listW := m.listWidth()
	list := m.listLines(listW, m.bodyRows())
	pane := m.paneLines(m.width-listW-3, m.bodyRows())
	for i := range m.bodyRows() {
		lines = append(lines, fit(list[i], listW)+styleDim.Render(" │ ")+pane[i])
	}
	lines = append(lines, styleDim.Render(strings.Repeat("─", m.width)))
	lines = append(lines, m.input.View())
	lines = append(lines, m.helpLine())
	return strings.Join(lines, "\n")
}

func (m *model) bodyRows() int    { return m.height - chromeRows }
func (m *model) messageRows() int { return max(1, m.bodyRows()-paneChrome) }
func (m *model) listWidth() int   { return min(maxListWidth, m.width/3) }
func (m *model) messageWidth() int {
	return max(10, m.width-m.listWidth()-3)
}

// banner is the top line: who is logged in and the connection state.
func (m *model) banner() string {
	left := styleBanner.Render(" parley · " + m.me.Username)
	right := m.connectionText() + " "
	gap := max(1, m.width-lipgloss.Width(left)-lipgloss.Width(right))
	return fit(left+strings.Repeat(" ", gap)+right, m.width)
}

// connectionText is the connection banner: online, connecting, offline
// (with how many messages wait), or why the client stopped.
func (m *model) connectionText() string {
	switch m.state {
	case client.StateOnline:
		return styleOnline.Render("● online")
	case client.StateConnecting:
		return styleWarn.Render("◌ connecting…")
	case client.StateSignedOut:
		return styleOffline.Render("signed out: run parley login")
	case client.StateDisabled:
		return styleOffline.Render("account disabled")
	}
	text := "○ offline"
	if n := m.pendingCount(); n > 0 {
		text += fmt.Sprintf(" · %d queued", n)
	}
	return styleOffline.Render(text) + styleDim.Render(" · retrying")
}

// pendingCount counts the pending messages of the open conversation.
func (m *model) pendingCount() int {
	n := 0
	for _, msg := range m.msgs {
		if msg.Status == client.StatusPending {
			n++
		}
	}
	return n
}

// listLines renders the conversation list, keeping the highlighted row
// in view.
func (m *model) listLines(w, rows int) []string {
	lines := make([]string, rows)
	header := "Conversations"
	if m.focus == focusList {
		header = styleBold.Render(header)
	} else {
		header = styleDim.Render(header)
	}
	lines[0] = header
	if len(m.convs) == 0 {
		if rows > 2 {
			lines[2] = styleDim.Render("none yet: /new USER")
		}
		return lines
	}
	visible := rows - 1
	first := max(0, m.selected-visible+1)
	for i := 0; i < visible && first+i < len(m.convs); i++ {
		conv := m.convs[first+i]
		title := m.dir.Title(conv)
		count := ""
		if conv.UnreadCount > 0 {
			count = styleUnread.Render(fmt.Sprintf(" %d ", conv.UnreadCount))
		}
		mark := "  "
		if first+i == m.selected {
			mark = "▸ "
		}
		room := w - 2 - lipgloss.Width(count) - 1
		name := fit(ansi.Truncate(title, room, "…"), room)
		row := mark + name + " " + count
		switch {
		case first+i == m.selected && m.focus == focusList:
			row = styleChosen.Render(fit(row, w))
		case conv.ID == m.openID:
			row = styleBold.Render(mark+name) + " " + count
		}
		lines[1+i] = row
	}
	return lines
}

// paneLines renders the open conversation: a header with presence, the
// messages, and the typing line.
func (m *model) paneLines(w, rows int) []string {
	lines := make([]string, rows)
	conv, ok := m.openConversation()
	if !ok {
		lines[0] = styleDim.Render("no conversation open")
		if rows > 2 {
			lines[2] = styleDim.Render("type /new USER to start one, or tab to the list")
		}
		return lines
	}
	lines[0] = fit(m.header(conv), w)
	msgLines := m.messageLines(w)
	n := m.messageRows()
	end := max(0, len(msgLines)-m.scroll)
	start := max(0, end-n)
	shown := msgLines[start:end]
	// Messages sit at the bottom, as in every chat.
	offset := n - len(shown)
	for i, l := range shown {
		lines[1+offset+i] = l
	}
	if m.scroll > 0 {
		lines[1] = styleDim.Render(fmt.Sprintf("↑ scrolled up %d lines (pgdn to return)", m.scroll))
	}
	lines[rows-1] = fit(m.typingText(conv.ID), w)
	return lines
}

func (m *model) openConversation() (client.Conversation, bool) {
	for _, conv := range m.convs {
		if conv.ID == m.openID {
			return conv, true
		}
	}
	if m.openID != "" {
		// Just created or not listed yet: a bare header until the store
		// read comes back.
		return client.Conversation{Conversation: parley.Conversation{ID: m.openID}}, true
	}
	return client.Conversation{}, false
}

// header is the conversation's title with presence: online or last seen
// for a direct conversation, how many are online for a group.
func (m *model) header(conv client.Conversation) string {
	title := styleBold.Render(m.dir.Title(conv))
	if conv.Type == parley.Group {
		online := 0
		for _, mem := range conv.Members {
			if p, ok := m.presence[mem.UserID]; ok && p.Status == parley.Online {
				online++
			}
		}
		return title + styleDim.Render(fmt.Sprintf(" · %d members · %d online", len(conv.Members), online))
	}
	for _, mem := range conv.Members {
		if mem.UserID == m.me.ID {
			continue
		}
		p, ok := m.presence[mem.UserID]
		switch {
		case !ok:
		case p.Status == parley.Online:
			return title + " · " + styleOnline.Render("online")
		case !p.LastSeenAt.IsZero():
			return title + styleDim.Render(" · last seen "+when(p.LastSeenAt.Time, m.now))
		default:
			return title + styleDim.Render(" · offline")
		}
	}
	return title
}

// typingText says who is typing in a conversation.
func (m *model) typingText(conv string) string {
	var names []string
	for u, until := range m.typing[conv] {
		if until.After(time.Now()) {
			names = append(names, m.dir.Label(u))
		}
	}
	sort.Strings(names)
	switch len(names) {
	case 0:
		return ""
	case 1:
		return styleDim.Render(names[0] + " is typing…")
	}
	return styleDim.Render(strings.Join(names, ", ") + " are typing…")
}

// messageLines renders every loaded message of the open conversation,
// wrapped to width w, with a line for each new day.
func (m *model) messageLines(w int) []string {
	nameW := 0
	for _, msg := range m.msgs {
		nameW = max(nameW, lipgloss.Width(m.dir.Label(msg.SenderID)))
	}
	nameW = min(nameW, maxNameWidth)
	indent := 6 + nameW + 1 // "15:04 " + name + " "
	textW := max(10, w-indent)
	var lines []string
	var day string
	for _, msg := range m.msgs {
		t := msg.CreatedAt.Local()
		if d := t.Format("Mon 2 Jan 2006"); d != day {
			day = d
			lines = append(lines, styleDim.Render(center("── "+d+" ──", w)))
		}
		name := fit(ansi.Truncate(m.dir.Label(msg.SenderID), nameW, "…"), nameW)
		style := styleThem
		text := msg.Text
		switch label := MediaLabel(msg); {
		case label != "" && text != "":
			text = styleMedia.Render(label) + " " + text
		case label != "":
			text = styleMedia.Render(label)
		case msg.Kind != "" && msg.Kind != parley.KindText:
			text = styleDim.Render("["+string(msg.Kind)+"]") + " " + text
		}
		if msg.SenderID == m.me.ID {
			style = styleMe
			text += "  " + styleDim.Render(statusMark(msg))
		}
		wrapped := strings.Split(ansi.Wrap(text, textW, ""), "\n")
		for i, l := range wrapped {
			if i == 0 {
				lines = append(lines, styleDim.Render(t.Format("15:04"))+" "+style.Render(name)+" "+l)
				continue
			}
			lines = append(lines, strings.Repeat(" ", indent)+l)
		}
	}
	return lines
}

// statusMark is the mark shown after one of the user's own messages.
func statusMark(msg client.Message) string {
	switch msg.Status {
	case client.StatusPending:
		return "◷ pending"
	case client.StatusSent:
		return "✓ sent"
	case client.StatusDelivered:
		return "✓✓ delivered"
	case client.StatusRead:
		return "✓✓ read"
	case client.StatusFailed:
		return "✗ failed: " + msg.Error + " (/retry or /discard)"
	}
	return ""
}

// helpLine is a recent notice, or the keys.
func (m *model) helpLine() string {
	if m.note != "" && time.Since(m.noteAt) < noteFor {
		return fit(styleWarn.Render(m.note), m.width)
	}
	keys := "enter: send · tab: conversations · pgup/pgdn: scroll · /help · ctrl+c: quit"
	if m.focus == focusList {
		keys = "↑/↓: choose · enter: write · q: quit"
	}
	return fit(styleDim.Render(keys), m.width)
}

// when formats a past instant: the time today, else the date and time.
func when(t, now time.Time) string {
	t = t.Local()
	if y, mo, d := t.Date(); y == now.Year() && mo == now.Month() && d == now.Day() {
		return t.Format("15:04")
	}
	return t.Format("2 Jan 15:04")
}

// fit pads or truncates s to exactly w cells.
func fit(s string, w int) string {
	s = ansi.Truncate(s, w, "")
	if pad := w - lipgloss.Width(s); pad > 0 {
		s += strings.Repeat(" ", pad)
	}
	return s
}

func center(s string, w int) string {
	pad := max(0, (w-lipgloss.Width(s))/2)
	return strings.Repeat(" ", pad) + s
}
