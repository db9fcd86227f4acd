package certs

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
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
