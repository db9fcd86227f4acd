package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"tally/app/internal/testenv"
)

// MasterName is the name the test Sentinels monitor the primary by.
const MasterName = "tally"

// Sentinel timings, short so a test sees a failover within seconds.
const (
	downAfter       = 1000 * time.Millisecond
	failoverTimeout = 5 * time.Second
)

// Replicated is a primary, its replicas and three Sentinels watching them,
// all with Password, as the swarm target runs them. The primary takes
// writes only while a replica is connected (min-replicas-to-write 1).
type Replicated struct {
	Servers   []*Server // Servers[0] is the first primary
	Sentinels []string
	sentinel  *goredis.SentinelClient
	t         testing.TB
}

// StartReplicated runs a primary with replicas replicas and three Sentinels
// quorum 2, and waits until every Sentinel knows every replica.
func StartReplicated(t testing.TB, replicas int) *Replicated {
	t.Helper()
	// Every server may become the primary or a replica of a new one.
	common := []string{"--masterauth", Password, "--min-replicas-to-write", "1", "--min-replicas-max-lag", "10", "--repl-diskless-sync-delay", "0"}
	primary := Start(t, common...)
	r := &Replicated{Servers: []*Server{primary}, t: t}
	for range replicas {
		host, port, _ := strings.Cut(primary.Addr, ":")
		r.Servers = append(r.Servers, Start(t, append(common, "--replicaof", host, port)...))
	}
	// Ready once a write reaches every replica: until the replicas have
	// synced and acknowledged, the primary refuses writes or WAIT times out.
	if !r.waitUntil(10*time.Second, func() bool {
		conn := primary.Client.Conn() // WAIT counts its own connection's writes
		defer conn.Close()
		ctx := context.Background()
		if conn.Set(ctx, "redistest:ready", 1, 0).Err() != nil {
			return false
		}
		acked, err := conn.Do(ctx, "WAIT", replicas, 100).Int()
		return err == nil && acked == replicas
	}) {
		t.Fatalf("a write on the primary %s did not reach %d replicas within 10s", primary.Addr, replicas)
	}
	for range 3 {
		r.Sentinels = append(r.Sentinels, r.startSentinel(primary.Addr))
	}
	r.sentinel = goredis.NewSentinelClient(&goredis.Options{Addr: r.Sentinels[0], Password: Password, MaxRetries: -1})
	t.Cleanup(func() { r.sentinel.Close() })
	if !r.waitUntil(10*time.Second, func() bool {
		for _, addr := range r.Sentinels {
			c := goredis.NewSentinelClient(&goredis.Options{Addr: addr, Password: Password})
			got, err := c.Replicas(context.Background(), MasterName).Result()
			c.Close()
			if err != nil || len(got) < replicas {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("the Sentinels did not all see %d replicas of %s within 10s", replicas, primary.Addr)
	}
	return r
}

func (r *Replicated) startSentinel(primary string) string {
	r.t.Helper()
	port := testenv.FreePort(r.t)
	dir := r.t.TempDir()
	host, primaryPort, _ := strings.Cut(primary, ":")
	conf := fmt.Sprintf(`bind 127.0.0.1
port %d
dir %s
requirepass %s
sentinel monitor %s %s %s 2
sentinel auth-pass %s %s
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s %d
`, port, dir, Password, MasterName, host, primaryPort, MasterName, Password,
		MasterName, downAfter.Milliseconds(), MasterName, failoverTimeout.Milliseconds())
	// Sentinel rewrites its file as it learns: one of its own per process.
	path := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		r.t.Fatal(err)
	}
	// The primary's binary: Sentinel is redis-server in sentinel mode.
	cmd := exec.Command(r.Servers[0].bin, path, "--sentinel")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start redis-sentinel: %v", err)
	}
	r.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := testenv.Addr(port)
	if !r.waitUntil(5*time.Second, func() bool {
		c := goredis.NewSentinelClient(&goredis.Options{Addr: addr, Password: Password})
		defer c.Close()
		return c.Ping(context.Background()).Err() == nil
	}) {
		r.t.Fatalf("redis-sentinel on %s did not answer within 5s: %s", addr, out)
	}
	return addr
}

// Primary is the server the Sentinels name as the primary now.
func (r *Replicated) Primary() *Server {
	r.t.Helper()
	addr, err := r.sentinel.GetMasterAddrByName(context.Background(), MasterName).Result()
	if err != nil {
		r.t.Fatalf("SENTINEL get-master-addr-by-name: %v", err)
	}
	for _, s := range r.Servers {
		if s.Addr == strings.Join(addr, ":") {
			return s
		}
	}
	r.t.Fatalf("the Sentinels name %v as the primary, none of %d servers", addr, len(r.Servers))
	return nil
}

func (r *Replicated) waitUntil(limit time.Duration, ok func() bool) bool {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok() {
			return true
		}
	}
	return false
}
