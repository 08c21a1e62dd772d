package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/parley-chat/parley/internal/loadgen"
)

// bench runs the load generator against a running server.
func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadgen.Config
	fs.StringVar(&cfg.Server, "server", "http://127.0.0.1:8080", "server base URL")
	fs.IntVar(&cfg.Users, "users", 100, "users, each with one WebSocket")
	fs.IntVar(&cfg.GroupSize, "group-size", 5, "members per group")
	fs.Float64Var(&cfg.Rate, "rate", 500, "messages per second, in total")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := loadgen.Run(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, res)
	return nil
}
