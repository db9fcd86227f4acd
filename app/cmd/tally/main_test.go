package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tally/app/internal/redistest"
	"tally/app/internal/testenv"
)

// startApp runs the service in-process through run, as main does, and
// returns its base URL once /healthz answers.
func startApp(t *testing.T, redisAddr string, extra ...string) string {
	t.Helper()
	port := testenv.FreePort(t)
	env := map[string]string{
		"PORT": strconv.Itoa(port), "REDIS_ADDR": redisAddr, "REDIS_PASSWORD": redistest.Password,
		"LOG_LEVEL": "error",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"tally"}, func(k string) string { return env[k] }, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run returned %v after shutdown", err)
		}
	})
	url := "http://" + testenv.Addr(port)
	waitFor(t, 5*time.Second, url+"/healthz", 200)
	return url
}

// waitFor polls url until it answers want, and returns how long that took.
func waitFor(t *testing.T, limit time.Duration, url string, want int) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if code, _ := get(url, ""); code == want {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s did not answer %d within %v", url, want, limit)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

var client = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 128},
}

func get(url, accept string) (int, []byte) {
	req, _ := http.NewRequest("GET", url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func TestConcurrentCountsAreExact(t *testing.T) {
	srv := redistest.Start(t)
	// A generous bound: this test checks that counting is exact, and on a
	// starved machine (2 cores, race detector, 3,000 goroutines) a 300ms bound
	// can expire after Redis ran the INCR, a 503 that still counted. Timeouts
	// have tests of their own.
	var urls []string
	for range 3 {
		urls = append(urls, startApp(t, srv.Addr, "REDIS_TIMEOUT", "3s"))
	}
	before, _ := srv.Client.Get(t.Context(), "visits").Int64()

	const n = 3000
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		ok     int
		seen   = make(map[int64]bool, n)
		others = map[int]int{}
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := get(urls[i%len(urls)]+"/count", "application/json")
			mu.Lock()
			defer mu.Unlock()
			if code != 200 {
				others[code]++
				return
			}
			var r struct{ Count int64 }
			if err := json.Unmarshal(body, &r); err != nil {
				t.Errorf("bad /count body %q", body)
				return
			}
			if seen[r.Count] {
				t.Errorf("count %d returned twice", r.Count)
			}
			seen[r.Count] = true
			ok++
		}()
	}
	wg.Wait()

	after, err := srv.Client.Get(t.Context(), "visits").Int64()
	if err != nil {
		t.Fatal(err)
	}
	if after-before != int64(ok) {
		t.Errorf("counter rose by %d, but %d requests got 200", after-before, ok)
	}
	if ok != n {
		t.Errorf("%d of %d requests failed on a healthy stack: %v", n-ok, n, others)
	}
}

func TestRedisOutageAndRecovery(t *testing.T) {
	srv := redistest.Start(t)
	url := startApp(t, srv.Addr)
	if code, body := get(url+"/count", "text/plain"); code != 200 || string(body) != "1\n" {
		t.Fatalf("/count = %d %q, want 200 1", code, body)
	}

	srv.Stop()
	start := time.Now()
	code, body := get(url+"/count", "")
	if elapsed := time.Since(start); code != 503 || elapsed > time.Second {
		t.Errorf("/count with Redis stopped = %d %q after %v, want a fast 503", code, body, elapsed)
	}
	for path, want := range map[string]int{"/": 200, "/healthz": 200, "/readyz": 503} {
		if code, _ := get(url+path, ""); code != want {
			t.Errorf("GET %s with Redis stopped = %d, want %d", path, code, want)
		}
	}

	srv.Start()
	waitFor(t, 2*time.Second, url+"/count", 200) // same process, no restart
	if code, body := get(url+"/count", "text/plain"); code != 200 || string(body) != "3\n" {
		t.Errorf("/count after the restart = %d %q, want 3 (AOF kept 1, recovery counted 2)", code, body)
	}
}

func TestStartsWhileRedisIsDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	url := startApp(t, srv.Addr)
	if code, _ := get(url+"/readyz", ""); code != 503 {
		t.Fatalf("/readyz with Redis down = %d, want 503", code)
	}
	srv.Start()
	waitFor(t, 2*time.Second, url+"/readyz", 200)
}

// binary builds the command once per test run, for tests that need a real
// process: exit codes and signals.
var binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "tally-test")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "tally")
	out, err := exec.Command("go", "build", "-o", path, ".").CombinedOutput()
	if err != nil {
		return "", errors.New(string(out))
	}
	return path, nil
})

func buildBinary(t *testing.T) string {
	t.Helper()
	path, err := binary()
	if err != nil {
		t.Fatalf("go build: %v", err)
	}
	return path
}

func TestBadConfigExitsTwoWithOneLine(t *testing.T) {
	bin := buildBinary(t)
	for _, tc := range []struct{ env, mentions string }{
		{"PORT=99999", "PORT"},
		{"PORT=http", "PORT"},
		{"REDIS_ADDR=redis", "REDIS_ADDR"},
		{"REDIS_HOST=redis REDIS_PORT=abc", "REDIS_PORT"},
		{"REDIS_DB=-1", "REDIS_DB"},
		{"REDIS_TIMEOUT=soon", "REDIS_TIMEOUT"},
		{"REDIS_TIMEOUT=0s", "REDIS_TIMEOUT"},
		{"SHUTDOWN_TIMEOUT=forever", "SHUTDOWN_TIMEOUT"},
		{"LOG_LEVEL=loud", "LOG_LEVEL"},
		{"DEBUG_ADDR=6060", "DEBUG_ADDR"},
		{"REDIS_PASSWORD_FILE=/nonexistent/password", "REDIS_PASSWORD_FILE"},
		{"REDIS_PASSWORD=x REDIS_PASSWORD_FILE=/etc/hostname", "REDIS_PASSWORD_FILE"},
		{"REDIS_SENTINELS=sentinel-1", "REDIS_SENTINELS"},
		{"REDIS_SENTINELS=sentinel-1:26379,:26379", "REDIS_SENTINELS"},
		{"REDIS_SENTINELS=sentinel-1:26379 REDIS_ADDR=redis:6379", "REDIS_ADDR"},
		{"REDIS_MASTER_NAME=a,b", "REDIS_MASTER_NAME"},
		{"REDIS_WAIT_REPLICAS=-1", "REDIS_WAIT_REPLICAS"},
	} {
		cmd := exec.Command(bin)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, strings.Fields(tc.env)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("%s: err = %v, want exit code 2", tc.env, err)
			continue
		}
		msg := stderr.String()
		if strings.Count(msg, "\n") != 1 || !strings.Contains(msg, tc.mentions) || !strings.Contains(msg, "want") {
			t.Errorf("%s: stderr %q, want one line naming %s and what is expected", tc.env, msg, tc.mentions)
		}
	}
}

// REDIS_HOST and REDIS_PORT each work alone, with the other's default.
func TestRedisHostAndPortAlone(t *testing.T) {
	for env, want := range map[string]string{
		"":                                   "localhost:6379",
		"REDIS_PORT=6380":                    "localhost:6380",
		"REDIS_HOST=redis":                   "redis:6379",
		"REDIS_HOST=redis REDIS_PORT=6380":   "redis:6380",
		"REDIS_ADDR=cache:7000 REDIS_PORT=1": "cache:7000",
	} {
		vars := map[string]string{}
		for _, kv := range strings.Fields(env) {
			k, v, _ := strings.Cut(kv, "=")
			vars[k] = v
		}
		cfg, err := loadConfig(func(k string) string { return vars[k] })
		if err != nil || cfg.RedisAddr != want {
			t.Errorf("%q: Redis at %q (%v), want %s", env, cfg.RedisAddr, err, want)
		}
	}
}

// Given Sentinels, the app finds the primary through them and acknowledges
// a visit once a replica has it, by default.
func TestCountsThroughSentinels(t *testing.T) {
	r := redistest.StartReplicated(t, 1)
	url := startApp(t, "", "REDIS_SENTINELS", strings.Join(r.Sentinels, ","), "REDIS_MASTER_NAME", redistest.MasterName)
	if code, body := get(url+"/count", "text/plain"); code != 200 || strings.TrimSpace(string(body)) != "1" {
		t.Fatalf("/count through the Sentinels = %d %q; want 200 1", code, body)
	}
	r.Servers[1].Freeze()
	defer r.Servers[1].Thaw()
	if code, body := get(url+"/count", "text/plain"); code != 503 || !strings.Contains(string(body), "replica") {
		t.Errorf("/count with the replica frozen = %d %q; want 503 saying no replica confirmed it", code, body)
	}
}

// The password may come from a file, as Docker secrets are mounted; its
// trailing newline is not part of it.
func TestPasswordFromFile(t *testing.T) {
	srv := redistest.Start(t)
	path := filepath.Join(t.TempDir(), "redis-password")
	if err := os.WriteFile(path, []byte(redistest.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url := startApp(t, srv.Addr, "REDIS_PASSWORD", "", "REDIS_PASSWORD_FILE", path)
	if code, body := get(url+"/count", "text/plain"); code != 200 {
		t.Errorf("/count with the password from a file = %d %s", code, body)
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"tally", "--help"}, os.Getenv, &out); err != nil {
		t.Fatal(err)
	}
	for _, e := range envVars {
		if !strings.Contains(out.String(), e.name) {
			t.Errorf("--help does not list %s", e.name)
		}
	}
}

func TestHealthcheckSubcommand(t *testing.T) {
	bin := buildBinary(t)
	srv := redistest.Start(t)
	url := startApp(t, srv.Addr)
	port := url[strings.LastIndex(url, ":")+1:]

	if out, err := exec.Command(bin, "healthcheck").CombinedOutput(); err == nil {
		t.Errorf("healthcheck against the default port with nothing there passed: %s", out)
	}
	cmd := exec.Command(bin, "healthcheck")
	cmd.Env = []string{"PORT=" + port}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("healthcheck against a healthy instance: %v %s", err, out)
	}
}

func TestGracefulShutdownFinishesInFlightRequests(t *testing.T) {
	bin := buildBinary(t)
	srv := redistest.Start(t)
	port := testenv.FreePort(t)
	url := "http://" + testenv.Addr(port)
	cmd := exec.Command(bin)
	cmd.Env = []string{"PORT=" + strconv.Itoa(port), "REDIS_ADDR=" + srv.Addr,
		"REDIS_PASSWORD=" + redistest.Password, "REDIS_TIMEOUT=5s", "SHUTDOWN_TIMEOUT=5s"}
	var logs bytes.Buffer
	cmd.Stdout = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	waitFor(t, 5*time.Second, url+"/readyz", 200)

	// Stall Redis so the next /count is in flight when SIGTERM arrives.
	srv.Pause(1500 * time.Millisecond)
	type result struct {
		code int
		body []byte
	}
	slow := make(chan result, 1)
	go func() {
		code, body := get(url+"/count", "text/plain")
		slow <- result{code, body}
	}()
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	r := <-slow
	if r.code != 200 || string(r.body) != "1\n" {
		t.Errorf("in-flight /count during shutdown = %d %q, want 200 1", r.code, r.body)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v, want 0; logs:\n%s", err, logs.String())
	}
	if code, _ := get(url+"/healthz", ""); code != 0 {
		t.Errorf("listener still open after shutdown: /healthz = %d", code)
	}
}

func TestDebugListenerServesProfilesOnlyWhenAsked(t *testing.T) {
	srv := redistest.Start(t)
	debugPort := testenv.FreePort(t)
	url := startApp(t, srv.Addr, "DEBUG_ADDR", testenv.Addr(debugPort))
	if code, _ := get("http://"+testenv.Addr(debugPort)+"/debug/pprof/cmdline", ""); code != 200 {
		t.Errorf("debug listener answered %d", code)
	}
	if code, _ := get(url+"/debug/pprof/cmdline", ""); code != 404 {
		t.Errorf("profiles are reachable on the service port: %d", code)
	}
}

// The image stays small only while nothing in the binary calls methods by
// name through reflection: text/template (and html/template) do, and the
// linker then keeps every exported method of every type — 8 MB of go-redis
// commands. See web/pages.go.
func TestBinaryLeavesOutTemplates(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "text/template" || pkg == "html/template" {
			t.Errorf("cmd/tally depends on %s: the linker would keep every method go-redis has (+8 MB); see web/pages.go", pkg)
		}
	}
}
