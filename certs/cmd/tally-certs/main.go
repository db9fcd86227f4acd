// Command tally-certs makes and keeps the certificates tally's edge serves.
//
//	tally-certs local [-dir DIR] [-ca DIR] [-hosts localhost,127.0.0.1,::1]
//
// local: the certificate of a local run (docker-compose.yml), signed by a CA
// of the stack's own that it makes once; see package certs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"tally/certs"
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

const usage = `usage: tally-certs local [-dir DIR] [-ca DIR] [-hosts NAMES]`

func run(_ context.Context, args []string, _ func(string) string, stdout io.Writer) error {
	if len(args) < 2 {
		return errors.New(usage)
	}
	switch args[1] {
	case "local":
		return local(args[2:], stdout, time.Now())
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return fmt.Errorf("%q: %s", args[1], usage)
}

// The directories of the certs image, each a volume in docker-compose.yml.
const (
	defaultDir   = "/var/lib/tally/tls"
	defaultCADir = "/var/lib/tally/ca"
)

func local(args []string, stdout io.Writer, now time.Time) error {
	fs := flag.NewFlagSet("local", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("dir", defaultDir, "where the served certificate and its key go")
	caDir := fs.String("ca", defaultCADir, "where the CA and its key are kept")
	hosts := fs.String("hosts", strings.Join(certs.LocalHosts, ","), "the names the certificate is for")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("local: %w (%s)", err, usage)
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
