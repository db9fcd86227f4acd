// Package tally declares the tally stack with Pulumi. What the stack is —
// its three services (services), names, ports, files, health checks,
// environment — lives here and does not depend on where it runs; docker.go
// places it on one Docker host, swarm.go as services of a Docker Swarm, and
// stack.go picks between them by tally:target.
package tally

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Ports inside the containers; the same as in docker-compose.yml.
const (
	appPort   = 8080
	nginxPort = 8080
	redisPort = 6379
)

// DNS names the containers find each other by: nginx/upstream.conf resolves
// "web", the app connects to "redis".
const (
	webAlias   = "web"
	redisAlias = "redis"
)

// Users of the official images (and the offline stand-ins); the app image
// sets its own.
const (
	redisUser = "999:999"
	nginxUser = "101:101"
)

// Files are the repository files the stack deploys, read once at startup.
type Files struct {
	Root         string // the repository root: the app image's build context
	NginxConf    string // nginx/nginx.conf
	UpstreamConf string // nginx/upstream.conf
	RedisStart   string // redis/start.sh
	AppHash      string // hash of the app image's build inputs: its tag
	Images       Images // the default images, from docker-compose.yml
}

// Images are the images the stack runs unless its config names others.
type Images struct{ Redis, Nginx, Go string }

// composeDefault matches a default image in docker-compose.yml, such as
// ${REDIS_IMAGE:-redis:8.0}: the one place the official images are named.
var composeDefault = regexp.MustCompile(`\$\{(REDIS|NGINX|GO)_IMAGE:-([^}]+)\}`)

func composeImages(compose string) (Images, error) {
	found := map[string]string{}
	for _, m := range composeDefault.FindAllStringSubmatch(compose, -1) {
		found[m[1]] = m[2]
	}
	img := Images{Redis: found["REDIS"], Nginx: found["NGINX"], Go: found["GO"]}
	if img.Redis == "" || img.Nginx == "" || img.Go == "" {
		return img, fmt.Errorf("docker-compose.yml names no default for one of REDIS_IMAGE, NGINX_IMAGE, GO_IMAGE (${NAME:-image}): found %v", found)
	}
	return img, nil
}

// ReadFiles reads what the stack needs from the repository at root.
func ReadFiles(root string) (Files, error) {
	f := Files{Root: root}
	var compose string
	for path, dst := range map[string]*string{
		"nginx/nginx.conf":    &f.NginxConf,
		"nginx/upstream.conf": &f.UpstreamConf,
		"redis/start.sh":      &f.RedisStart,
		"docker-compose.yml":  &compose,
	} {
		b, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			return f, fmt.Errorf("reading the stack's files (is %s the repository root?): %w", root, err)
		}
		*dst = string(b)
	}
	h, err := hashBuildInputs(root)
	if err != nil {
		return f, err
	}
	f.AppHash = h
	f.Images, err = composeImages(compose)
	return f, err
}

// hashBuildInputs hashes what the Dockerfile copies (see .dockerignore), so
// the app image's tag, and with it the web containers, change exactly when
// the app does.
func hashBuildInputs(root string) (string, error) {
	var paths []string
	err := filepath.WalkDir(filepath.Join(root, "app"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		switch {
		case d.IsDir() && rel == filepath.Join("app", "internal"):
			return filepath.SkipDir
		case d.Type().IsRegular() && !strings.HasSuffix(path, "_test.go"):
			paths = append(paths, rel)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hashing the app's sources: %w", err)
	}
	paths = append(paths, "Dockerfile")
	sort.Strings(paths)
	h := sha256.New()
	for _, p := range paths {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			return "", fmt.Errorf("hashing the app's sources: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.ToSlash(p), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// names derives every Docker object's name from project and stack, so
// several stacks share one host without clashing: tally-dev-web-1.
type names struct{ project, stack string }

func namesFor(ctx *pulumi.Context) names { return names{ctx.Project(), ctx.Stack()} }

func (n names) of(parts ...string) string {
	return strings.Join(append([]string{n.project, n.stack}, parts...), "-")
}

// dataVolume is the volume that holds svc's data (at svc.dataDir).
func (n names) dataVolume(svc service) string { return n.of(svc.role, "data") }

// labels mark every object with its project, stack and role, for
// `docker ps --filter label=tally.stack=dev`.
func (n names) labels(role string) map[string]string {
	return map[string]string{"tally.project": n.project, "tally.stack": n.stack, "tally.role": role}
}

// The Redis password reaches Redis and the app as a file, at the path where
// Compose mounts its secret, never as an environment value: `docker
// inspect` shows a container's environment to anyone who may run it.
const (
	secretsDir   = "/run/secrets"
	passwordPath = secretsDir + "/redis_password"
)

// Health checks, the same as docker-compose.yml's.
var (
	webHealthcheck   = []string{"CMD", "/tally", "healthcheck"}
	redisHealthcheck = []string{"CMD-SHELL", `REDISCLI_AUTH="$(cat "$REDIS_PASSWORD_FILE")" redis-cli ping | grep -q PONG`}
	// bash's /dev/tcp: the official nginx image and the offline one both
	// have bash, neither is sure to have curl.
	nginxHealthcheck = []string{"CMD", "bash", "-c",
		`exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /nginx-health HTTP/1.0\r\n\r\n' >&3 && grep -q ' 200 ' <&3`}
)

// nginxStart writes the config files, passed in the environment, to /tmp and
// starts nginx on them. Passing content rather than mounting files works on a
// remote host and with a read-only root filesystem.
const nginxStart = `set -eu
mkdir -p /tmp/nginx
printf '%s' "$TALLY_NGINX_CONF" > /tmp/nginx/nginx.conf
printf '%s' "$TALLY_UPSTREAM_CONF" > /tmp/nginx/upstream.conf
exec nginx -p /tmp/nginx/ -c nginx.conf -g 'daemon off;'`

// service is one of the stack's three services as every target runs it:
// what runs, as whom, with what, how it is checked, limited and stopped, and
// where others find it. docker.go makes containers of it, swarm.go Swarm
// services; what only one target has (a published port's mode, placement,
// how the password file gets there) is the target's.
type service struct {
	role       string   // web, redis, nginx: in names and the tally.role label
	user       string   // uid:gid; "" is the image's own
	entrypoint []string // nil is the image's own
	command    []string // nil is the image's own
	env        []string // KEY=value
	health     []string // the health check's command
	retries    int      // failed checks in a row before it is unhealthy
	memoryMB   int      // the memory limit, with no swap beyond it
	cpus       int      // a CPU limit in whole CPUs; 0 for none
	stopSignal string   // "" is SIGTERM
	stopGrace  int      // seconds from the stop signal to SIGKILL
	password   bool     // reads the Redis password at passwordPath
	dataDir    string   // where the Redis volume is mounted; "" for none
	networks   []attachment
	port       int // the port it listens on
}

// attachment is a service on one of the stack's networks.
type attachment struct {
	network string // frontend (nginx and web) or backend (web and Redis)
	alias   string // the name others find it by there; "" for none
}

const (
	frontend = "frontend"
	backend  = "backend" // internal: no route out, nothing published
)

// How much each container logs before the oldest is dropped.
const (
	logMaxSize  = "10m"
	logMaxFiles = "3"
)

// Check intervals and timeouts of every health check.
const (
	healthInterval    = "2s"
	healthTimeout     = "2s"
	healthStartPeriod = "5s"
)

func services(files Files) (web, redis, nginx service) {
	web = service{
		role: "web",
		env: []string{
			fmt.Sprintf("REDIS_ADDR=%s:%d", redisAlias, redisPort),
			"REDIS_PASSWORD_FILE=" + passwordPath,
			fmt.Sprintf("PORT=%d", appPort),
		},
		health: webHealthcheck, retries: 3,
		memoryMB: 64,
		// Go sets GOMAXPROCS from the limit: one scheduler thread per
		// replica, which measured faster than one per machine core when
		// several replicas share a machine (bench/results.md).
		cpus: 1,
		// SIGTERM, then time to finish in-flight requests (the app's
		// SHUTDOWN_TIMEOUT is 10s) before it is killed.
		stopGrace: 15,
		password:  true,
		networks:  []attachment{{frontend, webAlias}, {backend, ""}},
		port:      appPort,
	}
	redis = service{
		role: "redis",
		user: redisUser,
		// The script's text runs as `sh -c`, so a remote host needs no copy.
		command: []string{"sh", "-c", files.RedisStart, "redis-start"},
		env:     []string{"REDIS_PASSWORD_FILE=" + passwordPath},
		health:  redisHealthcheck, retries: 15,
		memoryMB: 256,
		// Time to write the AOF and the final snapshot on the way down.
		stopGrace: 30,
		password:  true,
		dataDir:   "/data",
		networks:  []attachment{{backend, redisAlias}},
		port:      redisPort,
	}
	nginx = service{
		role:       "nginx",
		user:       nginxUser,
		entrypoint: []string{"sh", "-c", nginxStart},
		env:        []string{"TALLY_NGINX_CONF=" + files.NginxConf, "TALLY_UPSTREAM_CONF=" + files.UpstreamConf},
		health:     nginxHealthcheck, retries: 5,
		memoryMB:   64,
		stopSignal: "SIGQUIT", // nginx's graceful stop
		// Without it nginx is killed, cutting the requests it holds.
		stopGrace: 10,
		// nginx finds the replicas through DNS (nginx/upstream.conf), so
		// nothing here depends on their number: scaling leaves it be.
		networks: []attachment{{frontend, ""}},
		port:     nginxPort,
	}
	return web, redis, nginx
}

// urlHost is the host name clients use to reach the Docker host.
func urlHost(dockerHost string) string {
	if u, err := url.Parse(dockerHost); err == nil && (u.Scheme == "ssh" || u.Scheme == "tcp") && u.Hostname() != "" {
		return u.Hostname()
	}
	return "localhost"
}
