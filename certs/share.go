package certs

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// A swarm runs its edge on several nodes, and a volume is one node's: the
// ACME keeper's pair reaches the others through the stack's network. The
// keeper serves it (Share) to a copier on each edge node (Copy), sealed
// with a key only the two hold (a Swarm secret): the network also carries
// the app's replicas, which must not read the edge's key.

// SharePath is where a Share answers.
const SharePath = "/pair"

// How often a copy asks for the pair: a renewal reaches every edge node
// this long after it, at most; the certificate it replaces has weeks left.
const copyEvery = 15 * time.Second

// sealed is the pair as a Share sends it, inside the seal.
type sealed struct {
	Cert []byte `json:"cert"`
	Key  []byte `json:"key"`
}

// ShareKey is the sealing key made from a secret's content (a file of
// random bytes), whatever its length.
func ShareKey(secret []byte) ([]byte, error) {
	if len(bytes.TrimSpace(secret)) < 16 {
		return nil, errors.New("the share key is shorter than 16 bytes")
	}
	k := sha256.Sum256(secret)
	return k[:], nil
}

func aead(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Share serves the pair kept in Dir, sealed with Key (AES-256-GCM), at
// SharePath.
type Share struct {
	Dir string
	Key []byte
	Log *slog.Logger
}

func (s *Share) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != SharePath || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	var p sealed
	var err error
	if p.Cert, err = os.ReadFile(filepath.Join(s.Dir, CertFile)); err == nil {
		p.Key, err = os.ReadFile(filepath.Join(s.Dir, KeyFile))
	}
	if err != nil {
		s.Log.Warn("certs: no pair to share yet", "err", err)
		http.Error(w, "no certificate yet", http.StatusServiceUnavailable)
		return
	}
	body, err := seal(s.Key, p)
	if err != nil {
		http.Error(w, "sealing failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(body)
}

func seal(key []byte, p sealed) ([]byte, error) {
	g, err := aead(key)
	if err != nil {
		return nil, err
	}
	plain, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return g.Seal(nonce, nonce, plain, []byte(SharePath)), nil
}

func open(key, body []byte) (sealed, error) {
	var p sealed
	g, err := aead(key)
	if err != nil {
		return p, err
	}
	if len(body) < g.NonceSize() {
		return p, errors.New("the answer is too short to be a sealed pair")
	}
	plain, err := g.Open(nil, body[:g.NonceSize()], body[g.NonceSize():], []byte(SharePath))
	if err != nil {
		return p, errors.New("the answer does not open with the share key (another stack's keeper, or a key changed on one side only)")
	}
	return p, json.Unmarshal(plain, &p)
}

// Copy keeps in Dir the pair a Share at From serves: what the edge on this
// node reads. Until the first comes it writes a placeholder for Domain, so
// the edge can start; a placeholder from the keeper never replaces an
// issued certificate here.
type Copy struct {
	From   string // the Share's URL, ending in SharePath
	Key    []byte
	Dir    string
	Domain string
	Client *http.Client
	Log    *slog.Logger
	Now    func() time.Time
}

// Run copies the pair every copyEvery until ctx ends; a failure is logged
// and the pair here keeps serving.
func (c *Copy) Run(ctx context.Context) error {
	if err := placeholder(c.Dir, c.Domain, c.Now(), c.Log); err != nil {
		return err
	}
	failing := false
	for {
		changed, err := c.Once(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			// Once a failure, not every 15 s while it lasts.
			if !failing {
				c.Log.Error("certs: could not copy the certificate; the one here keeps serving", "from", c.From, "err", err, "retry_every", copyEvery.String())
			}
			failing = true
		case err == nil:
			if failing {
				c.Log.Info("certs: copying the certificate again", "from", c.From)
			}
			failing = false
			if changed {
				c.Log.Info("certs: copied a new certificate", "from", c.From)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(copyEvery):
		}
	}
}

// Once fetches the pair and writes it if it is new and good: a key that
// goes with the certificate, valid now, and not the keeper's placeholder
// while this node has a certificate still valid. It says whether it wrote.
func (c *Copy) Once(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.From, nil)
	if err != nil {
		return false, err
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return false, err
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("%s answered %s: %s", c.From, resp.Status, bytes.TrimSpace(body))
	}
	p, err := open(c.Key, body)
	if err != nil {
		return false, err
	}
	pair, err := tls.X509KeyPair(p.Cert, p.Key)
	if err != nil {
		return false, fmt.Errorf("the shared certificate does not go with its key: %w", err)
	}
	now := c.Now()
	if now.After(pair.Leaf.NotAfter) || now.Before(pair.Leaf.NotBefore) {
		return false, fmt.Errorf("the shared certificate is not valid now (%s to %s)", pair.Leaf.NotBefore.UTC().Format(time.RFC3339), pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	current, _ := os.ReadFile(filepath.Join(c.Dir, CertFile))
	if bytes.Equal(current, p.Cert) {
		return false, nil
	}
	if isPlaceholder(pair.Leaf) {
		if cert, err := readCert(filepath.Join(c.Dir, CertFile)); err == nil && now.Before(cert.NotAfter) {
			return false, nil
		}
	}
	return true, writePair(c.Dir, p.Cert, p.Key)
}

func isPlaceholder(c *x509.Certificate) bool { return c.Subject.CommonName == placeholderCN }
