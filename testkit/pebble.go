package testkit

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Pebble is Let's Encrypt's ACME test server (tools/acme pins it), with
// pebble-challtestsrv answering its DNS: every name resolves to IPv4.
type Pebble struct {
	Directory string         // the ACME directory URL, on 127.0.0.1
	Roots     *x509.CertPool // what its TLS certificate verifies against
	RootsPEM  string

	t                     testing.TB
	bin, config           string
	dnsPort, managePort   int
	cmd                   *exec.Cmd
	ipv4                  string
	listen, listenAddress string
}

// PebbleOptions say how Pebble validates and issues.
type PebbleOptions struct {
	HTTPPort int           // where it connects for HTTP-01 challenges
	Validity time.Duration // of the certificates it issues; 0 for 90 days
	IPv4     string        // what every name resolves to; "" for 127.0.0.1
	// Listen is the address it serves ACME on ("" for 127.0.0.1): a
	// container reaches it at its network's gateway. Hosts are the names
	// and addresses its certificate must be valid for.
	Listen string
	Hosts  []string
}

// StartPebble builds Pebble from tools/acme (under root, the repository)
// once into root's bin/, and runs it with challtestsrv until t ends.
func StartPebble(t testing.TB, root string, o PebbleOptions) *Pebble {
	t.Helper()
	root, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bin")
	for _, cmd := range []string{"pebble", "pebble-challtestsrv"} {
		if _, err := os.Stat(filepath.Join(bin, cmd)); err == nil {
			continue
		}
		build := exec.Command("go", "build", "-o", bin+"/", "github.com/letsencrypt/pebble/v2/cmd/"+cmd)
		build.Dir = filepath.Join(root, "tools", "acme")
		build.Env = append(os.Environ(), "GOWORK=off")
		if out, err := build.CombinedOutput(); err != nil {
			Missing(t, fmt.Sprintf("pebble could not be built from the module proxy (tools/acme): %v\n%s", err, out))
		}
	}
	p := &Pebble{t: t, bin: bin, ipv4: o.IPv4, listen: o.Listen}
	if p.ipv4 == "" {
		p.ipv4 = "127.0.0.1"
	}
	if p.listen == "" {
		p.listen = "127.0.0.1"
	}
	dir := t.TempDir()
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	chain, key, err := ca.Issue(append([]string{"localhost", "127.0.0.1"}, o.Hosts...), time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"cert.pem": chain, "key.pem": key} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p.Roots, p.RootsPEM = ca.Pool(), ca.PEM
	acmePort := FreePort(t)
	p.managePort, p.dnsPort = FreePort(t), FreePort(t)
	validity := o.Validity
	if validity == 0 {
		validity = 90 * 24 * time.Hour
	}
	p.listenAddress = net.JoinHostPort(p.listen, strconv.Itoa(acmePort))
	config := map[string]any{"pebble": map[string]any{
		"listenAddress":                  p.listenAddress,
		"managementListenAddress":        net.JoinHostPort("127.0.0.1", strconv.Itoa(p.managePort)),
		"certificate":                    filepath.Join(dir, "cert.pem"),
		"privateKey":                     filepath.Join(dir, "key.pem"),
		"httpPort":                       o.HTTPPort,
		"tlsPort":                        FreePort(t),
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles":                       map[string]any{"default": map[string]any{"description": "tally's tests", "validityPeriod": int(validity.Seconds())}},
	}}
	b, _ := json.Marshal(config)
	p.config = filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(p.config, b, 0o600); err != nil {
		t.Fatal(err)
	}
	dns := exec.Command(filepath.Join(bin, "pebble-challtestsrv"), "-defaultIPv4", p.ipv4, "-defaultIPv6", "",
		"-dnsserver", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.dnsPort)), "-management", net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))),
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")
	if err := dns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dns.Process.Kill(); _ = dns.Wait() })
	p.Directory = fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort)
	p.Start()
	t.Cleanup(p.Stop)
	return p
}

// Start runs Pebble (again, after Stop: a new Pebble, with new roots for
// what it issues) and waits until it answers.
func (p *Pebble) Start() {
	p.t.Helper()
	cmd := exec.Command(filepath.Join(p.bin, "pebble"), "-config", p.config, "-dnsserver", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.dnsPort)))
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.cmd = cmd
	if !WaitUntil(20*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", p.listenAddress, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		p.t.Fatalf("pebble did not listen on %s", p.listenAddress)
	}
}

// Stop ends Pebble: the ACME server is down.
func (p *Pebble) Stop() {
	if p.cmd != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

// IssuerPEM is the root Pebble signs with now (it makes one each start).
func (p *Pebble) IssuerPEM() string {
	p.t.Helper()
	resp, err := TLSClient(p.Roots).Get(fmt.Sprintf("https://127.0.0.1:%d/roots/0", p.managePort))
	if err != nil {
		p.t.Fatalf("pebble's root: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatalf("pebble's root: %v", err)
	}
	return string(b)
}
