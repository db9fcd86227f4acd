package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"
)

type ctxKey struct{}

// reqID is the request's id and whether the proxy in front set it.
type reqID struct {
	id        string
	fromProxy bool
}

// withRequestID keeps the proxy's X-Request-ID, or makes one, and echoes it
// so a client, nginx's log and ours can be matched up.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rid := reqID{id: r.Header.Get("X-Request-ID"), fromProxy: true}
		if !validRequestID(rid.id) {
			rid = reqID{id: newRequestID()}
		}
		w.Header().Set("X-Request-ID", rid.id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, rid)))
	})
}

func requestID(ctx context.Context) string {
	rid, _ := ctx.Value(ctxKey{}).(reqID)
	return rid.id
}

// proxyRequestID is the id the proxy set, or "" when tally made one up.
func proxyRequestID(ctx context.Context) string {
	if rid, _ := ctx.Value(ctxKey{}).(reqID); rid.fromProxy {
		return rid.id
	}
	return ""
}

// validRequestID accepts what proxies generate (hex, UUIDs) and nothing that
// could forge a log line or bloat one.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// slowRequest is how long a request may take before the app logs it even
// when it succeeded: well past what Redis and the app take on a loaded
// machine (REDIS_TIMEOUT is 300ms), so only trouble is logged.
const slowRequest = time.Second

// observe records every request's metrics, and logs the requests only the
// app can say something about: a failure (5xx), or a slow one. nginx's
// access log already has a line for every request, with its id, status and
// timing; a second line per visit, from the app, cost about a fifth of
// /count's throughput as deployed (bench/results.md). At LOG_LEVEL=debug
// the app logs every request.
func observe(logger *slog.Logger, m *metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.inFlight.Inc()
		defer m.inFlight.Dec()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		elapsed := time.Since(start)

		// ServeMux sets Pattern on the request it routed; an empty one means
		// 404 or 405, kept as one label so odd paths cannot grow the series.
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		m.requests.WithLabelValues(route, r.Method, strconv.Itoa(rec.status)).Inc()
		m.duration.WithLabelValues(route).Observe(elapsed.Seconds())
		level := slog.LevelDebug
		if rec.status >= 500 || elapsed >= slowRequest {
			level = slog.LevelWarn
		}
		logger.LogAttrs(r.Context(), level, "request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", rec.status),
			slog.Int64("bytes", rec.bytes),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
			slog.String("request_id", requestID(r.Context())),
			slog.String("remote", r.RemoteAddr),
		)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wroteHeader {
		s.status, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wroteHeader = true
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// recoverPanics turns a handler panic into a short 500 and a logged stack,
// never a stack trace on the wire.
func recoverPanics(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil || v == http.ErrAbortHandler {
				if v != nil {
					panic(v)
				}
				return
			}
			logger.LogAttrs(r.Context(), slog.LevelError, "panic serving request",
				slog.String("panic", fmt.Sprint(v)), slog.String("stack", string(debug.Stack())),
				slog.String("request_id", requestID(r.Context())))
			writeError(w, r, http.StatusInternalServerError, "internal error")
		}()
		next.ServeHTTP(w, r)
	})
}

// errorPages lets the mux decide between 404 and 405 (and the Allow header),
// then answers in the client's format instead of the mux's plain text.
func errorPages(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		c := &statusCapture{header: http.Header{}}
		mux.ServeHTTP(c, r)
		if allow := c.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		msg := "not found"
		if c.status == http.StatusMethodNotAllowed {
			msg = "method not allowed"
		}
		writeError(w, r, c.status, msg)
	})
}

// statusCapture records what the mux would answer and discards its body.
type statusCapture struct {
	header http.Header
	status int
}

func (c *statusCapture) Header() http.Header         { return c.header }
func (c *statusCapture) WriteHeader(code int)        { c.status = code }
func (c *statusCapture) Write(b []byte) (int, error) { return len(b), nil }
