package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// UseGiven puts a certificate of the user's own (its chain, first the
// server's) and its key in dir, to be served instead of the local CA's:
// refused, with what is wrong, when the key is not the certificate's or
// the certificate is not valid at now. The local CA's certificate leaves
// dir, so no client is told to trust it for what it did not sign.
func UseGiven(dir string, chain, key []byte, now time.Time) (*tls.Certificate, error) {
	pair, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return nil, fmt.Errorf("the given certificate and key: %s", strings.TrimPrefix(err.Error(), "tls: "))
	}
	switch leaf := pair.Leaf; {
	case now.After(leaf.NotAfter):
		return nil, fmt.Errorf("the given certificate expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return nil, fmt.Errorf("the given certificate is not valid until %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if err := writePair(dir, chain, key); err != nil {
		return nil, err
	}
	if err := os.Remove(filepath.Join(dir, CAFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return &pair, nil
}
