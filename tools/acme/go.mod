// Pins the ACME test server the certificate tests run: Let's Encrypt's
// pebble and its DNS stand-in, pebble-challtestsrv, built from the module
// proxy into bin/ (testkit.StartPebble). Not Debian's pebble: its 2.4.0
// has neither certificate profiles (a validity short enough to watch a
// renewal) nor renewal info (RFC 9773), which the certs service follows.
module tally.local/tools/acme

go 1.26.6

toolchain go1.26.10

tool (
	github.com/letsencrypt/pebble/v2/cmd/pebble
	github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv
)

require (
	github.com/go-jose/go-jose/v4 v4.1.8 // indirect
	github.com/letsencrypt/challtestsrv v1.4.2 // indirect
	github.com/letsencrypt/pebble/v2 v2.10.3 // indirect
	github.com/miekg/dns v1.1.62 // indirect
	golang.org/x/mod v0.24.0 // indirect
	golang.org/x/net v0.55.0 // indirect
	golang.org/x/sync v0.14.0 // indirect
	golang.org/x/sys v0.45.0 // indirect
	golang.org/x/tools v0.33.0 // indirect
)
