package e2e

import (
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"tally/testkit"
)

// TestStack drives the real Compose stack through nginx's published port on
// 127.0.0.1. The steps share one stack and run in order.
func TestStack(t *testing.T) {
	requireDocker(t)
	s := newStack(t)
	s.up(3)

	t.Run("serves through nginx", func(t *testing.T) {
		if r := testkit.Get(s.url("/")); r.Code != 200 || r.Instance == "" {
			t.Fatalf("GET / = %d %q %v", r.Code, r.Instance, r.Err)
		}
		a, b := testkit.Get(s.url("/count")), testkit.Get(s.url("/count"))
		if a.Code != 200 || b.Code != 200 || b.Count != a.Count+1 {
			t.Fatalf("two /count = %d:%d then %d:%d, want consecutive counts", a.Code, a.Count, b.Code, b.Count)
		}
		if r := testkit.Get(s.url("/nginx-health")); r.Code != 200 {
			t.Errorf("/nginx-health = %d", r.Code)
		}
	})

	t.Run("serves HTTPS with the certificate of the stack's own CA", func(t *testing.T) {
		ca := s.localCA()
		client := testkit.TLSClient(ca)
		for _, host := range []string{"localhost", "127.0.0.1"} {
			url := "https://" + net.JoinHostPort(host, strconv.Itoa(s.tlsPort)) + "/count"
			before := s.counter()
			r := testkit.GetWith(client, url)
			if r.Code != 200 || r.Count != before+1 {
				t.Errorf("GET %s = %d, count %d (%v); want 200 and the next count, %d", url, r.Code, r.Count, r.Err, before+1)
			}
		}
		resp, err := client.Get(s.tlsURL("/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Errorf("HTTPS answered over %s, want HTTP/2", resp.Proto)
		}
		// HSTS holds for every port of a host: on localhost it would turn
		// the browser's plain HTTP to any local server into HTTPS.
		if h := resp.Header.Get("Strict-Transport-Security"); h != "" {
			t.Errorf("a local run sends HSTS (%q)", h)
		}
		if p := testkit.ExpectTLS(net.JoinHostPort("127.0.0.1", strconv.Itoa(s.tlsPort)), "localhost", ca); len(p) > 0 {
			t.Errorf("TLS at the edge: %v", p)
		}
		// Plain HTTP goes on serving a local run, as it always did.
		if r := testkit.Get(s.url("/count")); r.Code != 200 {
			t.Errorf("plain HTTP /count = %d %v", r.Code, r.Err)
		}
		// The CA's key stays with the certs service: nginx, on the
		// internet's side, could sign for localhost with it.
		if out := s.compose("exec", "-T", "nginx", "ls", "/etc/nginx/tally/tls/"); strings.Contains(out, "ca-key") {
			t.Errorf("nginx can see the CA's key:\n%s", out)
		}
	})

	t.Run("a replica is told how the request came: X-Forwarded-Proto, the client, the request id", func(t *testing.T) {
		client := testkit.TLSClient(s.localCA())
		stop := s.echoReplica()
		defer stop()
		for _, c := range []struct {
			url, proto string
			client     *http.Client
		}{{s.tlsURL("/"), "https", client}, {s.url("/"), "http", testkit.Client}} {
			got := s.echoed(c.client, c.url)
			if want := "proto=" + c.proto + " "; !strings.HasPrefix(got, want) {
				t.Errorf("through %s a replica got %q; want %q first", c.url, got, want)
			}
			if !strings.Contains(got, " id=") || strings.Contains(got, " id= ") {
				t.Errorf("through %s a replica got no request id: %q", c.url, got)
			}
		}
	})

	t.Run("spreads over every replica", func(t *testing.T) {
		res := testkit.NewTally()
		for range 60 {
			res.Add(testkit.Get(s.url("/")))
		}
		if len(res.Instances) != 3 {
			t.Errorf("60 requests reached %d instances, want 3: %v", len(res.Instances), res)
		}
	})

	t.Run("3000 concurrent counts are exact", func(t *testing.T) {
		before := s.counter()
		res := testkit.Burst(s.url("/count"), 3000)
		after := s.counter()
		if after-before != int64(res.OK) {
			t.Errorf("counter rose by %d, but %d requests got 200 (%v)", after-before, res.OK, res)
		}
		if d := res.Duplicates(); len(d) > 0 {
			t.Errorf("counts handed out twice: %v", d)
		}
		if res.Failed() > 0 {
			t.Errorf("requests failed on a healthy stack: %v", res)
		}
	})

	t.Run("every hop reuses its connections", func(t *testing.T) {
		// nginx keeps idle connections to the replicas (upstream keepalive)
		// and each replica a pool to Redis: a visit opens none. Health
		// checks, which connect inside their own container, open a few.
		type hop struct {
			what    string
			service string
			opened  bool // count what it opened, not what it accepted
			before  int64
		}
		hops := []*hop{{"nginx → replicas", "nginx", true, 0}, {"replicas, accepted", "web", false, 0},
			{"replicas → Redis", "web", true, 0}, {"Redis, accepted", "redis", false, 0}}
		count := func(h *hop) int64 {
			opened, accepted := s.tcpOpens(h.service)
			if h.opened {
				return opened
			}
			return accepted
		}
		for _, h := range hops {
			h.before = count(h)
		}
		stop := testkit.SteadyLoad(s.url("/count"), 8)
		time.Sleep(3 * time.Second)
		load := stop()
		if load.OK < 300 || load.Failed() > 0 {
			t.Fatalf("load on a healthy stack: %v", load)
		}
		for _, h := range hops {
			if n := count(h) - h.before; n > int64(load.OK)/50 {
				t.Errorf("%s: %d new TCP connections for %d visits; want at most one per 50", h.what, n, load.OK)
			} else {
				t.Logf("%s: %d new TCP connections for %d visits", h.what, n, load.OK)
			}
		}
	})

	t.Run("scaling under load loses nothing", func(t *testing.T) {
		before := s.counter()
		stop := testkit.SteadyLoad(s.url("/count"), 8)
		s.compose("up", "-d", "--no-build", "--wait", "--scale", "web=5", "--no-recreate")
		time.Sleep(3 * time.Second) // nginx re-resolves every second
		s.compose("up", "-d", "--no-build", "--wait", "--scale", "web=2", "--no-recreate")
		time.Sleep(2 * time.Second)
		res := stop()
		t.Logf("scale 3→5→2 under load: %v", res)
		if res.Failed() > 0 {
			t.Errorf("requests failed while scaling: %v", res)
		}
		if len(res.Instances) < 5 {
			t.Errorf("load reached %d instances, want all 5", len(res.Instances))
		}
		if got := s.counter() - before; got != int64(res.OK) {
			t.Errorf("counter rose by %d, %d requests got 200", got, res.OK)
		}
		if n := len(s.containers("web")); n != 2 {
			t.Errorf("%d web containers after scaling to 2", n)
		}
	})

	t.Run("a killed replica loses nothing", func(t *testing.T) {
		s.compose("up", "-d", "--no-build", "--wait", "--scale", "web=3", "--no-recreate")
		time.Sleep(2 * time.Second)
		before := s.counter()
		stop := testkit.SteadyLoad(s.url("/count"), 8)
		time.Sleep(time.Second)
		victim := s.containers("web")[0]
		if out, err := exec.Command("docker", "kill", victim).CombinedOutput(); err != nil {
			t.Fatalf("docker kill: %v %s", err, out)
		}
		time.Sleep(3 * time.Second)
		res := stop()
		t.Logf("kill -9 of one replica under load: %v", res)
		if res.Failed() > 0 {
			t.Errorf("requests failed when a replica was killed: %v", res)
		}
		if got := s.counter() - before; got != int64(res.OK) {
			t.Errorf("counter rose by %d, %d requests got 200", got, res.OK)
		}
		if d := res.Duplicates(); len(d) > 0 {
			t.Errorf("counts handed out twice: %v", d)
		}
	})

	t.Run("make rollout hands nginx's port over and reloads its config with no failed request", func(t *testing.T) {
		old := s.containers("nginx")
		before := s.counter()
		stop := testkit.SteadyLoad(s.url("/count"), 8)
		time.Sleep(time.Second)
		s.rollout("ROLLOUT=edge", "EDGE=handoff")
		handed := s.containers("nginx")
		s.rollout("ROLLOUT=edge")
		time.Sleep(time.Second)
		res := stop()
		t.Logf("an nginx handoff and a reload under load: %v", res)
		if res.Failed() > 0 {
			t.Errorf("requests failed: %v", res)
		}
		if got := s.counter() - before; got != int64(res.OK) {
			t.Errorf("counter rose by %d, %d requests got 200", got, res.OK)
		}
		if len(handed) != 1 || slices.Contains(old, handed[0]) {
			t.Errorf("nginx was %v, after the handoff %v: want one new nginx", old, handed)
		}
		if now := s.containers("nginx"); !slices.Equal(now, handed) {
			t.Errorf("nginx was %v, after the reload %v: want the same container", handed, now)
		}
	})

	t.Run("the count survives restarts", func(t *testing.T) {
		testkit.Get(s.url("/count"))
		before := s.counter()
		s.compose("restart", "redis")
		if got := s.counter(); got != before {
			t.Errorf("after restarting Redis the count is %d, was %d", got, before)
		}
		s.compose("down") // no -v: the volume stays
		s.up(3)
		if got := s.counter(); got != before {
			t.Errorf("after down and up the count is %d, was %d", got, before)
		}
		if !testkit.WaitUntil(5*time.Second, func() bool { return testkit.Get(s.url("/count")).Count == before+1 }) {
			t.Errorf("/count after down and up did not go on from %d", before)
		}
	})

	t.Run("Redis down gives fast 503s and recovers", func(t *testing.T) {
		s.compose("stop", "redis")
		r := testkit.Get(s.url("/count"))
		if r.Code != 503 || r.Elapsed > time.Second {
			t.Errorf("/count with Redis stopped = %d after %v, want a 503 within the 300ms bound", r.Code, r.Elapsed)
		}
		if r := testkit.Get(s.url("/")); r.Code != 200 {
			t.Errorf("/ with Redis stopped = %d, want 200", r.Code)
		}
		s.compose("start", "redis")
		start := time.Now()
		// Redis itself takes a moment to load; the app must follow within 2s
		// of Redis answering.
		if !testkit.WaitUntil(30*time.Second, func() bool { _, err := s.redisCLI(false, "PING"); return err == nil }) {
			t.Fatal("Redis did not come back")
		}
		ready := time.Now()
		if !testkit.WaitUntil(2*time.Second, func() bool { return testkit.Get(s.url("/count")).Code == 200 }) {
			t.Errorf("/count not 200 within 2s of Redis answering again (%v after start)", time.Since(start))
		}
		t.Logf("Redis answered %v after start; /count followed %v later", ready.Sub(start), time.Since(ready))
	})

	t.Run("secure by default", func(t *testing.T) {
		if out, err := s.composeOutput("port", "redis", "6379"); err == nil {
			t.Errorf("Redis is published on the host: %s", out)
		}
		for _, id := range s.containers("redis") {
			out, _ := exec.Command("docker", "inspect", "-f", "{{json .NetworkSettings.Ports}}", id).Output()
			if strings.Contains(string(out), "HostPort") {
				t.Errorf("Redis container %s publishes a port: %s", id, out)
			}
		}
		// Under memory pressure Redis sheds remembered visit ids, never the count.
		if out, _ := s.redisCLI(false, "CONFIG", "GET", "maxmemory-policy"); !strings.HasSuffix(out, "volatile-ttl") {
			t.Errorf("Redis maxmemory-policy = %q, want volatile-ttl", out)
		}
		if out, err := s.redisCLI(true, "GET", "visits"); err == nil && !strings.Contains(out, "NOAUTH") {
			t.Errorf("Redis answered without the password: %q", out)
		}
		// Only the public routes at the edge; a scraper on the stack's
		// network (nginx's container is there) still reads the metrics.
		for _, path := range testkit.InternalRoutes {
			if code, _, err := testkit.Page(s.url(path)); code != 404 {
				t.Errorf("GET %s through nginx = %d %v, want 404", path, code, err)
			}
		}
		if out, err := s.composeOutput("exec", "-T", "nginx", "bash", "-c", testkit.ScrapeMetrics); !strings.Contains(out, "scraped") {
			t.Errorf("a scraper on the stack's network cannot read web:8080/metrics: %v %s", err, out)
		}
		probe := `exec 3<>/dev/tcp/redis/6379 && echo reached`
		if out, _ := s.composeOutput("exec", "-T", "nginx", "bash", "-c", probe); strings.Contains(out, "reached") {
			t.Errorf("nginx's container can reach Redis: %s", out)
		}
		all := strings.Fields(s.compose("ps", "-q"))
		if len(all) < 3 {
			t.Fatalf("the stack has %d containers, want nginx, Redis and web", len(all))
		}
		if shown := testkit.ShownByInspect(t, s.password, nil, all...); len(shown) > 0 {
			t.Errorf("docker inspect shows the Redis password for %v", shown)
		}
		for _, service := range []string{"edge", "nginx", "web", "redis"} {
			for _, id := range s.containers(service) {
				out, err := exec.Command("docker", "top", id, "-o", "uid,pid,comm").Output()
				if err != nil {
					t.Fatalf("docker top %s: %v", id, err)
				}
				for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n")[1:] {
					if f := strings.Fields(line); len(f) > 0 && f[0] == "0" {
						t.Errorf("%s container %.12s runs %q as root", service, id, line)
					}
				}
				cfg, _ := exec.Command("docker", "inspect", "-f",
					"{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}}", id).Output()
				if got := strings.TrimSpace(string(cfg)); got != "true [ALL] [no-new-privileges:true]" {
					t.Errorf("%s container %.12s: read-only, cap_drop, security_opt = %s", service, id, got)
				}
			}
		}
	})
}
