// Package stack declares the tally stack with Pulumi. What the stack is —
// its services (services, in this file), each with every trait a target
// needs to run it — does not depend on where it runs; docker.go turns the
// list into containers on one Docker host, swarm.go into services of a
// Docker Swarm, and stack.go picks between them by tally:target.
package stack

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/url"
	"slices"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// service is one service of the stack as every target runs it: what runs,
// how many and where, how it is replaced, as whom, with what, how it is
// checked, limited and stopped, and where others find it. A target turns
// each trait into its own resources; nothing about a particular service is
// written anywhere else.
type service struct {
	role  string // in names and the tally.role label; others' waitsFor
	image image

	replicas  int    // how many run; everyNode for one on each node placement allows
	placement string // a Swarm placement constraint; "" for any node
	replace   order  // how an instance is replaced by a new one
	waitsFor  []string
	publish   []portMap // its ports published on the host
	publishOn string    // the host address they are published on; "" for every one

	user       string   // uid:gid; "" is the image's own
	entrypoint []string // nil is the image's own
	command    []string // nil is the image's own
	env        []string // KEY=value
	health     []string // the health check's command
	retries    int      // failed checks in a row before it is unhealthy
	memoryMB   int      // the memory limit, with no swap beyond it
	cpus       int      // a CPU limit in whole CPUs
	// The PIDs limit. docker-compose.yml sets it; the docker provider
	// (v4.10.0) has no setting for it, on containers or on Swarm services.
	pids       int
	stopSignal string   // "" is SIGTERM
	stopGrace  int      // seconds from the stop signal to SIGKILL
	password   bool     // reads the Redis password at passwordPath
	shareKey   bool     // reads the key sealing the certificate between certs and its copies, at shareKeyPath (a swarm)
	dataDir    string   // where its data volume is mounted; "" for none
	readsData  string   // a service before it whose data volume it mounts read-only, at that service's dataDir
	reloads    *reloads // config it takes in place, without a new instance
	networks   []attachment
	// stackDNS: it resolves the stack's own names only, and a name nothing
	// answers to fails at once instead of waiting on DNS servers outside
	// (glibc's 2 × 5 s): Sentinel resolves names on its one thread, and a
	// dead node's stalled it into TILT mode, 30 s of acting on nothing.
	stackDNS bool
}

// portMap is a port of a service's published on the host.
type portMap struct{ host, container int }

// image is where a service's image comes from.
type image struct {
	ref    string // a registry image; with build, "" (or the image to run instead)
	build  bool   // the repository's Dockerfile, built on the host
	target string // the Dockerfile's stage to build; "" for the last, the app
	pin    bool   // a swarm runs it by its registry digest (see pinned)
}

// order is how a running instance makes way for its replacement.
type order string

const (
	// startFirst: the new instance starts beside the old, which stops once
	// the new one is healthy. For what holds nothing of its own, so two
	// can run at once: no request waits for a replacement.
	startFirst order = "start-first"
	// stopFirst: the old instance stops before the new one starts. For what
	// only one may hold at a time: a data volume, a host port, a fixed name.
	stopFirst order = "stop-first"
	// handoff: for what publishes a port and must never stop answering on
	// it (the edge). The port is held by a small container of its own, in
	// whose network namespace the instances run, each listening with
	// SO_REUSEPORT; the new instance starts beside the old, and the old
	// quits gracefully once the new one is healthy, the connections queued
	// at its listener moving to the new one (net.ipv4.tcp_migrate_req).
	// Where instances cannot share a network namespace (Swarm services):
	// stop-first.
	handoff order = "handoff"
)

// reloads is config a service takes in place: a release of its files goes
// into a volume of the service's own, in a directory named by their
// content; a release step (nginx/release.sh) checks it where the service
// runs and, if the service accepts it, makes it current; the service
// follows (nginx/serve.sh). A target runs the release step on every host
// of the service, and the service never gets a new instance for a config
// change. A config the service refuses fails the deploy, and the service
// keeps the one it has.
type reloads struct {
	files map[string]string // file name → content
	// Files that must stay secret (a TLS key): in encrypted state, never in
	// an environment or the release id. They change only with a file of
	// files (the key with its certificate), so the id need not name them.
	secrets map[string]Secret
	release string // the release step, run as sh -c with the release id
}

// releases is where a reloads volume is mounted: a directory every image
// the stack runs has world-writable (and sticky), so the new volume is too
// (Docker gives a new volume the mode of the directory it is first mounted
// on), and the release step may write it as the service's own non-root
// user; the service mounts it read-only.
const releases = "/var/tmp"

// id names a release by its files' content.
func (r *reloads) id() string {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(r.files)) {
		fmt.Fprintf(h, "%s %d\n%s", name, len(r.files[name]), r.files[name])
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// everyNode as replicas: one instance on every node placement allows (a
// swarm's global mode); on one engine, one.
const everyNode = -1

// attachment is a service on one of the stack's networks.
type attachment struct {
	network string // frontend (nginx and web) or backend (web and Redis)
	alias   string // the name others find it by there; "" for none
}

const (
	frontend = "frontend"
	backend  = "backend" // internal: no route out, nothing published
)

// Roles of the stack's services; the outputs name some of them.
const (
	webRole   = "web"
	redisRole = "redis"
	nginxRole = "nginx"
	certsRole = "certs"
	copyRole  = "certs-copy" // the certificate on each edge node of a swarm
)

// Ports inside the containers; the same as in docker-compose.yml (nginx's
// are in tls.go).
const (
	appPort   = 8080
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

// stackDNS's resolver settings: an upstream that refuses at once (nothing
// listens on the task's own loopback), and one try of a second.
var (
	noUpstreamDNS = []string{"127.0.0.1"}
	dnsOptions    = []string{"timeout:1", "attempts:1"}
)

// Where services run on a swarm.
const (
	redisConstraint = "node.labels.tally.redis==true"
	nginxConstraint = "node.role==manager"
)

// The Redis password reaches Redis and the app as a file, at the path where
// Compose mounts its secret, never as an environment value: `docker
// inspect` shows a container's environment to anyone who may run it.
const (
	secretsDir   = "/run/secrets"
	passwordPath = secretsDir + "/redis_password"
	shareKeyPath = secretsDir + "/certs_share_key"
)

// Health checks, the same as docker-compose.yml's.
var (
	webHealthcheck   = []string{"CMD", "/tally", "healthcheck"}
	redisHealthcheck = []string{"CMD-SHELL", `REDISCLI_AUTH="$(cat "$REDIS_PASSWORD_FILE")" redis-cli ping | grep -q PONG`}
	// bash's /dev/tcp: the official nginx image and the offline one both
	// have bash, neither is sure to have curl. Two nginx share the port
	// during a handoff, so the request may reach either: this one's own
	// process is alive with its pid file written, which nginx does once its
	// sockets listen.
	nginxHealthcheck = []string{"CMD", "bash", "-c",
		`kill -0 "$(cat /tmp/nginx.pid)" && exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /nginx-health HTTP/1.0\r\n\r\n' >&3 && grep -q ' 200 ' <&3`}
)

// services is the stack, in the order the services start: each one waits
// only for services before it.
func services(cfg Config, files Files) []service {
	redis := service{
		role:  redisRole,
		image: image{ref: cfg.RedisImage, pin: true},
		// One instance holds the data volume.
		replicas: 1, replace: stopFirst,
		placement: redisConstraint, // its volume is on that node
		user:      redisUser,
		// The script's text runs as `sh -c`, so a remote host needs no copy.
		command: []string{"sh", "-c", files.RedisStart, "redis-start"},
		env:     []string{"REDIS_PASSWORD_FILE=" + passwordPath},
		health:  redisHealthcheck, retries: 15,
		memoryMB: 256,
		cpus:     1, // Redis runs commands on one thread
		pids:     64,
		// Time to write the AOF and the final snapshot on the way down.
		stopGrace: 30,
		password:  true,
		dataDir:   "/data",
		networks:  []attachment{{backend, redisAlias}},
	}
	svcs := []service{redis}
	if cfg.RedisReplicas > 0 {
		svcs = replicated(redis, cfg.RedisReplicas, files)
	}
	if cfg.BackupEvery > 0 {
		svcs = append(svcs, backupService(cfg, redis, files))
	}
	svcs = append(svcs, service{
		role: webRole,
		// tally:appImage, or the repository's Dockerfile.
		image:    image{ref: cfg.AppImage, build: cfg.AppImage == ""},
		replicas: cfg.Replicas, replace: startFirst,
		// Redis, all of it: the last of its services waits for the others.
		waitsFor: []string{svcs[len(svcs)-1].role},
		env: append(appRedisEnv(cfg.RedisReplicas),
			"REDIS_PASSWORD_FILE="+passwordPath,
			fmt.Sprintf("PORT=%d", appPort),
		),
		health: webHealthcheck, retries: 3,
		memoryMB: 64,
		// Go sets GOMAXPROCS from the limit: one scheduler thread per
		// replica, which measured faster than one per machine core when
		// several replicas share a machine (bench/results.md).
		cpus: 1,
		pids: 64,
		// SIGTERM, then time to finish in-flight requests (the app's
		// SHUTDOWN_TIMEOUT is 10s) before it is killed.
		stopGrace: 15,
		password:  true,
		networks:  []attachment{{frontend, webAlias}, {backend, ""}},
	})
	certs := certsServices(cfg)
	svcs = append(svcs, certs...)
	return append(svcs, edgeService(cfg, files, certs))
}

// edgeService is nginx: the edge, on every manager of a swarm; certs are
// the services that keep its certificate by ACME, if any.
func edgeService(cfg Config, files Files, certs []service) service {
	edge := service{
		role:  nginxRole,
		image: image{ref: cfg.NginxImage, pin: true},
		// The edge of every manager of a swarm, each with the port on its
		// own address. On one engine a new nginx takes over the port from
		// the old without a refused connection; on a swarm the old task
		// stops first, since the port is the node's.
		replicas: everyNode, replace: handoff,
		placement: nginxConstraint,
		waitsFor:  []string{webRole},
		publish:   edgePorts(cfg),
		publishOn: cfg.HTTPBind,
		user:      nginxUser,
		// The scripts' text runs as `sh -c`, so a remote host needs no copy.
		entrypoint: []string{"sh", "-c", files.NginxServe, "nginx-serve"},
		env:        []string{"TALLY_NGINX_RELEASES=" + releases},
		reloads:    edgeRelease(cfg, files),
		health:     nginxHealthcheck, retries: 5,
		memoryMB:   64,
		cpus:       1,
		pids:       64,
		stopSignal: "SIGQUIT", // nginx's graceful stop
		// Without it nginx is killed, cutting the requests it holds.
		stopGrace: 10,
		// nginx finds the replicas through DNS (nginx/upstream.conf), so
		// nothing here depends on their number: scaling leaves it be.
		networks: []attachment{{frontend, ""}},
	}
	if len(certs) > 0 {
		// The certificate by ACME, read where the last of the certs
		// services writes it on nginx's node, and followed: nginx reloads
		// when it changes.
		source := certs[len(certs)-1]
		edge.readsData = source.role
		edge.waitsFor = append(edge.waitsFor, source.role)
		edge.env = append(edge.env, "TALLY_TLS_CERT="+source.dataDir+"/cert.pem")
	}
	return edge
}

// checkServices says what in the list no target could run or the stack
// does not allow: a service waiting for one that does not start before it,
// two with one role, one without limits.
func checkServices(svcs []service) error {
	seen := map[string]bool{}
	for _, svc := range svcs {
		if seen[svc.role] {
			return fmt.Errorf("two services have the role %q", svc.role)
		}
		for _, dep := range svc.waitsFor {
			if !seen[dep] {
				return fmt.Errorf("service %s waits for %q, which is not a service listed before it", svc.role, dep)
			}
		}
		if svc.replicas == 0 || svc.replicas < everyNode {
			return fmt.Errorf("service %s: %d replicas", svc.role, svc.replicas)
		}
		if svc.memoryMB <= 0 || svc.cpus <= 0 {
			return fmt.Errorf("service %s: every service has a memory and a CPU limit (%d MB, %d CPUs)", svc.role, svc.memoryMB, svc.cpus)
		}
		seen[svc.role] = true
	}
	// The outputs name these.
	for _, role := range []string{webRole, redisRole} {
		if !seen[role] {
			return fmt.Errorf("the service list has no %s service, which the stack's outputs name", role)
		}
	}
	for _, svc := range svcs {
		if svc.readsData == "" {
			continue
		}
		if owner, ok := byRole(svcs, svc.readsData); !ok || owner.dataDir == "" || !slices.Contains(svc.waitsFor, owner.role) {
			return fmt.Errorf("service %s reads the data of %q, which is not a service it waits for with a data volume", svc.role, svc.readsData)
		}
	}
	if redis, _ := byRole(svcs, redisRole); redis.dataDir == "" {
		return fmt.Errorf("service %s has no data volume, which the redisVolume output names", redisRole)
	}
	return nil
}

// byRole is the service of svcs with role, if there is one.
func byRole(svcs []service, role string) (service, bool) {
	i := slices.IndexFunc(svcs, func(svc service) bool { return svc.role == role })
	if i < 0 {
		return service{}, false
	}
	return svcs[i], true
}

// stackURL is the url output: where clients reach the app.
func stackURL(cfg Config) pulumi.StringOutput {
	if cfg.PlainHTTP {
		return pulumi.Sprintf("http://%s:%d/", urlHost(cfg.DockerHost), cfg.HTTPPort)
	}
	return pulumi.Sprintf("https://%s%s/", urlHost(cfg.DockerHost), portSuffix(cfg.HTTPSPort))
}

// urlHost is the host name clients use to reach the Docker host.
func urlHost(dockerHost string) string {
	if u, err := url.Parse(dockerHost); err == nil && (u.Scheme == "ssh" || u.Scheme == "tcp") && u.Hostname() != "" {
		return u.Hostname()
	}
	return "localhost"
}
