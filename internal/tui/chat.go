package tui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/client"
)

// Chat timings.
const (
	// typingLapse is how long a "started" shows without a new one: the
	// sender repeats it every 3 s while typing, and a lost "stopped" must
	// not leave the indicator on for good.
	typingLapse = 6 * time.Second
	// tickEvery re-renders what changes with time alone (typing lapsing,
	// notices fading).
	tickEvery = time.Second
	// noteFor is how long a notice replaces the help line.
	noteFor = 8 * time.Second
	// pageMessages is how many messages are read from the store at first,
	// and how many more each time the user scrolls past the top.
	pageMessages = 200
)

// Options configure Run.
type Options struct {
	// Conversation, if set, is opened first: a conversation id or a
	// username, as Directory.Conversation takes. Otherwise the most recent
	// conversation is.
	Conversation string
	// Input and Output replace the terminal (default: stdin and stdout).
	Input  io.Reader
	Output io.Writer
}

// Run shows the full-screen chat until the user quits or ctx ends. It
// reads c's Events: nothing else may read them meanwhile. The caller
// keeps ownership of c and closes it afterwards.
func Run(ctx context.Context, c *client.Client, dir *Directory, opts Options) error {
	me, ok := c.User()
	if !ok {
		return parley.Errorf(parley.CodeUnauthenticated, "not logged in")
	}
	popts := []tea.ProgramOption{tea.WithContext(ctx)}
	if opts.Input != nil {
		popts = append(popts, tea.WithInput(opts.Input))
	}
	if opts.Output != nil {
		popts = append(popts, tea.WithOutput(opts.Output))
	}
	_, err := tea.NewProgram(newModel(ctx, c, dir, me, opts.Conversation), popts...).Run()
	if err != nil && ctx.Err() != nil {
		return nil // interrupted from outside: a normal way to stop
	}
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	return nil
}

// focusArea is the part of the screen that gets the keys.
type focusArea int

const (
	focusInput focusArea = iota
	focusList
)

// model is the chat's state. Bubble Tea calls its methods on one
// goroutine; everything that reads the store or the network runs in a
// tea.Cmd and comes back as a message.
type model struct {
	// ctx bounds the store and network calls of the commands; it ends
	// when Run's caller stops the chat.
	ctx context.Context
	c   *client.Client
	dir *Directory
	me  parley.User

	width, height int
	focus         focusArea
	input         textinput.Model

	state    client.ConnState
	stateErr string

	convs    []client.Conversation
	selected int    // index in convs of the highlighted row
	openID   string // the conversation shown, "" for none
	msgs     []client.Message
	limit    int // messages to read from the store
	scroll   int // lines scrolled up from the bottom
	noOlder  bool

	// typing is who types where: conversation → user → until when.
	typing map[string]map[string]time.Time
	// presence is the last known presence of each user.
	presence map[string]parley.Presence
	// markedRead is the read watermark asked of the SDK per conversation.
	markedRead map[string]int64
	// asked are user ids whose names were looked up since the last
	// connection.
	asked map[string]bool

	// loading and dirty coalesce reloads from the store: a burst of events
	// makes at most one read in flight and one after it.
	loading, dirty bool

	// initial is the conversation asked for on the command line, until it
	// is found (or not).
	initial string

	note   string
	noteAt time.Time
	now    time.Time
}

func newModel(ctx context.Context, c *client.Client, dir *Directory, me parley.User, open string) *model {
	in := textinput.New()
	in.Prompt = "> "
	in.Placeholder = "type a message, or /help"
	in.CharLimit = 4000
	in.SetVirtualCursor(false)
	in.Focus()
	m := &model{
		ctx:        ctx,
		c:          c,
		dir:        dir,
		me:         me,
		input:      in,
		state:      c.State(),
		limit:      pageMessages,
		typing:     map[string]map[string]time.Time{},
		presence:   map[string]parley.Presence{},
		markedRead: map[string]int64{},
		asked:      map[string]bool{},
		now:        time.Now(),
		initial:    open,
	}
	if open != "" {
		m.setNote("opening %s…", open)
	}
	return m
}

// Messages that commands send back to Update.
type (
	eventMsg        struct{ ev client.Event }
	eventsDoneMsg   struct{}
	tickMsg         time.Time
	namesLearnedMsg struct{}
	noteMsg         struct{ text string }
	loadedMsg       struct {
		convs  []client.Conversation
		openID string
		msgs   []client.Message
		err    error
	}
	openMsg struct {
		conv client.Conversation
		err  error
	}
	olderMsg struct {
		openID string
		n      int
		err    error
	}
)

func (m *model) Init() tea.Cmd {
	cmds := []tea.Cmd{m.waitEvent(), m.startLoad(), tick()}
	if m.initial != "" {
		cmds = append(cmds, m.resolve(m.initial))
	}
	return tea.Batch(cmds...)
}

// tick wakes the model every tickEvery.
func tick() tea.Cmd {
	return tea.Tick(tickEvery, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// waitEvent reads the next event of the client.
func (m *model) waitEvent() tea.Cmd {
	events := m.c.Events()
	return func() tea.Msg {
		ev, ok := <-events
		if !ok {
			return eventsDoneMsg{}
		}
		return eventMsg{ev}
	}
}

// startLoad reads the conversation list and the open conversation's
// messages from the store, unless a read is in flight already, in which
// case another one follows it.
func (m *model) startLoad() tea.Cmd {
	if m.loading {
		m.dirty = true
		return nil
	}
	m.loading, m.dirty = true, false
	ctx, c, open, limit := m.ctx, m.c, m.openID, m.limit
	return func() tea.Msg {
		convs, err := c.Conversations(ctx)
		var msgs []client.Message
		if err == nil && open != "" {
			msgs, err = c.Messages(ctx, open, client.MessageQuery{Limit: limit})
		}
		return loadedMsg{convs: convs, openID: open, msgs: msgs, err: err}
	}
}

// resolve finds a conversation by id or username (creating a direct one
// on the server if needed) and opens it.
func (m *model) resolve(arg string) tea.Cmd {
	ctx, dir := m.ctx, m.dir
	return func() tea.Msg {
		conv, err := dir.Conversation(ctx, arg)
		return openMsg{conv: conv, err: err}
	}
}

func (m *model) createGroup(title string, members []string) tea.Cmd {
	ctx, c := m.ctx, m.c
	return func() tea.Msg {
		conv, err := c.CreateGroup(ctx, title, members)
		return openMsg{conv: conv, err: err}
	}
}

// learnNames looks up the names of members the directory does not know.
func (m *model) learnNames(convs []client.Conversation) tea.Cmd {
	var ids []string
	for _, id := range m.dir.Unknown(convs...) {
		if !m.asked[id] {
			m.asked[id] = true
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 || m.state != client.StateOnline {
		return nil
	}
	ctx, dir := m.ctx, m.dir
	return func() tea.Msg {
		_ = dir.Learn(ctx, ids) // offline: asked again after the next connection
		return namesLearnedMsg{}
	}
}

func (m *model) setNote(format string, args ...any) {
	m.note, m.noteAt = fmt.Sprintf(format, args...), time.Now()
}

func (m *model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.input.SetWidth(max(m.width-4, 10))
		return m, nil
	case tea.KeyPressMsg:
		return m, m.key(msg)
	case tea.PasteMsg:
		var cmd tea.Cmd
		m.input, cmd = m.input.Update(msg)
		return m, tea.Batch(cmd, m.typed())
	case eventMsg:
		return m, tea.Batch(m.event(msg.ev), m.waitEvent())
	case eventsDoneMsg:
		return m, tea.Quit
	case loadedMsg:
		return m, m.loaded(msg)
	case openMsg:
		m.initial = ""
		if msg.err != nil {
			m.setNote("%s", errorText(msg.err))
			return m, m.startLoad()
		}
		m.note = ""
		m.focus = focusInput
		return m, tea.Batch(m.open(msg.conv.ID), m.learnNames([]client.Conversation{msg.conv}))
	case olderMsg:
		if msg.openID == m.openID {
			if msg.err != nil {
				m.setNote("older messages: %s", errorText(msg.err))
			} else if msg.n == 0 {
				m.noOlder = true
			}
		}
		return m, m.startLoad()
	case namesLearnedMsg:
		return m, nil
	case noteMsg:
		if msg.text != "" {
			m.setNote("%s", msg.text)
		}
		return m, nil
	case tickMsg:
		m.now = time.Time(msg)
		m.expireTyping()
		return m, tick()
	}
	var cmd tea.Cmd
	m.input, cmd = m.input.Update(msg)
	return m, cmd
}

// key handles a key press.
func (m *model) key(k tea.KeyPressMsg) tea.Cmd {
	switch k.String() {
	case "ctrl+c", "ctrl+d":
		return tea.Quit
	case "tab", "shift+tab":
		if m.focus == focusInput {
			m.focus = focusList
			m.input.Blur()
			return nil
		}
		m.focus = focusInput
		return m.input.Focus()
	case "pgup":
		return m.scrollBy(m.messageRows() - 1)
	case "pgdown":
		return m.scrollBy(-(m.messageRows() - 1))
	}
	if m.focus == focusList {
		switch k.String() {
		case "up", "k":
			return m.choose(m.selected - 1)
		case "down", "j":
			return m.choose(m.selected + 1)
		case "enter", "esc", "right", "l":
			m.focus = focusInput
			return m.input.Focus()
		case "q":
			return tea.Quit
		}
		return nil
	}
	switch k.String() {
	case "enter":
		text := strings.TrimSpace(m.input.Value())
		m.input.Reset()
		if text == "" {
			return nil
		}
		return m.submit(text)
	case "esc":
		m.focus = focusList
		m.input.Blur()
		return nil
	}
	var cmd tea.Cmd
	m.input, cmd = m.input.Update(k)
	return tea.Batch(cmd, m.typed())
}

// typed tells the SDK that the user is typing a message (it throttles the
// frames itself). Commands are not messages: no indicator for them.
func (m *model) typed() tea.Cmd {
	v := m.input.Value()
	if m.openID != "" && v != "" && !strings.HasPrefix(v, "/") {
		m.c.Typing(m.openID)
	}
	return nil
}

// choose highlights row i of the list and opens its conversation.
func (m *model) choose(i int) tea.Cmd {
	if len(m.convs) == 0 {
		return nil
	}
	i = max(0, min(i, len(m.convs)-1))
	m.selected = i
	return m.open(m.convs[i].ID)
}

// open shows a conversation: it joins its room (typing and presence) and
// leaves the previous one.
func (m *model) open(id string) tea.Cmd {
	if id == m.openID {
		return m.startLoad()
	}
	var cmds []tea.Cmd
	ctx, c := m.ctx, m.c
	if old := m.openID; old != "" {
		cmds = append(cmds, func() tea.Msg {
			_ = c.RoomLeave(ctx, old) // offline: nothing to leave
			return nil
		})
	}
	m.openID, m.msgs, m.scroll, m.limit, m.noOlder = id, nil, 0, pageMessages, false
	for i, conv := range m.convs {
		if conv.ID == id {
			m.selected = i
		}
	}
	cmds = append(cmds, func() tea.Msg {
		// The SDK joins again after every reconnect; the answer also
		// comes as presence and typing events.
		if _, err := c.RoomJoin(ctx, id); err != nil && ctx.Err() == nil {
			return noteMsg{"join: " + errorText(err)}
		}
		return nil
	})
	// A load may be in flight for the old conversation: force another.
	m.loading = false
	cmds = append(cmds, m.startLoad())
	return tea.Batch(cmds...)
}

// submit sends a message or runs a command typed in the input.
func (m *model) submit(text string) tea.Cmd {
	if strings.HasPrefix(text, "/") {
		return m.command(text)
	}
	if m.openID == "" {
		m.setNote("no conversation open: /new USER, or tab to the list")
		return nil
	}
	m.scroll = 0
	ctx, c, conv := m.ctx, m.c, m.openID
	return func() tea.Msg {
		// Send commits to the outbox and returns; the SDK sends it when
		// online. Its event shows the message as pending.
		if _, err := c.Send(ctx, conv, text); err != nil {
			return noteMsg{"send: " + errorText(err)}
		}
		return nil
	}
}

// helpText lists the commands of the input line.
const helpText = "/new USER · /group TITLE USER... · /file PATH [caption] · /retry · /discard · /quit · tab: list · pgup/pgdn: scroll"

// command runs a slash command.
func (m *model) command(text string) tea.Cmd {
	fields := strings.Fields(text)
	switch fields[0] {
	case "/quit", "/q":
		return tea.Quit
	case "/help", "/h", "/?":
		m.setNote("%s", helpText)
		return nil
	case "/new", "/open", "/n":
		if len(fields) != 2 {
			m.setNote("usage: /new USER (or a conversation id)")
			return nil
		}
		return m.resolve(fields[1])
	case "/group", "/g":
		title, members := splitTitle(strings.TrimSpace(strings.TrimPrefix(text, fields[0])))
		if title == "" || len(members) == 0 {
			m.setNote(`usage: /group TITLE USER... (quote a title with spaces: /group "our team" bob carol)`)
			return nil
		}
		return m.createGroup(title, members)
	case "/file", "/f":
		path, caption := splitPath(strings.TrimSpace(strings.TrimPrefix(text, fields[0])))
		if path == "" {
			m.setNote(`usage: /file PATH [caption] (quote a path with spaces: /file "my photo.jpg" the beach)`)
			return nil
		}
		return m.sendFile(path, caption)
	case "/retry", "/discard":
		return m.failed(fields[0] == "/retry")
	}
	m.setNote("unknown command %s: %s", fields[0], helpText)
	return nil
}

// sendFile queues a file as a message of the open conversation; the SDK
// uploads it when online, and its events show the upload's progress.
func (m *model) sendFile(path, caption string) tea.Cmd {
	if m.openID == "" {
		m.setNote("no conversation open: /new USER, or tab to the list")
		return nil
	}
	m.scroll = 0
	ctx, c, conv := m.ctx, m.c, m.openID
	return func() tea.Msg {
		if _, err := c.SendFile(ctx, conv, expandHome(path), client.WithCaption(caption)); err != nil {
			return noteMsg{"file: " + errorText(err)}
		}
		return nil
	}
}

// splitPath splits `"a path" caption` or `path caption` into the path
// and the rest.
func splitPath(s string) (path, rest string) {
	if strings.HasPrefix(s, `"`) {
		if end := strings.Index(s[1:], `"`); end >= 0 {
			return s[1 : end+1], strings.TrimSpace(s[end+2:])
		}
	}
	path, rest, _ = strings.Cut(s, " ")
	return path, strings.TrimSpace(rest)
}

// expandHome turns a leading ~/ into the user's home folder, as a shell
// would have.
func expandHome(path string) string {
	if rest, ok := strings.CutPrefix(path, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	return path
}

// splitTitle splits `"a title" user1 user2` or `title user1 user2`.
func splitTitle(s string) (string, []string) {
	if strings.HasPrefix(s, `"`) {
		if end := strings.Index(s[1:], `"`); end >= 0 {
			return strings.TrimSpace(s[1 : end+1]), strings.Fields(s[end+2:])
		}
	}
	f := strings.Fields(s)
	if len(f) == 0 {
		return "", nil
	}
	return f[0], f[1:]
}

// failed retries or discards the failed messages of the open
// conversation.
func (m *model) failed(retry bool) tea.Cmd {
	var ids []string
	for _, msg := range m.msgs {
		if msg.Status == client.StatusFailed {
			ids = append(ids, msg.ClientMessageID)
		}
	}
	if len(ids) == 0 {
		m.setNote("no failed message here")
		return nil
	}
	ctx, c := m.ctx, m.c
	return func() tea.Msg {
		for _, id := range ids {
			var err error
			if retry {
				err = c.Retry(ctx, id)
			} else {
				err = c.Discard(ctx, id)
			}
			if err != nil {
				return noteMsg{errorText(err)}
			}
		}
		return nil
	}
}

// event applies one SDK event.
func (m *model) event(ev client.Event) tea.Cmd {
	switch ev.Type {
	case client.EventConnection:
		m.state, m.stateErr = ev.State, ""
		if ev.Err != nil {
			m.stateErr = ev.Err.Error()
		}
		if ev.State == client.StateOnline {
			clear(m.asked) // names that could not be looked up offline
			return m.startLoad()
		}
		return nil
	case client.EventTyping:
		t := ev.Typing
		if t == nil || t.UserID == m.me.ID {
			return nil
		}
		m.setTyping(t.ConversationID, t.UserID, t.State == parley.TypingStarted)
		return nil
	case client.EventPresence:
		if p := ev.Presence; p != nil {
			m.presence[p.UserID] = *p
		}
		return nil
	case client.EventMessage:
		// A message ends its sender's typing.
		if msg := ev.Message; msg != nil && msg.SenderID != m.me.ID {
			m.setTyping(msg.ConversationID, msg.SenderID, false)
		}
	}
	// Messages, receipts, conversations and resyncs: re-read the store.
	return m.startLoad()
}

func (m *model) setTyping(conv, user string, on bool) {
	if !on {
		delete(m.typing[conv], user)
		return
	}
	if m.typing[conv] == nil {
		m.typing[conv] = map[string]time.Time{}
	}
	m.typing[conv][user] = time.Now().Add(typingLapse)
}

func (m *model) expireTyping() {
	for conv, users := range m.typing {
		for u, until := range users {
			if m.now.After(until) {
				delete(users, u)
			}
		}
		if len(users) == 0 {
			delete(m.typing, conv)
		}
	}
}

// loaded applies a read of the store: the list, the open conversation's
// messages, and then the read receipt for what is on screen.
func (m *model) loaded(l loadedMsg) tea.Cmd {
	m.loading = false
	var cmds []tea.Cmd
	if m.dirty {
		cmds = append(cmds, m.startLoad())
	}
	if l.err != nil {
		if m.ctx.Err() == nil {
			m.setNote("read local store: %s", errorText(l.err))
		}
		return tea.Batch(cmds...)
	}
	m.convs = l.convs
	for i, conv := range m.convs {
		if conv.ID == m.openID {
			m.selected = i
		}
	}
	m.selected = max(0, min(m.selected, len(m.convs)-1))
	cmds = append(cmds, m.learnNames(m.convs))
	if m.openID == "" && len(m.convs) > 0 && m.initial == "" {
		// Nothing asked for: show the most recent conversation.
		cmds = append(cmds, m.open(m.convs[0].ID))
		return tea.Batch(cmds...)
	}
	if l.openID != m.openID || m.openID == "" {
		return tea.Batch(cmds...)
	}
	m.msgs = l.msgs
	cmds = append(cmds, m.markRead())
	return tea.Batch(cmds...)
}

// markRead tells the SDK that the newest messages are on screen, which
// they are while the view is scrolled to the bottom. The SDK sends the
// read receipt and lowers the unread count.
func (m *model) markRead() tea.Cmd {
	if m.scroll != 0 || m.openID == "" {
		return nil
	}
	var top int64
	for _, msg := range m.msgs {
		if msg.SenderID != m.me.ID && msg.Seq > top {
			top = msg.Seq
		}
	}
	if top <= m.markedRead[m.openID] {
		return nil
	}
	m.markedRead[m.openID] = top
	ctx, c, conv := m.ctx, m.c, m.openID
	return func() tea.Msg {
		if err := c.MarkRead(ctx, conv, top); err != nil && ctx.Err() == nil {
			return noteMsg{"mark read: " + errorText(err)}
		}
		return nil
	}
}

// scrollBy moves the message view up (positive) or down by n lines. Past
// the top it reads older messages: from the store, and from the server
// once the store has no more.
func (m *model) scrollBy(n int) tea.Cmd {
	total := len(m.messageLines(m.messageWidth()))
	maxScroll := max(0, total-m.messageRows())
	m.scroll = max(0, min(m.scroll+n, maxScroll))
	if m.scroll == 0 {
		return m.markRead()
	}
	if n <= 0 || m.scroll < maxScroll || m.openID == "" || m.noOlder {
		return nil
	}
	if len(m.msgs) >= m.limit {
		m.limit += pageMessages
		return m.startLoad()
	}
	var before int64
	for _, msg := range m.msgs {
		if msg.Seq > 0 {
			before = msg.Seq
			break
		}
	}
	if before == 1 {
		m.noOlder = true
		return nil
	}
	ctx, c, conv := m.ctx, m.c, m.openID
	m.limit += pageMessages
	return func() tea.Msg {
		msgs, _, err := c.History(ctx, conv, parley.HistoryQuery{BeforeSeq: before, Limit: pageMessages})
		return olderMsg{openID: conv, n: len(msgs), err: err}
	}
}

// errorText is an error for the one-line notice: the contract's code and
// message, without the transport details that follow them.
func errorText(err error) string {
	var e *parley.Error
	if errors.As(err, &e) {
		return string(e.Code) + ": " + e.Message
	}
	return err.Error()
}
