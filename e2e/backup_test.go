package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tally/testkit"
)

// TestBackupAndRestore takes a snapshot with make backup, destroys the
// stack with its volume, and restores the snapshot into a new one: the next
// visit continues the count. A truncated or corrupt file, or a Redis that
// holds data (without FORCE=1), is refused with the reason, and nothing in
// the stack changes.
func TestBackupAndRestore(t *testing.T) {
	requireDocker(t)
	s := newStack(t)
	s.up(1)
	visit := func() {
		t.Helper()
		if r := testkit.Get(s.url("/count")); r.Code != 200 {
			t.Fatalf("GET /count = %d %v", r.Code, r.Err)
		}
	}
	for range 5 {
		visit()
	}
	file := filepath.Join(t.TempDir(), "tally.rdb")
	if out, err := s.script("backup.sh", []string{"backup"}, "FILE="+file); err != nil || !strings.Contains(out, file) {
		t.Fatalf("make backup: %v\n%s", err, out)
	}
	backup, err := os.ReadFile(file)
	if err != nil || !strings.HasPrefix(string(backup), "REDIS") {
		t.Fatalf("the backup is not an RDB file (%v): %q", err, backup[:min(len(backup), 16)])
	}

	if out, err := s.script("backup.sh", []string{"restore"}, "FILE="+file); err == nil || !strings.Contains(out, "FORCE=1") {
		t.Errorf("a restore into a Redis holding visits: %v\n%s; want it refused, naming FORCE=1", err, out)
	}

	// Destroyed with its data (what retainData=false is to a Pulumi stack),
	// then made anew.
	s.compose("down", "-v", "--timeout", "5")
	s.up(1)
	if n := s.counter(); n != 0 {
		t.Fatalf("a new stack counts %d; want 0", n)
	}
	truncated := filepath.Join(t.TempDir(), "truncated.rdb")
	corrupt := filepath.Join(t.TempDir(), "corrupt.rdb")
	flipped := bytes.Clone(backup)
	flipped[len(flipped)/2] ^= 0xff
	for path, data := range map[string][]byte{truncated: backup[:len(backup)/2], corrupt: flipped} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := s.script("backup.sh", []string{"restore"}, "FILE="+path)
		if err == nil || !strings.Contains(out, "not a whole Redis snapshot") {
			t.Errorf("restore of %s: %v\n%s; want it refused as not a whole snapshot", filepath.Base(path), err, out)
		}
		if keys, _ := s.redisCLI(false, "DBSIZE"); keys != "0" {
			t.Errorf("after the refused %s, Redis holds %s keys; want none", filepath.Base(path), keys)
		}
	}

	if out, err := s.script("backup.sh", []string{"restore"}, "FILE="+file); err != nil {
		t.Fatalf("make restore: %v\n%s", err, out)
	}
	if n := s.counter(); n != 5 {
		t.Fatalf("after the restore the count is %d; want 5", n)
	}
	visit()
	if n := s.counter(); n != 6 {
		t.Errorf("the visit after the restore made the count %d; want 6", n)
	}
	// The restored data is Redis's own now: it survives a restart.
	s.compose("restart", "redis")
	if n := s.counter(); n != 6 {
		t.Errorf("after Redis restarted the count is %d; want 6", n)
	}
}
