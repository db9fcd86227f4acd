package stack

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"time"
)

// dialStdio connects to the Docker API of an ssh:// host as the docker CLI
// and the provider do: ssh runs `docker system dial-stdio` there, which
// relays its standard input and output to the engine's socket. The user's
// ssh settings (keys, known hosts, tally:sshOpts) apply as they do to the
// provider.
func dialStdio(ctx context.Context, sshOpts []string, u *url.URL) (net.Conn, error) {
	args := append([]string{"-T", "-o", "ConnectTimeout=20"}, sshOpts...)
	if name := u.User.Username(); name != "" {
		args = append(args, "-l", name)
	}
	if port := u.Port(); port != "" {
		args = append(args, "-p", port)
	}
	args = append(args, "--", u.Hostname(), "docker", "system", "dial-stdio")
	cmd := exec.CommandContext(ctx, "ssh", args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("ssh to %s: %w", u.Host, err)
	}
	return &stdioConn{cmd: cmd, in: stdin, out: stdout, stderr: stderr}, nil
}

// stdioConn is a net.Conn over a command's standard input and output.
// Deadlines are the context's, which ends the command.
type stdioConn struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    io.Reader
	stderr *strings.Builder
}

func (c *stdioConn) Read(b []byte) (int, error) {
	n, err := c.out.Read(b)
	if err == io.EOF && c.stderr.Len() > 0 {
		// ssh or the remote docker said why it ended.
		return n, fmt.Errorf("%s", strings.TrimSpace(c.stderr.String()))
	}
	return n, err
}

func (c *stdioConn) Write(b []byte) (int, error) { return c.in.Write(b) }

func (c *stdioConn) Close() error {
	_ = c.in.Close()
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Kill()
	}
	_ = c.cmd.Wait()
	return nil
}

func (c *stdioConn) LocalAddr() net.Addr              { return stdioAddr{} }
func (c *stdioConn) RemoteAddr() net.Addr             { return stdioAddr{} }
func (c *stdioConn) SetDeadline(time.Time) error      { return nil }
func (c *stdioConn) SetReadDeadline(time.Time) error  { return nil }
func (c *stdioConn) SetWriteDeadline(time.Time) error { return nil }

type stdioAddr struct{}

func (stdioAddr) Network() string { return "stdio" }
func (stdioAddr) String() string  { return "docker system dial-stdio" }
