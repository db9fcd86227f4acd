package stack

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"tally/certs/hostname"
)

// The ports nginx listens on inside its container; the same as
// nginx/servers*.conf's.
const (
	nginxPort    = 8080 // HTTP: the app (plainHTTP), or the redirect to HTTPS
	nginxTLSPort = 8443
)

// Where the served certificate and its key are in nginx's config release,
// as nginx/tls.conf names them.
const (
	tlsCertFile = "tls/cert.pem"
	tlsKeyFile  = "tls/key.pem"
)

// now is the time certificates are checked at; tests move it.
var now = time.Now

// checkServedTLS checks how the stack serves HTTPS: one source of its
// certificate (given, by ACME) or plain HTTP because the config says so;
// none is an error that names each.
func checkServedTLS(cfg Config) []error {
	sources := 0
	for _, set := range []bool{cfg.TLSCert != "" || cfg.TLSKey != "", cfg.Domain != "", cfg.PlainHTTP} {
		if set {
			sources++
		}
	}
	switch {
	case sources == 0:
		return []error{errors.New("tally serves HTTPS: set tally:domain (and tally:acmeEmail) for a certificate from Let's Encrypt; or tally:tlsCert and tally:tlsKey to your own certificate (its chain) and key, pulumi config set --secret tally:tlsCert -- \"$(cat fullchain.pem)\" (and the same for tally:tlsKey); or tally:plainHTTP true to serve plain HTTP, for a stack behind a TLS proxy of your own")}
	case sources > 1:
		return []error{errors.New("tally:domain (a certificate by ACME), tally:tlsCert/tally:tlsKey (your own) and tally:plainHTTP = true: choose one")}
	case cfg.PlainHTTP:
		return nil
	case cfg.Domain != "":
		return checkACME(cfg)
	case cfg.TLSCert == "" || cfg.TLSKey == "":
		return []error{errors.New("tally:tlsCert and tally:tlsKey: set both, the certificate (with its chain) and its key")}
	}
	return checkCertificate(string(cfg.TLSCert), string(cfg.TLSKey), now())
}

// The ACME servers tally:acmeServer may name by a word.
var acmeServers = map[string]string{
	"letsencrypt":         "https://acme-v02.api.letsencrypt.org/directory",
	"letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}

func acmeServer(v string) string {
	if u, ok := acmeServers[v]; ok {
		return u
	}
	return v
}

// checkACME checks what getting a certificate by ACME needs.
func checkACME(cfg Config) []error {
	var errs []error
	if err := hostname.Check(cfg.Domain); err != nil {
		errs = append(errs, fmt.Errorf("tally:domain = %q: %w", cfg.Domain, err))
	}
	if u, err := url.Parse(cfg.ACMEServer); err != nil || u.Scheme != "https" || u.Host == "" {
		errs = append(errs, fmt.Errorf("tally:acmeServer = %q: want letsencrypt (the default), letsencrypt-staging, or the https URL of an ACME directory", cfg.ACMEServer))
	}
	if cfg.ACMEEmail != "" && !strings.Contains(cfg.ACMEEmail, "@") {
		errs = append(errs, fmt.Errorf("tally:acmeEmail = %q: want an email address, for the ACME server's notices", cfg.ACMEEmail))
	}
	if cfg.ACMERoots != "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(cfg.ACMERoots)) {
		errs = append(errs, errors.New("tally:acmeRoots holds no PEM certificate (want the ACME server's TLS root, for a server whose certificate the system does not trust)"))
	}
	return errs
}

// checkCertificate says what nginx or a client would refuse in a
// certificate chain and key: no PEM, a key that is not the certificate's,
// a certificate not valid at t, a chain that does not lead to a root a
// client trusts (the system's, or the chain's own last certificate when it
// is self-signed: a private CA's root, given with the chain).
func checkCertificate(chainPEM, keyPEM string, t time.Time) []error {
	var chain []*x509.Certificate
	rest := []byte(chainPEM)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return []error{fmt.Errorf("tally:tlsCert holds a %s block: want the certificate and its chain only (the key goes in tally:tlsKey)", block.Type)}
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return []error{fmt.Errorf("tally:tlsCert: certificate %d of the chain does not parse: %w", len(chain)+1, err)}
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return []error{errors.New("tally:tlsCert holds no PEM certificate (want fullchain.pem: -----BEGIN CERTIFICATE-----, the server's first)")}
	}
	if _, err := tls.X509KeyPair([]byte(chainPEM), []byte(keyPEM)); err != nil {
		return []error{fmt.Errorf("tally:tlsKey is not the key of tally:tlsCert's first certificate: %s", strings.TrimPrefix(err.Error(), "tls: "))}
	}
	leaf := chain[0]
	var errs []error
	switch {
	case t.After(leaf.NotAfter):
		errs = append(errs, fmt.Errorf("tally:tlsCert expired on %s (%s): renew it", leaf.NotAfter.UTC().Format(time.RFC3339), subject(leaf)))
	case t.Before(leaf.NotBefore):
		errs = append(errs, fmt.Errorf("tally:tlsCert is not valid until %s (%s)", leaf.NotBefore.UTC().Format(time.RFC3339), subject(leaf)))
	}
	opts := x509.VerifyOptions{Intermediates: x509.NewCertPool(), CurrentTime: t, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if roots, err := x509.SystemCertPool(); err == nil {
		opts.Roots = roots
	} else {
		opts.Roots = x509.NewCertPool()
	}
	for i, c := range chain[1:] {
		if i == len(chain)-2 && c.CheckSignatureFrom(c) == nil {
			opts.Roots.AddCert(c)
			continue
		}
		opts.Intermediates.AddCert(c)
	}
	if len(errs) == 0 {
		if _, err := leaf.Verify(opts); err != nil {
			errs = append(errs, fmt.Errorf("tally:tlsCert's chain does not verify (%s): %w; give the certificate followed by its intermediates (fullchain.pem), and for a private CA its root last", subject(leaf), err))
		}
	}
	return errs
}

func subject(c *x509.Certificate) string {
	if len(c.DNSNames) > 0 {
		return "for " + strings.Join(c.DNSNames, ", ")
	}
	return c.Subject.String()
}

// edgePorts are nginx's published ports: HTTP, and HTTPS unless the stack
// serves plain HTTP.
func edgePorts(cfg Config) []portMap {
	ports := []portMap{{cfg.HTTPPort, nginxPort}}
	if !cfg.PlainHTTP {
		ports = append(ports, portMap{cfg.HTTPSPort, nginxTLSPort})
	}
	return ports
}

// edgeRelease is nginx's config as a release: nginx/*.conf, with
// servers.conf the deployed stack's (servers-http.conf or
// servers-https.conf, not the local run's), and with TLS the certificate,
// its key (a secret) and the port HTTP redirects to.
func edgeRelease(cfg Config, files Files) *reloads {
	r := &reloads{files: map[string]string{}, release: files.NginxRelease}
	for name, text := range files.Nginx {
		if !strings.HasPrefix(name, "servers") {
			r.files[name] = text
		}
	}
	if cfg.PlainHTTP {
		r.files["servers.conf"] = files.Nginx["servers-http.conf"]
		return r
	}
	r.files["servers.conf"] = files.Nginx["servers-https.conf"]
	r.files["https-port.conf"] = fmt.Sprintf("set $tally_https_port %q;\n", portSuffix(cfg.HTTPSPort))
	if cfg.Domain != "" {
		// The certs service's pair, where nginx mounts its volume.
		r.files["certificate.conf"] = fmt.Sprintf("ssl_certificate     %s/cert.pem;\nssl_certificate_key %s/key.pem;\n", acmeDir, acmeDir)
		return r
	}
	r.files[tlsCertFile] = string(cfg.TLSCert)
	r.secrets = map[string]Secret{tlsKeyFile: cfg.TLSKey}
	return r
}

// Where the certs service keeps its account and the certificate (its data
// volume; tally-certs acme's default), the port it answers the HTTP-01
// challenge on (nginx/servers-https.conf sends the path there), and on a
// swarm the port it shares the pair on with its copies.
const (
	acmeDir       = "/var/lib/tally/acme"
	challengePort = 8080
	sharePort     = 8081
)

// certsServices keep the certificate by ACME when the config names a
// domain. The keeper is one instance, holding the account and the
// certificate on its volume, kept like Redis's data across deploys and
// destroys, so a deploy never asks for a certificate while the one it has
// is good. It runs as nginx's user, which reads the key it writes.
//
// On one engine nginx reads the keeper's volume. A swarm's nginx runs on
// every manager and a volume is one node's, so the keeper stays on Redis's
// node (where its volume is) and shares the pair, sealed with a key of the
// stack's own, with a copy on every node nginx runs on, which keeps it in
// that node's volume for nginx there.
func certsServices(cfg Config) []service {
	if cfg.Domain == "" {
		return nil
	}
	cmd := []string{"acme", "-domain", cfg.Domain, "-server", cfg.ACMEServer, "-dir", acmeDir, "-listen", fmt.Sprintf(":%d", challengePort)}
	if cfg.ACMEEmail != "" {
		cmd = append(cmd, "-email", cfg.ACMEEmail)
	}
	var env []string
	if cfg.ACMERoots != "" {
		env = append(env, "TALLY_ACME_ROOTS="+cfg.ACMERoots)
	}
	keeper := service{
		role:     certsRole,
		image:    image{build: true, target: "certs"},
		replicas: 1, replace: stopFirst, // one holds the account and the volume
		waitsFor: []string{webRole},
		user:     nginxUser,
		command:  cmd,
		env:      env,
		// Healthy once there is a pair to serve (the placeholder at first).
		health: []string{"CMD", "/tally-certs", "healthcheck", "-dir", acmeDir}, retries: 3,
		memoryMB:  64,
		cpus:      1,
		pids:      32,
		stopGrace: 5,
		dataDir:   acmeDir,
		networks:  []attachment{{frontend, certsRole}},
	}
	if cfg.Target != "swarm" {
		return []service{keeper}
	}
	keeper.placement = redisConstraint
	// Swarm removes a task's container a few seconds after it exits, and
	// the provider's delete waits for that within the grace period: 5 s
	// was seen to run out in the lab.
	keeper.stopGrace = 10
	keeper.command = append(keeper.command, "-share", fmt.Sprintf(":%d", sharePort), "-share-key", shareKeyPath)
	keeper.shareKey = true
	copier := keeper
	copier.role = copyRole
	copier.replicas, copier.placement, copier.replace = everyNode, nginxConstraint, stopFirst
	copier.waitsFor = []string{certsRole}
	// /pair is certs.SharePath; that package (lego's) stays out of the program.
	copier.command = []string{"copy", "-domain", cfg.Domain, "-from", fmt.Sprintf("http://%s:%d/pair", certsRole, sharePort), "-dir", acmeDir, "-share-key", shareKeyPath}
	copier.env = nil
	copier.networks = []attachment{{frontend, ""}}
	return []service{keeper, copier}
}

// portSuffix is ":port" as a URL needs it, "" for HTTPS's own 443.
func portSuffix(port int) string {
	if port == 443 {
		return ""
	}
	return fmt.Sprintf(":%d", port)
}
