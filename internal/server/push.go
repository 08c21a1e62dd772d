package server

import (
	"context"
	"crypto/x509"
	"fmt"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/apns"
	"github.com/parley-chat/parley/internal/push"
	"github.com/parley-chat/parley/internal/webpush"
)

// APNsConfig configures iOS push notifications (the --apns-* flags).
// Without a KeyFile they are off.
type APNsConfig struct {
	// KeyFile is the .p8 token-signing key; KeyID its id, TeamID the Apple
	// team id, Topic the app's bundle id. All are required with a key.
	KeyFile, KeyID, TeamID, Topic string
	// URL replaces both APNs hosts (a stand-in, a proxy).
	URL string
	// RootCAs replaces the system roots for APNs's certificate (tests);
	// nil means the system's, which SSL_CERT_FILE and SSL_CERT_DIR replace.
	RootCAs *x509.CertPool
}

// WebPushConfig configures browser push notifications. They are on unless
// Disabled: the VAPID key pair is created in the data folder at first start.
type WebPushConfig struct {
	Disabled bool
	// Subject is the contact (mailto: or https:) push services may use
	// about this server; default mailto:admin@localhost.
	Subject string
	// AllowInsecureEndpoints lets subscriptions point at http:// and
	// private addresses (tests and local stand-ins only).
	AllowInsecureEndpoints bool
}

// pushPlatforms lists the platforms that will have a sender: those the
// store queues pushes for.
func pushPlatforms(cfg Config) []parley.Platform {
	var ps []parley.Platform
	if !cfg.WebPush.Disabled {
		ps = append(ps, parley.PlatformWeb)
	}
	if cfg.APNs.KeyFile != "" {
		ps = append(ps, parley.PlatformIOS)
	}
	return ps
}

// pushSenders builds a push sender for each platform the configuration
// allows, and returns the VAPID public key when Web Push is on (the key
// pair lives in the database, shared by the nodes of a cluster). close
// releases the senders.
func (s *Server) pushSenders(ctx context.Context) (senders map[parley.Platform]push.Sender, vapidKey string, close func(), err error) {
	cfg, log := s.cfg, s.log
	senders = map[parley.Platform]push.Sender{}
	var closers []func()
	close = func() {
		for _, c := range closers {
			c()
		}
	}
	if !cfg.WebPush.Disabled {
		b, err := s.secret(ctx, "vapid-key", "vapid.key", webpush.NewVAPIDPEM)
		if err != nil {
			return nil, "", nil, err
		}
		keys, err := webpush.ParseVAPID(b)
		if err != nil {
			return nil, "", nil, err
		}
		senders[parley.PlatformWeb] = webpush.New(keys, webpush.Options{
			Subscriber:             cfg.WebPush.Subject,
			AllowInsecureEndpoints: cfg.WebPush.AllowInsecureEndpoints,
			Logger:                 log,
		})
		vapidKey = keys.PublicKey()
	}
	if cfg.APNs.KeyFile == "" {
		log.Info("APNs key not configured: iOS push notifications are off")
	} else {
		key, err := apns.LoadKey(cfg.APNs.KeyFile)
		if err != nil {
			return nil, "", nil, err
		}
		s, err := apns.New(apns.Options{
			Key: key, KeyID: cfg.APNs.KeyID, TeamID: cfg.APNs.TeamID, Topic: cfg.APNs.Topic,
			URL: cfg.APNs.URL, RootCAs: cfg.APNs.RootCAs,
		})
		if err != nil {
			return nil, "", nil, fmt.Errorf("%w (see --apns-key-id, --apns-team-id, --apns-topic, --apns-url)", err)
		}
		senders[parley.PlatformIOS] = s
		closers = append(closers, s.Close)
		log.Info("APNs push notifications on", "topic", cfg.APNs.Topic, "key_id", cfg.APNs.KeyID)
	}
	return senders, vapidKey, close, nil
}

// pushRunner is the push worker's goroutine, owned by the Server.
type pushRunner struct {
	cancel       context.CancelFunc
	done         chan struct{}
	closeSenders func()
}

// runPush starts w; stop ends it.
func runPush(w *push.Worker, closeSenders func()) *pushRunner {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pushRunner{cancel: cancel, done: make(chan struct{}), closeSenders: closeSenders}
	go func() {
		defer close(p.done)
		w.Run(ctx)
	}()
	return p
}

// stop ends the worker, waiting for the attempts under way (their jobs stay
// queued for the next start), and releases the senders' connections.
func (p *pushRunner) stop() {
	p.cancel()
	<-p.done
	p.closeSenders()
}
