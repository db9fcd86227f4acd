package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
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
	d := newDeployment(t)
	steps := []struct {
		name string
		run  func(t *testing.T, d *deployment)
	}{
		{"up from empty serves through every replica", stepUp},
		{"preview and refresh right after up show no changes", stepNoChanges},
		{"replicas 3 to 5 under load creates exactly two", stepScale(5)},
		{"replicas 5 to 2 under load deletes exactly three", stepScale(2)},
		{"an app change rolls out under load with no failed request", stepAppRollout},
		{"an nginx change replaces only nginx", stepNginxChange},
		{"a Redis image change keeps the count", stepRedisImage},
		{"a new Redis password reaches Redis and every replica", stepNewPassword},
		{"a web container removed by hand comes back", stepDrift},
		{"destroy keeps the Redis volume", stepDestroyKeepsData},
		{"destroy with retainData=false removes it", stepDestroyRemovesData},
	}
	for _, s := range steps {
		// Each step starts from where the previous one left the stack.
		if !t.Run(s.name, func(t *testing.T) { d.t = t; s.run(t, d) }) {
			t.Fatalf("stopping: step %q failed", s.name)
		}
	}
}

func stepUp(t *testing.T, d *deployment) {
	res := d.up()
	if url, _ := res.Outputs["url"].Value.(string); url != fmt.Sprintf("http://localhost:%d/", d.port) {
		t.Errorf("url output = %q", url)
	}
	if webs, _ := res.Outputs["webContainers"].Value.([]any); len(webs) != 3 {
		t.Errorf("webContainers output = %v, want 3 names", res.Outputs["webContainers"].Value)
	}
	d.expectInstances(3)
	d.expectPasswordHidden()
	first := d.counter()
	if next := d.counter(); next != first+1 {
		t.Errorf("/count went from %d to %d", first, next)
	}
}

func stepNoChanges(t *testing.T, d *deployment) {
	var out bytes.Buffer
	if _, err := d.stack.Preview(d.ctx, optpreview.ExpectNoChanges(), optpreview.Diff(), optpreview.ProgressStreams(&out)); err != nil {
		t.Fatalf("preview --expect-no-changes: %v\n%s", err, out.String())
	}
	out.Reset()
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

// An nginx change replaces the container that owns the published port, so
// clients see a gap; the test measures it, checks it stays short and that
// no visit is lost or counted twice.
func stepNginxChange(t *testing.T, d *deployment) {
	d.appendFile("nginx/nginx.conf", "# changed by the deployment test\n")
	before := d.ids()
	res, load := d.upUnderLoad()
	d.expectChanges(res, map[string]int{"replace": 1})
	after := d.ids()
	if !slices.Equal(before.redis, after.redis) || !slices.Equal(before.web, after.web) || slices.Equal(before.nginx, after.nginx) {
		t.Errorf("an nginx change: before %+v, after %+v; want only nginx replaced", before, after)
	}
	t.Logf("nginx replaced under load: clients saw no answer for %v; %d of %d requests failed (%v)",
		load.LongestGap.Round(time.Millisecond), load.Failed(), load.OK+load.Failed(), load.Failures)
	if load.LongestGap > 10*time.Second {
		t.Errorf("the gap while nginx was replaced was %v, want well under 10s", load.LongestGap)
	}
	for kind := range load.Failures {
		if strings.HasPrefix(kind, "HTTP") {
			t.Errorf("while nginx was replaced, requests got %s; want only refused connections", kind)
		}
	}
}

// A new Redis image replaces Redis; its data stays on the volume, so the
// count goes on. Visits sent while Redis is away get the app's retry or a
// prompt 503, and none is counted twice.
func stepRedisImage(t *testing.T, d *deployment) {
	image := "tally-deploytest-redis:" + d.name
	build := exec.Command("docker", "build", "-q", "-t", image, "-")
	build.Stdin = strings.NewReader(fmt.Sprintf("FROM %s\nLABEL tally.test=%s\n", d.images["REDIS_IMAGE"], d.name))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building a second Redis image: %v\n%s", err, out)
	}
	// Removed with the stack, which runs it until then.
	d.top.Cleanup(func() { _ = exec.Command("docker", "image", "rm", "-f", image).Run() })
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
	if out, err := exec.Command("docker", "rm", "-f", before.web[0]).CombinedOutput(); err != nil {
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
	if err := exec.Command("docker", "volume", "inspect", d.volume()).Run(); err != nil {
		t.Fatalf("the Redis volume %s is gone after destroy; it must be kept", d.volume())
	}
	if left := d.ids(); len(left.web)+len(left.redis)+len(left.nginx) > 0 {
		t.Errorf("containers left after destroy: %+v", left)
	}
	if err := exec.Command("docker", "volume", "inspect", "tally-"+d.name+"-secrets").Run(); err == nil {
		t.Errorf("the volume holding the password is left after destroy")
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
	if err := exec.Command("docker", "volume", "inspect", d.volume()).Run(); err == nil {
		t.Errorf("the Redis volume %s is still there after destroy with retainData=false", d.volume())
	}
}

// deployment is one stack of a copy of the repository (so steps can change
// the app and nginx's config), with state in a temporary file backend.
type deployment struct {
	t         *testing.T // the step running
	top       *testing.T // the whole test
	ctx       context.Context
	root      string // the copy
	name      string // the stack
	stack     auto.Stack
	port      int
	url       string // http://127.0.0.1:port
	images    map[string]string
	password  string
	backend   string // the file backend's directory
	lastCount int64
}

func newDeployment(t *testing.T) *deployment {
	if testing.Short() {
		t.Skip("skipping the real deployment in -short mode")
	}
	if _, err := exec.LookPath("pulumi"); err != nil {
		testkit.Missing(t, "the pulumi CLI is not on PATH (https://www.pulumi.com/docs/install/; on machines that cannot download it, ../shared/tools/pulumi/install.sh)")
	}
	if !hasDockerPlugin() {
		testkit.Missing(t, "the pulumi docker provider plugin v4.10.0 is missing (pulumi plugin install resource docker v4.10.0)")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		testkit.Missing(t, "no Docker engine answers `docker info`")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	t.Cleanup(cancel)
	d := &deployment{t: t, top: t, ctx: ctx, root: copyRepo(t), name: "t" + randomHex(3), port: testkit.FreePort(t)}
	d.url = fmt.Sprintf("http://127.0.0.1:%d", d.port)
	d.password = randomHex(16)
	d.images = testkit.Images(t, "..")

	d.backend = t.TempDir()
	stack, err := auto.UpsertStackLocalSource(ctx, d.name, filepath.Join(d.root, "infra"), auto.EnvVars(map[string]string{
		"PULUMI_BACKEND_URL":       "file://" + d.backend,
		"PULUMI_CONFIG_PASSPHRASE": "deployment-test",
		"PULUMI_SKIP_UPDATE_CHECK": "true",
	}))
	if err != nil {
		t.Fatal(err)
	}
	d.stack = stack
	cfg := auto.ConfigMap{
		"tally:redisPassword": {Value: d.password, Secret: true},
		"tally:httpPort":      {Value: strconv.Itoa(d.port)},
		"tally:replicas":      {Value: "3"},
		"tally:redisImage":    {Value: d.images["REDIS_IMAGE"]},
		"tally:nginxImage":    {Value: d.images["NGINX_IMAGE"]},
		"tally:goImage":       {Value: d.images["GO_IMAGE"]},
	}
	if err := stack.SetAllConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			d.logFailures()
		}
		ctx := context.Background()
		_, _ = stack.Destroy(ctx)
		_ = stack.Workspace().RemoveStack(ctx, d.name)
		_ = exec.Command("docker", "volume", "rm", "-f", d.volume()).Run()
		_ = exec.Command("docker", "image", "rm", "-f", "tally-"+d.name+"-web").Run()
	})
	return d
}

// copyRepo copies what the program deploys into a temporary directory, and
// compiles the program once there: every step then runs that binary instead
// of compiling it again.
func copyRepo(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, dir := range []string{"app", "infra", "nginx", "redis", "testkit"} {
		if err := os.CopyFS(filepath.Join(root, dir), os.DirFS(filepath.Join("..", dir))); err != nil {
			t.Fatal(err)
		}
	}
	for _, file := range []string{"Dockerfile", ".dockerignore", "docker-compose.yml", "go.work.sum"} {
		b, err := os.ReadFile(filepath.Join("..", file))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, file), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	work := "go 1.26.6\n\ntoolchain go1.26.10\n\nuse (\n\t./app\n\t./infra\n\t./testkit\n)\n"
	project := "name: tally\nruntime:\n  name: go\n  options:\n    binary: bin/tally-infra\n"
	if err := os.WriteFile(filepath.Join(root, "go.work"), []byte(work), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "infra", "Pulumi.yaml"), []byte(project), 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", "bin/tally-infra", ".")
	build.Dir = filepath.Join(root, "infra")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("compiling the program: %v\n%s", err, out)
	}
	return root
}

func (d *deployment) setConfig(key, value string) {
	d.t.Helper()
	if err := d.stack.SetConfig(d.ctx, key, auto.ConfigValue{Value: value}); err != nil {
		d.t.Fatal(err)
	}
}

func (d *deployment) appendFile(path, text string) {
	d.t.Helper()
	f, err := os.OpenFile(filepath.Join(d.root, path), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(text)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		d.t.Fatal(err)
	}
}

func (d *deployment) up(opts ...optup.Option) auto.UpResult {
	d.t.Helper()
	var out bytes.Buffer
	start := time.Now()
	res, err := d.stack.Up(d.ctx, append(opts, optup.ProgressStreams(&out))...)
	if err != nil {
		d.t.Fatalf("pulumi up: %v\n%s", err, out.String())
	}
	d.t.Logf("pulumi up took %v: %v", time.Since(start).Round(time.Second), changes(res))
	return res
}

func (d *deployment) destroy() {
	d.t.Helper()
	var out bytes.Buffer
	if _, err := d.stack.Destroy(d.ctx, optdestroy.ProgressStreams(&out)); err != nil {
		d.t.Fatalf("pulumi destroy: %v\n%s", err, out.String())
	}
}

// upUnderLoad runs `pulumi up` while clients count visits through nginx,
// and checks the counter rose by exactly the number of 200s.
func (d *deployment) upUnderLoad() (auto.UpResult, *testkit.Tally) {
	d.t.Helper()
	before := d.counter()
	stop := testkit.SteadyLoad(d.url+"/count", 4)
	res := d.up()
	time.Sleep(2 * time.Second) // and a moment after, as old replicas go
	load := stop()
	after := d.counter()
	if rose := after - before - 1; rose != int64(load.OK) {
		d.t.Errorf("the counter rose by %d, but %d visits got 200 (%v)", rose, load.OK, load)
	}
	if dup := load.Duplicates(); len(dup) > 0 {
		d.t.Errorf("counts handed out twice: %v", dup)
	}
	return res, load
}

func (d *deployment) expectNoFailures(load *testkit.Tally) {
	d.t.Helper()
	if load.Failed() > 0 {
		d.t.Errorf("requests failed during the update: %v", load)
	}
}

func (d *deployment) expectChanges(res auto.UpResult, want map[string]int) {
	d.t.Helper()
	if got := changes(res); !maps.Equal(got, want) {
		d.t.Errorf("pulumi up changed %v, want %v", got, want)
	}
}

// changes is what an update did, without the unchanged resources.
func changes(res auto.UpResult) map[string]int {
	out := map[string]int{}
	if res.Summary.ResourceChanges != nil {
		for op, n := range *res.Summary.ResourceChanges {
			if op != "same" && n > 0 {
				out[op] = n
			}
		}
	}
	return out
}

// expectPasswordHidden checks that no container of the stack shows the
// Redis password to `docker inspect`, and that the state backend holds it
// only encrypted.
func (d *deployment) expectPasswordHidden() {
	d.t.Helper()
	out, err := exec.Command("docker", "ps", "-aq", "--no-trunc", "--filter", "label=tally.stack="+d.name).Output()
	if err != nil {
		d.t.Fatal(err)
	}
	if shown := testkit.ShownByInspect(d.t, d.password, strings.Fields(string(out))...); len(shown) > 0 {
		d.t.Errorf("docker inspect shows the Redis password for %v", shown)
	}
	// Every file of the state backend: the state, its backups and history.
	err = filepath.WalkDir(d.backend, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if bytes.Contains(b, []byte(d.password)) {
			d.t.Errorf("%s holds the Redis password in plain text", path)
		}
		return err
	})
	if err != nil {
		d.t.Fatal(err)
	}
}

// counter counts one visit and returns the count, waiting for the stack to
// answer.
func (d *deployment) counter() int64 {
	d.t.Helper()
	var r testkit.Reply
	if !testkit.WaitUntil(30*time.Second, func() bool { r = testkit.Get(d.url + "/count"); return r.Code == 200 }) {
		d.t.Fatalf("GET /count: %d %v", r.Code, r.Err)
	}
	return r.Count
}

// expectInstances waits until requests through nginx reach n replicas.
func (d *deployment) expectInstances(n int) {
	d.t.Helper()
	seen := map[string]bool{}
	ok := testkit.WaitUntil(15*time.Second, func() bool {
		if r := testkit.Get(d.url + "/"); r.Code == 200 {
			seen[r.Instance] = true
		}
		return len(seen) == n
	})
	if !ok {
		d.t.Errorf("requests through nginx reached %d replicas, want %d", len(seen), n)
	}
}

// page returns the HTML nginx answers for path.
func (d *deployment) page(path string) string {
	d.t.Helper()
	resp, err := testkit.Client.Get(d.url + path)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// logFailures logs what nginx said of the requests that did not get 200.
func (d *deployment) logFailures() {
	out, _ := exec.Command("docker", "logs", "--tail", "5000", "tally-"+d.name+"-nginx").CombinedOutput()
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" && !strings.Contains(l, `"status":200`) {
			lines = append(lines, l)
		}
	}
	d.top.Logf("nginx's log, but for the 200s (last 40 lines):\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
}

func (d *deployment) volume() string { return "tally-" + d.name + "-redis-data" }

// containers are the stack's running containers by role, as Docker IDs.
type containers struct{ web, redis, nginx []string }

func (d *deployment) ids() containers {
	d.t.Helper()
	list := func(role string) []string {
		out, err := exec.Command("docker", "ps", "-q", "--no-trunc",
			"--filter", "label=tally.stack="+d.name, "--filter", "label=tally.role="+role).Output()
		if err != nil {
			d.t.Fatalf("docker ps: %v", err)
		}
		ids := strings.Fields(string(out))
		slices.Sort(ids)
		return ids
	}
	return containers{web: list("web"), redis: list("redis"), nginx: list("nginx")}
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func hasDockerPlugin() bool {
	out, err := exec.Command("pulumi", "plugin", "ls", "--json").Output()
	var plugins []struct{ Name, Kind, Version string }
	if err != nil || json.Unmarshal(out, &plugins) != nil {
		return false
	}
	for _, p := range plugins {
		if p.Name == "docker" && p.Kind == "resource" && strings.TrimPrefix(p.Version, "v") == "4.10.0" {
			return true
		}
	}
	return false
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
