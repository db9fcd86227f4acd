package main

import (
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"tally/testkit"
)

// The swarm's Redis drills: a primary and two replicas, one per lab node,
// and a Sentinel beside each (TestDeployToSwarm's steps). Node 1 is the
// swarm's only manager and stays up; the primary is moved off it first.

// redisLab is the lab's nodes as the drills reach them: node N runs redis
// (N=1) or redis-N, and sentinel-N; its engine answers on sockets[N-1].
type redisLab struct {
	d       *deployment
	sockets []string
}

func (r redisLab) node(name string) int {
	if name == "redis" {
		return 1
	}
	var n int
	if _, err := fmt.Sscanf(name, "redis-%d", &n); err != nil {
		r.d.t.Fatalf("%q is not one of the stack's Redis", name)
	}
	return n
}

// exec runs a shell command with the Redis password as REDISCLI_AUTH in the
// running task of the stack's service role on node n.
func (r redisLab) exec(n int, role, command string) (string, error) {
	flags := []string{"-H", r.sockets[n-1]}
	id, err := dockerOut(flags, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+r.d.serviceName(role))
	if err != nil || id == "" {
		return "", fmt.Errorf("no running task of %s on lab%d (%v)", role, n, err)
	}
	return dockerOut(flags, "exec", strings.Fields(id)[0], "sh", "-c", `REDISCLI_AUTH="$(cat "$REDIS_PASSWORD_FILE")" `+command)
}

// dump is what the Sentinels and Redis on the nodes not in down logged
// last, for a drill that failed.
func (r redisLab) dump(down ...int) {
	for n := 1; n <= len(r.sockets); n++ {
		if slices.Contains(down, n) {
			continue
		}
		name := "redis"
		if n > 1 {
			name = fmt.Sprintf("redis-%d", n)
		}
		for _, role := range []string{fmt.Sprintf("sentinel-%d", n), name} {
			r.d.t.Logf("%s on lab%d logged:\n%s", role, n, r.logs(n, role))
		}
	}
}

// logs is the last lines the stack's service role logged on node n.
func (r redisLab) logs(n int, role string) string {
	flags := []string{"-H", r.sockets[n-1]}
	id, err := dockerOut(flags, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+r.d.serviceName(role))
	if err != nil || id == "" {
		return fmt.Sprintf("(no task of %s on lab%d)", role, n)
	}
	out, _ := dockerOut(flags, "logs", "--tail", "40", strings.Fields(id)[0])
	return out
}

func dockerOut(flags []string, args ...string) (string, error) {
	out, err := engine{flags: flags}.docker(args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// sentinel asks the first Sentinel that answers, of those on nodes not
// in down.
func (r redisLab) sentinel(down []int, args string) (string, error) {
	var errs []string
	for n := 1; n <= len(r.sockets); n++ {
		if slices.Contains(down, n) {
			continue
		}
		out, err := r.exec(n, fmt.Sprintf("sentinel-%d", n), "redis-cli -p 26379 --raw "+args)
		if err == nil && !strings.HasPrefix(out, "ERR") {
			return out, nil
		}
		errs = append(errs, fmt.Sprintf("sentinel-%d: %v %s", n, err, out))
	}
	return "", fmt.Errorf("no Sentinel answered %q: %s", args, strings.Join(errs, "; "))
}

// primary is the Redis the Sentinels name as the primary now.
func (r redisLab) primary(down ...int) string {
	out, err := r.sentinel(down, "sentinel get-master-addr-by-name tally")
	if err != nil {
		return ""
	}
	return strings.SplitN(out, "\n", 2)[0]
}

// replicates says whether the Redis name is a replica of primary with its
// link up.
func (r redisLab) replicates(name, primary string) bool {
	out, err := r.exec(r.node(name), name, "redis-cli info replication")
	return err == nil && strings.Contains(out, "role:slave") &&
		strings.Contains(out, "master_host:"+primary+"\r") && strings.Contains(out, "master_link_status:up")
}

// fates sorts a drill's failed requests: not acknowledged (counted on the
// primary, no replica confirmed it in time), refused before the count
// could run (a primary that lost its replicas, a replica still taking
// writes' place), and of unknown fate (the answer was lost: it may have
// been counted).
func fates(load *testkit.Tally) (notAcked, refused, unknown int) {
	for reason, n := range load.Reasons {
		switch {
		case strings.Contains(reason, "no replica confirmed"):
			notAcked += n
		case strings.Contains(reason, "failing over"), strings.Contains(reason, "too few replicas"):
			refused += n
		}
	}
	return notAcked, refused, load.Failed() - notAcked - refused
}

// count is the counter as the primary holds it, read without a visit: a
// visit through a stack still settling may fail after it was counted.
func (r redisLab) count(down ...int) int64 {
	primary := r.primary(down...)
	out, err := r.exec(r.node(primary), primary, "redis-cli --raw get visits")
	var n int64
	if err == nil {
		_, err = fmt.Sscan(out, &n)
	}
	if err != nil {
		r.d.t.Fatalf("GET visits on the primary %s: %v %s", primary, err, out)
	}
	return n
}

// expectNoAcknowledgedVisitLost checks a drill that failed requests: every
// count answered 200 is at most the count after it and none twice, and the
// counter rose from before by at least the 200s and by no more than those,
// the visits not acknowledged and those whose answer was lost. It returns
// the rise.
func (r redisLab) expectNoAcknowledgedVisitLost(before int64, load *testkit.Tally, down ...int) int64 {
	d := r.d
	d.t.Helper()
	notAcked, _, unknown := fates(load)
	after := r.count(down...)
	if top := load.MaxCount(); top > after {
		d.t.Errorf("count %d was answered 200, but the counter is now at %d: an acknowledged visit was lost", top, after)
	}
	rose := after - before
	if rose < int64(load.OK) || rose > int64(load.OK+notAcked+unknown) {
		d.t.Errorf("the counter rose by %d for %d 200s, %d not acknowledged and %d of unknown fate (%v)", rose, load.OK, notAcked, unknown, load)
	}
	if dup := load.Duplicates(); len(dup) > 0 {
		d.t.Errorf("counts handed out twice: %v", dup)
	}
	return rose
}

// failoverNote is a drill's figures: how long from the fault to the first
// 200, and what the failed requests were.
func failoverNote(load *testkit.Tally, since time.Time, rose int64) string {
	resumed, ok := load.FirstOKAfter(since)
	first := "no 200 after it"
	if ok {
		first = "first 200 after " + resumed.Round(time.Millisecond).String()
	}
	notAcked, refused, unknown := fates(load)
	reasons := "none"
	if len(load.Reasons) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(load.Reasons)) {
			parts = append(parts, fmt.Sprintf("%d × %q", load.Reasons[k], k))
		}
		reasons = strings.Join(parts, ", ")
	}
	return fmt.Sprintf("%s, longest time without a 200 %v; the counter rose by %d for %d 200s, %d not acknowledged, %d refused, %d of unknown fate; 503 reasons: %s",
		first, load.LongestGap.Round(time.Millisecond), rose, load.OK, notAcked, refused, unknown, reasons)
}

// stepPlannedFailover moves the primary with make failover under load: a
// replica becomes the primary, and no acknowledged visit is lost.
func (r redisLab) stepPlannedFailover(t *testing.T) (string, *testkit.Tally) {
	d := r.d
	old := r.primary()
	if old == "" {
		t.Fatal("no Sentinel names a primary")
	}
	before := r.count()
	stop := testkit.SteadyLoad(d.url+"/count", 4)
	time.Sleep(2 * time.Second)
	asked := time.Now()
	// make failover, with the manager's socket: sentinel-1 runs there.
	cmd := exec.Command("bash", filepath.Join("..", "scripts", "failover.sh"))
	cmd.Env = append(os.Environ(), "STACK="+d.name, "DOCKER_HOST="+r.sockets[0])
	out, err := cmd.CombinedOutput()
	if err != nil {
		stop()
		t.Fatalf("make failover: %v\n%s\nsentinel-1 said:\n%s", err, out, r.logs(1, "sentinel-1"))
	}
	took := time.Since(asked)
	moved := testkit.WaitUntil(30*time.Second, func() bool { p := r.primary(); return p != "" && p != old })
	time.Sleep(3 * time.Second)
	load := stop()
	if !moved {
		t.Fatalf("30 s after SENTINEL FAILOVER the primary is still %s", old)
	}
	rose := r.expectNoAcknowledgedVisitLost(before, load)
	if resumed, ok := load.FirstOKAfter(asked); !ok || resumed > 10*time.Second {
		t.Errorf("counting resumed %v after the failover was asked (%v); want within 10 s", resumed, ok)
	}
	if t.Failed() || load.LongestGap > 10*time.Second {
		r.dump()
	}
	return fmt.Sprintf("%s → %s in %v; %s", old, r.primary(), took.Round(100*time.Millisecond), failoverNote(load, asked, rose)), load
}

// stepPrimaryNodeKilled kills the engine of the primary's node under
// load, as power lost: the Sentinels promote a replica, counting resumes
// within 10 s, and no acknowledged visit is lost. It returns the node.
func (r redisLab) stepPrimaryNodeKilled(t *testing.T) (int, string, *testkit.Tally) {
	d := r.d
	old := r.primary()
	n := r.node(old)
	if n == 1 {
		t.Fatalf("the primary %s is on lab1, the swarm's only manager, which the drills keep", old)
	}
	before := r.count()
	// Clients that give up after 2 s: a request held by a web task of the
	// dead node (until nginx's 10 s read timeout) would keep its client
	// from measuring when counting resumed.
	stop := testkit.SteadyLoadWith(&http.Client{Timeout: 2 * time.Second, Transport: testkit.Client.Transport}, d.url+"/count", 4)
	time.Sleep(2 * time.Second)
	labNode(t, "kill", fmt.Sprint(n))
	killed := time.Now() // the node's engine and all it ran are gone
	moved := testkit.WaitUntil(30*time.Second, func() bool { p := r.primary(n); return p != "" && p != old })
	time.Sleep(5 * time.Second)
	load := stop()
	if !moved {
		t.Fatalf("30 s after lab%d died the Sentinels still name %s", n, old)
	}
	rose := r.expectNoAcknowledgedVisitLost(before, load, n)
	if resumed, ok := load.FirstOKAfter(killed); !ok || resumed > 10*time.Second {
		t.Errorf("counting resumed %v after the primary's node died (%v); want within 10 s (%v)", resumed, ok, load)
		r.dump(n)
	}
	return n, fmt.Sprintf("%s on lab%d → %s; %s", old, n, r.primary(n), failoverNote(load, killed, rose)), load
}

// stepNodeBack starts node n again under load: its Redis rejoins as a
// replica of the primary, the primary stays, and no request fails.
func (r redisLab) stepNodeBack(t *testing.T, n int) (string, *testkit.Tally) {
	d := r.d
	primary := r.primary(n)
	name := "redis"
	if n > 1 {
		name = fmt.Sprintf("redis-%d", n)
	}
	before := d.counter()
	stop := testkit.SteadyLoad(d.url+"/count", 4)
	started := time.Now()
	labNode(t, "start", fmt.Sprint(n))
	rejoined := testkit.WaitUntil(2*time.Minute, func() bool { return r.replicates(name, primary) })
	took := time.Since(started)
	time.Sleep(3 * time.Second)
	load := stop()
	if !rejoined {
		t.Fatalf("two minutes after lab%d started, %s is not a replica of %s", n, name, primary)
	}
	if now := r.primary(); now != primary {
		t.Errorf("the primary moved from %s to %s when lab%d came back", primary, now, n)
	}
	d.expectExactCount(before, load)
	d.expectNoFailures(load)
	if load.Failed() > 0 {
		t.Logf("503 reasons: %v", load.Reasons)
		r.dump()
	}
	return fmt.Sprintf("%s a replica of %s again %v after lab%d started; the primary stays", name, primary, took.Round(time.Second), n), load
}

// stepReplicaNodeKilled kills node n, which holds a replica and a
// Sentinel, under load: the primary keeps a replica, and no visit fails for
// Redis. The web tasks on that node die with it: the requests they held
// wait for nginx's timeout (as when a worker dies), a handful at most.
func (r redisLab) stepReplicaNodeKilled(t *testing.T, n int) (string, *testkit.Tally) {
	d := r.d
	primary := r.primary()
	if r.node(primary) == n {
		t.Fatalf("lab%d holds the primary %s, not a replica", n, primary)
	}
	before := r.count()
	stop := testkit.SteadyLoad(d.url+"/count", 4)
	time.Sleep(2 * time.Second)
	labNode(t, "kill", fmt.Sprint(n))
	time.Sleep(10 * time.Second) // past the Sentinels' down-after
	load := stop()
	r.expectNoAcknowledgedVisitLost(before, load, n)
	if len(load.Reasons) > 0 || load.Failures["HTTP 503"] > 0 {
		t.Errorf("visits failed for Redis when a replica's node died: %v", load.Reasons)
	}
	if load.Failed() > (load.OK+load.Failed())/100 {
		t.Errorf("more than 1%% of requests failed while a replica's node died: %v", load)
	}
	if now := r.primary(n); now != primary {
		t.Errorf("the primary moved from %s to %s when a replica's node died", primary, now)
	}
	return fmt.Sprintf("replica and sentinel-%d lost; the primary %s stays; no visit failed for Redis, %d held by web tasks on the lost node", n, primary, load.Failed()), load
}
