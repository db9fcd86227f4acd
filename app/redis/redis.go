// Package redis keeps the tally counter in Redis.
package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"tally/app"
)

// Config says where the counter lives and how long one command may take.
type Config struct {
	Addr     string
	Password string
	DB       int
	Key      string
	// Timeout bounds a whole command: waiting for a pooled connection,
	// dialing, writing and reading the reply.
	Timeout time.Duration
}

// Counter is a tally.Counter kept in one Redis key.
type Counter struct {
	client  *goredis.Client
	key     string
	timeout time.Duration
}

var _ tally.Counter = (*Counter)(nil)

// New returns a Counter. It does not connect: the service may start while
// Redis is still down and becomes ready when it comes up.
func New(cfg Config) *Counter {
	return &Counter{
		client: goredis.NewClient(&goredis.Options{
			Addr:     cfg.Addr,
			Password: cfg.Password,
			DB:       cfg.DB,
			// A retried INCR whose reply was lost would count the visit twice.
			MaxRetries:            -1,
			DialTimeout:           cfg.Timeout,
			DialerRetries:         1,
			ReadTimeout:           cfg.Timeout,
			WriteTimeout:          cfg.Timeout,
			PoolTimeout:           cfg.Timeout,
			ContextTimeoutEnabled: true,
			// Connections kept open ahead of need: a burst then finds them
			// ready instead of dialing (TCP, AUTH, HELLO) on a busy machine,
			// where a handshake can outlast the timeout.
			MinIdleConns: 10,
			// CLIENT SETINFO costs every new connection a round trip, for
			// a name in CLIENT LIST that tally does not use.
			DisableIdentity: true,
			// Standalone Redis sends no maintenance notifications; asking for
			// them costs a round trip on every new connection.
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		}),
		key:     cfg.Key,
		timeout: cfg.Timeout,
	}
}

// visitTTL is how long a counted visit id is remembered: longer than any
// retry window of the load balancer in front (nginx gives up after seconds).
const visitTTL = 60 * time.Second

// incrOnce counts a visit unless its id was counted already, in one atomic
// step: INCR and the record of the id cannot be separated by a crash.
var incrOnce = goredis.NewScript(`
local seen = redis.call('GET', KEYS[2])
if seen then return tonumber(seen) end
local n = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], n, 'PX', ARGV[1])
return n`)

// retryBackoff spaces out the retries of a visit while Redis is away.
const retryBackoff = 25 * time.Millisecond

// Increment adds one visit with a single INCR and returns the new count; see
// tally.Counter for visitID.
//
// A visit without an id is tried once: had Redis run the INCR and only the
// reply been lost, a retry would count the visit twice. A visit with an id
// is retried, because the script makes a second run return the first one's
// count:
//   - within the timeout while Redis cannot be reached (a restart costs a
//     slower answer, not a 503);
//   - once more, for another timeout, when Redis did not answer in time (a
//     busy machine rather than a dead Redis);
//   - until settleWithin when the connection broke after the script was
//     sent: Redis exits without answering the commands it ran last, and a
//     503 would stand for a visit that was counted.
func (c *Counter) Increment(ctx context.Context, visitID string) (int64, error) {
	start := time.Now()
	tryCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if visitID == "" {
		n, err := c.client.Incr(tryCtx, c.key).Result()
		if err != nil {
			return 0, c.unavailable(err)
		}
		return n, nil
	}
	n, lost, err := c.incrOnce(tryCtx, visitID)
	if err != nil && ctx.Err() == nil && (lost || timedOut(err)) {
		deadline := time.Now().Add(c.timeout)
		if lost {
			deadline = start.Add(settleWithin)
		}
		againCtx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		n, _, err = c.incrOnce(againCtx, visitID)
	}
	if err != nil {
		return 0, c.unavailable(err)
	}
	return n, nil
}

// settleWithin bounds how long a visit whose reply was lost is held while
// Redis comes back: a restart takes a second or two, a stop for maintenance
// a few more. Only the visits in flight when Redis went away wait this long;
// new ones fail within the timeout. It stays under nginx's
// proxy_read_timeout (10 s), past which nginx would give up on the replica.
const settleWithin = 8 * time.Second

// incrOnce runs the script until it answers, fails for good, or ctx is
// nearly out of time. lost says whether some attempt broke after the script
// may have reached Redis.
func (c *Counter) incrOnce(ctx context.Context, visitID string) (n int64, lost bool, err error) {
	keys := []string{c.key, c.key + ":visit:" + visitID}
	for {
		n, err = incrOnce.Run(ctx, c.client, keys, visitTTL.Milliseconds()).Int64()
		if err == nil {
			return n, lost, nil
		}
		lost = lost || lostReply(err)
		// Give up while an answer can still arrive within the timeout.
		if deadline, _ := ctx.Deadline(); !transient(err) || time.Until(deadline) < retryBackoff {
			return 0, lost, err
		}
		select {
		case <-ctx.Done():
			return 0, lost, err
		case <-time.After(retryBackoff):
		}
	}
}

// lostReply says the connection broke after a command may have been sent: not
// a refused dial (nothing was sent) and not a timeout (the other case above).
func lostReply(err error) bool {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return false
	}
	msg := err.Error()
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe")
}

func timedOut(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout()
}

// transient errors may pass if the command is sent again: the connection
// failed, or Redis is starting. Wrong passwords and wrong types do not.
func transient(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) || lostReply(err) || strings.HasPrefix(err.Error(), "LOADING")
}

// Ping checks that Redis answers and accepts our credentials.
func (c *Counter) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.client.Ping(ctx).Err(); err != nil {
		return c.unavailable(err)
	}
	return nil
}

// Close releases the connection pool.
func (c *Counter) Close() error { return c.client.Close() }

// unavailable turns a go-redis error into one whose Reason a client may read.
func (c *Counter) unavailable(err error) error {
	return &tally.UnavailableError{Reason: reason(err, c.timeout), Err: err}
}

func reason(err error, timeout time.Duration) string {
	msg := err.Error()
	switch {
	case timedOut(err):
		return "redis did not answer within " + timeout.String()
	case errors.Is(err, context.Canceled):
		return "request cancelled"
	case strings.HasPrefix(msg, "NOAUTH"), strings.HasPrefix(msg, "WRONGPASS"):
		return "redis rejected the password"
	case strings.HasPrefix(msg, "LOADING"):
		return "redis is loading its data"
	case strings.HasPrefix(msg, "WRONGTYPE"), strings.Contains(msg, "not an integer"):
		return "the counter key does not hold a number"
	case errors.As(err, new(*net.OpError)):
		return "cannot connect to redis"
	case errors.Is(err, goredis.ErrClosed):
		return "shutting down"
	default:
		return "redis error"
	}
}

// SetLogger sends go-redis' own messages (failed dials, pool trouble) to
// logger, so every log line stays JSON. go-redis keeps one logger per process.
func SetLogger(logger *slog.Logger) {
	goredis.SetLogger(&logAdapter{logger: logger})
}

// logAdapter logs a message of go-redis once a second at most: while Redis
// is down, the pool filling its idle connections fails ten dials at once,
// each with the same words.
type logAdapter struct {
	logger *slog.Logger
	mu     sync.Mutex
	last   string
	at     time.Time
}

func (a *logAdapter) Printf(ctx context.Context, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	a.mu.Lock()
	repeat := msg == a.last && time.Since(a.at) < time.Second
	if !repeat {
		a.last, a.at = msg, time.Now()
	}
	a.mu.Unlock()
	if !repeat {
		a.logger.WarnContext(ctx, msg, "component", "go-redis")
	}
}
