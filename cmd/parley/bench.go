package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/parley-chat/parley/internal/loadgen"
)

// bench runs the load generator against a running server.
func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadgen.Config
	servers := fs.String("server", "http://127.0.0.1:8080", "server base URL; comma-separated for the nodes of a cluster, over which users are spread")
	fs.IntVar(&cfg.Users, "users", 100, "users, each with one WebSocket")
	fs.IntVar(&cfg.GroupSize, "group-size", 5, "members per group")
	fs.Float64Var(&cfg.Rate, "rate", 500, "messages per second, in total")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	for _, s := range strings.Split(*servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.Servers = append(cfg.Servers, s)
		}
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
