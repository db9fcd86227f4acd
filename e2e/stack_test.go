package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// stack is one Compose project of the repo's docker-compose.yml, under a
// name of its own so it never touches a user's stack.
type stack struct {
	t       *testing.T
	project string
	root    string
	envFile string
	port    int
}

// repoRoot is the directory holding docker-compose.yml.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// requireDocker skips (fails under CI=true) without a Docker engine and
// Compose v2.
func requireDocker(t *testing.T) {
	t.Helper()
	missing := func(what string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s (CI=true, so this fails instead of skipping)", what)
		}
		t.Skipf("skipping the end-to-end suite: %s", what)
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		missing("no Docker engine answers `docker info`")
	}
	out, err := exec.Command("docker", "compose", "version", "--short").Output()
	if err != nil || !strings.HasPrefix(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), "2.") {
		missing("`docker compose` v2 is missing (on Debian: make compose-plugin)")
	}
}

// images returns the redis, nginx and golang images to use: the environment's
// choice, else the official ones if present or pullable, else local stand-ins
// built by offline/build.sh.
func images(t *testing.T) map[string]string {
	t.Helper()
	official := map[string]string{"REDIS_IMAGE": "redis:8.0", "NGINX_IMAGE": "nginx:1.30", "GO_IMAGE": "golang:1.26"}
	chosen := map[string]string{}
	offline := false
	for env, image := range official {
		if v := os.Getenv(env); v != "" {
			chosen[env] = v
			continue
		}
		if exec.Command("docker", "image", "inspect", image).Run() == nil || exec.Command("docker", "pull", "-q", image).Run() == nil {
			chosen[env] = image
			continue
		}
		offline = true
	}
	if !offline {
		return chosen
	}
	t.Log("official images cannot be pulled here; building local stand-ins (make offline-images)")
	cmd := exec.Command("bash", filepath.Join(repoRoot(), "offline", "build.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("offline/build.sh: %v\n%s", err, stderr.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			if _, set := chosen[k]; !set {
				chosen[k] = v
			}
		}
	}
	return chosen
}

func newStack(t *testing.T) *stack {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	s := &stack{t: t, project: "tally-e2e-" + hex.EncodeToString(b[:]), root: repoRoot(), port: freePort(t)}
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	env := fmt.Sprintf("REDIS_PASSWORD=%x\nHTTP_PORT=%d\nVERSION=e2e\n", pw, s.port)
	for k, v := range images(t) {
		env += k + "=" + v + "\n"
	}
	s.envFile = filepath.Join(t.TempDir(), "e2e.env")
	if err := os.WriteFile(s.envFile, []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := s.composeOutput("logs", "--no-color", "--tail", "30")
			t.Logf("logs of %s:\n%s", s.project, out)
		}
		if out, err := s.composeOutput("down", "-v", "--remove-orphans", "--timeout", "5"); err != nil {
			t.Errorf("compose down -v: %v\n%s", err, out)
		}
	})
	return s
}

func (s *stack) composeOutput(args ...string) (string, error) {
	full := append([]string{"compose", "-p", s.project, "--project-directory", s.root,
		"-f", filepath.Join(s.root, "docker-compose.yml"), "--env-file", s.envFile}, args...)
	cmd := exec.Command("docker", full...)
	cmd.Env = append(os.Environ(), "COMPOSE_PROGRESS=quiet")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// compose runs a compose command and fails the test if it fails.
func (s *stack) compose(args ...string) string {
	s.t.Helper()
	out, err := s.composeOutput(args...)
	if err != nil {
		s.t.Fatalf("docker compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// up starts the stack with n web replicas and waits until all are healthy.
func (s *stack) up(n int) {
	s.t.Helper()
	s.compose("up", "-d", "--build", "--wait", "--wait-timeout", "180", "--scale", "web="+strconv.Itoa(n))
}

// containers lists the running containers of a service.
func (s *stack) containers(service string) []string {
	s.t.Helper()
	return strings.Fields(s.compose("ps", "-q", service))
}

// redisCLI runs redis-cli inside the Redis container, with the password
// unless noAuth.
func (s *stack) redisCLI(noAuth bool, args ...string) (string, error) {
	cmdArgs := []string{"exec", "-T"}
	if !noAuth {
		cmdArgs = append(cmdArgs, "redis")
		script := `REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli "$@"`
		cmdArgs = append(cmdArgs, append([]string{"sh", "-c", script, "sh"}, args...)...)
	} else {
		cmdArgs = append(cmdArgs, "redis", "redis-cli")
		cmdArgs = append(cmdArgs, args...)
	}
	out, err := s.composeOutput(cmdArgs...)
	return strings.TrimSpace(out), err
}

// counter reads the visit counter straight from Redis.
func (s *stack) counter() int64 {
	s.t.Helper()
	out, err := s.redisCLI(false, "GET", "visits")
	if err != nil {
		s.t.Fatalf("redis-cli GET visits: %v %s", err, out)
	}
	if out == "" {
		return 0
	}
	n, err := strconv.ParseInt(out, 10, 64)
	if err != nil {
		s.t.Fatalf("visits = %q", out)
	}
	return n
}

func (s *stack) url(path string) string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) + path
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitUntil polls cond every 50ms until it holds or limit passes.
func waitUntil(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}
