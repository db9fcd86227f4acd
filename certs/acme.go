package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/acme/api"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge/http01"
	"github.com/go-acme/lego/v5/lego"
	legolog "github.com/go-acme/lego/v5/log"
	"github.com/go-acme/lego/v5/registration"
)

// Let's Encrypt's directories; the staging one is for trying a setup
// without its rate limits.
const (
	LetsEncrypt        = lego.DirectoryURLLetsEncrypt
	LetsEncryptStaging = lego.DirectoryURLLetsEncryptStaging
)

// Files an ACME keeper keeps in its directory (a volume kept across
// deploys, so a deploy never asks for a certificate while one is good).
// The served pair is CertFile and KeyFile, as nginx/tls.conf reads them.
const (
	accountKeyFile = "account-key.pem"
	accountFile    = "account.json"
	placeholderCN  = "tally placeholder: no certificate from the ACME server yet"
)

// Retries after a failure: 20 s, then three times longer each time, at
// most an hour apart. The first order often meets an edge not yet up (it
// starts once the placeholder is written); a setup that stays broken is
// tried six times in its first hour, about what Let's Encrypt allows
// failing (5 an hour for a name) before it answers "rate limited".
const (
	retryFirst = 20 * time.Second
	retryMax   = time.Hour
	// How long a good certificate waits before the next look, at most: the
	// ACME server's renewal info may move the window (RFC 9773).
	recheck = 6 * time.Hour
)

// ACME keeps a certificate for Domain from the ACME server at Directory,
// answering the HTTP-01 challenge on ChallengeAddr (the edge sends the
// challenge path there). Until the first certificate comes, a self-signed
// placeholder is served, so the edge can start and carry that challenge.
type ACME struct {
	Dir           string // where the account and the certificate are kept
	Domain, Email string
	Directory     string         // the ACME server's directory URL
	Roots         *x509.CertPool // the ACME server's TLS roots; nil for the system's
	ChallengeAddr string         // host:port for the HTTP-01 server
	Log           *slog.Logger
	Now           func() time.Time
}

// Run keeps the certificate until ctx ends: obtains it, renews it when
// due, and after a failure retries with backoff, the current certificate
// serving meanwhile. It returns only when ctx ends, or when Dir cannot be
// written at all.
func (a *ACME) Run(ctx context.Context) error {
	if err := a.Placeholder(); err != nil {
		return err
	}
	wait := retryFirst
	for {
		next, err := a.Once(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			a.Log.Error("acme: could not get a certificate; the current one keeps serving", "domain", a.Domain, "err", err, "retry_in", wait.String())
			next = a.Now().Add(wait)
			wait = min(3*wait, retryMax)
		} else {
			wait = retryFirst
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(max(time.Until(next), time.Second)):
		}
	}
}

// Once renews the certificate if it is due (or is the placeholder, or is
// for another domain), and returns when to look again.
func (a *ACME) Once(ctx context.Context) (time.Time, error) {
	now := a.Now()
	if cert, err := readCert(filepath.Join(a.Dir, CertFile)); err == nil && a.issued(cert, now) {
		due := a.renewAt(ctx, cert, now)
		if due.After(now) {
			next := earliest(due, now.Add(recheck))
			a.Log.Info("acme: the certificate is good", "domain", a.Domain, "expires", cert.NotAfter.UTC().Format(time.RFC3339), "renew_at", due.UTC().Format(time.RFC3339))
			return next, nil
		}
		a.Log.Info("acme: renewing the certificate", "domain", a.Domain, "expires", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	res, err := a.obtain(ctx)
	var problem *acme.ProblemDetails
	if errors.As(err, &problem) && problem.Type == "urn:ietf:params:acme:error:accountDoesNotExist" {
		// The server no longer knows the account (deactivated, or a
		// test server restarted): a new one, with the same key.
		a.Log.Warn("acme: the server does not know the account; registering again", "server", a.Directory)
		if rmErr := os.Remove(filepath.Join(a.Dir, accountFile)); rmErr == nil {
			res, err = a.obtain(ctx)
		}
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("obtaining a certificate for %s from %s: %w", a.Domain, a.Directory, err)
	}
	if _, err := tls.X509KeyPair(res.Certificate, res.PrivateKey); err != nil {
		return time.Time{}, fmt.Errorf("the ACME server's certificate for %s does not go with its key: %w", a.Domain, err)
	}
	if err := writePair(a.Dir, res.Certificate, res.PrivateKey); err != nil {
		return time.Time{}, err
	}
	cert, err := readCert(filepath.Join(a.Dir, CertFile))
	if err != nil {
		return time.Time{}, err
	}
	due := a.renewAt(ctx, cert, a.Now())
	a.Log.Info("acme: got a certificate", "domain", a.Domain, "expires", cert.NotAfter.UTC().Format(time.RFC3339), "renew_at", due.UTC().Format(time.RFC3339))
	return earliest(due, a.Now().Add(recheck)), nil
}

func (a *ACME) obtain(ctx context.Context) (*certificate.Resource, error) {
	client, err := a.client(ctx)
	if err != nil {
		return nil, err
	}
	return client.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{a.Domain}, Bundle: true, KeyType: certcrypto.EC256})
}

// issued says whether cert is one the ACME server gave for the domain and
// still valid (not the placeholder, not for a domain the config no longer
// names).
func (a *ACME) issued(cert *x509.Certificate, now time.Time) bool {
	return !isPlaceholder(cert) && slices.Contains(cert.DNSNames, a.Domain) && now.Before(cert.NotAfter)
}

// renewAt is when cert is due: when a third of its life is left, or
// earlier if the ACME server's renewal info says so.
func (a *ACME) renewAt(ctx context.Context, cert *x509.Certificate, now time.Time) time.Time {
	due := cert.NotAfter.Add(-cert.NotAfter.Sub(cert.NotBefore) / 3)
	client, err := a.client(ctx)
	if err != nil {
		return due
	}
	info, err := client.Certificate.GetRenewalInfo(ctx, cert)
	if err != nil {
		if !errors.Is(err, api.ErrNoARI) {
			a.Log.Warn("acme: no renewal info from the server; renewing by the certificate's lifetime", "err", err)
		}
		return due
	}
	if at := info.ShouldRenewAt(now, recheck); at != nil && at.Before(due) {
		return *at
	}
	return due
}

// client is a lego client for the account kept in Dir, registered the
// first time (the account's key is made once and kept).
func (a *ACME) client(ctx context.Context) (*lego.Client, error) {
	key, err := a.accountKey()
	if err != nil {
		return nil, err
	}
	user := &account{email: a.Email, key: key}
	if b, err := os.ReadFile(filepath.Join(a.Dir, accountFile)); err == nil {
		var reg acme.ExtendedAccount
		if json.Unmarshal(b, &reg) == nil && reg.Location != "" {
			user.reg = &reg
		}
	}
	cfg := lego.NewConfig(user)
	cfg.CADirURL = a.Directory
	cfg.UserAgent = "tally-certs"
	if a.Roots != nil {
		cfg.HTTPClient = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: a.Roots}}}
	}
	client, err := lego.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("the ACME server at %s: %w", a.Directory, err)
	}
	if err := client.Challenge.SetHTTP01Provider(http01.NewProviderServerWithOptions(http01.Options{Address: a.ChallengeAddr})); err != nil {
		return nil, err
	}
	if user.reg == nil {
		reg, err := client.Registration.Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true})
		if err != nil {
			return nil, fmt.Errorf("registering an account with %s: %w", a.Directory, err)
		}
		b, _ := json.Marshal(reg)
		if err := writeFile(a.Dir, accountFile, b, 0o600); err != nil {
			return nil, err
		}
		a.Log.Info("acme: registered an account", "server", a.Directory, "account", reg.Location)
	}
	return client, nil
}

func (a *ACME) accountKey() (crypto.Signer, error) {
	path := filepath.Join(a.Dir, accountKeyFile)
	if b, err := os.ReadFile(path); err == nil {
		return certcrypto.ParsePEMPrivateKey(b)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return key, writeFile(a.Dir, accountKeyFile, pemBlock("PRIVATE KEY", der), 0o600)
}

// Placeholder writes a self-signed certificate for the domain when
// there is no certificate at all: the edge starts with it (HTTPS answers,
// untrusted) and carries the first challenge over plain HTTP.
func (a *ACME) Placeholder() error { return placeholder(a.Dir, a.Domain, a.Now(), a.Log) }

func placeholder(dir, domain string, now time.Time, log *slog.Logger) error {
	if _, err := readCert(filepath.Join(dir, CertFile)); err == nil {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	// A server certificate as a local run's, but self-signed, short-lived
	// and named for what it is.
	tmpl, err := signLeafTemplate([]string{domain}, now)
	if err != nil {
		return err
	}
	tmpl.Subject.CommonName = placeholderCN
	tmpl.NotAfter = now.Add(7 * 24 * time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	log.Info("certs: serving a self-signed placeholder until the ACME server's certificate comes", "domain", domain)
	return writePair(dir, pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", keyDER))
}

// writePair replaces the served pair, the key first: an nginx reloading
// between the two writes finds the new key with the old certificate only
// for a moment, and its check (nginx -t) refuses that pair.
func writePair(dir string, chain, key []byte) error {
	if block, _ := pem.Decode(chain); block == nil {
		return errors.New("no certificate to write")
	}
	if err := writeFile(dir, KeyFile, key, 0o600); err != nil {
		return err
	}
	return writeFile(dir, CertFile, chain, 0o644)
}

// account is the ACME account as lego asks for it.
type account struct {
	email string
	key   crypto.Signer
	reg   *acme.ExtendedAccount
}

func (u *account) GetEmail() string                       { return u.email }
func (u *account) GetRegistration() *acme.ExtendedAccount { return u.reg }
func (u *account) GetPrivateKey() crypto.Signer           { return u.key }

// SetLibraryLog sends lego's own log lines to l.
func SetLibraryLog(l *slog.Logger) { legolog.SetDefault(l) }

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
