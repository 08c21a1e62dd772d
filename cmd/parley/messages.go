package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/internal/tui"
)

// Timeouts of the one-shot commands. A command never waits long for a
// server that does not answer: what it queued stays in the outbox.
const (
	// settleTimeout bounds the wait for the outbox to drain while online.
	settleTimeout = 10 * time.Second
	// requestTimeout bounds a command's REST calls.
	requestTimeout = 20 * time.Second
)

// conversationsCommand lists the conversations with their unread counts.
func conversationsCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlagSet("conversations", "", stderr, &cf)
	asJSON := fs.Bool("json", false, "print one JSON object per conversation")
	if _, err := parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	a, err := cf.openLoggedIn(ctx, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	a.settle(ctx)
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	convs, err := a.c.FetchConversations(rctx)
	if parley.ErrorCode(err) == parley.CodeUnavailable {
		fmt.Fprintln(stderr, "parley: the server is unreachable: showing the local copy")
		convs, err = a.c.Conversations(ctx)
	}
	if err != nil {
		return fmt.Errorf("conversations: %w", err)
	}
	if *asJSON {
		return printJSONLines(stdout, convs)
	}
	_ = a.dir.Learn(rctx, a.dir.Unknown(convs...)) // offline: ids stand in for names
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONVERSATION\tUNREAD\tID\tLAST MESSAGE")
	for _, conv := range convs {
		last := ""
		if m := conv.LastMessage; m != nil {
			last = a.dir.Label(m.SenderID) + ": " + oneLine(tui.MessageText(client.Message{Message: *m}), 50)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", a.dir.Title(conv), conv.UnreadCount, conv.ID, last)
	}
	return tw.Flush()
}

// newCommand opens a direct conversation or creates a group, and
// prints its id.
func newCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlagSet("new", "USER | --group TITLE USER...", stderr, &cf)
	group := fs.String("group", "", "create a group with this title and the given members")
	pos, err := parseArgs(fs, args, 1, -1)
	if err != nil {
		return err
	}
	if *group == "" && len(pos) != 1 {
		fs.Usage()
		return usageError{fmt.Errorf("new: a direct conversation has one other user (or use --group TITLE)")}
	}
	a, err := cf.openLoggedIn(ctx, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	ids := make([]string, len(pos))
	for i, who := range pos {
		u, err := a.dir.Lookup(rctx, who)
		if err != nil {
			return fmt.Errorf("new: %s: %w", who, err)
		}
		ids[i] = u.ID
	}
	var conv client.Conversation
	if *group != "" {
		conv, err = a.c.CreateGroup(rctx, *group, ids)
	} else {
		conv, err = a.c.CreateDirect(rctx, ids[0])
	}
	if err != nil {
		return fmt.Errorf("new: %w", err)
	}
	fmt.Fprintln(stdout, conv.ID)
	a.settle(ctx)
	return nil
}

// sendCommand queues a message and, online, waits briefly for its ack; with
// --wait it waits for the ack however long it takes. With --file it sends
// a file, the text being its caption, and shows the upload's progress on
// stderr.
func sendCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlagSet("send", "CONVERSATION TEXT... | --file PATH CONVERSATION [CAPTION...]", stderr, &cf)
	wait := fs.Bool("wait", false, "wait until the server acknowledges the message (until interrupted)")
	file := fs.String("file", "", "send this file (a photo, a video or any file), with the text as its caption")
	as := fs.String("as", "", "with --file: send it as a photo, video or file (default: what the server finds in it)")
	pos, err := parseArgs(fs, args, 1, -1)
	if err != nil {
		return err
	}
	if *file == "" && len(pos) < 2 {
		fs.Usage()
		return usageError{errors.New("send: a message needs text (or --file PATH)")}
	}
	kind, err := fileKind(*as)
	if err != nil {
		return err
	}
	if *file == "" && kind != "" {
		return usageError{errors.New("send: --as goes with --file")}
	}
	text := strings.Join(pos[1:], " ")
	a, err := cf.openLoggedIn(ctx, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	conv, err := a.dir.Conversation(rctx, pos[0])
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	title := a.dir.Title(conv)
	if *file != "" {
		return a.sendFile(ctx, conv.ID, title, *file, text, kind, *wait, stdout)
	}
	// Committed to the outbox before any network I/O: from here on the
	// message survives anything, and goes out exactly once.
	cmid, err := a.c.Send(ctx, conv.ID, text)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if *wait {
		m, err := a.c.WaitSent(ctx, cmid)
		if ctx.Err() != nil {
			return fmt.Errorf("send: interrupted before the ack: the message stays queued and goes out the next time parley connects with this profile")
		}
		if err != nil {
			return fmt.Errorf("send: %w", err)
		}
		fmt.Fprintf(stdout, "sent to %s (seq %d)\n", title, m.Seq)
		a.settle(ctx)
		return nil
	}
	sctx, scancel := context.WithTimeout(ctx, settleTimeout)
	defer scancel()
	pending, err := tui.Settle(sctx, a.c)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	for _, m := range pending {
		if m.ClientMessageID == cmid {
			fmt.Fprintf(stdout, "queued for %s: the server is unreachable; it goes out the next time parley connects with this profile (%d waiting)\n", title, len(pending))
			return nil
		}
	}
	// Not pending: acknowledged or refused; WaitSent says which at once.
	m, err := a.c.WaitSent(ctx, cmid)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	fmt.Fprintf(stdout, "sent to %s (seq %d)\n", title, m.Seq)
	return nil
}

// fileKind reads --as.
func fileKind(as string) (parley.MessageKind, error) {
	switch strings.ToLower(as) {
	case "":
		return "", nil
	case "photo", "image":
		return parley.KindImage, nil
	case "video":
		return parley.KindVideo, nil
	case "file":
		return parley.KindFile, nil
	}
	return "", usageError{fmt.Errorf("send: --as %q: photo, video or file", as)}
}

// stallTimeout is how long send --file waits, online, for an upload or a
// send that makes no progress before it leaves the message queued for
// the next command.
const stallTimeout = 30 * time.Second

// sendFile queues a file and waits while its upload makes progress: until
// it is acknowledged or refused, the server cannot be reached, the
// upload stalls, or, with wait, until the ack however long it takes.
// Progress goes to stderr.
func (a *app) sendFile(ctx context.Context, convID, title, path, caption string, kind parley.MessageKind, wait bool, stdout io.Writer) error {
	pr := newProgressPrinter(a.stderr, filepath.Base(path))
	// Committed to the outbox, with a copy of the file, before any
	// network I/O: it survives anything, and goes out exactly once.
	cmid, err := a.c.SendFile(ctx, convID, path, client.WithCaption(caption), client.WithKind(kind),
		client.WithProgress(pr.report))
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	var (
		m      client.Message
		queued string
	)
	if wait {
		m, err = a.c.WaitSent(ctx, cmid)
		if ctx.Err() != nil {
			pr.finish()
			return fmt.Errorf("send: interrupted before the ack: the message stays queued and goes out the next time parley connects with this profile")
		}
	} else {
		m, queued, err = awaitFile(ctx, a.c, cmid)
	}
	pr.finish()
	if queued != "" {
		n := 1
		if items, err := a.c.Outbox(context.WithoutCancel(ctx)); err == nil {
			n = len(withoutFailed(items))
		}
		fmt.Fprintf(stdout, "queued for %s: %s; it goes out the next time parley connects with this profile (%d waiting)\n", title, queued, n)
		return nil
	}
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	fmt.Fprintf(stdout, "sent to %s (seq %d): %s\n", title, m.Seq, tui.MessageText(m))
	a.settle(ctx)
	return nil
}

// awaitFile waits until the message cmid leaves the outbox (acknowledged)
// or fails, and returns it; or returns why it stays queued: the client
// cannot reach the server (a connection attempt failed, or it is signed
// out), its upload or send made no progress for stallTimeout, or ctx
// ended. It reads c's Events, as tui.Settle does.
func awaitFile(ctx context.Context, c *client.Client, cmid string) (client.Message, string, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	attempted := false
	var (
		seen       string // the progress last seen: upload offset, or uploaded
		progressAt = time.Now()
	)
	for {
		items, err := c.Outbox(context.WithoutCancel(ctx))
		if err != nil {
			return client.Message{}, "", err
		}
		i := slices.IndexFunc(items, func(m client.Message) bool { return m.ClientMessageID == cmid })
		if i < 0 || items[i].Status == client.StatusFailed {
			// Acknowledged or refused: WaitSent says which at once.
			m, err := c.WaitSent(context.WithoutCancel(ctx), cmid)
			return m, "", err
		}
		it := items[i]
		now := fmt.Sprint(it.Upload)
		if it.Upload == nil {
			now = "uploaded"
		}
		if now != seen {
			seen, progressAt = now, time.Now()
		}
		switch c.State() {
		case client.StateSignedOut, client.StateDisabled:
			return it, "not logged in", nil
		case client.StateOffline:
			if attempted {
				return it, "the server is unreachable", nil
			}
		}
		if time.Since(progressAt) > stallTimeout {
			return it, fmt.Sprintf("no progress for %v", stallTimeout), nil
		}
		select {
		case <-ctx.Done():
			return it, "interrupted", nil
		case <-tick.C:
		case ev, ok := <-c.Events():
			if !ok {
				return it, "interrupted", nil
			}
			if ev.Type == client.EventConnection {
				switch ev.State {
				case client.StateConnecting, client.StateOnline:
					attempted = true
				case client.StateOffline:
					if attempted {
						return it, "the server is unreachable", nil
					}
				}
			}
		}
	}
}

// progressPrinter shows an upload's progress: on a terminal, one line
// rewritten in place; elsewhere (a log, a pipe), a line every tenth of
// the file. It is safe for concurrent use.
type progressPrinter struct {
	w    io.Writer
	name string
	tty  bool

	mu      sync.Mutex // guards the fields below
	lastPct int64
	open    bool // a line rewritten in place is not ended yet
}

func newProgressPrinter(w io.Writer, name string) *progressPrinter {
	f, ok := w.(*os.File)
	return &progressPrinter{w: w, name: name, tty: ok && term.IsTerminal(int(f.Fd())), lastPct: -1}
}

// report is a client.WithProgress function.
func (p *progressPrinter) report(sent, total int64) {
	pct := int64(100)
	if total > 0 {
		pct = sent * 100 / total
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	line := fmt.Sprintf("uploading %s: %s of %s (%d%%)", p.name, tui.FormatSize(sent), tui.FormatSize(total), pct)
	if p.tty {
		fmt.Fprintf(p.w, "\r\x1b[K%s", line)
		p.open = true
		return
	}
	if p.lastPct < 0 || pct == 100 || pct >= p.lastPct+10 {
		p.lastPct = pct
		fmt.Fprintln(p.w, line)
	}
}

// finish ends the line a terminal shows.
func (p *progressPrinter) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
}

// historyCommand prints the newest messages of a conversation.
func historyCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlagSet("history", "CONVERSATION", stderr, &cf)
	limit := fs.Int("limit", 50, "how many of the newest messages (at most 200)")
	asJSON := fs.Bool("json", false, "print one JSON object per message")
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	a, err := cf.openLoggedIn(ctx, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	conv, err := a.dir.Conversation(rctx, pos[0])
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	a.settle(ctx)
	n := max(1, min(*limit, 200))
	msgs, _, err := a.c.History(rctx, conv.ID, parley.HistoryQuery{Limit: n})
	if parley.ErrorCode(err) == parley.CodeUnavailable {
		fmt.Fprintln(stderr, "parley: the server is unreachable: showing the local copy")
		msgs, err = a.c.Messages(ctx, conv.ID, client.MessageQuery{Limit: n})
		// Messages ends with the outbox already.
		msgs = withoutOutbox(msgs)
	}
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	queued, err := a.c.Outbox(ctx)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	for _, m := range queued {
		if m.ConversationID == conv.ID {
			msgs = append(msgs, m)
		}
	}
	if *asJSON {
		return printJSONLines(stdout, msgs)
	}
	_ = a.dir.Learn(rctx, a.dir.Unknown(conv)) // offline: ids stand in for names
	me, _ := a.c.User()
	for _, m := range msgs {
		line := fmt.Sprintf("%s  %s: %s", m.CreatedAt.Local().Format("2006-01-02 15:04"), a.dir.Label(m.SenderID), tui.MessageText(m))
		if m.SenderID == me.ID {
			line += "  (" + string(m.Status)
			if m.Error != "" {
				line += ": " + m.Error
			}
			line += ")"
		}
		fmt.Fprintln(stdout, line)
	}
	return nil
}

// withoutFailed drops the failed messages.
func withoutFailed(msgs []client.Message) []client.Message {
	return slices.DeleteFunc(msgs, func(m client.Message) bool { return m.Status == client.StatusFailed })
}

// withoutOutbox drops the pending and failed messages.
func withoutOutbox(msgs []client.Message) []client.Message {
	out := msgs[:0]
	for _, m := range msgs {
		if m.Status != client.StatusPending && m.Status != client.StatusFailed {
			out = append(out, m)
		}
	}
	return out
}

// listenCommand prints the client's events as JSON lines until interrupted.
func listenCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlagSet("listen", "", stderr, &cf)
	rooms := fs.Bool("rooms", false, "join every conversation's room, for typing and presence events")
	if _, err := parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	a, err := cf.openLoggedIn(ctx, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	joined := map[string]bool{}
	var joins sync.WaitGroup
	defer joins.Wait() // before the client closes
	join := func(id string) {
		if *rooms && !joined[id] {
			joined[id] = true
			// Offline, the SDK joins on the next connection, and after
			// any reconnect it joins again by itself. The answer also
			// comes as presence and typing events; a failure is left to
			// the next connection.
			joins.Go(func() { _, _ = a.c.RoomJoin(ctx, id) })
		}
	}
	if convs, err := a.c.Conversations(ctx); err == nil {
		for _, conv := range convs {
			join(conv.ID)
		}
	}
	enc := json.NewEncoder(stdout)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-a.c.Events():
			if !ok {
				return nil
			}
			if err := enc.Encode(ev); err != nil {
				return fmt.Errorf("listen: %w", err)
			}
			switch ev.Type {
			case client.EventConversation:
				if ev.Conversation != nil && !ev.Conversation.Removed {
					join(ev.ConversationID)
				}
			case client.EventConnection:
				switch ev.State {
				case client.StateSignedOut:
					return fmt.Errorf("listen: signed out: %w", ev.Err)
				case client.StateDisabled:
					return fmt.Errorf("listen: account disabled: %w", ev.Err)
				}
			}
		}
	}
}

// chatCommand runs the full-screen chat.
func chatCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlagSet("chat", "[CONVERSATION]", stderr, &cf)
	pos, err := parseArgs(fs, args, 0, 1)
	if err != nil {
		return err
	}
	if !term.IsTerminal(int(os.Stdout.Fd())) {
		return errors.New("chat needs a terminal; scripts can use send, history and listen")
	}
	a, err := cf.openLoggedIn(ctx, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	var open string
	if len(pos) == 1 {
		open = pos[0]
	}
	return tui.Run(ctx, a.c, a.dir, tui.Options{Conversation: open})
}

// printJSONLines prints each value as one line of JSON.
func printJSONLines[T any](w io.Writer, values []T) error {
	enc := json.NewEncoder(w)
	for _, v := range values {
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}

// oneLine shortens text to one line of at most n characters.
func oneLine(text string, n int) string {
	text = strings.Join(strings.Fields(text), " ")
	if r := []rune(text); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return text
}
