// Package hostname checks a name an ACME server would certify by HTTP-01.
package hostname

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// Check says why name cannot have a certificate by HTTP-01: it must
// be a fully qualified host name (no address, no wildcard, no port), as
// an ACME server validates it.
func Check(name string) error {
	switch {
	case name == "":
		return errors.New("no domain")
	case net.ParseIP(name) != nil:
		return errors.New("an address, not a host name: ACME's HTTP-01 certifies names")
	case strings.HasPrefix(name, "*."):
		return errors.New("a wildcard needs the DNS-01 challenge; give the host name itself")
	case len(name) > 253:
		return errors.New("longer than 253 characters")
	case !strings.Contains(strings.TrimSuffix(name, "."), "."):
		return errors.New("not a fully qualified name (want e.g. tally.example.com)")
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q is not a label of a host name", label)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("%q holds %q: a host name has letters, digits and hyphens only (an internationalized name goes in its xn-- form)", label, r)
			}
		}
	}
	return nil
}
