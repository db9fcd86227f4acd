// Package web serves tally over HTTP.
package web

import (
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tally/app"
)

// Info describes the process serving requests.
type Info struct {
	Instance string // shown on pages so a client can see which replica answered
	Version  string
}

// NewServer wires the routes and middleware. Metrics are registered on reg,
// which /metrics serves. While draining is true, /readyz answers 503 so the
// load balancer stops sending new work.
func NewServer(logger *slog.Logger, counter tally.Counter, reg *prometheus.Registry,
	info Info, draining *atomic.Bool) http.Handler {
	m := newMetrics(reg, info.Version)
	mux := http.NewServeMux()
	addRoutes(mux, logger, counter, m, reg, info.Instance, draining)

	var h http.Handler = errorPages(mux)
	h = recoverPanics(logger, h)
	h = observe(logger, m, h)
	h = withRequestID(h)
	return h
}

// NewHTTPServer bounds what one client can hold: header size and every phase
// of a request. IdleTimeout is longer than nginx's upstream keepalive_timeout
// so nginx, not the app, closes idle upstream connections; a request sent on
// a connection the app had just closed could not be retried safely.
func NewHTTPServer(addr string, h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}
