package stack

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Config is everything the stack needs, read and checked once. Every key is
// in the `tally` namespace (`pulumi config set tally:replicas 5`).
type Config struct {
	Target     string   // docker (one engine) or swarm (services on the swarm whose manager DockerHost is)
	DockerHost string   // unix://, ssh://user@host, tcp://host:2376; "" is DOCKER_HOST or the local engine
	SSHOpts    []string // extra ssh flags for ssh:// hosts
	CAPem      Secret   // TLS material for tcp:// hosts
	CertPem    Secret
	KeyPem     Secret

	Replicas      int
	HTTPPort      int
	HTTPSPort     int
	HTTPBind      string // the host address nginx's ports are published on; "" for every one
	TLSCert       Secret // the certificate nginx serves, with its chain (PEM)
	TLSKey        Secret // its key
	Domain        string // the domain to get a certificate for by ACME
	ACMEEmail     string // the ACME account's contact
	ACMEServer    string // the ACME server's directory URL
	ACMERoots     string // the ACME server's TLS roots (PEM), when not the system's (a test server)
	PlainHTTP     bool   // serve the app over plain HTTP, with no TLS
	RedisPassword Secret
	RetainData    bool // keep the Redis volume when the stack is destroyed
	// Replicas of Redis on a swarm, each on a node of its own, which
	// Sentinels promote when the primary is lost; 0 for one Redis.
	RedisReplicas int
	BackupEvery   time.Duration // a snapshot of Redis this often (backup.go); 0 for none
	BackupRetain  int           // how many snapshots are kept

	AppImage   string // an existing app image; "" builds the repo's Dockerfile
	Registry   string // where a swarm's nodes pull the built app image from: host[:port][/path]
	Platform   string // what the app image is built for: the Docker host's os/arch
	RedisImage string
	NginxImage string
	GoImage    string
}

// Secret is a config value that must never be printed or stored in plain
// text: fmt shows "[secret]", and Output wraps it as a Pulumi secret.
type Secret string

func (s Secret) String() string   { return "[secret]" }
func (s Secret) GoString() string { return "[secret]" }

// Output returns the value as a Pulumi secret, encrypted in state.
func (s Secret) Output() pulumi.StringOutput {
	return pulumi.ToSecret(pulumi.String(string(s))).(pulumi.StringOutput)
}

// LoadConfig reads the stack's configuration from Pulumi; images not named
// there are the defaults.
func LoadConfig(ctx *pulumi.Context, defaults Images) (Config, error) {
	return ParseConfig(
		func(key string) (string, bool) { return ctx.GetConfig("tally:" + key) },
		func(key string) bool { return ctx.IsConfigSecret("tally:" + key) },
		defaults)
}

// secretKeys must be set with --secret, so they are encrypted in the stack's
// config file and state.
var secretKeys = []string{"redisPassword", "caPem", "certPem", "keyPem", "tlsCert", "tlsKey"}

// ParseConfig checks every key and reports all problems at once, each naming
// the key and what it expects, so `pulumi preview` fails with a clear message.
// get returns a key's value; isSecret says whether it was set with --secret.
func ParseConfig(get func(key string) (string, bool), isSecret func(key string) bool, defaults Images) (Config, error) {
	var errs []error
	bad := func(key, value, want string) {
		errs = append(errs, fmt.Errorf("tally:%s = %q: want %s", key, value, want))
	}
	str := func(key, def string) string {
		if v, ok := get(key); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
		return def
	}
	intIn := func(key string, def, lo, hi int) int {
		v := str(key, strconv.Itoa(def))
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			bad(key, v, fmt.Sprintf("a whole number from %d to %d", lo, hi))
			return def
		}
		return n
	}
	secret := func(key string) Secret {
		v, _ := get(key)
		return Secret(v)
	}

	cfg := Config{
		Target:        str("target", "docker"),
		DockerHost:    str("dockerHost", ""),
		CAPem:         secret("caPem"),
		CertPem:       secret("certPem"),
		KeyPem:        secret("keyPem"),
		Replicas:      intIn("replicas", 3, 1, 50),
		HTTPPort:      intIn("httpPort", 8080, 1, 65535),
		HTTPSPort:     intIn("httpsPort", 8443, 1, 65535),
		TLSCert:       secret("tlsCert"),
		TLSKey:        secret("tlsKey"),
		Domain:        strings.TrimSuffix(strings.ToLower(str("domain", "")), "."),
		ACMEEmail:     str("acmeEmail", ""),
		ACMEServer:    acmeServer(str("acmeServer", "letsencrypt")),
		ACMERoots:     str("acmeRoots", ""),
		HTTPBind:      str("httpBind", ""),
		RedisPassword: secret("redisPassword"),
		RetainData:    true,
		AppImage:      str("appImage", ""),
		Registry:      strings.TrimSuffix(str("registry", ""), "/"),
		Platform:      str("platform", "linux/amd64"),
		RedisImage:    str("redisImage", defaults.Redis),
		NginxImage:    str("nginxImage", defaults.Nginx),
		GoImage:       str("goImage", defaults.Go),
	}

	boolean := func(key string, def bool) bool {
		v := str(key, strconv.FormatBool(def))
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad(key, v, "true or false")
			return def
		}
		return b
	}
	cfg.RetainData = boolean("retainData", true)
	cfg.RedisReplicas = redisReplicas(cfg.Target, str("redisReplicas", ""), bad)
	cfg.BackupEvery = backupEvery(str("backupEvery", ""), bad)
	cfg.BackupRetain = intIn("backupRetain", defaultRetain, 1, maxBackupRetain)
	cfg.PlainHTTP = boolean("plainHTTP", false)
	if !cfg.PlainHTTP && cfg.HTTPPort == cfg.HTTPSPort {
		bad("httpsPort", strconv.Itoa(cfg.HTTPSPort), "a port other than tally:httpPort's")
	}
	if v := str("sshOpts", ""); v != "" {
		if err := json.Unmarshal([]byte(v), &cfg.SSHOpts); err != nil {
			bad("sshOpts", v, `a list of ssh flags, e.g. ["-o", "StrictHostKeyChecking=yes"] (pulumi config set --path 'tally:sshOpts[0]' ...)`)
		}
	}
	if cfg.DockerHost != "" {
		u, err := url.Parse(cfg.DockerHost)
		switch {
		case err != nil || u.Scheme == "":
			bad("dockerHost", cfg.DockerHost, "a URL: unix:///var/run/docker.sock, ssh://user@host or tcp://host:2376")
		case u.Scheme != "unix" && u.Scheme != "ssh" && u.Scheme != "tcp" && u.Scheme != "npipe":
			bad("dockerHost", cfg.DockerHost, "scheme unix://, ssh://, tcp:// or npipe://")
		case (u.Scheme == "ssh" || u.Scheme == "tcp") && u.Hostname() == "":
			bad("dockerHost", cfg.DockerHost, "a host name, e.g. ssh://deploy@example.com")
		}
	}
	switch {
	case cfg.Target != "docker" && cfg.Target != "swarm":
		bad("target", cfg.Target, "docker (containers on one engine) or swarm (services on a swarm, tally:dockerHost its manager)")
	case cfg.Target == "swarm" && !cfg.RetainData:
		errs = append(errs, errors.New("tally:retainData = false does nothing on a swarm: Swarm creates Redis' volume on the node labelled tally.redis=true, outside the stack, and destroy leaves it; to drop the data, docker volume rm it on that node (and unset tally:retainData)"))
	case cfg.Target == "swarm" && cfg.AppImage == "" && cfg.Registry == "":
		errs = append(errs, errors.New("tally:target = swarm needs tally:registry, where the nodes pull the app image built here from (e.g. registry.example.com/team), or tally:appImage, an image they can pull"))
	}
	if cfg.HTTPBind != "" && net.ParseIP(cfg.HTTPBind) == nil {
		bad("httpBind", cfg.HTTPBind, "an IP address of the Docker host, e.g. 127.0.0.1 (unset: every address)")
	} else if cfg.HTTPBind != "" && cfg.Target == "swarm" {
		errs = append(errs, errors.New("tally:httpBind cannot be set on a swarm: Swarm publishes a host-mode port on every address of the node; bind it with the node's firewall"))
	}
	if strings.Contains(cfg.Registry, "://") {
		bad("registry", cfg.Registry, "a registry host and path without a scheme, e.g. registry.example.com/team or 10.0.0.5:5000")
	}
	if os, arch, ok := strings.Cut(cfg.Platform, "/"); !ok || os == "" || arch == "" {
		bad("platform", cfg.Platform, "the Docker host's os/arch, e.g. linux/amd64 or linux/arm64")
	}
	errs = append(errs, checkTLS(cfg)...)
	errs = append(errs, checkServedTLS(cfg)...)
	if cfg.RedisPassword == "" {
		errs = append(errs, errors.New("tally:redisPassword is not set: pulumi config set --secret tally:redisPassword \"$(openssl rand -hex 24)\""))
	} else if strings.ContainsAny(string(cfg.RedisPassword), "\"'\\ \t\n") {
		errs = append(errs, errors.New("tally:redisPassword must not contain quotes, backslashes or white space"))
	}
	for _, key := range secretKeys {
		if v, _ := get(key); v != "" && !isSecret(key) {
			errs = append(errs, fmt.Errorf("tally:%s is stored in plain text: set it again with pulumi config set --secret", key))
		}
	}
	return cfg, errors.Join(errs...)
}

// checkTLS checks the TLS material for a tcp:// host: all three or none
// (the provider takes no partial set), each what its key says.
func checkTLS(cfg Config) []error {
	set := 0
	for _, v := range []Secret{cfg.CAPem, cfg.CertPem, cfg.KeyPem} {
		if v != "" {
			set++
		}
	}
	switch {
	case set == 0:
		return nil
	case set < 3:
		return []error{errors.New("tally:caPem, tally:certPem and tally:keyPem: set all three (the engine's CA, the client certificate and its key) or none")}
	}
	var errs []error
	if !x509.NewCertPool().AppendCertsFromPEM([]byte(cfg.CAPem)) {
		errs = append(errs, errors.New("tally:caPem holds no PEM certificate (want the contents of ca.pem)"))
	}
	if _, err := tls.X509KeyPair([]byte(cfg.CertPem), []byte(cfg.KeyPem)); err != nil {
		errs = append(errs, fmt.Errorf("tally:certPem and tally:keyPem are not a certificate and its key (cert.pem, key.pem): %w", err))
	}
	return errs
}
