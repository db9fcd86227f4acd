package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tally/testkit"
)

// The first five minutes on a new machine: the commands a user types on a
// fresh clone, and what make up says when the host lacks something.

// freshClone is what a clone of this checkout holds (the files git tracks,
// and new ones it does not ignore), in a directory named name, as a user's
// clone would be: no .env, no password file, nothing built.
func freshClone(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	out, err := exec.Command("git", "-C", repoRoot(), "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		testkit.Missing(t, "git cannot list this checkout's files: "+err.Error())
	}
	for _, rel := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(repoRoot(), rel)
		info, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(src)
		if err == nil {
			err = os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, rel), b, info.Mode().Perm())
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// imageEnv is the environment that points Compose at images this engine
// has, where it cannot pull the official ones: what a user's machine with
// a registry needs none of.
func imageEnv(t *testing.T) []string {
	var env []string
	for k, v := range testkit.Images(t, repoRoot()) {
		env = append(env, k+"="+v)
	}
	return env
}

// project is a Compose project started in dir by a command a user types,
// and everything it made removed when the test ends.
type project struct {
	t       *testing.T
	dir     string
	compose []string // docker compose, or docker-compose
	env     []string
}

func newProject(t *testing.T, dir string, compose []string) *project {
	p := &project{t: t, dir: dir, compose: compose, env: append(os.Environ(), imageEnv(t)...)}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := p.run("logs", "--no-color", "--tail", "20")
			t.Logf("logs:\n%s", out)
		}
		if out, err := p.run("down", "-v", "--remove-orphans", "--timeout", "5"); err != nil {
			t.Errorf("%s down -v: %v\n%s", strings.Join(compose, " "), err, out)
		}
	})
	return p
}

func (p *project) command(args ...string) *exec.Cmd {
	cmd := exec.Command(p.compose[0], slices.Concat(p.compose[1:], args)...)
	cmd.Dir, cmd.Env = p.dir, p.env
	return cmd
}

func (p *project) run(args ...string) (string, error) {
	out, err := p.command(args...).CombinedOutput()
	return string(out), err
}

// foreground runs args as typed, attached, until the stack serves through
// port from replicas instances; then stops it as Ctrl-C would.
func (p *project) foreground(port, replicas int, args ...string) {
	p.t.Helper()
	cmd := p.command(args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Compose v1's bootloader leaves a child holding the output open when
	// it is killed: Wait stops waiting for it.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	// Closed once the command has exited and its output is all written.
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	seen := map[string]bool{}
	// A first build with Compose v1's classic builder (no build cache
	// mounts: every module downloaded, both binaries compiled) took over
	// five minutes on 2 cores.
	serving := testkit.WaitUntil(10*time.Minute, func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		if r := testkit.Get(url); r.Code == 200 {
			seen[r.Instance] = true
		}
		return len(seen) == replicas
	})
	if !serving || len(seen) != replicas {
		_ = cmd.Process.Kill()
		<-exited
		p.t.Fatalf("%s: %s served from %d replicas, want %d; it said:\n%s", strings.Join(args, " "), url, len(seen), replicas, lastLines(out.String(), 30))
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		p.t.Errorf("%s did not stop within 90 s of Ctrl-C", strings.Join(args, " "))
	}
}

// containers are every container of the project, running or not.
func (p *project) containers(name string) []string {
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=com.docker.compose.project="+name).Output()
	if err != nil {
		p.t.Fatal(err)
	}
	return strings.Fields(string(out))
}

// needPort fails (skips off CI) unless port is free on this machine: the
// commands under test publish the ports docker-compose.yml names.
func needPort(t *testing.T, port int) {
	t.Helper()
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second); err == nil {
		c.Close()
		testkit.Missing(t, fmt.Sprintf("port %d is taken on this machine; the command under test publishes it", port))
	}
}

// The original app's command, as typed on a fresh clone with Compose v2:
// it serves on :5002 through nginx from 3 replicas, the password it made
// itself is in no container's `docker inspect`, and the count survives
// Ctrl-C, `down` and a new `up`.
func TestOriginalCommandOnAFreshClone(t *testing.T) {
	requireDocker(t)
	needPort(t, 5002)
	needPort(t, 5443)
	name := "tally-fresh-" + randomName()
	p := newProject(t, freshClone(t, name), []string{"docker", "compose"})
	p.foreground(5002, 3, "up", "--scale", "web=3", "--build")
	expectFirstStart(t, p, name, 5002)
}

// Debian's own Compose (1.29, docker-compose) runs the same command: the
// image builds with its classic builder too.
func TestOriginalCommandWithComposeV1(t *testing.T) {
	if _, err := exec.LookPath("docker-compose"); err != nil {
		testkit.Missing(t, "docker-compose (Compose v1) is not installed (apt-get install docker-compose)")
	}
	requireDocker(t)
	needPort(t, 5002)
	needPort(t, 5443)
	// Compose v1 names the project after the directory, without dashes.
	name := "tallyfresh" + randomName()
	p := newProject(t, freshClone(t, name), []string{"docker-compose"})
	p.foreground(5002, 3, "up", "--scale", "web=3", "--build")
	expectFirstStart(t, p, name, 5002)
}

// expectFirstStart checks a stack a typed command started and stopped:
// the password it made is hidden from docker inspect, and the count goes on
// after down and up.
func expectFirstStart(t *testing.T, p *project, name string, port int) {
	t.Helper()
	ids := p.containers(name)
	password, err := p.run("run", "--rm", "--no-deps", "-T", "--entrypoint", "cat", "redis", "/run/secrets/redis_password")
	password = strings.TrimSpace(password)
	if err != nil || len(password) < 32 {
		t.Fatalf("the password the stack made: %q, %v", password, err)
	}
	if shown := testkit.ShownByInspect(t, password, nil, ids...); len(shown) > 0 {
		t.Errorf("docker inspect shows the Redis password for %v", shown)
	}
	if out, err := p.run("up", "-d", "--scale", "web=3"); err != nil {
		t.Fatalf("up -d: %v\n%s", err, out)
	}
	before := waitCount(t, port)
	if out, err := p.run("down"); err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	if out, err := p.run("up", "-d", "--scale", "web=3"); err != nil {
		t.Fatalf("up -d after down: %v\n%s", err, out)
	}
	if after := waitCount(t, port); after != before+1 {
		t.Errorf("after down and up, /count = %d; want %d", after, before+1)
	}
}

func waitCount(t *testing.T, port int) int64 {
	t.Helper()
	var r testkit.Reply
	if err := testkit.WaitFor(2*time.Minute, func() bool {
		r = testkit.Get(fmt.Sprintf("http://127.0.0.1:%d/count", port))
		return r.Code == 200
	}); err != nil {
		t.Fatalf("/count: %d %v (%v)", r.Code, r.Err, err)
	}
	return r.Count
}

// make up on a host that lacks what the stack needs stops before anything
// starts, with one line that names what is missing and the fix.
func TestMakeUpSaysWhatIsMissing(t *testing.T) {
	requireDocker(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port

	for _, tc := range []struct {
		name string
		env  []string
		wrap []string // run make under this, e.g. in a mount namespace
		root bool     // wrap needs root
		want string
	}{
		{name: "port taken", env: []string{"HTTP_PORT=" + strconv.Itoa(takenPort)}, want: fmt.Sprintf("port %d on 127.0.0.1 is taken", takenPort)},
		{name: "image that cannot be pulled", env: []string{"REDIS_IMAGE=tally-test.invalid/redis:0"}, want: "cannot pull tally-test.invalid/redis:0 (REDIS_IMAGE)"},
		{name: "no engine", env: []string{"DOCKER_HOST=unix:///nonexistent/docker.sock"}, want: "the Docker engine does not answer"},
		{name: "no Compose v2 and no Go", wrap: noComposePlugin(), root: true, env: []string{"PATH=" + pathWithout("go")}, want: "no Docker Compose v2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				testkit.Missing(t, "hiding the Compose plugin needs root (a mount namespace)")
			}
			dir := freshClone(t, "tally-up-"+randomName())
			name := filepath.Base(dir)
			port := testkit.FreePort(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			argv := slices.Concat(tc.wrap, []string{"make", "-s", "up"})
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Dir = dir
			cmd.Env = slices.Concat(os.Environ(), imageEnv(t), []string{"HTTP_PORT=" + strconv.Itoa(port), "HTTPS_PORT=" + strconv.Itoa(testkit.FreePort(t))}, tc.env)
			var stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = io.Discard, &stderr
			err := cmd.Run()
			var said []string
			for _, l := range strings.Split(stderr.String(), "\n") {
				if strings.HasPrefix(l, "make up: ") {
					said = append(said, l)
				}
			}
			if err == nil || len(said) != 1 || !strings.Contains(said[0], tc.want) {
				t.Errorf("make up: %v; said %q; want one line with %q\n%s", err, said, tc.want, stderr.String())
			}
			if left := (&project{t: t}).containers(name); len(left) > 0 {
				t.Errorf("make up left containers behind: %v", left)
				_ = exec.Command("docker", append([]string{"rm", "-f"}, left...)...).Run()
			}
		})
	}
}

// noComposePlugin is a command that runs what follows it with the Compose
// plugin out of the docker CLI's sight (empty directories mounted over
// every place it looks), as on a host without it. It needs root.
func noComposePlugin() []string {
	hide := ""
	for _, dir := range []string{"/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins", "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins", filepath.Join(os.Getenv("HOME"), ".docker/cli-plugins")} {
		if _, err := os.Stat(dir); err == nil {
			hide += fmt.Sprintf("mount -t tmpfs none %q && ", dir)
		}
	}
	return []string{"unshare", "--mount", "--propagation", "private", "sh", "-c", hide + `exec "$@"`, "sh"}
}

// pathWithout is PATH less the directories that hold command.
func pathWithout(command string) string {
	var keep []string
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if _, err := os.Stat(filepath.Join(dir, command)); err != nil {
			keep = append(keep, dir)
		}
	}
	return strings.Join(keep, string(filepath.ListSeparator))
}

func randomName() string { return strconv.FormatInt(time.Now().UnixNano()%1e9, 36) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
