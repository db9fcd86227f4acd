package certs

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCopyFollowsTheKeepersPair(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	key, err := ShareKey([]byte("a secret of the stack's own, random"))
	if err != nil {
		t.Fatal(err)
	}
	keeper := t.TempDir()
	if err := placeholder(keeper, "tally.test", now, log); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(&Share{Dir: keeper, Key: key, Log: log})
	defer srv.Close()

	here := t.TempDir()
	c := &Copy{From: srv.URL + SharePath, Key: key, Dir: here, Domain: "tally.test", Client: srv.Client(), Log: log, Now: time.Now}
	if err := placeholder(here, c.Domain, now, log); err != nil {
		t.Fatal(err)
	}
	own := read(t, here, CertFile)
	if wrote, err := c.Once(ctx); err != nil || wrote {
		t.Fatalf("the keeper's placeholder over this node's own: wrote %v, %v; want it left", wrote, err)
	}

	// The keeper gets a certificate (any CA's will do here).
	if _, err := EnsureLocal(keeper, t.TempDir(), LocalHosts, now); err != nil {
		t.Fatal(err)
	}
	if wrote, err := c.Once(ctx); err != nil || !wrote {
		t.Fatalf("a new certificate at the keeper: wrote %v, %v; want it copied", wrote, err)
	}
	for _, f := range []string{CertFile, KeyFile} {
		if !bytes.Equal(read(t, here, f), read(t, keeper, f)) {
			t.Errorf("%s here is not the keeper's", f)
		}
	}
	if bytes.Equal(read(t, here, CertFile), own) {
		t.Error("the placeholder still serves")
	}
	if fi, err := os.Stat(filepath.Join(here, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the copied key's mode: %v %v; want 0600", fi.Mode(), err)
	}
	if wrote, err := c.Once(ctx); err != nil || wrote {
		t.Errorf("the same pair again: wrote %v, %v; want nothing written", wrote, err)
	}

	// A keeper that lost its volume serves a placeholder again: the
	// certificate here keeps serving.
	issued := read(t, here, CertFile)
	for _, f := range []string{CertFile, KeyFile} {
		os.Remove(filepath.Join(keeper, f))
	}
	if err := placeholder(keeper, "tally.test", now, log); err != nil {
		t.Fatal(err)
	}
	if wrote, err := c.Once(ctx); err != nil || wrote || !bytes.Equal(read(t, here, CertFile), issued) {
		t.Errorf("the keeper's placeholder over an issued certificate: wrote %v, %v; want it kept", wrote, err)
	}
}

func TestCopyRefusesWhatItCannotTrust(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	key, _ := ShareKey([]byte("the stack's share key, random bytes"))
	other, _ := ShareKey([]byte("another stack's share key, random"))
	keeper := t.TempDir()
	if _, err := EnsureLocal(keeper, t.TempDir(), LocalHosts, time.Now()); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		handler http.Handler
		key     []byte
		want    string
	}{
		{"sealed with another key", &Share{Dir: keeper, Key: other, Log: log}, key, "does not open with the share key"},
		{"not sealed", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"cert":"","key":""} and some more bytes to pass a nonce`))
		}), key, "does not open"},
		{"truncated", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("short")) }), key, "too short"},
		{"no pair at the keeper yet", &Share{Dir: t.TempDir(), Key: key, Log: log}, key, "503"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			here := t.TempDir()
			if err := placeholder(here, "tally.test", time.Now(), log); err != nil {
				t.Fatal(err)
			}
			before := read(t, here, CertFile)
			c := &Copy{From: srv.URL + SharePath, Key: tc.key, Dir: here, Domain: "tally.test", Client: srv.Client(), Log: log, Now: time.Now}
			wrote, err := c.Once(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Once: %v; want an error saying %q", err, tc.want)
			}
			if wrote || !bytes.Equal(read(t, here, CertFile), before) {
				t.Error("the certificate here changed")
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		srv := httptest.NewServer(&Share{Dir: keeper, Key: key, Log: log})
		defer srv.Close()
		later := func() time.Time { return time.Now().Add(2 * leafLifetime) }
		c := &Copy{From: srv.URL + SharePath, Key: key, Dir: t.TempDir(), Domain: "tally.test", Client: srv.Client(), Log: log, Now: later}
		if _, err := c.Once(ctx); err == nil || !strings.Contains(err.Error(), "not valid now") {
			t.Errorf("an expired certificate: %v; want it refused", err)
		}
	})
	if _, err := ShareKey([]byte("short\n")); err == nil {
		t.Error("a share key of 5 bytes was taken")
	}
}

func read(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
