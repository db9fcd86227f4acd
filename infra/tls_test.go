package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"

	"tally/testkit"
)

var testsslReport = flag.String("testssl-report", "", "write testssl.sh's summary of the local engine's deployed edge into this file (make testssl: bench/testssl.md)")

// stepHTTPSGiven gives the running stack a certificate of the test's own
// CA: nginx publishes HTTPS beside HTTP (a second port replaces the port
// holder: a moment without nginx, once, so not under load), serves the
// chain with HSTS, and plain HTTP redirects there but for the ACME path.
// The key is in no container's inspect or log and in no state file in
// plain text; testssl.sh finds nothing rated HIGH or CRITICAL.
func stepHTTPSGiven(t *testing.T, d *deployment) {
	ca, err := testkit.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	d.ca = ca
	d.tlsPort = testkit.FreePort(t)
	key := d.giveCertificate()
	if err := d.stack.RemoveConfig(d.ctx, "tally:plainHTTP"); err != nil {
		t.Fatal(err)
	}
	d.setConfig("tally:httpsPort", strconv.Itoa(d.tlsPort))
	httpURL := d.url
	res := d.up()
	testkit.Trust(ca.Pool(), "")
	d.url = fmt.Sprintf("https://%s:%d", d.engine.addr, d.tlsPort)
	d.expectServing(res, fmt.Sprintf("https://%s:%d/", d.engine.urlHost(), d.tlsPort), 2)
	d.expectOnlyPublicRoutes()
	d.expectServedCertificate()

	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(httpURL + "/count?from=http")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := fmt.Sprintf("https://%s:%d/count?from=http", d.engine.addr, d.tlsPort); resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Errorf("plain HTTP /count: %d to %q, want 308 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	resp, err = noFollow.Get(httpURL + "/.well-known/acme-challenge/token")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("the ACME challenge path over plain HTTP: %d, want it answered there (404, no challenge pending), not redirected", resp.StatusCode)
	}
	if h := d.header("Strict-Transport-Security"); !strings.HasPrefix(h, "max-age=63072000") {
		t.Errorf("HTTPS answers Strict-Transport-Security %q, want two years", h)
	}
	addr := net.JoinHostPort(d.engine.addr, strconv.Itoa(d.tlsPort))
	if p := testkit.ExpectTLS(addr, d.engine.addr, ca.Pool()); len(p) > 0 {
		t.Errorf("TLS at the edge: %v", p)
	}
	d.expectKeyHidden(key)

	findings := testkit.TestSSL(t, "https://"+addr+"/", ca.PEM)
	for _, f := range findings {
		if f.Severity == "HIGH" || f.Severity == "CRITICAL" {
			t.Errorf("testssl.sh: %s %s: %s", f.Severity, f.ID, f.Finding)
		}
	}
	if *testsslReport != "" && d.engine.flags == nil && !t.Failed() {
		summary := testkit.TestSSLSummary("the edge of a stack deployed with a given certificate (infra, TestDeployToLocalEngine)", findings)
		if err := os.WriteFile(*testsslReport, []byte(summary), 0o644); err != nil {
			t.Error(err)
		}
	}
	d.expectNoChanges()
}

// stepNewCertificate replaces the certificate under load over HTTPS: a new
// config release that nginx reloads in place, with no failed request and
// every container kept.
func stepNewCertificate(t *testing.T, d *deployment) {
	d.giveCertificate()
	before := d.ids()
	res, load := d.upUnderLoad()
	d.expectChanges(res, map[string]int{"replace": 2}) // the release's files and the release step's run
	if after := d.ids(); !slices.Equal(before.nginx, after.nginx) || !slices.Equal(before.port, after.port) || !slices.Equal(before.web, after.web) {
		t.Errorf("a new certificate: before %+v, after %+v; want every container kept", before, after)
	}
	t.Logf("the certificate replaced under load: %v", load)
	d.expectNoFailures(load)
	d.expectServedCertificate()
	d.expectNoChanges()
}

// giveCertificate sets a new certificate from the deployment's CA for the
// engine's address (and other hosts), as secrets, and returns its key.
func (d *deployment) giveCertificate(hosts ...string) string {
	d.t.Helper()
	chain, key, err := d.ca.Issue(append([]string{d.engine.addr, d.engine.urlHost()}, hosts...), time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
	if err != nil {
		d.t.Fatal(err)
	}
	for k, v := range map[string]string{"tally:tlsCert": chain, "tally:tlsKey": key} {
		if err := d.stack.SetConfig(d.ctx, k, auto.ConfigValue{Value: v, Secret: true}); err != nil {
			d.t.Fatal(err)
		}
	}
	d.cert = chain
	return key
}

// expectServedCertificate waits until nginx serves the deployment's latest
// certificate on every connection, at the engine's address or at each of
// addrs (nginx/serve.sh looks for a new release every second).
func (d *deployment) expectServedCertificate(addrs ...string) {
	d.t.Helper()
	block, _ := pem.Decode([]byte(d.cert))
	want, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		d.t.Fatal(err)
	}
	if len(addrs) == 0 {
		addrs = []string{d.engine.addr}
	}
	for _, host := range addrs {
		addr := net.JoinHostPort(host, strconv.Itoa(d.tlsPort))
		var got *x509.Certificate
		ok := testkit.WaitUntil(time.Minute, func() bool {
			for range 5 {
				c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: d.ca.Pool(), ServerName: host})
				if err != nil {
					return false
				}
				got = c.ConnectionState().PeerCertificates[0]
				c.Close()
				if !got.Equal(want) {
					return false
				}
			}
			return true
		})
		if !ok {
			d.t.Errorf("nginx at %s serves certificate %v, want the one given (serial %v)", addr, serialOf(got), want.SerialNumber)
		}
	}
}

func serialOf(c *x509.Certificate) any {
	if c == nil {
		return "none"
	}
	return c.SerialNumber
}

// expectKeyHidden checks the TLS key is hidden (expectHidden); a line of
// its PEM stands for it, since JSON escapes line breaks.
func (d *deployment) expectKeyHidden(key string) {
	d.t.Helper()
	d.expectHidden("the TLS key", strings.Split(key, "\n")[1])
}
