package testkit

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Lab starts the project's lab (lab/lab.sh under root, the repository) with
// images copied into every node, stops it when t ends, and returns the
// KEY=value lines it prints: LAB_SSH_HOST, LAB_TLS_CERTS and the rest (see
// README, "The lab"). It tears down any lab already running: there is one
// per machine. extraEnv is passed to lab.sh as KEY=value (LAB_NODES=3).
func Lab(t testing.TB, root string, images []string, extraEnv ...string) map[string]string {
	t.Helper()
	script := filepath.Join(root, "lab", "lab.sh")
	env := append(os.Environ(), append(extraEnv, "LAB_IMAGES="+strings.Join(images, " "))...)
	// With the same settings as up: SWARM=1 needs more than a plain lab.
	check := exec.Command("bash", script, "check")
	check.Env = env
	if out, err := check.CombinedOutput(); err != nil {
		Missing(t, strings.TrimSpace(string(out))+" (the lab's engines are the remote hosts these tests deploy to)")
	}
	t.Cleanup(func() {
		if out, err := exec.Command("bash", script, "down").CombinedOutput(); err != nil {
			t.Errorf("lab/lab.sh down: %v\n%s", err, out)
		}
	})
	cmd := exec.Command("bash", script, "up")
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("lab/lab.sh up: %v\n%s", err, stderr.String())
	}
	keys := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "LAB_") {
			keys[k] = v
		}
	}
	return keys
}
