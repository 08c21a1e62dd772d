// Command parley is the Parley chat server and its terminal client.
// `parley serve` runs the whole backend on one machine; `parley chat` and
// the other client commands talk to it through the Go SDK (package
// client), one profile folder per user.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stdout, stderr)
	case "bench":
		err = bench(ctx, args[1:], stdout, stderr)
	case "register", "login", "logout", "conversations", "new", "send", "history", "listen", "chat":
		err = clientCommand(ctx, args[0], args[1:], stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "parley: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(stderr, "parley:", err)
			return 2
		}
		fmt.Fprintln(stderr, "parley:", err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: parley <command> [flags]

server:
  serve          run the chat server (see: parley serve -h)
  bench          load a running server and measure ack and delivery latency

client (each takes --server and --profile; see: parley <command> -h):
  register USER  create an account and log in as it
  login USER     log in
  logout         log out and delete this profile's local data
  conversations  list conversations with unread counts
  new USER       open a direct conversation (--group TITLE USER... for a group)
  send CONV TEXT send a message; queued while offline (--wait waits for the ack);
                 --file PATH sends a photo, video or file, TEXT its caption
  history CONV   print a conversation's messages
  listen         print events as JSON lines until interrupted
  chat [CONV]    full-screen chat in the terminal

CONV is a conversation id or, for a direct conversation, the other user's
username. Every flag can also be set as PARLEY_<FLAG> (PARLEY_SERVER,
PARLEY_PROFILE, PARLEY_PASSWORD, ...).
`)
}

// usageError is a mistake in the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// parseFlags parses args into fs, then fills every flag not given on the
// command line from its environment variable PARLEY_<FLAG> (upper case, -
// as _), so that the server can be configured either way.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return flagsFromEnv(fs)
}

// flagsFromEnv fills every flag of fs not given on the command line from
// its environment variable PARLEY_<FLAG>.
func flagsFromEnv(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := "PARLEY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	if len(errs) > 0 {
		return usageError{errors.Join(errs...)}
	}
	return nil
}
