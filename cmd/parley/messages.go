package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
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
			last = a.dir.Label(m.SenderID) + ": " + oneLine(m.Text, 50)
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
// --wait it waits for the ack however long it takes.
func sendCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlagSet("send", "CONVERSATION TEXT...", stderr, &cf)
	wait := fs.Bool("wait", false, "wait until the server acknowledges the message (until interrupted)")
	pos, err := parseArgs(fs, args, 2, -1)
	if err != nil {
		return err
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
	// Committed to the outbox before any network I/O: from here on the
	// message survives anything, and goes out exactly once.
	cmid, err := a.c.Send(ctx, conv.ID, text)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	title := a.dir.Title(conv)
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
		line := fmt.Sprintf("%s  %s: %s", m.CreatedAt.Local().Format("2006-01-02 15:04"), a.dir.Label(m.SenderID), m.Text)
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
