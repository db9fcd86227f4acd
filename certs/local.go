package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// The files EnsureLocal keeps. The CA's key stays in the CA's directory,
// which only the maker mounts: nginx, which serves from the other one,
// could otherwise sign for localhost in every browser that trusts the CA.
const (
	CAFile   = "ca.pem"     // the CA's certificate, in both directories: what a client trusts
	caKey    = "ca-key.pem" // the CA's key, in the CA's directory only
	CertFile = "cert.pem"   // the served certificate
	KeyFile  = "key.pem"    // its key
)

const (
	caLifetime = 10 * 365 * 24 * time.Hour
	// Under the 398 days browsers accept for a certificate.
	leafLifetime = 397 * 24 * time.Hour
	// Backdated, so a clock a little behind the signer's accepts it.
	backdate = time.Hour
)

// LocalHosts are the names a local run is reached by, and all the CA may
// sign for.
var LocalHosts = []string{"localhost", "127.0.0.1", "::1"}

// Local is a local CA and the certificate it signed, as EnsureLocal left them.
type Local struct {
	CA, Cert *x509.Certificate
	Issued   bool // a new certificate was made this time
	CAMade   bool // and a new CA, the first time or when the old one could not be read
}

// EnsureLocal makes sure dir holds a certificate for hosts signed by the CA
// in caDir, with at least a third of its life left at now, and its key;
// it makes the CA the first time. What is good is left as it is, so a
// browser that trusts the CA keeps trusting what is served. Files are
// replaced whole (written beside, then renamed), so a reader never sees
// half of one.
func EnsureLocal(dir, caDir string, hosts []string, now time.Time) (Local, error) {
	var out Local
	if len(hosts) == 0 {
		return out, errors.New("no host names to make a certificate for")
	}
	ca, key, err := readCA(caDir, hosts, now)
	if err != nil {
		if ca, key, err = makeCA(caDir, now); err != nil {
			return out, err
		}
		out.CAMade = true
	}
	out.CA = ca
	if cert, err := readLeaf(dir, ca, hosts, now); err == nil && !out.CAMade {
		out.Cert = cert
		return out, writeFile(dir, CAFile, pemBlock("CERTIFICATE", ca.Raw), 0o644)
	}
	cert, certKey, err := signLeaf(ca, key, hosts, now)
	if err != nil {
		return out, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(certKey)
	if err != nil {
		return out, err
	}
	// The key first: nginx starting between the two writes would find the
	// new key beside the old certificate only if the certificate came first.
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{KeyFile, pemBlock("PRIVATE KEY", keyDER), 0o600},
		{CertFile, pemBlock("CERTIFICATE", cert.Raw), 0o644},
		{CAFile, pemBlock("CERTIFICATE", ca.Raw), 0o644},
	} {
		if err := writeFile(dir, f.name, f.data, f.mode); err != nil {
			return out, err
		}
	}
	out.Cert, out.Issued = cert, true
	return out, nil
}

// readCA reads the CA in dir, if it is one that may sign for hosts and has
// more than a leaf's lifetime left.
func readCA(dir string, hosts []string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	ca, err := readCert(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, caKey))
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, nil, fmt.Errorf("%s: no PEM block", caKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, err
	}
	signer, ok := k.(crypto.Signer)
	if !ok || !publicKeyEqual(signer.Public(), ca.PublicKey) {
		return nil, nil, errors.New("the CA's key is not its certificate's")
	}
	if now.Add(leafLifetime).After(ca.NotAfter) || !ca.IsCA {
		return nil, nil, errors.New("the CA expires before a certificate it would sign")
	}
	if !permits(ca, hosts) {
		return nil, nil, errors.New("the CA may not sign for every host")
	}
	return ca, signer, nil
}

// readLeaf reads the certificate in dir, if ca signed it for exactly hosts,
// its key is beside it, and a third of its life is left.
func readLeaf(dir string, ca *x509.Certificate, hosts []string, now time.Time) (*x509.Certificate, error) {
	cert, err := readCert(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, err
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return nil, err
	}
	if !slices.Equal(names(cert), hosts) {
		return nil, errors.New("made for other names")
	}
	life := cert.NotAfter.Sub(cert.NotBefore)
	if cert.NotAfter.Sub(now) < life/3 {
		return nil, errors.New("due for renewal")
	}
	b, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	if s, ok := k.(crypto.Signer); !ok || !publicKeyEqual(s.Public(), cert.PublicKey) {
		return nil, errors.New("the key is not the certificate's")
	}
	return cert, nil
}

func makeCA(dir string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	_, loopback4, _ := net.ParseCIDR("127.0.0.0/8")
	_, loopback6, _ := net.ParseCIDR("::1/128")
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "tally local CA " + serial.Text(16)[:8], Organization: []string{"tally (local runs)"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		// Trusting it trusts it for this machine's names only.
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         []string{"localhost"},
		PermittedIPRanges:           []*net.IPNet{loopback4, loopback6},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := writeFile(dir, caKey, pemBlock("PRIVATE KEY", keyDER), 0o600); err != nil {
		return nil, nil, err
	}
	if err := writeFile(dir, CAFile, pemBlock("CERTIFICATE", der), 0o644); err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

func signLeafTemplate(hosts []string, now time.Time) (*x509.Certificate, error) {
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(leafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return tmpl, nil
}

func signLeaf(ca *x509.Certificate, caKey crypto.Signer, hosts []string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	if !permits(ca, hosts) {
		return nil, nil, fmt.Errorf("the local CA may sign for %v only, not for all of %v", LocalHosts, hosts)
	}
	tmpl, err := signLeafTemplate(hosts, now)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// permits says whether ca's name constraints allow every host.
func permits(ca *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		ok := false
		if ip := net.ParseIP(h); ip != nil {
			ok = slices.ContainsFunc(ca.PermittedIPRanges, func(r *net.IPNet) bool { return r.Contains(ip) })
		} else {
			ok = slices.ContainsFunc(ca.PermittedDNSDomains, func(d string) bool {
				return h == d || len(h) > len(d) && h[len(h)-len(d)-1:] == "."+d
			})
		}
		if !ok {
			return false
		}
	}
	return true
}

// names are a certificate's DNS names and addresses, in the order it was
// made with (DNS names first as they were given, then addresses).
func names(cert *x509.Certificate) []string {
	out := slices.Clone(cert.DNSNames)
	for _, ip := range cert.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(block.Bytes)
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func pemBlock(typ string, der []byte) []byte {
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: typ, Bytes: der})
	return b.Bytes()
}

// writeFile replaces dir/name with data: written beside it, synced, renamed.
func writeFile(dir, name string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
}
