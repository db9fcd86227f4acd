package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"

	"tally/testkit"
)

// engine is a Docker engine the tests deploy to.
type engine struct {
	name   string         // for messages: "the local engine", "lab node 1 (SSH)"
	flags  []string       // docker CLI flags that reach it; none for the local engine
	addr   string         // where its published ports answer
	config auto.ConfigMap // what points the program at it (tally:dockerHost…)
}

func localEngine() engine { return engine{name: "the local engine", addr: "127.0.0.1"} }

// urlHost is the host the stack's url output names for e.
func (e engine) urlHost() string {
	if e.addr == "127.0.0.1" {
		return "localhost"
	}
	return e.addr
}

// docker runs the docker CLI against the engine.
func (e engine) docker(args ...string) *exec.Cmd {
	return exec.Command("docker", slices.Concat(e.flags, args)...)
}

// testPassphrase encrypts the secrets of the tests' stacks.
const testPassphrase = "deployment-test"

// workspace is a copy of the repository (so steps can change the app and
// nginx's config) with the program compiled once, and a file backend of
// its own; its stacks share both, as stacks of one checkout do.
type workspace struct {
	ctx     context.Context
	root    string // the copy
	backend string // the file backend's directory
	images  map[string]string
}

func newWorkspace(t *testing.T) *workspace {
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
	return &workspace{ctx: ctx, root: copyRepo(t), backend: t.TempDir(), images: testkit.Images(t, "..")}
}

// stack creates a stack of the workspace on e, with the images to test with
// and a random Redis password; port 0 leaves tally:httpPort at its default.
func (w *workspace) stack(t *testing.T, name string, e engine, port int) *auto.Stack {
	stack, err := auto.UpsertStackLocalSource(w.ctx, name, filepath.Join(w.root, "infra"), auto.EnvVars(map[string]string{
		"PULUMI_BACKEND_URL":       "file://" + w.backend,
		"PULUMI_CONFIG_PASSPHRASE": testPassphrase,
		"PULUMI_SKIP_UPDATE_CHECK": "true",
	}))
	if err != nil {
		t.Fatal(err)
	}
	// Plain HTTP unless a test gives a certificate (tlsDeployment): the
	// steps' clients speak HTTP.
	cfg := auto.ConfigMap{
		"tally:plainHTTP":  {Value: "true"},
		"tally:redisImage": {Value: w.images["REDIS_IMAGE"]},
		"tally:nginxImage": {Value: w.images["NGINX_IMAGE"]},
		"tally:goImage":    {Value: w.images["GO_IMAGE"]},
	}
	if port != 0 {
		cfg["tally:httpPort"] = auto.ConfigValue{Value: strconv.Itoa(port)}
	}
	maps.Copy(cfg, e.config)
	if err := stack.SetAllConfig(w.ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stack.Workspace().RemoveStack(context.Background(), name) })
	return &stack
}

// deployment is one stack of a workspace, deployed to one engine.
type deployment struct {
	t         *testing.T // the step running
	top       *testing.T // the whole test
	ctx       context.Context
	ws        *workspace
	root      string // the workspace's copy of the repository
	name      string // the stack
	engine    engine
	stack     *auto.Stack
	port      int    // the port nginx publishes
	url       string // http://addr:port
	images    map[string]string
	password  string
	lastCount int64
	// Once a step has given it a certificate: the CA that signed it, the
	// chain, and where HTTPS answers (url is then https).
	ca      *testkit.CA
	cert    string
	tlsPort int
}

// newDeployment declares stack name of ws on e; port 0 is the program's
// default, 8080. The stack is destroyed when t ends.
func newDeployment(t *testing.T, ws *workspace, name string, e engine, port int) *deployment {
	d := &deployment{t: t, top: t, ctx: ws.ctx, ws: ws, root: ws.root, name: name, engine: e, images: ws.images, port: port}
	d.stack = ws.stack(t, name, e, port)
	if port == 0 {
		d.port = 8080
	}
	d.url = fmt.Sprintf("http://%s:%d", e.addr, d.port)
	d.password = randomHex(16)
	if err := d.stack.SetConfig(ws.ctx, "tally:redisPassword", auto.ConfigValue{Value: d.password, Secret: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			d.logFailures()
		}
		_, _ = d.stack.Destroy(context.Background())
		_ = e.docker("volume", "rm", "-f", d.volume()).Run()
		if out, err := e.docker("image", "ls", "-q", "tally-"+name+"-web").Output(); err == nil && len(out) > 0 {
			_ = e.docker(append([]string{"image", "rm", "-f"}, strings.Fields(string(out))...)...).Run()
		}
	})
	return d
}

// copyRepo is a deployable copy of the repository (testkit.DeployableCopy)
// in a temporary directory.
func copyRepo(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := testkit.DeployableCopy("..", root); err != nil {
		t.Fatal(err)
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

// editFile replaces old with new in the copy's file at path.
func (d *deployment) editFile(path, old, new string) {
	d.t.Helper()
	file := filepath.Join(d.root, path)
	b, err := os.ReadFile(file)
	if err == nil && !bytes.Contains(b, []byte(old)) {
		err = fmt.Errorf("%s has no %q", path, old)
	}
	if err == nil {
		err = os.WriteFile(file, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644)
	}
	if err != nil {
		d.t.Fatal(err)
	}
}

// derivedImage builds, on the stack's engine, an image that differs from
// the one the stack runs for key (REDIS_IMAGE) in a label only: a new image
// for the stack, removed with it.
func (d *deployment) derivedImage(key, what string) string {
	d.t.Helper()
	image := "tally-deploytest-" + what + ":" + d.name
	build := d.engine.docker("build", "-q", "-t", image, "-")
	build.Stdin = strings.NewReader(fmt.Sprintf("FROM %s\nLABEL tally.test=%s\n", d.images[key], d.name))
	if out, err := build.CombinedOutput(); err != nil {
		d.t.Fatalf("building a second %s image: %v\n%s", what, err, out)
	}
	d.top.Cleanup(func() { _ = d.engine.docker("image", "rm", "-f", image).Run() })
	return image
}

// upFails runs `pulumi up`, which must fail, and returns its error and
// output.
func (d *deployment) upFails() (string, error) {
	d.t.Helper()
	var out bytes.Buffer
	_, err := d.stack.Up(d.ctx, optup.ProgressStreams(&out))
	if err == nil {
		d.t.Fatalf("pulumi up on %s succeeded; want it refused\n%s", d.engine.name, out.String())
	}
	return out.String() + err.Error(), err
}

func (d *deployment) up(opts ...optup.Option) auto.UpResult {
	d.t.Helper()
	var out bytes.Buffer
	start := time.Now()
	res, err := d.stack.Up(d.ctx, append(opts, optup.ProgressStreams(&out))...)
	if err != nil {
		d.t.Fatalf("pulumi up on %s: %v\n%s", d.engine.name, err, out.String())
	}
	d.t.Logf("pulumi up on %s took %v: %v", d.engine.name, time.Since(start).Round(time.Second), changes(res))
	return res
}

func (d *deployment) expectNoChanges() {
	d.t.Helper()
	var out bytes.Buffer
	if _, err := d.stack.Preview(d.ctx, optpreview.ExpectNoChanges(), optpreview.Diff(), optpreview.ProgressStreams(&out)); err != nil {
		d.t.Errorf("preview --expect-no-changes of %s: %v\n%s", d.name, err, out.String())
	}
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
	d.expectExactCount(before, load)
	return res, load
}

// expectExactCount checks the counter rose from before by one visit for
// each 200 in load (and one more, its own), and no count was handed out
// twice.
func (d *deployment) expectExactCount(before int64, load *testkit.Tally) {
	d.t.Helper()
	d.expectRise(before, load, 0)
}

// expectRise checks the counter rose from before by at least the 200s in
// load (no visit answered 200 was lost) and by no more than those and
// unknown visits whose answer was lost (they may have been counted), and
// that no count was handed out twice. It returns the rise, less the
// counter's own visit.
func (d *deployment) expectRise(before int64, load *testkit.Tally, unknown int) int64 {
	d.t.Helper()
	rose := d.counter() - before - 1
	if rose < int64(load.OK) || rose > int64(load.OK+unknown) {
		d.t.Errorf("the counter rose by %d for %d 200s and %d failures of unknown fate (%v)", rose, load.OK, unknown, load)
	}
	if dup := load.Duplicates(); len(dup) > 0 {
		d.t.Errorf("counts handed out twice: %v", dup)
	}
	return rose
}

// expectServing checks what a first up must give: the url output, every
// one of replicas answering through nginx, and the counter counting.
func (d *deployment) expectServing(res auto.UpResult, wantURL string, replicas int) {
	d.t.Helper()
	if url, _ := res.Outputs["url"].Value.(string); url != wantURL {
		d.t.Errorf("url output = %q, want %s", url, wantURL)
	}
	d.expectInstances(replicas)
	if first, next := d.counter(), d.counter(); next != first+1 {
		d.t.Errorf("/count on %s went from %d to %d", d.engine.name, first, next)
	}
}

// expectOnlyPublicRoutes checks that the edge serves / and /count only:
// the internal routes answer 404 there, and a scraper on the stack's
// network (here nginx's container) still gets the app's metrics.
func (d *deployment) expectOnlyPublicRoutes() {
	d.t.Helper()
	for _, path := range testkit.InternalRoutes {
		if code, _, err := testkit.Page(d.url + path); code != 404 {
			d.t.Errorf("GET %s through nginx on %s = %d %v, want 404", path, d.engine.name, code, err)
		}
	}
	nginx := d.ids().nginx
	if len(nginx) == 0 {
		d.t.Fatalf("no running nginx container of %s on %s", d.name, d.engine.name)
	}
	if out, err := d.engine.docker("exec", nginx[0], "bash", "-c", testkit.ScrapeMetrics).CombinedOutput(); !strings.Contains(string(out), "scraped") {
		d.t.Errorf("a scraper on the stack's network cannot read web:8080/metrics: %v %s", err, out)
	}
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

// expectPasswordHidden checks the Redis password is hidden (expectHidden).
func (d *deployment) expectPasswordHidden() {
	d.t.Helper()
	d.expectHidden("the Redis password", d.password)
}

// expectHidden checks that no container of the stack shows secret to
// `docker inspect` or in its log, and that no file of the state backend
// (the state, its backups and history) holds it in plain text.
func (d *deployment) expectHidden(what, secret string) {
	d.t.Helper()
	out, err := d.engine.docker("ps", "-aq", "--no-trunc", "--filter", "label=tally.stack="+d.name).Output()
	if err != nil {
		d.t.Fatal(err)
	}
	ids := strings.Fields(string(out))
	if shown := testkit.ShownByInspect(d.t, secret, d.engine.flags, ids...); len(shown) > 0 {
		d.t.Errorf("docker inspect shows %s for %v", what, shown)
	}
	for _, id := range ids {
		if log, _ := d.engine.docker("logs", id).CombinedOutput(); bytes.Contains(log, []byte(secret)) {
			d.t.Errorf("container %s logged %s", id, what)
		}
	}
	err = filepath.WalkDir(d.ws.backend, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if bytes.Contains(b, []byte(secret)) {
			d.t.Errorf("%s holds %s in plain text", path, what)
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
		d.t.Fatalf("GET %s/count: %d %v", d.url, r.Code, r.Err)
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
		d.t.Errorf("requests through nginx at %s reached %d replicas, want %d", d.url, len(seen), n)
	}
}

// page returns the HTML nginx answers for path.
func (d *deployment) page(path string) string {
	d.t.Helper()
	_, body, err := testkit.Page(d.url + path)
	if err != nil {
		d.t.Fatal(err)
	}
	return body
}

// header is the value of header in nginx's answer to /.
func (d *deployment) header(name string) string {
	d.t.Helper()
	resp, err := testkit.Client.Get(d.url + "/")
	if err != nil {
		d.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get(name)
}

// expectHeader waits until nginx's every answer carries header with value:
// nginx/serve.sh looks for a new config release every second (and on a
// swarm the release comes a moment after up returns).
func (d *deployment) expectHeader(name, value string) {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for seen := 0; seen < 10; {
		if d.header(name) == value {
			seen++
			continue
		}
		seen = 0
		if time.Now().After(deadline) {
			d.t.Errorf("nginx answers %s: %q, want %q", name, d.header(name), value)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// logFailures logs what nginx said of the requests that did not get 200.
func (d *deployment) logFailures() {
	var out []byte
	for _, id := range d.ids().nginx {
		log, _ := d.engine.docker("logs", "--tail", "5000", id).CombinedOutput()
		out = append(out, log...)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" && !strings.Contains(l, `"status":200`) {
			lines = append(lines, l)
		}
	}
	d.top.Logf("nginx's log on %s, but for the 200s (last 40 lines):\n%s", d.engine.name, strings.Join(lines[max(0, len(lines)-40):], "\n"))
}

func (d *deployment) volume() string { return "tally-" + d.name + "-redis-data" }

// containers are the stack's running containers by role, as Docker IDs.
type containers struct{ web, redis, nginx, port []string }

func (d *deployment) ids() containers {
	d.t.Helper()
	list := func(role string) []string {
		out, err := d.engine.docker("ps", "-q", "--no-trunc",
			"--filter", "label=tally.stack="+d.name, "--filter", "label=tally.role="+role).Output()
		if err != nil {
			d.t.Fatalf("docker ps on %s: %v", d.engine.name, err)
		}
		ids := strings.Fields(string(out))
		slices.Sort(ids)
		return ids
	}
	return containers{web: list("web"), redis: list("redis"), nginx: list("nginx"), port: list("nginx-port")}
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
