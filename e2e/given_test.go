package e2e

import (
	"crypto/tls"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"tally/testkit"
)

// TestGivenCertificateOnCompose serves a certificate of the user's own,
// TLS_CERT_FILE and TLS_KEY_FILE, instead of the local CA's: the key as a
// mounted file, in no container's inspect or log; a key that is not the
// certificate's stops `up` with the reason and nginx keeps serving.
func TestGivenCertificateOnCompose(t *testing.T) {
	requireDocker(t)
	ca, err := testkit.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	chain, key, err := ca.Issue([]string{"localhost", "127.0.0.1"}, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// As a user keeps them: readable to all, in a directory only they can
	// enter (t.TempDir is 0700), so nginx's user in the container reads them.
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	for f, text := range map[string]string{certFile: chain, keyFile: key} {
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := newStack(t, "TLS_CERT_FILE="+certFile, "TLS_KEY_FILE="+keyFile)
	s.up(1)

	block, _ := pem.Decode([]byte(chain))
	served := func() []byte {
		c, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.tlsPort)), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
		if err != nil {
			t.Fatalf("HTTPS with the given certificate: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Raw
	}
	if string(served()) != string(block.Bytes) {
		t.Fatal("nginx does not serve the given certificate")
	}
	if r := testkit.GetWith(testkit.TLSClient(ca.Pool()), s.tlsURL("/count")); r.Code != 200 {
		t.Errorf("GET /count over HTTPS with the given certificate = %d %v", r.Code, r.Err)
	}
	secret := strings.Split(key, "\n")[1]
	ids := strings.Fields(s.compose("ps", "-aq"))
	if shown := testkit.ShownByInspect(t, secret, nil, ids...); len(shown) > 0 {
		t.Errorf("docker inspect shows the TLS key for %v", shown)
	}
	if logs := s.compose("logs", "--no-color"); strings.Contains(logs, secret) {
		t.Error("a container logged the TLS key")
	}

	t.Run("a key that is not the certificate's stops up; nginx keeps serving", func(t *testing.T) {
		_, other, err := ca.Issue([]string{"localhost"}, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, []byte(other), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := s.composeOutput("up", "-d", "--wait", "--wait-timeout", "120", "--scale", "web=1")
		if err == nil {
			t.Fatalf("compose up with a key that is not the certificate's succeeded:\n%s", out)
		}
		if logs := s.compose("logs", "--no-color", "certs"); !strings.Contains(logs, "private key does not match") {
			t.Errorf("the certs service does not say what is wrong:\n%s", logs)
		}
		if string(served()) != string(block.Bytes) {
			t.Error("nginx no longer serves the given certificate")
		}
	})
}
