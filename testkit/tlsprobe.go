package testkit

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"time"
)

// ExpectTLS says what a client would object to in the TLS that addr
// serves for name, verified against roots: anything but TLS 1.2 and 1.3
// accepted, a CBC suite accepted, no HTTP/2, TLS 1.2 session tickets, a
// chain that does not verify. Nil when there is none.
func ExpectTLS(addr, name string, roots *x509.CertPool) []string {
	var problems []string
	dial := func(cfg *tls.Config) (tls.ConnectionState, error) {
		cfg.ServerName, cfg.RootCAs = name, roots
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer c.Close()
		// A TLS 1.3 ticket comes after the handshake: read for it.
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, _ = c.Read(make([]byte, 1))
		return c.ConnectionState(), nil
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		//nolint:gosec // asking for an old version on purpose: it must be refused
		if _, err := dial(&tls.Config{MinVersion: v, MaxVersion: v}); err == nil {
			problems = append(problems, tls.VersionName(v)+" accepted")
		}
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cache := tls.NewLRUClientSessionCache(4)
		cfg := func() *tls.Config {
			return &tls.Config{MinVersion: v, MaxVersion: v, NextProtos: []string{"h2", "http/1.1"}, ClientSessionCache: cache}
		}
		st, err := dial(cfg())
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s refused or not verified: %v", tls.VersionName(v), err))
			continue
		}
		if st.NegotiatedProtocol != "h2" {
			problems = append(problems, fmt.Sprintf("%s: ALPN %q, want h2", tls.VersionName(v), st.NegotiatedProtocol))
		}
		// Go's client resumes TLS 1.2 from a ticket only, encrypted under a
		// key as old as nginx. (TLS 1.3 resumes from nginx's session cache:
		// with tickets off, OpenSSL's are stateful.)
		if again, err := dial(cfg()); v == tls.VersionTLS12 && err == nil && again.DidResume {
			problems = append(problems, "TLS 1.2: a session resumed from a ticket (want tickets off)")
		}
	}
	cbc := []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_RSA_WITH_AES_128_CBC_SHA}
	//nolint:gosec // weak suites on purpose: they must be refused
	if _, err := dial(&tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: cbc}); err == nil {
		problems = append(problems, "a CBC suite accepted in TLS 1.2")
	}
	return problems
}
