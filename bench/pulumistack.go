package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"tally/testkit"
)

// pulumiStack is one stack of the repository's Pulumi program, driven with
// the pulumi CLI as a user drives it: on a copy of the repository
// (testkit.DeployableCopy, so edits and builds leave the checkout alone),
// in a file backend of its own, both in a temporary directory.
type pulumiStack struct {
	tmp  string
	copy string   // the copy of the repository it deploys
	env  []string // pulumi's
}

// newPulumiStack copies root, makes the stack name and sets config, each
// entry the arguments of one `pulumi config set`.
func newPulumiStack(root, name string, config [][]string) (*pulumiStack, error) {
	tmp, err := os.MkdirTemp("", "tally-bench-pulumi-")
	if err != nil {
		return nil, err
	}
	p := &pulumiStack{tmp: tmp, copy: filepath.Join(tmp, "repo")}
	backend := filepath.Join(tmp, "state")
	p.env = append(os.Environ(), "PULUMI_BACKEND_URL=file://"+backend, "PULUMI_CONFIG_PASSPHRASE=bench", "PULUMI_SKIP_UPDATE_CHECK=true")
	err = os.MkdirAll(backend, 0o700)
	if err == nil {
		err = testkit.DeployableCopy(root, p.copy)
	}
	if err == nil {
		err = p.pulumi("stack", "init", name)
	}
	for _, args := range config {
		if err == nil {
			err = p.pulumi(append([]string{"config", "set"}, args...)...)
		}
	}
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return p, nil
}

func (p *pulumiStack) pulumi(args ...string) error {
	cmd := exec.Command("pulumi", append(args, "--non-interactive")...)
	cmd.Dir = filepath.Join(p.copy, "infra")
	cmd.Env = p.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pulumi %s: %v\n%s", strings.Join(args, " "), err, lastLines(string(out), 15))
	}
	return nil
}

// remove destroys what the stack deployed and deletes it and the copy.
func (p *pulumiStack) remove() {
	if err := p.pulumi("destroy", "--yes", "--remove"); err != nil {
		logf("removing a stack: %v", err)
	}
	os.RemoveAll(p.tmp)
}
