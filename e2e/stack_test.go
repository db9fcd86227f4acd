package e2e

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"tally/testkit"
)

// stack is one Compose project of the repo's docker-compose.yml, under a
// name of its own so it never touches a user's stack.
type stack struct {
	t        *testing.T
	project  string
	password string
	root     string
	envFile  string
	port     int // HTTP
	tlsPort  int // HTTPS
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
	if err := exec.Command("docker", "info").Run(); err != nil {
		testkit.Missing(t, "no Docker engine answers `docker info`")
	}
	out, err := exec.Command("docker", "compose", "version", "--short").Output()
	if err != nil || !strings.HasPrefix(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), "2.") {
		testkit.Missing(t, "`docker compose` v2 is missing (on Debian: make compose-plugin)")
	}
}

func newStack(t *testing.T, env ...string) *stack {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	s := &stack{t: t, project: "tally-e2e-" + hex.EncodeToString(b[:]), root: repoRoot(), port: testkit.FreePort(t), tlsPort: testkit.FreePort(t)}
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	s.password = hex.EncodeToString(pw)
	// As make up writes it: readable inside the containers, in a directory
	// only this user can enter (t.TempDir is 0700).
	secret := filepath.Join(t.TempDir(), "redis_password")
	if err := os.WriteFile(secret, []byte(s.password+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	settings := fmt.Sprintf("REDIS_PASSWORD_SECRET=%s\nHTTP_PORT=%d\nHTTPS_PORT=%d\nVERSION=e2e\n", secret, s.port, s.tlsPort)
	for k, v := range testkit.Images(t, repoRoot()) {
		settings += k + "=" + v + "\n"
	}
	for _, kv := range env {
		settings += kv + "\n"
	}
	s.envFile = filepath.Join(t.TempDir(), "e2e.env")
	if err := os.WriteFile(s.envFile, []byte(settings), 0o600); err != nil {
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

// rollout runs scripts/rollout.sh (make rollout) on the stack, with env.
func (s *stack) rollout(env ...string) {
	s.t.Helper()
	if out, err := s.script("rollout.sh", nil, env...); err != nil {
		s.t.Fatalf("rollout %v: %v\n%s", env, err, out)
	}
}

// script runs one of scripts/, as make runs it, on this stack.
func (s *stack) script(name string, args []string, env ...string) (string, error) {
	cmd := exec.Command("bash", append([]string{filepath.Join(s.root, "scripts", name)}, args...)...)
	cmd.Env = append(append(os.Environ(), "COMPOSE=docker compose -p "+s.project+" --project-directory "+s.root+
		" -f "+filepath.Join(s.root, "docker-compose.yml")+" --env-file "+s.envFile), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// containers lists the running containers of a service.
func (s *stack) containers(service string) []string {
	s.t.Helper()
	return strings.Fields(s.compose("ps", "-q", service))
}

// tcpOpens sums the TCP connections the network namespaces of a
// service's containers have opened and accepted (testkit.TCPOpens).
func (s *stack) tcpOpens(service string) (opened, accepted int64) {
	s.t.Helper()
	for _, id := range s.containers(service) {
		pid, err := testkit.ContainerPID(nil, id)
		if err != nil {
			s.t.Fatal(err)
		}
		o, a, err := testkit.TCPOpens(pid)
		if err != nil {
			testkit.Missing(s.t, "the network counters of a container's process ("+err.Error()+"; run as root)")
		}
		opened, accepted = opened+o, accepted+a
	}
	return opened, accepted
}

// redisCLI runs redis-cli inside the Redis container, with the password
// unless noAuth.
func (s *stack) redisCLI(noAuth bool, args ...string) (string, error) {
	cmdArgs := []string{"exec", "-T"}
	if !noAuth {
		cmdArgs = append(cmdArgs, "redis")
		script := `REDISCLI_AUTH="$(cat "$REDIS_PASSWORD_FILE")" redis-cli "$@"`
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

func (s *stack) tlsURL(path string) string {
	return "https://" + net.JoinHostPort("localhost", strconv.Itoa(s.tlsPort)) + path
}

// localCA is the root the stack's certs service made, as make up copies
// it for the user to trust.
func (s *stack) localCA() *x509.CertPool {
	s.t.Helper()
	path := filepath.Join(s.t.TempDir(), "ca.pem")
	s.compose("cp", "certs:/var/lib/tally/tls/ca.pem", path)
	b, err := os.ReadFile(path)
	if err != nil {
		s.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		s.t.Fatalf("the certs service's ca.pem holds no certificate:\n%s", b)
	}
	return pool
}

// echoConf is an nginx that answers with the headers the edge sets for a
// replica (nginx/routes.conf).
const echoConf = `pid /tmp/echo.pid;
error_log stderr;
events {}
http {
    access_log off;
    client_body_temp_path /tmp/body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    server {
        listen 8080;
        location / {
            default_type text/plain;
            return 200 "proto=$http_x_forwarded_proto for=$http_x_forwarded_for id=$http_x_request_id\n";
        }
    }
}
`

// echoReplica runs, beside the replicas, a container that answers as
// "web" on the stack's frontend network with what it was sent (echoConf):
// what any replica receives. It returns what removes it again.
func (s *stack) echoReplica() (stop func()) {
	s.t.Helper()
	image := testkit.Images(s.t, s.root)["NGINX_IMAGE"]
	out, err := exec.Command("docker", "run", "-d", "--network", s.project+"_frontend", "--network-alias", "web",
		"--user", "101:101", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--memory", "32m",
		"-e", "ECHO_CONF="+echoConf, "--entrypoint", "sh", image, "-c", `printf '%s' "$ECHO_CONF" >/tmp/echo.conf && exec nginx -c /tmp/echo.conf -g 'daemon off;'`).CombinedOutput()
	if err != nil {
		s.t.Fatalf("the echo replica: %v\n%s", err, out)
	}
	id := strings.TrimSpace(string(out))
	stop = func() {
		_ = exec.Command("docker", "rm", "-f", id).Run()
		// nginx resolves "web" every second; until then a request to the
		// gone address is tried again on a replica.
		time.Sleep(2 * time.Second)
	}
	time.Sleep(time.Second)
	if state, _ := exec.Command("docker", "inspect", "-f", "{{.State.Running}}", id).Output(); strings.TrimSpace(string(state)) != "true" {
		logs, _ := exec.Command("docker", "logs", id).CombinedOutput()
		stop()
		s.t.Fatalf("the echo replica is not running:\n%s", logs)
	}
	return stop
}

// echoed is what the echo replica answered for url, once nginx sends a
// request there (nginx resolves "web" again every second and balances).
func (s *stack) echoed(client *http.Client, url string) string {
	s.t.Helper()
	var got string
	if !testkit.WaitUntil(30*time.Second, func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got = string(b)
		return strings.HasPrefix(got, "proto=")
	}) {
		s.t.Fatalf("no request through %s reached the echo replica in 30 s (last answer %q)", url, got)
	}
	return strings.TrimSpace(got)
}
