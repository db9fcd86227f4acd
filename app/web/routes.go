package web

import (
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tally/app"
)

// addRoutes is the whole API surface. A GET pattern also serves HEAD; any
// other method gets 405 with Allow, any other path 404 (see errorPages).
func addRoutes(mux *http.ServeMux, logger *slog.Logger, counter tally.Counter, m *metrics,
	reg *prometheus.Registry, instance string, draining *atomic.Bool) {
	mux.Handle("GET /{$}", handleIndex(instance))
	mux.Handle("GET /count", handleCount(logger, counter, m, instance))
	mux.Handle("GET /healthz", handleHealthz())
	mux.Handle("GET /readyz", handleReadyz(logger, counter, m, draining))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError),
	}))
}
