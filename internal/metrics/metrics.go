// Package metrics defines the Prometheus metrics of a Parley server in one
// place, so that every component records into the same registry and
// /metrics shows them together.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the server's collectors. Create it with New; the zero value
// is not usable. All methods of the collectors are safe for concurrent use.
type Metrics struct {
	Registry *prometheus.Registry

	// Connections is the number of open, authenticated WebSocket connections.
	Connections prometheus.Gauge
	// ConnectionsClosed counts closed connections by close code.
	ConnectionsClosed *prometheus.CounterVec
	// MessagesStored counts messages durably stored.
	MessagesStored prometheus.Counter
	// MessagesDelivered counts message.new frames queued to connections.
	MessagesDelivered prometheus.Counter
	// FramesSent counts frames queued to connections, by type.
	FramesSent *prometheus.CounterVec
	// FramesReceived counts frames received from clients, by type.
	FramesReceived *prometheus.CounterVec
	// SlowConsumers counts connections closed with 1013 for a full queue.
	SlowConsumers prometheus.Counter
	// RateLimited counts requests refused with rate_limited.
	RateLimited prometheus.Counter
	// StoreLatency observes store operations by operation name.
	StoreLatency *prometheus.HistogramVec
	// HTTPRequests counts REST requests by route pattern and status code.
	HTTPRequests *prometheus.CounterVec
	// PushSent counts pushes accepted by their push service, by platform.
	PushSent *prometheus.CounterVec
	// PushFailed counts pushes given up, by platform: a permanent error,
	// or retried for longer than a day.
	PushFailed *prometheus.CounterVec
	// PushRetried counts failed attempts that will be repeated, by platform.
	PushRetried *prometheus.CounterVec
	// PushSkipped counts queued pushes not sent because their device had a
	// foreground connection and confirmed the message, by platform.
	PushSkipped *prometheus.CounterVec
	// PushHeld counts message pushes held back because their device had a
	// foreground connection, waiting for its delivered receipt, by platform.
	PushHeld *prometheus.CounterVec
	// PushUnconfirmed counts held pushes sent because their device did not
	// confirm the message in time, by platform.
	PushUnconfirmed *prometheus.CounterVec
	// PushBadgeSent counts badge-only pushes accepted, by platform.
	PushBadgeSent *prometheus.CounterVec
	// PushTokensDeleted counts device tokens deleted because their push
	// service said they are no longer valid, by platform.
	PushTokensDeleted *prometheus.CounterVec

	// The cluster's event bus (NATS), on a node of a cluster.

	// BusConnected is 1 while the node is connected to NATS.
	BusConnected prometheus.Gauge
	// BusEventsReceived counts events received from NATS for this node.
	BusEventsReceived prometheus.Counter
	// BusDuplicates counts message.new events dropped as already
	// delivered (the outbox publishes at least once).
	BusDuplicates prometheus.Counter
	// BusGapFills counts messages read from the store to fill a gap in a
	// conversation's events (their node died before publishing).
	BusGapFills prometheus.Counter
	// BusGapsSkipped counts messages of a gap that could not be filled.
	BusGapsSkipped prometheus.Counter
}

// New creates the metrics in a fresh registry, with the Go runtime and
// process collectors. queueDepth, if not nil, is read at every scrape as the
// fan-out queue depth.
func New(queueDepth func() float64) *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_connections", Help: "Open authenticated WebSocket connections.",
		}),
		ConnectionsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_connections_closed_total", Help: "Closed WebSocket connections by close code.",
		}, []string{"code"}),
		MessagesStored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_messages_stored_total", Help: "Messages durably stored.",
		}),
		MessagesDelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_messages_delivered_total", Help: "message.new frames queued to connections.",
		}),
		FramesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_frames_sent_total", Help: "Frames queued to WebSocket connections, by type.",
		}, []string{"type"}),
		FramesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_frames_received_total", Help: "Frames received from WebSocket clients, by type.",
		}, []string{"type"}),
		SlowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_slow_consumers_total", Help: "Connections closed with 1013 because their send queue was full.",
		}),
		RateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_rate_limited_total", Help: "Requests refused with rate_limited.",
		}),
		StoreLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "parley_store_latency_seconds",
			Help:    "Latency of store operations.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5},
		}, []string{"op"}),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_http_requests_total", Help: "REST requests by route and status.",
		}, []string{"route", "status"}),
		PushSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_push_sent_total", Help: "Push notifications accepted by their push service, by platform.",
		}, []string{"platform"}),
		PushFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_push_failed_total", Help: "Push notifications given up (permanent error or too old), by platform.",
		}, []string{"platform"}),
		PushRetried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_push_retried_total", Help: "Failed push attempts scheduled to be repeated, by platform.",
		}, []string{"platform"}),
		PushSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_push_skipped_total", Help: "Queued pushes not sent because their device was connected in the foreground and confirmed the message, by platform.",
		}, []string{"platform"}),
		PushHeld: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_push_held_total", Help: "Pushes held back because their device was connected in the foreground, sent later unless the device confirmed the message, by platform.",
		}, []string{"platform"}),
		PushUnconfirmed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_push_unconfirmed_total", Help: "Held pushes sent after all because their device did not confirm the message within the confirm delay, by platform.",
		}, []string{"platform"}),
		PushBadgeSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_push_badge_sent_total", Help: "Badge-only pushes accepted by their push service, by platform.",
		}, []string{"platform"}),
		PushTokensDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_push_tokens_deleted_total", Help: "Device tokens deleted because their push service refused them, by platform.",
		}, []string{"platform"}),
		BusConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_bus_connected", Help: "1 while this node of a cluster is connected to NATS.",
		}),
		BusEventsReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_bus_events_received_total", Help: "Events received from NATS for this node's users.",
		}),
		BusDuplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_bus_duplicates_total", Help: "message.new events dropped because they were delivered already.",
		}),
		BusGapFills: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_bus_gap_fills_total", Help: "Messages read from the store to fill a gap in a conversation's events.",
		}),
		BusGapsSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_bus_gaps_skipped_total", Help: "Messages of a gap in a conversation's events that could not be filled.",
		}),
	}
	r.MustRegister(
		m.Connections, m.ConnectionsClosed, m.MessagesStored, m.MessagesDelivered,
		m.FramesSent, m.FramesReceived, m.SlowConsumers, m.RateLimited, m.StoreLatency, m.HTTPRequests,
		m.PushSent, m.PushFailed, m.PushRetried, m.PushSkipped, m.PushHeld, m.PushUnconfirmed, m.PushBadgeSent, m.PushTokensDeleted,
		m.BusConnected, m.BusEventsReceived, m.BusDuplicates, m.BusGapFills, m.BusGapsSkipped,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if queueDepth != nil {
		r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parley_fanout_queue_depth", Help: "Events waiting to be fanned out.",
		}, queueDepth))
	}
	return m
}

// ObserveStore records the latency of one store operation.
func (m *Metrics) ObserveStore(op string, d time.Duration) {
	m.StoreLatency.WithLabelValues(op).Observe(d.Seconds())
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}
