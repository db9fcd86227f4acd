package redis_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tally/app"
	"tally/app/internal/redistest"
	"tally/app/internal/testenv"
	"tally/app/redis"
)

// go-redis writes each failed dial to stderr unless told otherwise, and these
// tests stop and freeze Redis on purpose: its lines would bury the tests' own.
func TestMain(m *testing.M) {
	redis.SetLogger(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

func newCounter(t testing.TB, addr, password string, timeout time.Duration) *redis.Counter {
	c := redis.New(redis.Config{Addr: addr, Password: password, Key: "visits", Timeout: timeout})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestIncrementCountsEachVisitOnce(t *testing.T) {
	srv := redistest.Start(t)
	c := newCounter(t, srv.Addr, redistest.Password, 300*time.Millisecond)
	ctx := t.Context()

	for i, tc := range []struct {
		visitID string
		want    int64
	}{
		{"", 1}, {"", 2}, // no id: always counts
		{"req-a", 3},
		{"req-a", 3}, // a resent request is not counted again
		{"req-b", 4},
		{"req-a", 3},
		{"", 5},
	} {
		got, err := c.Increment(ctx, tc.visitID)
		if err != nil || got != tc.want {
			t.Fatalf("call %d Increment(%q) = %d, %v; want %d", i, tc.visitID, got, err, tc.want)
		}
	}
	if n, _ := srv.Client.Get(ctx, "visits").Int64(); n != 5 {
		t.Errorf("visits = %d, want 5", n)
	}
	if ttl, _ := srv.Client.PTTL(ctx, "visits:visit:req-a").Result(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("a visit id is kept for %v, want a TTL of at most a minute", ttl)
	}
}

func TestErrorsSayWhy(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	for name, tc := range map[string]struct {
		counter *redis.Counter
		setup   func()
		reason  string
	}{
		"wrong password": {newCounter(t, srv.Addr, "wrong", 300*time.Millisecond), func() {}, "redis rejected the password"},
		"no password":    {newCounter(t, srv.Addr, "", 300*time.Millisecond), func() {}, "redis rejected the password"},
		"not a number": {newCounter(t, srv.Addr, redistest.Password, 300*time.Millisecond),
			func() { srv.Client.Set(ctx, "visits", "many", 0) }, "the counter key does not hold a number"},
	} {
		tc.setup()
		_, err := tc.counter.Increment(ctx, "")
		var ue *tally.UnavailableError
		if !errors.As(err, &ue) || ue.Reason != tc.reason {
			t.Errorf("%s: Increment error %v, want reason %q", name, err, tc.reason)
		}
	}
}

// A Redis that cannot be reached, or that stalls, fails a visit within the
// timeout with a reason clients may read (the web layer shows it).
func TestUnreachableOrStalledRedisFailsWithinTheBound(t *testing.T) {
	ctx := t.Context()
	down := newCounter(t, testenv.Addr(testenv.FreePort(t)), redistest.Password, 300*time.Millisecond)
	srv := redistest.Start(t)
	stalled := newCounter(t, srv.Addr, redistest.Password, 300*time.Millisecond)
	for name, tc := range map[string]struct {
		counter *redis.Counter
		setup   func()
		reason  string
	}{
		"down":    {down, func() {}, "cannot connect to redis"},
		"stalled": {stalled, func() { srv.Pause(2 * time.Second) }, "redis did not answer within 300ms"},
	} {
		tc.setup()
		start := time.Now()
		_, err := tc.counter.Increment(ctx, "")
		elapsed := time.Since(start)
		var ue *tally.UnavailableError
		if !errors.As(err, &ue) || ue.Reason != tc.reason {
			t.Errorf("%s: Increment error %v, want reason %q", name, err, tc.reason)
		}
		// The bound is 300ms; the slack covers a loaded test machine, and
		// the stall is 2s, so a missing bound still fails.
		if elapsed > time.Second {
			t.Errorf("%s: Increment took %v; the bound is 300ms", name, elapsed)
		}
	}
}

// BenchmarkIncrement times a visit's trip to a real Redis: counted with
// an id (the exactly-once script) and without, beside a raw INCR, the
// floor under both.
func BenchmarkIncrement(b *testing.B) {
	srv := redistest.Start(b)
	c := newCounter(b, srv.Addr, redistest.Password, time.Second)
	var ids atomic.Int64
	for name, visit := range map[string]func() error{
		"visit with id": func() error {
			_, err := c.Increment(b.Context(), "id"+strconv.FormatInt(ids.Add(1), 10))
			return err
		},
		"visit without id": func() error { _, err := c.Increment(b.Context(), ""); return err },
		"raw INCR (floor)": func() error { return srv.Client.Incr(b.Context(), "raw").Err() },
	} {
		b.Run(name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := visit(); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// A visit with an id rides out a Redis restart inside its timeout; one
// without fails at once rather than risk counting twice.
func TestVisitWithIDIsRetriedAcrossARestart(t *testing.T) {
	srv := redistest.Start(t)
	c := newCounter(t, srv.Addr, redistest.Password, 3*time.Second)
	if _, err := c.Increment(t.Context(), "warm-up"); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := c.Increment(t.Context(), ""); err == nil {
		t.Fatal("a visit without an id succeeded with Redis stopped")
	}
	restarted := make(chan struct{})
	go func() {
		time.Sleep(200 * time.Millisecond)
		srv.Start()
		close(restarted)
	}()
	n, err := c.Increment(t.Context(), "during-restart")
	<-restarted
	if err != nil || n != 2 {
		t.Fatalf("visit during a restart = %d, %v; want 2 once Redis is back", n, err)
	}
}

// Redis exiting between running a visit's script and answering it (as a
// graceful stop does) must not turn a counted visit into a 503: the visit is
// held until Redis is back and answered with the count it got. Visits that
// arrive while Redis is away still fail fast.
func TestVisitWhoseReplyWasLostIsAnsweredOnceRedisIsBack(t *testing.T) {
	srv := redistest.Start(t)
	relay := srv.Relay()
	const timeout = 300 * time.Millisecond
	c := newCounter(t, relay.Addr, redistest.Password, timeout)
	if _, err := c.Increment(t.Context(), "warm-up"); err != nil {
		t.Fatal(err)
	}

	relay.LoseNextReply()
	type result struct {
		n   int64
		err error
	}
	inFlight := make(chan result, 1)
	go func() {
		n, err := c.Increment(t.Context(), "in-flight")
		inFlight <- result{n, err}
	}()

	time.Sleep(200 * time.Millisecond) // the relay is down now
	start := time.Now()
	if _, err := c.Increment(t.Context(), "while-away"); err == nil {
		t.Error("a visit succeeded while Redis was away")
	} else if took := time.Since(start); took > 2*timeout+100*time.Millisecond {
		t.Errorf("a visit while Redis was away took %v to fail; want about the %v timeout", took, timeout)
	}

	time.Sleep(time.Second) // longer than the visit's timeouts
	relay.Up()
	got := <-inFlight
	if got.err != nil || got.n != 2 {
		t.Fatalf("visit whose reply was lost = %d, %v; want 2 once Redis is back", got.n, got.err)
	}
	if n, err := srv.Client.Get(t.Context(), "visits").Int64(); err != nil || n != 2 {
		t.Errorf("visits in Redis = %d, %v; want 2: the lost reply's visit counted once", n, err)
	}
}

// A Redis that got a visit's script and stalls before answering (a busy
// machine, a disk that blocks its writes) may have counted it: the visit is
// held until Redis answers and gets the count it got, not a 503.
func TestVisitRedisStalledOnIsAnsweredOnceItAnswers(t *testing.T) {
	srv := redistest.Start(t)
	const timeout = 300 * time.Millisecond
	c := newCounter(t, srv.Addr, redistest.Password, timeout)
	if _, err := c.Increment(t.Context(), "warm-up"); err != nil {
		t.Fatal(err)
	}
	srv.Freeze()
	stalled := 3 * timeout
	time.AfterFunc(stalled, srv.Thaw)
	start := time.Now()
	n, err := c.Increment(t.Context(), "stalled-on")
	if took := time.Since(start); err != nil || n != 2 {
		t.Fatalf("visit Redis stalled on = %d, %v after %v; want 2 once Redis answers after %v", n, err, took, stalled)
	}
	if n, err := srv.Client.Get(t.Context(), "visits").Int64(); err != nil || n != 2 {
		t.Errorf("visits in Redis = %d, %v; want 2: the stalled visit counted once", n, err)
	}
}

// While Redis is down, the pool's warm-up fails a burst of identical dials;
// the log gets one line for it, not one per dial.
func TestFailedDialBurstLogsOnce(t *testing.T) {
	var buf syncBuffer
	redis.SetLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
	t.Cleanup(func() { redis.SetLogger(slog.New(slog.DiscardHandler)) })
	srv := redistest.Start(t)
	srv.Stop()
	newCounter(t, srv.Addr, redistest.Password, 100*time.Millisecond)
	time.Sleep(500 * time.Millisecond) // the warm-up dials run in the background
	if n := strings.Count(buf.String(), `"component":"go-redis"`); n != 1 {
		t.Errorf("the pool's warm-up with Redis down logged %d lines, want 1:\n%s", n, buf.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
