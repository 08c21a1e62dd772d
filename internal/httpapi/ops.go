package httpapi

import (
	"context"
	"fmt"
	"net/http"

	"github.com/parley-chat/parley"
)

// healthz says that the process is up and serving.
func (h *api) healthz(w http.ResponseWriter, _ *http.Request) error {
	writeText(w, "ok")
	return nil
}

// readyz says whether the storage is reachable: 200, or a 503 problem.
func (h *api) readyz(w http.ResponseWriter, r *http.Request) error {
	if h.ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := h.ready(ctx); err != nil {
			// The cause is logged, and stays out of the answer.
			return &parley.Error{Code: parley.CodeUnavailable, Message: "storage is unreachable", Err: fmt.Errorf("ready: %w", err)}
		}
	}
	writeText(w, "ok")
	return nil
}

// serveMetrics serves the Prometheus registry, if there is one.
func (h *api) serveMetrics(w http.ResponseWriter, r *http.Request) error {
	if h.metricsHandler == nil {
		return parley.Errorf(parley.CodeNotFound, "metrics are not enabled")
	}
	h.metricsHandler.ServeHTTP(w, r)
	return nil
}

// writeText answers 200 with a short plain-text body.
func writeText(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	// A failed write means the client has gone; there is no one to tell.
	_, _ = w.Write([]byte(body))
}
