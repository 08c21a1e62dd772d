package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/push"
	"github.com/parley-chat/parley/internal/server"
)

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := chat.DefaultLimits()
	var (
		addr      = fs.String("addr", "127.0.0.1:8080", "listen address; port 0 picks a free one")
		data      = fs.String("data", "./data", "folder for the embedded database and keys (one node)")
		db        = fs.String("db", "", "PostgreSQL URL shared by the nodes of a cluster, postgres://USER@HOST:PORT/DB?sslmode=disable (default: SQLite in --data)")
		natsURL   = fs.String("nats", "", "NATS URL of a cluster's event bus, nats://HOST:PORT (needs --db)")
		nodeID    = fs.String("node-id", "", "this node's name in the cluster (default: a new UUID at each start)")
		natsPre   = fs.String("nats-prefix", "", "first token of every NATS subject, for clusters sharing one NATS system (default parley)")
		beat      = fs.Duration("cluster-heartbeat", 0, "how often a node tells the cluster it is alive (default 2s)")
		deadAfter = fs.Duration("node-dead-after", 0, "how long a silent node's users stay online (default 10s)")
		writers   = fs.Int("db-writers", 0, "PostgreSQL writer connections, each committing batches of writes (default 4)")
		origins   = fs.String("origins", "", "extra allowed WebSocket origins, comma separated")
		accessTTL = fs.Duration("access-ttl", 0, "access-token lifetime (default 15m)")
		grace     = fs.Duration("refresh-grace", auth.DefaultRefreshGrace, "how long the refresh token rotated last may be presented again for a new pair (a lost answer); 0: never")
		confirm   = fs.Duration("push-confirm-delay", push.DefaultConfirmDelay, "how long a push held back for a device's foreground connection waits for that device's delivered receipt before it is sent anyway")
		heartbeat = fs.Duration("heartbeat", 0, "WebSocket ping interval (default 25s)")
		maxFrame  = fs.Int64("max-frame-bytes", 64<<10, "largest client WebSocket message in bytes")
		sendQueue = fs.Int("send-queue", 256, "frames queued per connection before it is closed with 1013")
		shutdown  = fs.Duration("shutdown-timeout", 0, "bound on a graceful stop (default 10s)")
		logLevel  = fs.String("log-level", "info", "debug, info, warn or error")
		logFormat = fs.String("log-format", "text", "text or json")
		lim       = d
	)
	fs.IntVar(&lim.MaxTextBytes, "max-text-bytes", d.MaxTextBytes, "largest message text in bytes")
	fs.IntVar(&lim.SendBurst, "send-burst", d.SendBurst, "messages a user may send in a burst")
	fs.Float64Var(&lim.SendPerSecond, "send-rate", d.SendPerSecond, "messages per second a user may send sustained")
	fs.IntVar(&lim.RequestBurst, "request-burst", d.RequestBurst, "other requests a user may make in a burst")
	fs.Float64Var(&lim.RequestPerSecond, "request-rate", d.RequestPerSecond, "other requests per second, sustained")
	fs.IntVar(&lim.TypingBurst, "typing-burst", d.TypingBurst, "typing frames in a burst (excess dropped)")
	fs.Float64Var(&lim.TypingPerSecond, "typing-rate", d.TypingPerSecond, "typing frames per second (excess dropped)")
	fs.IntVar(&lim.MaxGroupMembers, "max-group-members", d.MaxGroupMembers, "largest group")
	fs.IntVar(&lim.UploadBurst, "upload-burst", d.UploadBurst, "uploads a user may start in a burst")
	fs.Float64Var(&lim.UploadPerSecond, "upload-rate", d.UploadPerSecond, "uploads per second a user may start, sustained")
	var mediaCfg server.MediaConfig
	fs.Int64Var(&mediaCfg.MaxUploadBytes, "max-upload-bytes", 100<<20, "largest photo, video or file in bytes")
	fs.DurationVar(&mediaCfg.URLTTL, "media-url-ttl", time.Hour, "lifetime of the signed URLs of media")
	fs.Int64Var(&mediaCfg.MaxImagePixels, "max-image-pixels", 50_000_000, "largest image in pixels (width × height); larger ones are refused undecoded")
	fs.StringVar(&mediaCfg.S3.Endpoint, "s3-endpoint", "", "S3-compatible service for media, e.g. https://s3.example.com (default: AWS); keys from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	fs.StringVar(&mediaCfg.S3.Bucket, "s3-bucket", "", "bucket for media and partial uploads (a cluster needs one); without it media stay in --data")
	fs.StringVar(&mediaCfg.S3.Region, "s3-region", "", "the bucket's region (default AWS_REGION, else us-east-1)")
	fs.StringVar(&mediaCfg.S3.Prefix, "s3-prefix", "", "put before every object's key, ending in /, to share a bucket")
	fs.BoolVar(&mediaCfg.S3.PathStyle, "s3-path-style", false, "bucket in the URL's path, as MinIO, SeaweedFS and most S3-compatible services need")
	var apnsCfg server.APNsConfig
	fs.StringVar(&apnsCfg.KeyFile, "apns-key-file", "", "APNs .p8 token-signing key; without it iOS pushes are off")
	fs.StringVar(&apnsCfg.KeyID, "apns-key-id", "", "APNs key id")
	fs.StringVar(&apnsCfg.TeamID, "apns-team-id", "", "Apple team id")
	fs.StringVar(&apnsCfg.Topic, "apns-topic", "", "the iOS app's bundle id")
	fs.StringVar(&apnsCfg.URL, "apns-url", "", "replaces both APNs hosts (a stand-in or a proxy)")
	var webPush server.WebPushConfig
	webPushOn := fs.Bool("web-push", true, "send Web Push notifications to browsers (VAPID key kept in the data folder)")
	fs.StringVar(&webPush.Subject, "vapid-subject", "", "contact for push services, mailto: or https: (default mailto:admin@localhost)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	webPush.Disabled = !*webPushOn
	if *grace == 0 {
		*grace = -1 // the flag's 0 is "never"; the config's is the default
	}

	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return usageError{err}
	}
	var allowed []string
	for _, o := range strings.Split(*origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			allowed = append(allowed, o)
		}
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv, err := server.Open(ctx, server.Config{
		DataDir:          *data,
		DB:               *db,
		NATS:             *natsURL,
		NodeID:           *nodeID,
		NATSPrefix:       *natsPre,
		ClusterHeartbeat: *beat,
		NodeDeadAfter:    *deadAfter,
		Writers:          *writers,
		Origins:          allowed,
		AccessTTL:        *accessTTL,
		RefreshGrace:     *grace,
		PushConfirmDelay: *confirm,
		Heartbeat:        *heartbeat,
		MaxFrameBytes:    *maxFrame,
		SendQueue:        *sendQueue,
		Limits:           lim,
		ShutdownTimeout:  *shutdown,
		Logger:           log,
		APNs:             apnsCfg,
		WebPush:          webPush,
		Media:            mediaCfg,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		srv.Close()
		return fmt.Errorf("listen: %w", err)
	}
	return srv.Serve(ctx, ln)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log-format must be text or json")
}
