package web

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"tally/app"
	"tally/app/internal/memcounter"
)

const instance = "test-instance"

// newHandler serves against counter, a store in memory: what the Redis
// adapter does is app/redis's tests' to show, against a real Redis.
func newHandler(t testing.TB, counter tally.Counter) (http.Handler, *atomic.Bool) {
	t.Helper()
	var draining atomic.Bool
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	return NewServer(logger, counter, prometheus.NewRegistry(), Info{Instance: instance, Version: "test"}, &draining), &draining
}

func do(h http.Handler, method, path, accept string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json; body %q", ct, rec.Body)
	}
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %q: %v", rec.Body, err)
	}
	return v
}

// down is a store that cannot be reached.
func down() *memcounter.Counter {
	c := &memcounter.Counter{}
	c.Down("cannot connect to redis")
	return c
}

func TestIndex(t *testing.T) {
	h, _ := newHandler(t, down()) // the welcome page must not need Redis

	rec := do(h, "GET", "/", "")
	body := rec.Body.String()
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	for _, want := range []string{"tally", instance, `href="/count"`} {
		if !strings.Contains(body, want) {
			t.Errorf("GET / body lacks %q:\n%s", want, body)
		}
	}

	got := decode[map[string]string](t, do(h, "GET", "/", "application/json"))
	if got["instance"] != instance || !strings.Contains(got["message"], "tally") {
		t.Errorf("GET / as JSON = %v", got)
	}
}

func TestCountIncrementsInEveryFormat(t *testing.T) {
	counter := &memcounter.Counter{}
	h, _ := newHandler(t, counter)

	type count struct {
		Count    int64  `json:"count"`
		Instance string `json:"instance"`
	}
	if got := decode[count](t, do(h, "GET", "/count", "application/json")); got != (count{1, instance}) {
		t.Errorf("first /count = %+v, want {1 %s}", got, instance)
	}
	rec := do(h, "GET", "/count", "text/plain")
	if rec.Body.String() != "2\n" || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
		t.Errorf("second /count as text = %q (%s), want \"2\\n\"", rec.Body, rec.Header().Get("Content-Type"))
	}
	rec = do(h, "GET", "/count", "text/html,application/xhtml+xml,*/*;q=0.8")
	if !strings.Contains(rec.Body.String(), ">3<") || rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("third /count as HTML lacks the count 3 or no-store:\n%s", rec.Body)
	}
	if n := counter.Count(); n != 3 {
		t.Errorf("visits counted = %d; want 3", n)
	}
}

func TestHeadCountDoesNotCount(t *testing.T) {
	counter := &memcounter.Counter{}
	h, _ := newHandler(t, counter)
	if rec := do(h, "HEAD", "/count", ""); rec.Code != 200 {
		t.Fatalf("HEAD /count = %d", rec.Code)
	}
	if rec := do(h, "HEAD", "/", ""); rec.Code != 200 {
		t.Fatalf("HEAD / = %d", rec.Code)
	}
	if n := counter.Calls(); n != 0 {
		t.Errorf("HEAD /count asked the store to count %d times", n)
	}
}

func TestErrorsMatchTheRequestedFormat(t *testing.T) {
	h, _ := newHandler(t, down())
	for _, tc := range []struct {
		method, path, accept string
		code                 int
		allow, body          string
	}{
		{"POST", "/count", "", 405, "GET, HEAD", "method not allowed\n"},
		{"DELETE", "/", "application/json", 405, "GET, HEAD", `{"error":"method not allowed"}` + "\n"},
		{"GET", "/nope", "", 404, "", "not found\n"},
		{"GET", "/count/extra", "application/json", 404, "", `{"error":"not found"}` + "\n"},
		{"GET", "/nope", "text/html", 404, "", "not found\n"}, // errors are never HTML
	} {
		rec := do(h, tc.method, tc.path, tc.accept)
		if rec.Code != tc.code || rec.Header().Get("Allow") != tc.allow || rec.Body.String() != tc.body {
			t.Errorf("%s %s (Accept %q) = %d Allow %q body %q; want %d %q %q",
				tc.method, tc.path, tc.accept, rec.Code, rec.Header().Get("Allow"), rec.Body, tc.code, tc.allow, tc.body)
		}
	}
}

// A store that cannot answer: a prompt 503 that says why in the store's
// own safe words, and the service otherwise up but not ready.
func TestStoreDown(t *testing.T) {
	h, _ := newHandler(t, down())

	rec := do(h, "GET", "/count", "application/json")
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("/count with Redis down = %d Retry-After %q, want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if got := decode[map[string]string](t, rec)["error"]; got != "counter store unavailable: cannot connect to redis" {
		t.Errorf("error = %q, want it to name the cause", got)
	}
	for path, want := range map[string]int{"/": 200, "/healthz": 200, "/readyz": 503} {
		if rec := do(h, "GET", path, ""); rec.Code != want {
			t.Errorf("GET %s with Redis down = %d, want %d", path, rec.Code, want)
		}
	}
}

func TestReadyz(t *testing.T) {
	h, draining := newHandler(t, &memcounter.Counter{})
	if rec := do(h, "GET", "/readyz", ""); rec.Code != 200 {
		t.Fatalf("/readyz with Redis up = %d %q", rec.Code, rec.Body)
	}
	draining.Store(true)
	rec := do(h, "GET", "/readyz", "")
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "shutting down") {
		t.Errorf("/readyz while draining = %d %q, want 503 shutting down", rec.Code, rec.Body)
	}
	if rec := do(h, "GET", "/healthz", ""); rec.Code != 200 {
		t.Errorf("/healthz while draining = %d, want 200", rec.Code)
	}
}

func TestRequestID(t *testing.T) {
	h, _ := newHandler(t, down())
	for _, tc := range []struct{ sent, want string }{
		{"abc-123_DEF.4", "abc-123_DEF.4"},
		{"", ""},
		{"bad id\nwith newline", ""},
		{strings.Repeat("a", 65), ""},
	} {
		req := httptest.NewRequest("GET", "/healthz", nil)
		req.Header.Set("X-Request-ID", tc.sent)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		got := rec.Header().Get("X-Request-ID")
		switch {
		case tc.want != "" && got != tc.want:
			t.Errorf("sent %q, echoed %q", tc.sent, got)
		case tc.want == "" && (len(got) != 32 || got == tc.sent):
			t.Errorf("sent %q, echoed %q; want a fresh 32-hex id", tc.sent, got)
		}
	}
}

func TestMetrics(t *testing.T) {
	counter := &memcounter.Counter{}
	h, _ := newHandler(t, counter)
	do(h, "GET", "/count", "")
	do(h, "GET", "/count", "")
	do(h, "GET", "/no/such/page", "")
	counter.Down("cannot connect to redis")
	do(h, "GET", "/count", "")

	body := do(h, "GET", "/metrics", "").Body.String()
	for _, want := range []string{
		`tally_http_requests_total{code="200",method="GET",route="GET /count"} 2`,
		`tally_http_requests_total{code="503",method="GET",route="GET /count"} 1`,
		`tally_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`tally_http_request_duration_seconds_count{route="GET /count"} 3`,
		`tally_http_requests_in_flight 1`, // the /metrics request itself
		`tally_redis_errors_total{op="incr"} 1`,
		`tally_build_info{goversion="go`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestPanicBecomesAShort500(t *testing.T) {
	h := recoverPanics(slog.New(slog.NewJSONHandler(io.Discard, nil)),
		http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	rec := do(h, "GET", "/", "")
	if rec.Code != 500 || rec.Body.String() != "internal error\n" {
		t.Errorf("panic = %d %q, want 500 \"internal error\"", rec.Code, rec.Body)
	}
}

func TestNegotiate(t *testing.T) {
	offers := []string{typeHTML, typeJSON, typeText}
	for accept, want := range map[string]string{
		"":                                  typeHTML,
		"application/json":                  typeJSON,
		"text/plain":                        typeText,
		"text/*":                            typeHTML,
		"text/*;q=0.5, text/plain":          typeText,
		"text/html;q=0.1, application/json": typeJSON,
		"*/*":                               typeHTML,
		"image/png":                         typeHTML,
		"application/json;q=0, */*":         typeHTML,
		"garbage;;;":                        typeHTML,
		"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8": typeHTML,
	} {
		if got := negotiate(accept, offers...); got != want {
			t.Errorf("negotiate(%q) = %s, want %s", accept, got, want)
		}
	}
}

func TestResentCountWithTheSameRequestIDCountsOnce(t *testing.T) {
	h, _ := newHandler(t, &memcounter.Counter{})
	send := func(id string) string {
		req := httptest.NewRequest("GET", "/count", nil)
		req.Header.Set("Accept", "text/plain")
		req.Header.Set("X-Request-ID", id)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Body.String()
	}
	// nginx resends a request with its id when the first instance died
	// before answering; the resend must not count the visit again.
	if a, b, c := send("nginx-id-1"), send("nginx-id-1"), send("nginx-id-2"); a != "1\n" || b != "1\n" || c != "2\n" {
		t.Errorf("counts for ids 1, 1, 2 = %q %q %q; want 1 1 2", a, b, c)
	}
}

// nginx logs every request; the app logs those only it can say something
// about (failures, slow ones), and every one at debug.
func TestRequestLogsWhatOnlyTheAppKnows(t *testing.T) {
	for _, tc := range []struct {
		level   slog.Level
		counter *memcounter.Counter
		logged  bool
	}{
		{slog.LevelInfo, &memcounter.Counter{}, false},
		{slog.LevelInfo, down(), true},
		{slog.LevelDebug, &memcounter.Counter{}, true},
	} {
		var out strings.Builder
		logger := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: tc.level}))
		var draining atomic.Bool
		h := NewServer(logger, tc.counter, prometheus.NewRegistry(), Info{Instance: instance, Version: "test"}, &draining)
		code := do(h, http.MethodGet, "/count", "").Code
		if got := strings.Contains(out.String(), `"msg":"request"`); got != tc.logged {
			t.Errorf("level %v, /count answered %d: request logged %v, want %v:\n%s", tc.level, code, got, tc.logged, out.String())
		}
	}
}
