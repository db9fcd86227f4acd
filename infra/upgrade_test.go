package main

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"

	"tally/testkit"
)

// deployedBy is the revision of main whose deployed stacks this code must
// take over with no change at all: the main before the service list
// (infra/stack). A change that has to move or rename resources keeps
// those stacks whole with Pulumi aliases, and this test shows it; the
// revision moves on only when every stack it deployed is known gone.
// TALLY_DEPLOYED_BY names another.
const deployedBy = "75b3ad6ce9606b5842cb1ea82bb81c32dfaefa3a"

// TestUpdateFromDeployedRevision deploys a stack with the program as it
// was at deployedBy, then previews and updates it, under load, with the
// program as it is now: nothing may be created, replaced, updated or
// deleted, and no request may fail.
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
	prev, err := d.stack.Preview(d.ctx, optpreview.Diff(), optpreview.ProgressStreams(&out))
	if err != nil {
		t.Fatalf("preview with this checkout of a stack deployed by %s: %v\n%s", rev, err, out.String())
	}
	for op, n := range prev.ChangeSummary {
		if op != "same" && n > 0 {
			t.Errorf("preview of a stack deployed by %s: %d to %s, want none\n%s", rev, n, op, out.String())
		}
	}
	if t.Failed() {
		return
	}
	res, load := d.upUnderLoad()
	d.expectChanges(res, map[string]int{})
	d.expectNoFailures(load)
	d.expectInstances(3)
	d.expectPasswordHidden()
}
