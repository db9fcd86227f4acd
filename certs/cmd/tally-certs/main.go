// Command tally-certs makes and keeps the certificates tally's edge serves.
//
//	tally-certs local [-dir DIR] [-ca DIR] [-hosts localhost,127.0.0.1,::1] [-cert FILE -key FILE]
//	tally-certs acme -domain NAME [-email ADDR] [-server URL] [-dir DIR] [-listen ADDR] [-share ADDR -share-key FILE]
//	tally-certs copy -domain NAME -from URL -share-key FILE [-dir DIR]
//
// local: the certificate of a local run (docker-compose.yml), signed by a CA
// of the stack's own that it makes once, or the user's own from -cert and
// -key (empty files stand for none). acme: a deployed stack's, from an
// ACME server (Let's Encrypt by default) by HTTP-01, kept and renewed for
// as long as it runs; TALLY_ACME_ROOTS (PEM) are the ACME server's TLS
// roots when they are not the system's (a test server); with -share it
// also serves the pair, sealed with the key in FILE, to the copy on each
// other node of a swarm's edge (copy). See package certs.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"tally/certs"
	"tally/certs/hostname"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tally-certs:", err)
		os.Exit(1)
	}
}

const usage = `usage: tally-certs local [-dir DIR] [-ca DIR] [-hosts NAMES] [-cert FILE -key FILE]
       tally-certs acme -domain NAME [-email ADDR] [-server URL] [-dir DIR] [-listen ADDR] [-share ADDR -share-key FILE]
       tally-certs copy -domain NAME -from URL -share-key FILE [-dir DIR]
       tally-certs healthcheck [-dir DIR]`

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) < 2 {
		return errors.New(usage)
	}
	switch args[1] {
	case "local":
		return local(args[2:], stdout, time.Now())
	case "acme":
		return acme(ctx, args[2:], getenv, stdout)
	case "copy":
		return copyPair(ctx, args[2:], stdout)
	case "healthcheck":
		return healthcheck(args[2:])
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return fmt.Errorf("%q: %s", args[1], usage)
}

// The directories of the certs image, each a volume where it runs.
const (
	defaultDir     = "/var/lib/tally/tls"
	defaultCADir   = "/var/lib/tally/ca"
	defaultACMEDir = "/var/lib/tally/acme"
	// Where the edge sends the HTTP-01 challenge path (nginx/servers-https.conf).
	defaultChallenge = ":8080"
)

func acme(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("acme", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	domain := fs.String("domain", "", "the domain the certificate is for")
	email := fs.String("email", "", "the ACME account's contact (expiry notices)")
	server := fs.String("server", certs.LetsEncrypt, "the ACME server's directory URL")
	dir := fs.String("dir", defaultACMEDir, "where the account and the certificate are kept")
	listen := fs.String("listen", defaultChallenge, "where the HTTP-01 challenge is answered")
	share := fs.String("share", "", "where to serve the pair, sealed, to the copies on other nodes; \"\" for nowhere")
	keyFile := fs.String("share-key", "", "the file whose content seals the shared pair")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("acme: %w (%s)", err, usage)
	}
	if err := hostname.Check(*domain); err != nil {
		return fmt.Errorf("acme: -domain %q: %w", *domain, err)
	}
	if u, err := url.Parse(*server); err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("acme: -server %q: want the https URL of an ACME directory, e.g. %s", *server, certs.LetsEncrypt)
	}
	log := slog.New(slog.NewJSONHandler(stdout, nil))
	certs.SetLibraryLog(log)
	a := &certs.ACME{Dir: *dir, Domain: *domain, Email: *email, Directory: *server, ChallengeAddr: *listen, Log: log, Now: time.Now}
	if pem := getenv("TALLY_ACME_ROOTS"); pem != "" {
		a.Roots = x509.NewCertPool()
		if !a.Roots.AppendCertsFromPEM([]byte(pem)) {
			return errors.New("acme: TALLY_ACME_ROOTS holds no PEM certificate")
		}
	}
	if *share == "" {
		return a.Run(ctx)
	}
	key, err := shareKey(*keyFile)
	if err != nil {
		return fmt.Errorf("acme: %w", err)
	}
	srv := &http.Server{Addr: *share, Handler: &certs.Share{Dir: *dir, Key: key, Log: log}, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	kept := a.Run(ctx)
	shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(shut)
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("acme: serving the pair on %s: %w", *share, err)
	}
	return kept
}

// copyPair keeps, in a swarm edge node's volume, the pair the ACME keeper
// shares.
func copyPair(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("copy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	domain := fs.String("domain", "", "the domain the certificate is for (its placeholder's name)")
	from := fs.String("from", "", "the URL of the keeper's share (http://certs:8081"+certs.SharePath+")")
	dir := fs.String("dir", defaultACMEDir, "where the edge reads the pair")
	keyFile := fs.String("share-key", "", "the file whose content seals the shared pair")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("copy: %w (%s)", err, usage)
	}
	if err := hostname.Check(*domain); err != nil {
		return fmt.Errorf("copy: -domain %q: %w", *domain, err)
	}
	if u, err := url.Parse(*from); err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("copy: -from %q: want the keeper's http URL, e.g. http://certs:8081%s", *from, certs.SharePath)
	}
	key, err := shareKey(*keyFile)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stdout, nil))
	c := &certs.Copy{From: *from, Key: key, Dir: *dir, Domain: *domain, Client: &http.Client{}, Log: log, Now: time.Now}
	return c.Run(ctx)
}

func shareKey(file string) ([]byte, error) {
	if file == "" {
		return nil, errors.New("-share-key: name the file of the key that seals the shared pair")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("-share-key: %w", err)
	}
	key, err := certs.ShareKey(b)
	if err != nil {
		return nil, fmt.Errorf("-share-key %s: %w", file, err)
	}
	return key, nil
}

func local(args []string, stdout io.Writer, now time.Time) error {
	fs := flag.NewFlagSet("local", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("dir", defaultDir, "where the served certificate and its key go")
	caDir := fs.String("ca", defaultCADir, "where the CA and its key are kept")
	hosts := fs.String("hosts", strings.Join(certs.LocalHosts, ","), "the names the certificate is for")
	certFile := fs.String("cert", "", "a certificate of your own (its chain) to serve instead; an empty file for none")
	keyFile := fs.String("key", "", "its key")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("local: %w (%s)", err, usage)
	}
	given, err := givenPair(*certFile, *keyFile)
	if err != nil {
		return fmt.Errorf("local: %w", err)
	}
	if given != nil {
		pair, err := certs.UseGiven(*dir, given[0], given[1], now)
		if err != nil {
			return fmt.Errorf("local: %w", err)
		}
		fmt.Fprintf(stdout, "local: serving the given certificate for %s, until %s\n", strings.Join(pair.Leaf.DNSNames, ", "), pair.Leaf.NotAfter.Format(time.DateOnly))
		return nil
	}
	var names []string
	for h := range strings.SplitSeq(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			names = append(names, h)
		}
	}
	l, err := certs.EnsureLocal(*dir, *caDir, names, now)
	if err != nil {
		return fmt.Errorf("local: %w", err)
	}
	switch {
	case l.CAMade:
		fmt.Fprintf(stdout, "local: made the stack's CA (%s) and a certificate for %s, until %s\n", l.CA.Subject.CommonName, strings.Join(names, ", "), l.Cert.NotAfter.Format(time.DateOnly))
	case l.Issued:
		fmt.Fprintf(stdout, "local: renewed the certificate for %s, until %s\n", strings.Join(names, ", "), l.Cert.NotAfter.Format(time.DateOnly))
	default:
		fmt.Fprintf(stdout, "local: the certificate for %s is good until %s\n", strings.Join(names, ", "), l.Cert.NotAfter.Format(time.DateOnly))
	}
	return nil
}

// givenPair is the content of the certificate and key files, nil when
// neither names one or both are empty (Compose mounts /dev/null for a
// file not given); one without the other is an error.
func givenPair(certFile, keyFile string) (*[2][]byte, error) {
	var pair [2][]byte
	for i, f := range []string{certFile, keyFile} {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("%w: this process (uid %d) must read it; on the host, mode 0644 in a directory only you can enter", err, os.Getuid())
		}
		if err != nil {
			return nil, err
		}
		pair[i] = b
	}
	switch {
	case len(pair[0]) == 0 && len(pair[1]) == 0:
		return nil, nil
	case len(pair[0]) == 0 || len(pair[1]) == 0:
		return nil, errors.New("a certificate of your own needs both files, the certificate (its chain) and its key (TLS_CERT_FILE and TLS_KEY_FILE)")
	}
	return &pair, nil
}

// healthcheck succeeds when DIR holds a certificate and its key that go
// together: what the edge needs to serve (the container's health check).
func healthcheck(args []string) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("dir", defaultACMEDir, "where the certificate and its key are")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("healthcheck: %w (%s)", err, usage)
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(*dir, certs.CertFile), filepath.Join(*dir, certs.KeyFile)); err != nil {
		return fmt.Errorf("healthcheck: no certificate to serve in %s: %w", *dir, err)
	}
	return nil
}
