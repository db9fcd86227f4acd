package hostname

import "testing"

func TestCheck(t *testing.T) {
	for name, ok := range map[string]bool{
		"tally.example.com": true, "a-b.example.org.": true, "xn--bcher-kva.example": true,
		"": false, "localhost": false, "10.0.0.1": false, "*.example.com": false, "exa mple.com": false,
		"-bad.example.com": false, "bad-.example.com": false, "a..b": false, "tally.example.com:443": false, "bücher.example": false,
	} {
		if err := Check(name); (err == nil) != ok {
			t.Errorf("Check(%q) = %v, want ok %v", name, err, ok)
		}
	}
}
