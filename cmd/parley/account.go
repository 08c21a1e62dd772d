package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/parley-chat/parley/internal/tui"
)

// registerCommand creates an account and logs the profile in as it.
func registerCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlagSet("register", "USERNAME", stderr, &cf)
	password := fs.String("password", "", "password (8 to 1024 bytes); asked on the terminal if not given")
	display := fs.String("display-name", "", "name shown to others (optional)")
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	pw, err := passwordFrom(*password, stderr, true)
	if err != nil {
		return err
	}
	a, err := cf.open(ctx, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	u, err := a.c.Register(ctx, pos[0], pw, *display)
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	fmt.Fprintf(stdout, "registered %s and logged in (profile %s)\n", u.Username, a.profile)
	return nil
}

// loginCommand logs the profile in.
func loginCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlagSet("login", "USERNAME", stderr, &cf)
	password := fs.String("password", "", "password; asked on the terminal if not given")
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	pw, err := passwordFrom(*password, stderr, false)
	if err != nil {
		return err
	}
	a, err := cf.open(ctx, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	u, err := a.c.Login(ctx, pos[0], pw)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	fmt.Fprintf(stdout, "logged in as %s (profile %s)\n", u.Username, a.profile)
	// Logging in again as the same user keeps the outbox: let what it
	// holds go out now.
	a.settle(ctx)
	return nil
}

// logoutCommand revokes the login and deletes the profile's local data.
func logoutCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cf clientFlags
	fs := newFlagSet("logout", "", stderr, &cf)
	if _, err := parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	a, err := cf.open(ctx, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	u, ok := a.c.User()
	if !ok {
		fmt.Fprintln(stdout, "not logged in")
		return nil
	}
	err = a.c.Logout(ctx)
	if ferr := tui.ForgetDirectory(a.profile); ferr != nil {
		err = errors.Join(err, ferr)
	}
	if err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	fmt.Fprintf(stdout, "logged out %s (profile %s)\n", u.Username, a.profile)
	return nil
}

// passwordFrom returns the --password value (or PARLEY_PASSWORD), or
// reads the password: from the terminal without echo (twice when
// confirm), or as the first line of a standard input that is not one.
func passwordFrom(flagValue string, stderr io.Writer, confirm bool) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if err != nil && !errors.Is(err, io.EOF) {
				return "", fmt.Errorf("read password: %w", err)
			}
			return "", usageError{errors.New("no password: give --password or PARLEY_PASSWORD, or type it on a terminal")}
		}
		return line, nil
	}
	ask := func(prompt string) (string, error) {
		fmt.Fprint(stderr, prompt)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		return string(b), nil
	}
	pw, err := ask("password: ")
	if err != nil {
		return "", err
	}
	if confirm {
		again, err := ask("password again: ")
		if err != nil {
			return "", err
		}
		if again != pw {
			return "", errors.New("the passwords differ")
		}
	}
	return pw, nil
}
