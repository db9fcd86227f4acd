package main

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"

	"tally/testkit"
)

// deployedBy is the revision of main whose deployed stacks this code must
// take over changing only what upgrade names: the main before the service
// list (infra/stack). A change that has to move or rename resources keeps
// those stacks whole with Pulumi aliases, and this test shows it; the
// revision moves on only when every stack it deployed is known gone.
// TALLY_DEPLOYED_BY names another.
const deployedBy = "75b3ad6ce9606b5842cb1ea82bb81c32dfaefa3a"

// upgrade is what updating a stack deployed by deployedBy changes, by the
// resource's name less tally-<stack>-, with why; nothing else may change.
var upgrade = map[string]struct{ op, why string }{
	"redis": {"replace", "a CPU limit, as every container has (CIS Docker Benchmark 5.12)"},
	// nginx published the port itself; its resource is now the port
	// holder's (an alias), which replaces it stop-first: once, a gap.
	// Then nginx starts in the holder's namespace, on its config release.
	"nginx-port":       {"replace", "the port held by a container of its own, for handoffs"},
	"nginx-1":          {"create", "nginx, in the port holder's namespace"},
	"nginx-conf":       {"create", "the volume of nginx's config releases"},
	"nginx-conf-files": {"create", "the first config release's files"},
	"nginx-release":    {"create", "the first config release, checked by nginx -t"},
	// The Dockerfile builds with the classic builder too: a new image,
	// rolled over the replicas start-first.
	"web-image": {"update", "the Dockerfile changed"},
	"web-1":     {"replace", "a new app image"},
	"web-2":     {"replace", "a new app image"},
	"web-3":     {"replace", "a new app image"},
}

// renamed are the resources of such a stack that the program now knows by
// another name (through Pulumi aliases): old name → new, less
// tally-<stack>-. Pulumi reports part of a renamed resource's replacement
// under its old name.
var renamed = map[string]string{"nginx": "nginx-port"}

// TestUpdateFromDeployedRevision deploys a stack with the program as it
// was at deployedBy, then previews and updates it, under load, with the
// program as it is now: what upgrade names changes as it says, nothing
// else is created, replaced, updated or deleted, and no visit is lost or
// counted twice; no request fails unless nginx or Redis is replaced.
func TestUpdateFromDeployedRevision(t *testing.T) {
	ws := newWorkspace(t)
	rev := cmp.Or(os.Getenv("TALLY_DEPLOYED_BY"), deployedBy)
	if err := exec.Command("git", "-C", "..", "cat-file", "-e", rev+"^{commit}").Run(); err != nil {
		testkit.Missing(t, "this checkout does not have revision "+rev+" (a shallow clone? git fetch --unshallow)")
	}

	// The old revision's tree, from git itself: the checkout is not touched.
	tree := t.TempDir()
	archive := exec.Command("sh", "-c", `git -C .. archive "$0" | tar -x -C "$1"`, rev, tree)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", rev, err, out)
	}
	old := &workspace{ctx: ws.ctx, root: t.TempDir(), backend: ws.backend, images: ws.images}
	if err := testkit.DeployableCopy(tree, old.root); err != nil {
		t.Fatalf("the program at %s: %v", rev, err)
	}

	d := newDeployment(t, old, "u"+randomHex(3), localEngine(), testkit.FreePort(t))
	d.expectServing(d.up(), fmt.Sprintf("http://localhost:%d/", d.port), 3)

	// The same stack, state and config (with its secrets' salt), now
	// driven by this checkout's program.
	cfgFile := "Pulumi." + d.name + ".yaml"
	b, err := os.ReadFile(filepath.Join(old.root, "infra", cfgFile))
	if err == nil {
		err = os.WriteFile(filepath.Join(ws.root, "infra", cfgFile), b, 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	d.stack = ws.stack(t, d.name, d.engine, d.port)

	var out bytes.Buffer
	planned := make(chan events.EngineEvent)
	ops := map[string][]string{} // by name less tally-<stack>-: the steps planned
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for e := range planned {
			if e.ResourcePreEvent == nil {
				continue
			}
			m := e.ResourcePreEvent.Metadata
			if op := string(m.Op); op != "same" && op != "read" && op != "refresh" {
				name := strings.TrimPrefix(m.URN[strings.LastIndex(m.URN, "::")+2:], "tally-"+d.name+"-")
				ops[name] = append(ops[name], op)
			}
		}
	}()
	_, err = d.stack.Preview(d.ctx, optpreview.Diff(), optpreview.ProgressStreams(&out), optpreview.EventStreams(planned))
	<-collected
	if err != nil {
		t.Fatalf("preview with this checkout of a stack deployed by %s: %v\n%s", rev, err, out.String())
	}
	for old, name := range renamed {
		if steps, ok := ops[old]; ok {
			ops[name] = append(ops[name], steps...)
			delete(ops, old)
		}
	}
	for name, steps := range ops {
		if want, ok := upgrade[name]; !ok || !slices.Contains(steps, want.op) {
			t.Errorf("preview of a stack deployed by %s: %s would %v; want %v", rev, name, steps, cmp.Or(want.op, "no change"))
		}
	}
	for name, want := range upgrade {
		if _, ok := ops[name]; !ok {
			t.Errorf("preview of a stack deployed by %s: %s unchanged; want %s (%s)", rev, name, want.op, want.why)
		}
	}
	if t.Failed() {
		t.Logf("the preview:\n%s", out.String())
		return
	}

	before := d.counter()
	stop := testkit.SteadyLoad(d.url+"/count", 4)
	res := d.up()
	time.Sleep(2 * time.Second)
	load := stop()
	d.expectRise(before, load, load.Failed())
	want := map[string]int{}
	for _, u := range upgrade {
		want[u.op]++
	}
	d.expectChanges(res, want)
	_, edge := upgrade[portHolder]
	_, store := upgrade[redisRole]
	for kind, n := range load.Failures {
		// Replacing what holds the published port leaves a gap: connection
		// errors, and a 502 while a new nginx has the port but has not yet
		// resolved the replicas. A Redis replaced may answer a prompt 503.
		gap := strings.HasPrefix(kind, "error: ") || kind == "HTTP 502"
		if !(edge && gap) && !(store && kind == "HTTP 503") {
			t.Errorf("during the update %d requests got %s", n, kind)
		}
	}
	t.Logf("updated under load: %v; the longest time without an answer: %v", load, load.LongestGap.Round(time.Millisecond))
	d.expectNoChanges()
	d.expectInstances(3)
	d.expectPasswordHidden()
}

// Roles the upgrade names, as the program names its resources.
const (
	portHolder = "nginx-port"
	redisRole  = "redis"
)
