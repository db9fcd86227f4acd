package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"tally/testkit"
)

// acmeDomain is the domain the ACME test asks certificates for; pebble's
// DNS (challtestsrv) answers it, and every name, with 127.0.0.1.
const acmeDomain = "tally.test"

const certsRole = "certs"

// TestACMEOnLocalEngine deploys a stack with tally:domain against pebble,
// Let's Encrypt's test ACME server, on this machine: the first
// certificate comes by HTTP-01 through the stack's own port; a short-lived
// one is renewed under load over HTTPS with no failed request; with the
// ACME server down at renewal time the certificate keeps serving and the
// certs service retries until it is back; a deploy with no change, and a
// destroy and up, ask for nothing (the certificate is kept on its volume).
func TestACMEOnLocalEngine(t *testing.T) {
	ws := newWorkspace(t)
	// The certs container reaches pebble at the host's address on Docker's
	// default bridge; pebble validates through the stack's published port.
	out, err := exec.Command("ip", "-4", "-o", "addr", "show", "docker0").Output()
	fields := strings.Fields(string(out))
	if err != nil || len(fields) < 4 {
		t.Fatalf("the host's address on Docker's bridge (ip addr show docker0): %q %v", out, err)
	}
	host, _, _ := strings.Cut(fields[3], "/")
	d := newDeployment(t, ws, "a"+randomHex(3), localEngine(), testkit.FreePort(t))
	const validity = 90 * time.Second
	pebble := testkit.StartPebble(t, "..", testkit.PebbleOptions{HTTPPort: d.port, Validity: validity, Listen: "0.0.0.0", Hosts: []string{host}})
	d.tlsPort = testkit.FreePort(t)
	if err := d.stack.RemoveConfig(d.ctx, "tally:plainHTTP"); err != nil {
		t.Fatal(err)
	}
	directory := strings.Replace(pebble.Directory, "127.0.0.1", host, 1)
	for k, v := range map[string]string{"tally:domain": acmeDomain, "tally:acmeEmail": "ops@" + acmeDomain,
		"tally:acmeServer": directory, "tally:acmeRoots": pebble.RootsPEM, "tally:httpsPort": strconv.Itoa(d.tlsPort)} {
		d.setConfig(k, v)
	}
	start := time.Now()
	d.up()
	d.url = fmt.Sprintf("https://127.0.0.1:%d", d.tlsPort)
	first := d.expectACMECertificate(pebble, nil, 2*time.Minute)
	t.Logf("first certificate %v after pulumi up began (serial %x, until %s)", time.Since(start).Round(time.Second), first.SerialNumber, first.NotAfter.Format(time.TimeOnly))
	testkit.Trust(d.pebbleRoots(pebble), acmeDomain)
	if r := testkit.Get(d.url + "/count"); r.Code != 200 {
		t.Fatalf("GET /count over HTTPS with pebble's certificate: %d %v", r.Code, r.Err)
	}

	t.Run("renewed under load over HTTPS with no failed request", func(t *testing.T) {
		d.t = t
		before := d.counter()
		stop := testkit.SteadyLoad(d.url+"/count", 4)
		renewed := d.expectACMECertificate(pebble, first, validity)
		time.Sleep(2 * time.Second)
		load := stop()
		d.expectExactCount(before, load)
		d.expectNoFailures(load)
		t.Logf("renewed at %s, %v before it expired, under load: %v", time.Now().Format(time.TimeOnly), time.Until(first.NotAfter).Round(time.Second), load)
		first = renewed
	})
	t.Run("the ACME server down at renewal: the certificate keeps serving, then renews", func(t *testing.T) {
		d.t = t
		pebble.Stop()
		due := first.NotAfter.Add(-validity / 3)
		time.Sleep(time.Until(due) + 10*time.Second)
		if got := d.servedCertificate(); !got.Equal(first) {
			t.Fatalf("with the ACME server down the served certificate changed")
		}
		if r := testkit.Get(d.url + "/count"); r.Code != 200 {
			t.Errorf("with the ACME server down, /count over HTTPS = %d %v", r.Code, r.Err)
		}
		if logs := d.certsLog(); !strings.Contains(logs, "could not get a certificate") || !strings.Contains(logs, "retry_in") {
			t.Errorf("the certs service's log does not say what failed and when it retries:\n%s", logs)
		}
		pebble.Start()
		back := d.expectACMECertificate(pebble, first, 3*time.Minute)
		testkit.Trust(d.pebbleRoots(pebble), acmeDomain)
		if r := testkit.Get(d.url + "/count"); r.Code != 200 {
			t.Errorf("after the ACME server came back, /count = %d %v", r.Code, r.Err)
		}
		first = back
	})
	t.Run("a deploy with no change, and destroy and up, ask for nothing", func(t *testing.T) {
		d.t = t
		d.expectNoChanges()
		d.destroy()
		d.up()
		if got := d.servedCertificate(); !got.Equal(first) {
			t.Errorf("after destroy and up nginx serves %x, want the kept certificate %x", got.SerialNumber, first.SerialNumber)
		}
	})
}

// pebbleRoots is what pebble's certificates verify against now.
func (d *deployment) pebbleRoots(p *testkit.Pebble) *x509.CertPool {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(p.IssuerPEM())) {
		d.t.Fatal("pebble gave no root")
	}
	return roots
}

// expectACMECertificate waits up to within for nginx to serve a
// certificate for the domain that pebble signed, other than old, at each
// of addrs (127.0.0.1 if none), and returns it.
func (d *deployment) expectACMECertificate(p *testkit.Pebble, old *x509.Certificate, within time.Duration, addrs ...string) *x509.Certificate {
	d.t.Helper()
	if len(addrs) == 0 {
		addrs = []string{"127.0.0.1"}
	}
	roots := d.pebbleRoots(p)
	var got *x509.Certificate
	var verr error
	// On every connection: for a moment after a reload an old worker may
	// still answer one.
	ok := testkit.WaitUntil(within, func() bool {
		var first *x509.Certificate
		for i := range 5 * len(addrs) {
			c, err := tls.Dial("tcp", net.JoinHostPort(addrs[i%len(addrs)], strconv.Itoa(d.tlsPort)), &tls.Config{ServerName: acmeDomain, InsecureSkipVerify: true}) //nolint:gosec // verified below, against pebble's root
			if err != nil {
				verr = err
				return false
			}
			state := c.ConnectionState()
			c.Close()
			got = state.PeerCertificates[0]
			inter := x509.NewCertPool()
			for _, c := range state.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, verr = got.Verify(x509.VerifyOptions{DNSName: acmeDomain, Roots: roots, Intermediates: inter}); verr != nil || (old != nil && got.Equal(old)) {
				return false
			}
			// Every address, the same certificate.
			if first == nil {
				first = got
			} else if !got.Equal(first) {
				verr = fmt.Errorf("%s serves serial %x, another address %x", addrs[i%len(addrs)], got.SerialNumber, first.SerialNumber)
				return false
			}
		}
		return true
	})
	if !ok {
		d.t.Fatalf("nginx serves no new certificate from pebble for %s at %v within %v (last: %v, %v)\ncerts service:\n%s", acmeDomain, addrs, within, subjectOf(got), verr, d.certsLog())
	}
	return got
}

func (d *deployment) servedCertificate() *x509.Certificate { return d.servedCertificateAt("127.0.0.1") }

func (d *deployment) servedCertificateAt(host string) *x509.Certificate {
	d.t.Helper()
	c, err := tls.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(d.tlsPort)), &tls.Config{ServerName: acmeDomain, InsecureSkipVerify: true}) //nolint:gosec // compared, not trusted
	if err != nil {
		d.t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// certsLog is the last lines the certs service wrote.
func (d *deployment) certsLog() string {
	if d.engine.config["tally:target"].Value != "swarm" {
		out, _ := d.engine.docker("logs", "--tail", "30", d.serviceName(certsRole)).CombinedOutput()
		return string(out)
	}
	var logs []byte
	for _, svc := range []string{certsRole, certsRole + "-copy"} {
		out, _ := d.engine.docker("service", "logs", "--tail", "30", d.serviceName(svc)).CombinedOutput()
		logs = append(logs, out...)
	}
	return string(logs)
}

func subjectOf(c *x509.Certificate) string {
	if c == nil {
		return "none"
	}
	return c.Subject.String()
}
