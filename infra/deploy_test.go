package main

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optrefresh"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"

	"tally/testkit"
)

// TestDeployToLocalEngine deploys the real program with the real pulumi CLI
// and docker provider to this machine's Docker engine, and drives it
// through what users do to a running stack, each under load where clients
// would notice: scaling, an app rollout, an nginx change, a Redis image
// change, drift, destroy. Each step asserts what changed (and nothing
// else), that no request failed where none may, and that the counter rose
// by exactly the number of visits answered 200.
func TestDeployToLocalEngine(t *testing.T) {
	ws := newWorkspace(t)
	runSteps(t, newDeployment(t, ws, "t"+randomHex(3), localEngine(), testkit.FreePort(t)), true)
}

// TestDeployToCurrentEngine runs the steps on a lab node whose engine is
// the one current Docker installs run (Engine 29 and later: API 1.52+,
// containerd 2), as lab/engine.env pins it, reached over TLS: the program
// and the provider must work there as on this machine's own engine. It
// leaves out the steps that only make an earlier step's engine calls again
// (a CI run is long enough with the engine's build in it).
func TestDeployToCurrentEngine(t *testing.T) {
	ws := newWorkspace(t)
	lab := testkit.Lab(t, "..", slices.Collect(maps.Values(ws.images)), "ENGINE=current")
	t.Logf("the lab's engine: %s", lab["LAB_ENGINE"])
	var api float64
	if _, err := fmt.Sscanf(lab["LAB_ENGINE"][strings.Index(lab["LAB_ENGINE"], "API ")+4:], "%g", &api); err != nil || api < 1.52 {
		t.Fatalf("the lab's engine is %q; want Docker API 1.52 or later", lab["LAB_ENGINE"])
	}
	_, tlsHost := labEngines(t, lab)
	runSteps(t, newDeployment(t, ws, "c"+randomHex(3), tlsHost, 0), false)
}

// runSteps drives d through what users do to a running stack, each step
// starting from where the previous one left it; all=false leaves out the
// steps marked repeat, whose engine calls an earlier step makes already.
func runSteps(t *testing.T, d *deployment, all bool) {
	steps := []struct {
		name   string
		run    func(t *testing.T, d *deployment)
		repeat bool
	}{
		{"up from empty serves through every replica", stepUp, false},
		{"preview and refresh right after up show no changes", stepNoChanges, false},
		{"replicas 3 to 5 under load creates exactly two", stepScale(5), false},
		{"replicas 5 to 2 under load deletes exactly three", stepScale(2), false},
		{"an app change rolls out under load with no failed request", stepAppRollout, false},
		{"an nginx config change reloads nginx in place with no failed request", stepNginxConfig, false},
		{"an nginx config nginx refuses fails the deploy and changes nothing", stepNginxRefusedConfig, true},
		{"a new nginx image takes over the port with no failed request", stepNginxImage, false},
		{"a Redis image change keeps the count", stepRedisImage, false},
		{"a new Redis password reaches Redis and every replica", stepNewPassword, true},
		{"a web container removed by hand comes back", stepDrift, false},
		{"a certificate given serves HTTPS, plain HTTP redirecting there", stepHTTPSGiven, false},
		{"a new certificate reloads nginx in place under load over HTTPS", stepNewCertificate, true},
		{"destroy keeps the Redis volume", stepDestroyKeepsData, false},
		{"destroy with retainData=false removes it", stepDestroyRemovesData, false},
		// The same script on every target: the local engine proves it.
		{"a backup restored into a new stack continues the count", stepBackupRestored, true},
		{"scheduled backups: a checked snapshot every 10 s, the last 2 kept", stepScheduledBackups, true},
	}
	for _, s := range steps {
		if s.repeat && !all {
			continue
		}
		if !t.Run(s.name, func(t *testing.T) { d.t = t; s.run(t, d) }) {
			t.Fatalf("stopping: step %q failed", s.name)
		}
	}
}

func stepUp(t *testing.T, d *deployment) {
	res := d.up()
	d.expectServing(res, fmt.Sprintf("http://%s:%d/", d.engine.urlHost(), d.port), 3)
	d.expectOnlyPublicRoutes()
	if webs, _ := res.Outputs["webContainers"].Value.([]any); len(webs) != 3 {
		t.Errorf("webContainers output = %v, want 3 names", res.Outputs["webContainers"].Value)
	}
	d.expectPasswordHidden()
}

func stepNoChanges(t *testing.T, d *deployment) {
	d.expectNoChanges()
	var out bytes.Buffer
	if _, err := d.stack.Refresh(d.ctx, optrefresh.ExpectNoChanges(), optrefresh.ProgressStreams(&out)); err != nil {
		t.Fatalf("refresh --expect-no-changes: %v\n%s", err, out.String())
	}
}

// stepScale changes the number of replicas under load: only replicas are
// created or deleted, the others and Redis and nginx kept, and nginx sends
// to every replica there is.
func stepScale(to int) func(t *testing.T, d *deployment) {
	return func(t *testing.T, d *deployment) {
		before := d.ids()
		d.setConfig("tally:replicas", strconv.Itoa(to))
		res, load := d.upUnderLoad()
		if diff := to - len(before.web); diff > 0 {
			d.expectChanges(res, map[string]int{"create": diff})
		} else {
			d.expectChanges(res, map[string]int{"delete": -diff})
		}
		d.expectNoFailures(load)
		after := d.ids()
		kept := len(intersect(before.web, after.web)) == min(len(before.web), to)
		if !slices.Equal(before.redis, after.redis) || !slices.Equal(before.nginx, after.nginx) || len(after.web) != to || !kept {
			t.Errorf("scaling to %d touched more than the replicas added or removed: before %+v, after %+v", to, before, after)
		}
		d.expectInstances(to)
	}
}

func stepAppRollout(t *testing.T, d *deployment) {
	marker := "rolled out " + randomHex(4)
	d.appendFile("app/web/pages/index.html", "<p>"+marker+"</p>\n")
	before := d.ids()
	res, load := d.upUnderLoad()
	// The image is rebuilt (an update of the image resource) and every
	// replica replaced; nothing else.
	d.expectChanges(res, map[string]int{"update": 1, "replace": 2})
	d.expectNoFailures(load)
	after := d.ids()
	if !slices.Equal(before.redis, after.redis) || !slices.Equal(before.nginx, after.nginx) {
		t.Errorf("an app rollout touched Redis or nginx: before %+v, after %+v", before, after)
	}
	if len(after.web) != 2 || len(intersect(before.web, after.web)) != 0 {
		t.Errorf("web containers before %v, after %v: want two new ones", before.web, after.web)
	}
	for range 10 {
		if body := d.page("/"); !strings.Contains(body, marker) {
			t.Fatalf("a replica still serves the old page after the rollout: %q", body)
		}
	}
}

// A change to nginx's config reaches the running nginx as a new config
// release (a new run of the release step, nothing else), which nginx
// reloads gracefully: the same containers serve the new config, and no
// request fails.
func stepNginxConfig(t *testing.T, d *deployment) {
	marker := "release-" + randomHex(3)
	d.editFile("nginx/routes.conf", "add_header Referrer-Policy no-referrer always;",
		"add_header Referrer-Policy no-referrer always;\n        add_header X-Tally-Test "+marker+" always;")
	before := d.ids()
	res, load := d.upUnderLoad()
	d.expectChanges(res, map[string]int{"replace": 2}) // the release's files and the release step's run
	if after := d.ids(); !slices.Equal(before.nginx, after.nginx) || !slices.Equal(before.port, after.port) || !slices.Equal(before.web, after.web) {
		t.Errorf("an nginx config change: before %+v, after %+v; want every container kept", before, after)
	}
	d.expectNoFailures(load)
	d.expectHeader("X-Tally-Test", marker)
	d.expectNoChanges()
}

// A config nginx refuses fails the deploy with nginx's own reason; the
// running nginx keeps serving the config it has, and no request fails.
// Put right, the next deploy goes through.
func stepNginxRefusedConfig(t *testing.T, d *deployment) {
	d.editFile("nginx/upstream.conf", "keepalive 128;", "keepalive 128;\n    no_such_directive on;")
	before := d.ids()
	marker := d.header("X-Tally-Test")
	start := d.counter()
	stop := testkit.SteadyLoad(d.url+"/count", 4)
	out, err := d.upFails()
	time.Sleep(2 * time.Second)
	load := stop()
	d.expectExactCount(start, load)
	if !strings.Contains(out, `unknown directive "no_such_directive"`) {
		t.Errorf("pulumi up with a config nginx refuses: %v; want nginx's reason in its output:\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "refused its config") || strings.Contains(line, "[emerg]") {
			t.Logf("pulumi up said: %s", strings.TrimSpace(line))
		}
	}
	if after := d.ids(); !slices.Equal(before.nginx, after.nginx) || !slices.Equal(before.port, after.port) {
		t.Errorf("a refused config: before %+v, after %+v; want nginx kept", before, after)
	}
	d.expectNoFailures(load)
	d.expectHeader("X-Tally-Test", marker)
	d.editFile("nginx/upstream.conf", "\n    no_such_directive on;", "")
	d.up()
	d.expectNoChanges()
}

// A new nginx image needs a new nginx process: the new container starts in
// the port holder's network namespace beside the old one, both listening
// with reuseport, and the old one quits gracefully once the new one is
// healthy. The port holder stays; no request fails.
func stepNginxImage(t *testing.T, d *deployment) {
	image := d.derivedImage("NGINX_IMAGE", "nginx")
	d.setConfig("tally:nginxImage", image)
	before := d.ids()
	res, load := d.upUnderLoad()
	// The image resource, the release step's run (which checks the config
	// with the new nginx) and nginx.
	d.expectChanges(res, map[string]int{"replace": 3})
	after := d.ids()
	if slices.Equal(before.nginx, after.nginx) || !slices.Equal(before.port, after.port) || !slices.Equal(before.web, after.web) || !slices.Equal(before.redis, after.redis) {
		t.Errorf("a new nginx image: before %+v, after %+v; want nginx replaced, its port holder kept", before, after)
	}
	t.Logf("nginx handed over under load: %v", load)
	d.expectNoFailures(load)
	d.expectNoChanges()
}

// A new Redis image replaces Redis; its data stays on the volume, so the
// count goes on. Visits sent while Redis is away get the app's retry or a
// prompt 503, and none is counted twice.
func stepRedisImage(t *testing.T, d *deployment) {
	image := d.derivedImage("REDIS_IMAGE", "redis")
	d.setConfig("tally:redisImage", image)
	before := d.ids()
	res, load := d.upUnderLoad()
	d.expectChanges(res, map[string]int{"replace": 2}) // the image resource and the container
	after := d.ids()
	if slices.Equal(before.redis, after.redis) || !slices.Equal(before.web, after.web) || !slices.Equal(before.nginx, after.nginx) {
		t.Errorf("a Redis image change: before %+v, after %+v; want only Redis replaced", before, after)
	}
	t.Logf("Redis replaced under load: %v; slowest 503 %v", load, load.Slowest[503].Round(time.Millisecond))
	for kind := range load.Failures {
		if kind != "HTTP 503" {
			t.Errorf("while Redis was replaced, requests got %s; want 200 or 503", kind)
		}
	}
	if load.Slowest[503] > 2*time.Second {
		t.Errorf("a 503 took %v; want it prompt", load.Slowest[503])
	}
}

// The containers read the password file as they start, so a new password
// replaces Redis and the replicas; the count goes on.
func stepNewPassword(t *testing.T, d *deployment) {
	before := d.ids()
	last := d.counter()
	d.password = randomHex(16)
	if err := d.stack.SetConfig(d.ctx, "tally:redisPassword", auto.ConfigValue{Value: d.password, Secret: true}); err != nil {
		t.Fatal(err)
	}
	d.up()
	after := d.ids()
	if !slices.Equal(before.nginx, after.nginx) || len(intersect(before.web, after.web))+len(intersect(before.redis, after.redis)) > 0 {
		t.Errorf("a new password: before %+v, after %+v; want Redis and web replaced, nginx kept", before, after)
	}
	if n := d.counter(); n != last+1 {
		t.Errorf("after the new password, /count = %d, want %d", n, last+1)
	}
	d.expectInstances(2)
	d.expectPasswordHidden()
}

func stepDrift(t *testing.T, d *deployment) {
	before := d.ids()
	if out, err := d.engine.docker("rm", "-f", before.web[0]).CombinedOutput(); err != nil {
		t.Fatalf("docker rm -f: %v %s", err, out)
	}
	res := d.up(optup.Refresh())
	d.expectChanges(res, map[string]int{"create": 1})
	after := d.ids()
	if !slices.Equal(before.redis, after.redis) || !slices.Equal(before.nginx, after.nginx) || len(after.web) != 2 || !slices.Contains(after.web, before.web[1]) {
		t.Errorf("after drift: before %+v, after %+v; want one web container recreated, the rest untouched", before, after)
	}
	d.expectInstances(2)
}

func stepDestroyKeepsData(t *testing.T, d *deployment) {
	d.lastCount = d.counter()
	d.destroy()
	if err := d.engine.docker("volume", "inspect", d.volume()).Run(); err != nil {
		t.Fatalf("the Redis volume %s is gone after destroy; it must be kept", d.volume())
	}
	if left := d.ids(); len(left.web)+len(left.redis)+len(left.nginx) > 0 {
		t.Errorf("containers left after destroy: %+v", left)
	}
	if err := d.engine.docker("volume", "inspect", "tally-"+d.name+"-secrets").Run(); err == nil {
		t.Errorf("the volume holding the password is left after destroy")
	}
}

// stepBackupRestored takes a backup with make backup's script, destroys the
// stack with its data, and restores the backup into a new one.
func stepBackupRestored(t *testing.T, d *deployment) {
	d.up() // retainData=false, from the step before
	n := d.counter()
	file := filepath.Join(t.TempDir(), "tally.rdb")
	d.backupScript("backup", file)
	d.destroy()
	if err := d.engine.docker("volume", "inspect", d.volume()).Run(); err == nil {
		t.Fatalf("the Redis volume %s is still there after destroy with retainData=false", d.volume())
	}
	d.up()
	d.backupScript("restore", file)
	if got := d.counter(); got != n+1 {
		t.Errorf("after the backup of count %d was restored into a new stack, /count = %d; want %d", n, got, n+1)
	}
	d.destroy()
}

// stepScheduledBackups deploys the stack with tally:backupEvery and
// checks its snapshots: taken on time, each one whole, the newest few
// kept; destroy with retainData=false takes them too.
func stepScheduledBackups(t *testing.T, d *deployment) {
	d.setConfig("tally:backupEvery", "10s")
	d.setConfig("tally:backupRetain", "2")
	d.up() // retainData=false, from the steps before
	d.counter()
	id := func() string {
		out, _ := d.engine.docker("ps", "-q", "--filter", "label=tally.stack="+d.name, "--filter", "label=tally.role=backup").Output()
		return strings.TrimSpace(string(out))
	}
	backup := id()
	if backup == "" {
		t.Fatal("no backup container running")
	}
	var files []string
	var log []byte
	// The first at start, then every 10 s: a third means one was dropped.
	ok := testkit.WaitUntil(time.Minute, func() bool {
		log, _ = d.engine.docker("logs", backup).CombinedOutput()
		out, _ := d.engine.docker("exec", backup, "sh", "-c", "ls /data/tally-*.rdb").Output()
		files = strings.Fields(string(out))
		return bytes.Count(log, []byte("backup: /data/tally-")) >= 3
	})
	if !ok || len(files) != 2 {
		t.Fatalf("a minute after up, the backup service kept %v; want the last 2 of 3 or more; it logged:\n%s", files, log)
	}
	for _, f := range files {
		if out, err := d.engine.docker("exec", backup, "redis-check-rdb", f).CombinedOutput(); err != nil {
			t.Errorf("redis-check-rdb %s: %v\n%s", f, err, out)
		}
	}
	d.destroy()
	if err := d.engine.docker("volume", "inspect", "tally-"+d.name+"-backup-data").Run(); err == nil {
		t.Errorf("the backups' volume is still there after destroy with retainData=false")
	}
}

// backupScript runs the checkout's scripts/backup.sh (make backup, make
// restore) on the stack's engine.
func (d *deployment) backupScript(verb, file string) {
	d.t.Helper()
	cmd := exec.Command("bash", filepath.Join("..", "scripts", "backup.sh"), verb)
	cmd.Env = append(os.Environ(), "FILE="+file, "STACK="+d.name)
	if len(d.engine.flags) == 2 && d.engine.flags[0] == "-H" {
		cmd.Env = append(cmd.Env, "DOCKER_HOST="+d.engine.flags[1])
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		d.t.Fatalf("scripts/backup.sh %s: %v\n%s", verb, err, out)
	}
}

func stepDestroyRemovesData(t *testing.T, d *deployment) {
	d.setConfig("tally:retainData", "false")
	d.up()
	// The new stack adopts the kept volume: the count goes on.
	if n := d.counter(); n != d.lastCount+1 {
		t.Errorf("after destroy and up, /count = %d; want %d, the kept count plus one", n, d.lastCount+1)
	}
	d.destroy()
	if err := d.engine.docker("volume", "inspect", d.volume()).Run(); err == nil {
		t.Errorf("the Redis volume %s is still there after destroy with retainData=false", d.volume())
	}
}
