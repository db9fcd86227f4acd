// Package testenv decides what a test does when something it needs is
// missing: skip with a clear message on a laptop, fail under CI=true so CI
// cannot go green by skipping.
package testenv

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// CI reports whether the tests run under CI (CI=true).
func CI() bool { return os.Getenv("CI") == "true" }

// Missing skips the test, or fails it under CI, saying what is missing and
// how to get it.
func Missing(t testing.TB, what, howToGet string) {
	t.Helper()
	if CI() {
		t.Fatalf("%s is missing (CI=true, so this fails instead of skipping); %s", what, howToGet)
	}
	t.Skipf("skipping: %s is missing; %s", what, howToGet)
}

// LookPath returns the path of a program, or skips/fails through Missing.
func LookPath(t testing.TB, name, howToGet string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name, howToGet)
	}
	return path
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Addr is 127.0.0.1:port.
func Addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
