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
	// Addr is the one Redis server, unless Sentinels are given: then the
	// Sentinels name the primary of MasterName, and the client follows it
	// through a failover. The Sentinels require Password too.
	Addr       string
	Sentinels  []string
	MasterName string
	Password   string
	DB         int
	Key        string
	// Timeout bounds a whole command: waiting for a pooled connection,
	// dialing, writing and reading the reply.
	Timeout time.Duration
	// Replicas is how many replicas must hold a visit before it is
	// acknowledged (WAIT); 0 acknowledges once the primary has it.
	Replicas int
}

// Counter is a tally.Counter kept in one Redis key.
type Counter struct {
	client   goredis.UniversalClient
	key      string
	timeout  time.Duration
	replicas int
}

var _ tally.Counter = (*Counter)(nil)

// New returns a Counter. It does not connect: the service may start while
// Redis is still down and becomes ready when it comes up.
func New(cfg Config) *Counter {
	addrs, master, dial := []string{cfg.Addr}, "", cfg.Timeout
	if len(cfg.Sentinels) > 0 {
		addrs, master = cfg.Sentinels, cfg.MasterName
		// go-redis asks the Sentinel it last used for the primary, twice,
		// before it drops it and asks the others, all within one command's
		// time: a dial to a dead node's Sentinel must take a third of it,
		// or a node lost with its Sentinel would fail every visit until
		// that name stopped resolving (seen in the swarm drills).
		dial = cfg.Timeout / 3
	}
	return &Counter{
		// One Redis, or the failover client when MasterName is set.
		client: goredis.NewUniversalClient(&goredis.UniversalOptions{
			Addrs:            addrs,
			MasterName:       master,
			Password:         cfg.Password,
			SentinelPassword: cfg.Password,
			DB:               cfg.DB,
			// A retried INCR whose reply was lost would count the visit twice.
			MaxRetries:            -1,
			DialTimeout:           dial,
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
		key:      cfg.Key,
		timeout:  cfg.Timeout,
		replicas: cfg.Replicas,
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
// count; see incrOnce.
func (c *Counter) Increment(ctx context.Context, visitID string) (int64, error) {
	if visitID != "" {
		n, err := c.incrOnce(ctx, visitID)
		if err != nil {
			return 0, c.unavailable(err)
		}
		return n, nil
	}
	tryCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var n int64
	var err error
	if c.replicas == 0 {
		n, err = c.client.Incr(tryCtx, c.key).Result()
	} else {
		n, err = c.thenWait(tryCtx, func(p goredis.Pipeliner) *goredis.Cmd { return p.Do(tryCtx, "INCR", c.key) })
	}
	if err != nil {
		return 0, c.unavailable(err)
	}
	return n, nil
}

// settleWithin bounds how long a visit Redis may have counted is held until
// Redis answers: a restart takes a second or two, a stop for maintenance or
// a failover a few more. It stays under nginx's proxy_read_timeout (10 s),
// past which nginx would give up on the replica.
const settleWithin = 8 * time.Second

// incrOnce runs the script, each try bounded by the timeout, until it
// answers or fails for good:
//   - while no try can have reached Redis (it cannot be reached, or it is
//     loading), for the timeout: a restart costs a slower answer, not a
//     503, and new visits fail fast while Redis is away;
//   - once a try may have reached Redis (the connection broke after the
//     script was sent, or the reply did not come in time: a stalled
//     machine, Redis exiting without answering the commands it ran last),
//     until settleWithin: a 503 would stand for a visit that was counted.
func (c *Counter) incrOnce(ctx context.Context, visitID string) (int64, error) {
	keys := []string{c.key, c.key + ":visit:" + visitID}
	start := time.Now()
	giveUp := start.Add(c.timeout)
	for {
		tryEnd := time.Now().Add(c.timeout)
		if giveUp.Before(tryEnd) {
			tryEnd = giveUp
		}
		tryCtx, cancel := context.WithDeadline(ctx, tryEnd)
		n, err := c.count(tryCtx, keys)
		cancel()
		// Not acknowledged: counted, and the answer already says so.
		if err == nil || errors.Is(err, ErrNotAcknowledged) {
			return n, err
		}
		if mayHaveRun(err) {
			giveUp = start.Add(settleWithin)
		}
		// Give up while an answer can still arrive in time.
		if ctx.Err() != nil || !transient(err) || time.Until(giveUp) < retryBackoff {
			return 0, err
		}
		select {
		case <-ctx.Done():
			return 0, err
		case <-time.After(retryBackoff):
		}
	}
}

// ErrNotAcknowledged says a visit was counted on the primary but fewer
// replicas than asked confirmed it in time: a failover now could lose it,
// so it is not acknowledged. Its id stays recorded, so the same request sent
// again returns the same count.
var ErrNotAcknowledged = errors.New("the visit reached too few replicas in time")

// count runs the script, followed by WAIT when visits must reach replicas.
func (c *Counter) count(ctx context.Context, keys []string) (int64, error) {
	if c.replicas == 0 {
		return incrOnce.Run(ctx, c.client, keys, visitTTL.Milliseconds()).Int64()
	}
	script := func(run func(context.Context, goredis.Scripter, []string, ...any) *goredis.Cmd) func(goredis.Pipeliner) *goredis.Cmd {
		return func(p goredis.Pipeliner) *goredis.Cmd { return run(ctx, p, keys, visitTTL.Milliseconds()) }
	}
	n, err := c.thenWait(ctx, script(incrOnce.EvalSha))
	if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		n, err = c.thenWait(ctx, script(incrOnce.Eval))
	}
	return n, err
}

// errDemoted says the primary became a replica between counting a visit and
// its WAIT (a planned failover, redis/failover.sh): the count ran there and
// reached the new primary before it took over, so the same id sent again
// returns it.
var errDemoted = errors.New("redis became a replica after counting the visit")

// thenWait sends the command write adds, and WAIT right behind it on the
// same connection (a pipeline: one round trip), since WAIT counts the
// writes of its own connection and cannot run inside a script.
func (c *Counter) thenWait(ctx context.Context, write func(goredis.Pipeliner) *goredis.Cmd) (int64, error) {
	var cmd, wait *goredis.Cmd
	_, _ = c.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		cmd = write(p)
		// Half the timeout: the pipeline's reply must come within all of it.
		wait = p.Do(ctx, "WAIT", c.replicas, (c.timeout / 2).Milliseconds())
		return nil
	})
	n, err := cmd.Int64()
	if err != nil {
		return 0, err
	}
	// A failed WAIT leaves the visit counted: the same error paths as a
	// lost reply of the script.
	acked, err := wait.Int64()
	if err != nil && strings.Contains(err.Error(), "WAIT cannot be used with replica") {
		return 0, errDemoted
	}
	if err != nil {
		return 0, err
	}
	if acked < int64(c.replicas) {
		return n, ErrNotAcknowledged
	}
	return n, nil
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

// mayHaveRun says a failed try may have run the script: its reply was lost,
// or it was sent and no reply came in time. Not a dial, nor a wait for a
// pooled connection: nothing was sent then.
func mayHaveRun(err error) bool {
	if lostReply(err) || errors.Is(err, errDemoted) {
		return true
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return opErr.Op != "dial" && opErr.Timeout()
	}
	return false
}

func timedOut(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout()
}

// transient errors may pass if the command is sent again: the connection
// failed, or Redis is starting. Wrong passwords and wrong types do not.
func transient(err error) bool {
	var netErr net.Error
	msg := err.Error()
	return errors.As(err, &netErr) || lostReply(err) || strings.HasPrefix(msg, "LOADING") ||
		// A failover: the client still talks to the old primary, now a
		// replica, or a primary waits for its replicas to come back.
		strings.HasPrefix(msg, "READONLY") || strings.Contains(msg, "NOREPLICAS") || errors.Is(err, errDemoted)
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
	case errors.Is(err, ErrNotAcknowledged):
		return "the visit is counted but no replica confirmed it in time"
	case strings.HasPrefix(msg, "READONLY"), errors.Is(err, errDemoted):
		return "redis is failing over"
	case strings.Contains(msg, "NOREPLICAS"):
		return "redis has too few replicas to take writes"
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
