package web

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"

	"tally/app"
)

func handleIndex(instance string) http.Handler {
	type response struct {
		Message  string `json:"message"`
		Instance string `json:"instance"`
	}
	body := response{Message: "Welcome to tally, a visit counter. Visit /count to be counted.", Instance: instance}
	v := view{json: body, text: body.Message + "\n", page: newPage("index.html", instance)}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		render(w, r, http.StatusOK, v)
	})
}

// handleCount counts one visit per GET. HEAD is answered without counting
// (it only checks the store): probes and link checkers send HEAD, and a
// response without a body must not cost a visit.
func handleCount(logger *slog.Logger, counter tally.Counter, m *metrics, instance string) http.Handler {
	type response struct {
		Count    int64  `json:"count"`
		Instance string `json:"instance"`
	}
	page := newPage("count.html", instance)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if r.Method == http.MethodHead {
			if err := counter.Ping(r.Context()); err != nil {
				storeFailed(w, r, logger, m, "ping", err)
				return
			}
			render(w, r, http.StatusOK, view{json: response{Instance: instance}, page: page})
			return
		}
		// Only an id set by the proxy names a visit that may be resent; one
		// made up here is new by definition, so a plain INCR will do.
		n, err := counter.Increment(r.Context(), proxyRequestID(r.Context()))
		if err != nil {
			storeFailed(w, r, logger, m, "incr", err)
			return
		}
		count := strconv.FormatInt(n, 10)
		render(w, r, http.StatusOK, view{json: response{Count: n, Instance: instance}, text: count + "\n", page: page, count: count})
	})
}

func handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		writeStatus(w, r, http.StatusOK, "ok")
	})
}

func handleReadyz(logger *slog.Logger, counter tally.Counter, m *metrics, draining *atomic.Bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if draining.Load() {
			writeError(w, r, http.StatusServiceUnavailable, "not ready: shutting down")
			return
		}
		if err := counter.Ping(r.Context()); err != nil {
			storeFailed(w, r, logger, m, "ping", err)
			return
		}
		writeStatus(w, r, http.StatusOK, "ready")
	})
}

// storeFailed answers 503 for any store failure: the request may succeed on a
// retry, and a 500 would read as a bug in tally. The client sees only the
// short reason; the log keeps the detail.
func storeFailed(w http.ResponseWriter, r *http.Request, logger *slog.Logger, m *metrics, op string, err error) {
	m.redisErrors.WithLabelValues(op).Inc()
	reason := "counter store unavailable"
	if ue := (*tally.UnavailableError)(nil); errors.As(err, &ue) {
		reason += ": " + ue.Reason
	}
	logger.LogAttrs(r.Context(), slog.LevelWarn, "counter store failed",
		slog.String("op", op), slog.String("error", err.Error()), slog.String("request_id", requestID(r.Context())))
	w.Header().Set("Retry-After", "1")
	writeError(w, r, http.StatusServiceUnavailable, reason)
}
