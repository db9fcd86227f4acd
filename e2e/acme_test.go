package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"tally/certs"
	"tally/testkit"
)

// tally-certs' ACME keeper against a real ACME server (pebble), its challenge
// answered on loopback: a placeholder first, then a certificate for the
// domain, none asked for while it is good, a renewal when it is due, and
// with the server down the certificate it has stays and the error says
// what failed.
func TestACMEAgainstPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("runs pebble")
	}
	challenge := testkit.FreePort(t)
	pebble := testkit.StartPebble(t, repoRoot(), testkit.PebbleOptions{HTTPPort: challenge, Validity: time.Hour})
	clock := time.Now()
	var logs strings.Builder
	a := &certs.ACME{
		Dir: t.TempDir(), Domain: "tally.test", Email: "ops@tally.test",
		Directory: pebble.Directory, Roots: pebble.Roots,
		ChallengeAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(challenge)),
		Log:           slog.New(slog.NewTextHandler(&logs, nil)),
		Now:           func() time.Time { return clock },
	}
	ctx := context.Background()
	served := func() *x509.Certificate {
		t.Helper()
		pair, err := tls.LoadX509KeyPair(filepath.Join(a.Dir, certs.CertFile), filepath.Join(a.Dir, certs.KeyFile))
		if err != nil {
			t.Fatal(err)
		}
		return pair.Leaf
	}

	if err := a.Placeholder(); err != nil {
		t.Fatal(err)
	}
	if c := served(); !strings.Contains(c.Subject.CommonName, "placeholder") {
		t.Fatalf("before the first certificate: %v, want the placeholder", c.Subject)
	}
	next, err := a.Once(ctx)
	if err != nil {
		t.Fatalf("first issuance: %v\n%s", err, logs.String())
	}
	first := served()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(pebble.IssuerPEM()))
	inter := x509.NewCertPool()
	chain, _ := os.ReadFile(filepath.Join(a.Dir, certs.CertFile))
	inter.AppendCertsFromPEM(chain)
	if _, err := first.Verify(x509.VerifyOptions{DNSName: "tally.test", Roots: roots, Intermediates: inter}); err != nil {
		t.Errorf("the certificate from pebble does not verify for tally.test with its chain: %v", err)
	}
	if d := next.Sub(clock); d <= 0 || d > 45*time.Minute {
		t.Errorf("after issuance the next look is in %v; want before two thirds of the hour's lifetime", d)
	}

	t.Run("a good certificate asks for nothing", func(t *testing.T) {
		if _, err := a.Once(ctx); err != nil {
			t.Fatal(err)
		}
		if c := served(); !c.Equal(first) {
			t.Error("a second look with a good certificate got a new one")
		}
		if n := strings.Count(logs.String(), "registered an account"); n != 1 {
			t.Errorf("the account was registered %d times, want once", n)
		}
	})
	t.Run("the ACME server down: the certificate stays, the error says why", func(t *testing.T) {
		pebble.Stop()
		clock = first.NotAfter.Add(-10 * time.Minute) // due
		_, err := a.Once(ctx)
		if err == nil || !strings.Contains(err.Error(), "tally.test") || !strings.Contains(err.Error(), pebble.Directory) {
			t.Errorf("renewal with the server down: %v; want an error naming the domain and the server", err)
		}
		if c := served(); !c.Equal(first) {
			t.Error("a failed renewal changed the served certificate")
		}
	})
	t.Run("renewed once the server is back", func(t *testing.T) {
		pebble.Start()
		if _, err := a.Once(ctx); err != nil {
			t.Fatalf("renewal: %v\n%s", err, logs.String())
		}
		if c := served(); c.Equal(first) || !strings.Contains(strings.Join(c.DNSNames, ","), "tally.test") {
			t.Errorf("after renewal the served certificate is %v for %v; want a new one for tally.test", c.SerialNumber, c.DNSNames)
		}
	})
}
