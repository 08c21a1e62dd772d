package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/internal/tui"
)

// Defaults of the client commands.
const (
	defaultServer  = "http://127.0.0.1:8080"
	defaultProfile = "default"
)

// clientFlags are the flags every client command takes.
type clientFlags struct {
	server  string
	profile string
	logFile string
}

func (f *clientFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&f.server, "server", defaultServer, "server URL; several, comma separated, for a cluster's nodes")
	fs.StringVar(&f.profile, "profile", defaultProfile,
		"profile folder (credentials and local database); a bare name is a folder under the user config dir, parley/NAME")
	fs.StringVar(&f.logFile, "log", "", "append the client's log to this file")
}

// profileDir turns the --profile value into a folder: a value with a
// path separator (or . or ..) is a path, a bare name is a folder under the
// user's config dir, so that `--profile alice` works from anywhere.
func profileDir(v string) (string, error) {
	if v == "" {
		v = defaultProfile
	}
	if strings.ContainsRune(v, os.PathSeparator) || strings.Contains(v, "/") || v == "." || v == ".." {
		return filepath.Abs(v)
	}
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("profile %q: no config dir to put it in (give a path): %w", v, err)
	}
	return filepath.Join(base, "parley", v), nil
}

// servers splits the --server list.
func (f *clientFlags) servers() []string {
	var out []string
	for s := range strings.SplitSeq(f.server, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, strings.TrimRight(s, "/"))
		}
	}
	return out
}

// app is an open profile: the SDK client and the user directory.
type app struct {
	c       *client.Client
	dir     *tui.Directory
	profile string
	stderr  io.Writer // where notes for the user go
	closeFn func()
}

// open opens the profile and starts the client; notes for the user go to
// stderr.
func (f *clientFlags) open(ctx context.Context, stderr io.Writer) (*app, error) {
	dir, err := profileDir(f.profile)
	if err != nil {
		return nil, usageError{err}
	}
	servers := f.servers()
	if len(servers) == 0 {
		return nil, usageError{errors.New("--server is empty")}
	}
	log := slog.New(slog.DiscardHandler)
	closeLog := func() {}
	if f.logFile != "" {
		lf, err := os.OpenFile(f.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("log file: %w", err)
		}
		log = slog.New(slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("pid", os.Getpid())
		closeLog = func() { lf.Close() }
	}
	c, err := client.Open(ctx, client.Config{Profile: dir, Servers: servers, Logger: log})
	if err != nil {
		closeLog()
		return nil, err
	}
	d, err := tui.OpenDirectory(dir, c)
	if err != nil {
		c.Close()
		closeLog()
		return nil, err
	}
	return &app{c: c, dir: d, profile: dir, stderr: stderr, closeFn: func() {
		c.Close()
		closeLog()
	}}, nil
}

func (a *app) close() { a.closeFn() }

// openLoggedIn opens the profile's client and checks that it is logged in.
func (cf *clientFlags) openLoggedIn(ctx context.Context, stderr io.Writer) (*app, error) {
	a, err := cf.open(ctx, stderr)
	if err != nil {
		return nil, err
	}
	if _, err := a.needLogin(); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

// needLogin fails unless the profile holds a login.
func (a *app) needLogin() (parley.User, error) {
	u, ok := a.c.User()
	if !ok {
		return parley.User{}, fmt.Errorf("not logged in on profile %s: run parley login USER (or register)", a.profile)
	}
	return u, nil
}

// settle lets the outbox drain before the command exits (see
// tui.Settle), and says so when messages stay queued.
func (a *app) settle(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	pending, err := tui.Settle(ctx, a.c)
	if err != nil {
		fmt.Fprintln(a.stderr, "parley: outbox:", err)
		return
	}
	if n := len(pending); n > 0 {
		fmt.Fprintf(a.stderr, "parley: %d message(s) queued: they go out the next time parley connects with this profile\n", n)
	}
}

// clientCommand runs the client subcommand name.
func clientCommand(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	// Interrupts end the command's context: a waiting command stops
	// waiting, and whatever is queued stays in the outbox.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch name {
	case "register":
		return registerCommand(ctx, args, stdout, stderr)
	case "login":
		return loginCommand(ctx, args, stdout, stderr)
	case "logout":
		return logoutCommand(ctx, args, stdout, stderr)
	case "conversations":
		return conversationsCommand(ctx, args, stdout, stderr)
	case "new":
		return newCommand(ctx, args, stdout, stderr)
	case "send":
		return sendCommand(ctx, args, stdout, stderr)
	case "history":
		return historyCommand(ctx, args, stdout, stderr)
	case "listen":
		return listenCommand(ctx, args, stdout, stderr)
	case "chat":
		return chatCommand(ctx, args, stdout, stderr)
	}
	return usageError{fmt.Errorf("unknown command %q", name)}
}

// newFlagSet makes the flag set of a client command with the common
// flags and a usage line.
func newFlagSet(name, synopsis string, stderr io.Writer, cf *clientFlags) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf.add(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: parley %s [flags] %s\n\nflags (each also PARLEY_<FLAG>):\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses flags and positional arguments in any order (`parley
// sendCommand bob hi --wait` as well as `parley send --wait bob hi`; after --
// everything is positional), fills unset flags from the environment, and
// checks the number of positional arguments: at least least, at most most
// (-1: no limit).
func parseArgs(fs *flag.FlagSet, args []string, least, most int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		// Parse stops at the first positional argument, or after "--".
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	if err := flagsFromEnv(fs); err != nil {
		return nil, err
	}
	if len(pos) < least || (most >= 0 && len(pos) > most) {
		fs.Usage()
		return nil, usageError{fmt.Errorf("%s: wrong number of arguments", fs.Name())}
	}
	return pos, nil
}
