package testkit

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Finding is one line of testssl.sh's verdict on a TLS endpoint.
type Finding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Finding  string `json:"finding"`
}

// Severities from worst, as testssl.sh rates.
var Severities = []string{"CRITICAL", "HIGH", "MEDIUM", "LOW", "WARN", "INFO", "OK"}

// TestSSL runs testssl.sh (Debian's testssl.sh package) against url,
// trusting the CA caPEM, and returns every finding. It fails t when
// testssl.sh is missing (skips off CI) or does not finish.
func TestSSL(t testing.TB, url, caPEM string) []Finding {
	t.Helper()
	bin, err := exec.LookPath("testssl")
	if err != nil {
		Missing(t, "testssl.sh is not installed (apt-get install testssl.sh)")
	}
	// Not t.TempDir(): its name is the test's, and --add-ca takes a
	// comma-separated list.
	dir, err := os.MkdirTemp("", "tally-testssl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	caFile, out := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "testssl.json")
	if err := os.WriteFile(caFile, []byte(caPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--quiet", "--color", "0", "--warnings", "off", "--add-ca", caFile, "--jsonfile-pretty", out, url)
	done := make(chan []byte, 1)
	go func() { b, _ := cmd.CombinedOutput(); done <- b }()
	var said []byte
	select {
	case said = <-done:
	case <-time.After(5 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("testssl.sh %s did not finish in 5 minutes", url)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("testssl.sh %s wrote no report: %v\n%s", url, err, said)
	}
	var report struct {
		ScanResult []map[string]json.RawMessage `json:"scanResult"`
	}
	if err := json.Unmarshal(b, &report); err != nil || len(report.ScanResult) == 0 {
		t.Fatalf("testssl.sh's report on %s: %v\n%s", url, err, said)
	}
	var findings []Finding
	for _, section := range report.ScanResult {
		for _, raw := range section {
			var fs []Finding
			if json.Unmarshal(raw, &fs) == nil {
				findings = append(findings, fs...)
			}
		}
	}
	slices.SortStableFunc(findings, func(a, b Finding) int {
		return slices.Index(Severities, a.Severity) - slices.Index(Severities, b.Severity)
	})
	return findings
}

// TestSSLSummary is findings as markdown: how many of each severity, and
// every one rated WARN or worse.
func TestSSLSummary(title string, findings []Finding) string {
	var b strings.Builder
	count := map[string]int{}
	for _, f := range findings {
		count[f.Severity]++
	}
	fmt.Fprintf(&b, "# testssl.sh: %s\n\n%s · testssl.sh %s\n\n| severity | findings |\n|---|---:|\n", title, time.Now().UTC().Format("2006-01-02 15:04 MST"), testsslVersion())
	for _, s := range Severities {
		fmt.Fprintf(&b, "| %s | %d |\n", s, count[s])
	}
	b.WriteString("\n| severity | check | finding |\n|---|---|---|\n")
	for _, f := range findings {
		if slices.Index(Severities, f.Severity) <= slices.Index(Severities, "WARN") {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", f.Severity, f.ID, strings.ReplaceAll(f.Finding, "|", "\\|"))
		}
	}
	return b.String()
}

func testsslVersion() string {
	out, _ := exec.Command("dpkg-query", "-W", "-f", "${Version}", "testssl.sh").Output()
	if len(out) == 0 {
		return "(version unknown)"
	}
	return string(out)
}
