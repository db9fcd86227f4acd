package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEnsureLocal(t *testing.T) {
	dir, caDir := t.TempDir(), t.TempDir()
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

	first, err := EnsureLocal(dir, caDir, LocalHosts, now)
	if err != nil {
		t.Fatal(err)
	}
	if !first.CAMade || !first.Issued {
		t.Fatalf("first run: %+v, want a CA and a certificate made", first)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatalf("the served certificate and key: %v", err)
	}
	roots := x509.NewCertPool()
	ca, _ := os.ReadFile(filepath.Join(dir, CAFile))
	if !roots.AppendCertsFromPEM(ca) {
		t.Fatal("no CA certificate beside the served one")
	}
	for _, host := range LocalHosts {
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, CurrentTime: now}); err != nil {
			t.Errorf("the certificate for %s does not verify against the CA: %v", host, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, caKey)); err == nil {
		t.Error("the CA's key is in the served directory")
	}
	if fi, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key.pem: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	t.Run("a good certificate is kept", func(t *testing.T) {
		again, err := EnsureLocal(dir, caDir, LocalHosts, now.Add(200*24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if again.Issued || again.CAMade || !again.Cert.Equal(first.Cert) {
			t.Errorf("second run with two thirds of its life left: %+v, want nothing made", again)
		}
	})
	t.Run("renewed with a third of its life left, by the same CA", func(t *testing.T) {
		later, err := EnsureLocal(dir, caDir, LocalHosts, now.Add(300*24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if !later.Issued || later.CAMade || !later.CA.Equal(first.CA) {
			t.Errorf("with 97 of 397 days left: %+v, want a new certificate from the same CA", later)
		}
	})
	t.Run("the CA signs for local names only", func(t *testing.T) {
		if _, err := EnsureLocal(t.TempDir(), caDir, []string{"example.com"}, now); err == nil {
			t.Error("a certificate for example.com from the local CA: want an error")
		}
		// Even one it would sign is refused by a verifier: the constraint is in the CA.
		key, _ := os.ReadFile(filepath.Join(caDir, caKey))
		if len(key) == 0 || !first.CA.PermittedDNSDomainsCritical {
			t.Error("the CA carries no critical name constraints")
		}
	})
	t.Run("a damaged certificate is made again", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(dir, CertFile), []byte("not a certificate"), 0o644); err != nil {
			t.Fatal(err)
		}
		fixed, err := EnsureLocal(dir, caDir, LocalHosts, now)
		if err != nil || !fixed.Issued || fixed.CAMade {
			t.Errorf("after a damaged cert.pem: %+v, %v; want a new certificate from the same CA", fixed, err)
		}
	})
	t.Run("no host names is an error", func(t *testing.T) {
		if _, err := EnsureLocal(dir, caDir, nil, now); err == nil {
			t.Error("no hosts: want an error")
		}
	})
}

func TestUseGiven(t *testing.T) {
	now := time.Now()
	made := t.TempDir()
	if _, err := EnsureLocal(made, t.TempDir(), LocalHosts, now); err != nil {
		t.Fatal(err)
	}
	chain, key := read(t, made, CertFile), read(t, made, KeyFile)
	other := t.TempDir()
	if _, err := EnsureLocal(other, t.TempDir(), LocalHosts, now); err != nil {
		t.Fatal(err)
	}

	dir, caDir := t.TempDir(), t.TempDir()
	if _, err := EnsureLocal(dir, caDir, LocalHosts, now); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		chain, key []byte
		at         time.Time
		want       string
	}{
		{"another certificate's key", chain, read(t, other, KeyFile), now, "private key does not match"},
		{"not PEM", []byte("nope"), key, now, "the given certificate and key"},
		{"expired", chain, key, now.Add(2 * leafLifetime), "expired"},
		{"not yet valid", chain, key, now.Add(-2 * time.Hour), "not valid until"},
	} {
		if _, err := UseGiven(dir, c.chain, c.key, c.at); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error saying %q", c.name, err, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, CAFile)); err != nil {
		t.Error("a refused pair took the local CA's certificate away")
	}
	if _, err := UseGiven(dir, chain, key, now); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(t, dir, CertFile), chain) || !bytes.Equal(read(t, dir, KeyFile), key) {
		t.Error("the given pair is not what is served")
	}
	if _, err := os.Stat(filepath.Join(dir, CAFile)); err == nil {
		t.Error("the local CA's certificate is still offered beside a given one")
	}
	// Back to the local CA: a certificate of its own again.
	l, err := EnsureLocal(dir, caDir, LocalHosts, now)
	if err != nil || !l.Issued {
		t.Errorf("after a given certificate, the local CA issued %v (%v); want a new one", l.Issued, err)
	}
}
