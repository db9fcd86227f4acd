// Package redistest runs a real redis-server for tests, on a free loopback
// port, with a password, and lets a test stop, start and pause it.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"tally/app/internal/testenv"
)

// Password is the one every test server requires.
const Password = "test-password"

// Server is one redis-server process. Its port and data directory stay the
// same across Stop and Start, so a restart keeps the data (AOF on).
type Server struct {
	Addr   string
	Client *goredis.Client
	bin    string
	dir    string
	port   int
	args   []string // beyond the ones every server gets
	cmd    *exec.Cmd
	t      testing.TB
}

// Start runs redis-server and stops it when the test ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	bin := testenv.LookPath(t, "redis-server", "install it with: apt-get install redis-server")
	port := testenv.FreePort(t)
	s := &Server{Addr: testenv.Addr(port), bin: bin, dir: t.TempDir(), port: port, args: args, t: t}
	s.Client = goredis.NewClient(&goredis.Options{Addr: s.Addr, Password: Password, MaxRetries: -1})
	t.Cleanup(func() {
		s.Client.Close()
		s.Stop()
	})
	s.Start()
	return s
}

// Start (re)starts the process and waits until it answers PING.
func (s *Server) Start() {
	s.t.Helper()
	if s.cmd != nil {
		return
	}
	s.cmd = exec.Command(s.bin, append([]string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(s.port), "--dir", s.dir,
		"--requirepass", Password, "--appendonly", "yes", "--appendfsync", "everysec",
		"--save", "", "--protected-mode", "yes", "--loglevel", "warning"}, s.args...)...)
	stderr := &strings.Builder{}
	s.cmd.Stdout, s.cmd.Stderr = stderr, stderr
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if s.ping() == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("redis-server on %s did not answer PING within 5s: %s", s.Addr, stderr)
}

// Stop ends the process the way a crash would (SIGKILL) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Freeze stops the process (SIGSTOP) as a hung host would: connections
// stay open and nothing answers. Thaw lets it go on.
func (s *Server) Freeze() { s.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen process.
func (s *Server) Thaw() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	if s.cmd == nil {
		s.t.Fatalf("redis-server on %s is not running", s.Addr)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal redis-server: %v", err)
	}
}

// Pause makes Redis hold every write command for d, as a stalled server
// would, while still accepting connections.
func (s *Server) Pause(d time.Duration) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.Client.Do(ctx, "CLIENT", "PAUSE", d.Milliseconds(), "WRITE").Err(); err != nil {
		s.t.Fatalf("CLIENT PAUSE: %v", err)
	}
}

// ping speaks RESP by hand so a failed start is reported without go-redis'
// pool in the way.
func (s *Server) ping() error {
	c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	fmt.Fprintf(c, "AUTH %s\r\nPING\r\n", Password)
	r := bufio.NewReader(c)
	for _, want := range []string{"+OK", "+PONG"} {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.TrimSpace(line) != want {
			return fmt.Errorf("redis answered %q, want %q", strings.TrimSpace(line), want)
		}
	}
	return nil
}
