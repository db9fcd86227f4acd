package testkit

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// Missing skips t, saying what is missing and where to get it; under
// CI=true it fails instead, so CI cannot go green by skipping.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true, so this fails instead of skipping)", what)
	}
	t.Skipf("skipping: %s", what)
}

// OpenPort returns a TCP port on 127.0.0.1 that nothing listens on.
func OpenPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// FreePort is OpenPort for a test.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := OpenPort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// WaitFor polls cond every 50 ms until it holds, or says it did not
// within limit.
func WaitFor(limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	if cond() {
		return nil
	}
	return fmt.Errorf("not within %v", limit)
}

// WaitUntil is WaitFor as a yes or no.
func WaitUntil(limit time.Duration, cond func() bool) bool { return WaitFor(limit, cond) == nil }

// ShownByInspect returns the containers among ids whose `docker inspect`
// contains secret: their environment, command, labels or anything else
// Docker keeps about them, which anyone who may run docker can read.
// dockerFlags reach the engine (-H …); none for the local one.
func ShownByInspect(t testing.TB, secret string, dockerFlags []string, ids ...string) []string {
	t.Helper()
	var shown []string
	for _, id := range ids {
		out, err := exec.Command("docker", slices.Concat(dockerFlags, []string{"inspect", id})...).Output()
		if err != nil {
			t.Fatalf("docker inspect %s: %v", id, err)
		}
		if strings.Contains(string(out), secret) {
			shown = append(shown, id)
		}
	}
	return shown
}
