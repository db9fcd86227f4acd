// Command bench measures tally on loopback processes — a real redis-server,
// three app replicas and nginx with the repository's config — against a
// ceiling measured in the same run: the same nginx proxying to an upstream
// that only answers 200. It writes bench/results.md and prints it.
// Run it with `make bench`.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"tally/testkit"
)

const password = "bench-password"

var (
	root        = flag.String("root", "..", "repository root")
	out         = flag.String("out", "results.md", "where to write the results")
	connections = flag.Int("c", 64, "wrk connections")
	duration    = flag.Duration("d", 5*time.Second, "length of one measured round")
	rounds      = flag.Int("rounds", 3, "measured rounds per scenario; the median is reported")
	goImage     = flag.String("go-image", os.Getenv("GO_IMAGE"), "builder image for the app image (default golang:1.26, or the offline one)")
	appEnv      = flag.String("env", "", "extra environment for the replicas, space-separated (for trying a setting, e.g. GOMAXPROCS=1)")
	quick       = flag.Bool("quick", false, "only the loopback scenarios: skip the image build, the Go benchmarks and the deploys (for trying a change)")
	deployRuns  = flag.Int("deploy-runs", 3, "runs of each deploy figure; the median is reported (0 skips the deploys)")
	deployOnly  = flag.Bool("deploy-only", false, "only the deploy figures, printed (for trying a change)")
	against     = flag.String("against", "", "git revision: also run /count through nginx on the app as it was there, in the same rounds (for measuring a change); with -deployed, its Compose stack too")
	deployed    = flag.Bool("deployed", true, "also measure the stack as deployed, in the same rounds: the Compose stack as make up starts it (needs docker compose v2) and, with -lab, Pulumi stacks on the lab; off with -quick")
	labStacks   = flag.Bool("lab", true, "with -deployed, also deploy to the lab (root): a Pulumi stack on one node and one on its swarm")
)

func main() {
	if serveFloor() {
		return
	}
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	images, err := testkit.PickImages(*root, logf)
	if err != nil {
		return err
	}
	if *goImage != "" {
		images["GO_IMAGE"] = *goImage
	}
	if *deployOnly {
		table, err := runDeployBench(*root, images, *deployRuns)
		fmt.Print(table)
		return err
	}
	for tool, hint := range map[string]string{"redis-server": "apt-get install redis-server", "nginx": "apt-get install nginx-light", "wrk": "apt-get install wrk"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is missing: %s", tool, hint)
		}
	}
	dir, err := os.MkdirTemp("", "tally-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var procs procs
	// A closure: a deferred procs.stopAll() would stop the empty list it was given.
	defer func() { procs.stopAll() }()

	logf("building the app")
	bin, err := buildApp(filepath.Join(*root, "app"), filepath.Join(dir, "tally"))
	if err != nil {
		return err
	}

	redisPort := freePort()
	_, err = procs.start("redis", exec.Command("redis-server", "--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1",
		"--requirepass", password, "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--dir", dir))
	if err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond) // redis-server listening

	r := results{Date: time.Now().UTC().Format("2006-01-02 15:04 MST"), Machine: machine()}

	logf("time to ready, 5 starts")
	var readies []time.Duration
	for range 5 {
		d, err := timeToReady(bin, redisPort)
		if err != nil {
			return err
		}
		readies = append(readies, d)
	}
	r.Ready = median(readies)

	var apps []int
	debugPort := freePort() // replica 1 serves profiles, for the CPU profile below
	for i := range 3 {
		var extra []string
		if i == 0 {
			extra = []string{"DEBUG_ADDR=127.0.0.1:" + strconv.Itoa(debugPort)}
		}
		port, p, err := startReplica(&procs, fmt.Sprintf("app%d", i+1), bin, redisPort, extra...)
		if err != nil {
			return err
		}
		apps = append(apps, port)
		if i == 1 { // replica 1 runs the debug listener; measure a plain one
			time.Sleep(time.Second)
			r.IdleRSSKB = rssKB(p.Process.Pid)
		}
	}

	appNginx, err := startNginx(&procs, dir, "nginx-app", apps, "")
	if err != nil {
		return err
	}
	trivial := freePort()
	ceilingNginx, err := startNginx(&procs, dir, "nginx-ceiling", []int{trivial},
		fmt.Sprintf("server {\n    listen 127.0.0.1:%d;\n    access_log off;\n    location / { return 200 \"ok\\n\"; }\n}\n", trivial))
	if err != nil {
		return err
	}

	floorNginx, err := startFloor(&procs, dir, redisPort)
	if err != nil {
		return err
	}

	waitNginx, err := startWait(&procs, dir, bin)
	if err != nil {
		return err
	}

	ceiling := &scenario{name: "ceiling: nginx → trivial upstream", url: ceilingNginx.url("/"), into: &r.Ceiling}
	index := &scenario{name: "/ through nginx", url: appNginx.url("/"), into: &r.Index}
	count := &scenario{name: "/count through nginx", url: appNginx.url("/count"), into: &r.Count, profile: true}
	scenarios := []*scenario{
		ceiling,
		{name: "floor: nginx → net/http + one INCR", url: floorNginx.url("/count"), into: &r.Floor},
		index,
		count,
		{name: "/count through nginx over HTTPS", url: appNginx.tlsURL("/count"), into: &r.CountTLS},
		{name: "/count through nginx, acknowledged by a Redis replica (WAIT 1)", url: waitNginx.url("/count"), into: &r.CountWait},
		{name: "/count on one replica", url: fmt.Sprintf("http://127.0.0.1:%d/count", apps[0]), into: &r.Direct},
	}
	var againstCount *scenario
	if *against != "" {
		port, err := startAgainst(&procs, dir, redisPort)
		if err != nil {
			return err
		}
		r.AgainstRev = *against
		againstCount = &scenario{name: "/count through nginx, app at " + *against,
			url: port.url("/count"), into: &r.Against}
		scenarios = append(scenarios, againstCount)
	}
	// What the deployed scenarios started, stopped in reverse: the lab
	// after its stacks.
	var stops []func()
	stopDeployed := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		stops = nil
	}
	defer stopDeployed()
	// deploy adds the scenarios of a deployed stack, frozen until they run:
	// /count (with perf if asked), /, /count over HTTPS where it serves
	// it, and, if old is not nil, the -against revision's /count.
	var deployedRuns []func()
	deploy := func(d *deployedResult, st, old deployedStack, perf bool) error {
		// Every row first: the scenarios point into d.Rows.
		d.Rows = []deployedRow{{Name: "`/count`", Loopback: &r.Count}, {Name: "`/`", Loopback: &r.Index}}
		tls := st.tlsURL("/count")
		if tls != "" {
			d.Rows = append(d.Rows, deployedRow{Name: "`/count` over HTTPS", Loopback: &r.CountTLS})
		}
		if old != nil {
			d.Rows = append(d.Rows, deployedRow{Name: "`/count` at " + *against, Loopback: &r.Count})
		}
		sample := st.sampler()
		visits := &scenario{name: d.Title + ": /count", url: st.url("/count"), into: &d.Rows[0].F, sample: sample, perf: perf, stack: st}
		page := &scenario{name: d.Title + ": /", url: st.url("/"), into: &d.Rows[1].F, sample: sample, stack: st}
		scenarios = append(scenarios, visits, page)
		deployedRuns = append(deployedRuns, func() { d.CPU, d.Kernel = visits.cpu, visits.kernel })
		if tls != "" {
			scenarios = append(scenarios, &scenario{name: d.Title + ": /count over HTTPS", url: tls, into: &d.Rows[2].F, sample: sample, stack: st})
		}
		if old != nil {
			scenarios = append(scenarios, &scenario{name: d.Title + ": /count at " + *against, url: old.url("/count"), into: &d.Rows[len(d.Rows)-1].F, sample: old.sampler(), stack: old})
			if err := old.pause(); err != nil {
				return err
			}
		}
		return st.pause()
	}
	compose := &deployedResult{Title: "the Compose stack", How: composeHow}
	nodeStack := &deployedResult{Title: "a Pulumi stack on a lab node", How: nodeHow}
	swarmStack := &deployedResult{Title: "the Swarm stack on the lab", How: swarmHow}
	r.Deployed = []*deployedResult{compose, nodeStack, swarmStack}
	switch {
	case !*deployed || *quick:
		for _, d := range r.Deployed {
			d.Note = "not measured (-quick or -deployed=false)"
		}
	case exec.Command("docker", "compose", "version").Run() != nil:
		compose.Note = "not measured: needs docker compose v2"
	default:
		st, err := startCompose(*root, "here", images)
		if err != nil {
			return err
		}
		stops = append(stops, st.stop)
		var old deployedStack // an interface, nil without -against
		if *against != "" {
			tree := filepath.Join(dir, "against-tree")
			if err := os.MkdirAll(tree, 0o755); err != nil {
				return err
			}
			archive := exec.Command("sh", "-c", `git -C "$0" archive "$1" | tar -x -C "$2"`, *root, *against, tree)
			if out, err := archive.CombinedOutput(); err != nil {
				return fmt.Errorf("git archive %s: %v\n%s", *against, err, out)
			}
			againstStack, err := startCompose(tree, "against", images)
			if err != nil {
				return err
			}
			stops = append(stops, againstStack.stop)
			old = againstStack
		}
		if err := deploy(compose, st, old, true); err != nil {
			return err
		}
	}
	labNote := func(note string) { nodeStack.Note, swarmStack.Note = note, note }
	switch {
	case !*deployed || *quick:
	case !*labStacks:
		labNote("not measured (-lab=false)")
	case exec.Command("pulumi", "version").Run() != nil:
		labNote("not measured: needs the pulumi CLI")
	default:
		l, err := startLab(*root, images)
		if err != nil {
			labNote("not measured: " + err.Error())
			break
		}
		stops = append(stops, l.stop)
		for _, d := range []struct {
			into   *deployedResult
			deploy func(string, map[string]string) (*labStack, error)
		}{{nodeStack, l.deployToNode}, {swarmStack, l.deployToSwarm}} {
			st, err := d.deploy(*root, images)
			if err != nil {
				return err
			}
			stops = append(stops, st.stop)
			d.into.How = fmt.Sprintf(d.into.How, st.addr)
			if err := deploy(d.into, st, nil, false); err != nil {
				return err
			}
		}
	}
	profile, err := measure(scenarios, &procs, func() string { return cpuProfile(bin, debugPort, dir) })
	if err != nil {
		return err
	}
	for _, filled := range deployedRuns {
		filled()
	}
	stopDeployed()
	r.CPU, r.Profile = count.cpu, profile
	if againstCount != nil {
		r.AgainstCPU = againstCount.cpu[againstReplicas]
	}
	r.CeilingCores, r.IndexCores = ceiling.cpu[machineTotal], index.cpu[machineTotal]

	if *quick {
		r.ImageNote = "-quick"
	} else {
		r.ImageMB, r.ImageNote = imageSize(*root, images["GO_IMAGE"])
		r.GoBench = goBench(*root)
	}
	switch {
	case *quick || *deployRuns == 0:
		r.DeployNote = "skipped (-quick or -deploy-runs 0)"
	case exec.Command("pulumi", "version").Run() != nil || exec.Command("docker", "compose", "version").Run() != nil:
		r.DeployNote = "skipped: needs the pulumi CLI with its docker provider, and docker compose v2"
	default:
		logf("deploys: pulumi and Compose on this engine, %d runs each", *deployRuns)
		procs.stopAll() // the loopback scenarios are done; give the deploys the cores
		r.Deploy, err = runDeployBench(*root, images, *deployRuns)
		if err != nil {
			r.DeployNote = "failed: " + err.Error()
		}
	}

	md := r.markdown()
	fmt.Print(md)
	return os.WriteFile(*out, []byte(md), 0o644)
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...) }

// procs are the processes the run started, stopped at the end.
type procs []*exec.Cmd

func (p *procs) start(name string, cmd *exec.Cmd) (*exec.Cmd, error) {
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd.Args[0] = name // what the CPU table calls it
	*p = append(*p, cmd)
	return cmd, nil
}

func (p procs) stopAll() {
	for _, c := range p {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range p {
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = c.Process.Kill()
		}
	}
}

func appCmd(bin string, port, redisPort int, extraEnv ...string) *exec.Cmd {
	cmd := exec.Command(bin)
	// GOMAXPROCS=1: what the one-CPU limit of the deployed replicas makes
	// Go choose (-env overrides it).
	cmd.Env = append([]string{"PORT=" + strconv.Itoa(port), "REDIS_ADDR=127.0.0.1:" + strconv.Itoa(redisPort),
		"REDIS_PASSWORD=" + password, "LOG_LEVEL=warn", "COUNTER_KEY=bench", "GOMAXPROCS=1"}, append(strings.Fields(*appEnv), extraEnv...)...)
	return cmd
}

// timeToReady starts one replica and times it from exec to /readyz 200.
func timeToReady(bin string, redisPort int) (time.Duration, error) {
	port := freePort()
	cmd := appCmd(bin, port, redisPort)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	if _, err := waitReady(port, 5*time.Second); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func waitReady(port int, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
	for time.Since(start) < limit {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(start), nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	return 0, fmt.Errorf("replica on port %d not ready within %v", port, limit)
}

// upstreamFor is nginx/upstream.conf with the replicas at fixed loopback
// ports instead of found through Docker's DNS; everything else (keepalive,
// zone) stays as deployed.
func upstreamFor(ports []int) (string, error) {
	conf, err := os.ReadFile(filepath.Join(*root, "nginx", "upstream.conf"))
	if err != nil {
		return "", err
	}
	var b strings.Builder
	replaced := false
	for _, line := range strings.SplitAfter(string(conf), "\n") {
		switch trimmed := strings.TrimSpace(line); {
		case strings.HasPrefix(trimmed, "resolver"):
			// Docker's DNS is not there on loopback.
		case strings.HasPrefix(trimmed, "server web:"):
			for _, p := range ports {
				fmt.Fprintf(&b, "    server 127.0.0.1:%d;\n", p)
			}
			replaced = true
		default:
			b.WriteString(line)
		}
	}
	if !replaced {
		return "", errors.New("nginx/upstream.conf has no `server web:...` line for bench to replace")
	}
	return b.String(), nil
}

// buildApp builds the app module in dir into bin.
func buildApp(dir, bin string) (string, error) {
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/tally")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build in %s: %v\n%s", dir, err, out)
	}
	return bin, nil
}

// startAgainst runs three replicas of the app at the -against revision behind
// an nginx of their own (the working tree's nginx config, so only the app
// differs), and returns that nginx's ports.
func startAgainst(p *procs, dir string, redisPort int) (nginxPorts, error) {
	src := filepath.Join(dir, "against")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return nginxPorts{}, err
	}
	logf("building the app at %s", *against)
	archive := exec.Command("sh", "-c", `git -C "$0" archive "$1" app | tar -x -C "$2"`, *root, *against, src)
	if out, err := archive.CombinedOutput(); err != nil {
		return nginxPorts{}, fmt.Errorf("git archive %s: %v\n%s", *against, err, out)
	}
	bin, err := buildApp(filepath.Join(src, "app"), filepath.Join(dir, "tally-against"))
	if err != nil {
		return nginxPorts{}, err
	}
	var ports []int
	for i := range 3 {
		port, _, err := startReplica(p, fmt.Sprintf("against%d", i+1), bin, redisPort)
		if err != nil {
			return nginxPorts{}, err
		}
		ports = append(ports, port)
	}
	return startNginx(p, dir, "nginx-against", ports, "")
}

// startReplica runs bin as a replica on a free port and waits until it is ready.
func startReplica(p *procs, name, bin string, redisPort int, extraEnv ...string) (int, *exec.Cmd, error) {
	port := freePort()
	cmd, err := p.start(name, appCmd(bin, port, redisPort, extraEnv...))
	if err != nil {
		return 0, nil, err
	}
	if _, err := waitReady(port, 5*time.Second); err != nil {
		return 0, nil, err
	}
	return port, cmd, nil
}

// startNginx runs the repository's nginx config from its own prefix
// directory with an upstream.conf naming the given replicas (extra after
// it) and a servers.conf of its own: the app over HTTP, and over HTTPS
// with tls.conf and a certificate of bench's own. Only what cannot be
// shared between two instances on one host changes: the listening ports
// and the pid file. bench's nginx may be older than the images' (Debian
// 12's 1.22 has no `http2 on`), so HTTP/2 is asked for on the listen line.
func startNginx(p *procs, dir, name string, replicas []int, extra string) (nginxPorts, error) {
	var ports nginxPorts
	upstream, err := upstreamFor(replicas)
	if err != nil {
		return ports, err
	}
	prefix := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Join(prefix, "tls"), 0o755); err != nil {
		return ports, err
	}
	confs, err := filepath.Glob(filepath.Join(*root, "nginx", "*.conf"))
	if err != nil {
		return ports, err
	}
	for _, path := range confs {
		base := filepath.Base(path)
		if strings.HasPrefix(base, "servers") || base == "upstream.conf" {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return ports, err
		}
		if base == "nginx.conf" {
			c := strings.Replace(string(b), "pid /tmp/nginx.pid;", "pid "+filepath.Join(prefix, "nginx.pid")+";", 1)
			if c == string(b) {
				return ports, errors.New("nginx/nginx.conf no longer has the pid line bench rewrites")
			}
			b = []byte(c)
		}
		if err := os.WriteFile(filepath.Join(prefix, base), b, 0o644); err != nil {
			return ports, err
		}
	}
	chain, key, err := benchCertificate()
	if err != nil {
		return ports, err
	}
	ports = nginxPorts{http: freePort(), https: freePort()}
	servers := fmt.Sprintf("server {\n    listen 127.0.0.1:%d reuseport default_server;\n    include health.conf;\n    include routes.conf;\n}\n"+
		"server {\n    listen 127.0.0.1:%d ssl http2 reuseport default_server;\n    include tls.conf;\n    include routes.conf;\n}\n", ports.http, ports.https)
	for file, text := range map[string]string{"upstream.conf": upstream + extra, "servers.conf": servers, "tls/cert.pem": chain, "tls/key.pem": key} {
		if err := os.WriteFile(filepath.Join(prefix, file), []byte(text), 0o600); err != nil {
			return ports, err
		}
	}
	var stderr bytes.Buffer
	cmd := exec.Command("nginx", "-p", prefix+"/", "-c", "nginx.conf", "-g", "daemon off;")
	if _, err := p.start(name, cmd); err != nil {
		return ports, err
	}
	cmd.Stderr = &stderr
	for range 100 {
		if conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports.http)); err == nil {
			conn.Close()
			return ports, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ports, fmt.Errorf("%s did not start: %s", name, stderr.String())
}

// nginxPorts are where an nginx of bench's serves the app.
type nginxPorts struct{ http, https int }

func (p nginxPorts) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", p.http, path)
}
func (p nginxPorts) tlsURL(path string) string {
	return fmt.Sprintf("https://127.0.0.1:%d%s", p.https, path)
}

// benchCertificate is a certificate for 127.0.0.1 from a CA made for the
// run, as a deployed stack is given one (wrk does not check it).
func benchCertificate() (chain, key string, err error) {
	ca, err := testkit.NewCA()
	if err != nil {
		return "", "", err
	}
	return ca.Issue([]string{"127.0.0.1", "localhost"}, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
}

// figure is one scenario's median over the rounds.
type figure struct {
	RPS      float64
	P50, P99 time.Duration
	Errors   int
}

// scenario is one URL under load; measure fills in its median round and the
// cores each process group kept busy during its rounds.
type scenario struct {
	name, url string
	into      *figure
	profile   bool // profile a replica during this scenario's first round
	perf      bool // record the machine with perf during its first round
	rounds    []figure
	cpu       map[string]float64 // CPU seconds per process group, then cores once divided by seconds
	seconds   float64            // wall time of the rounds
	// sample reads the counters cpu is made of; nil for the loopback
	// processes' (cpuTimes).
	sample func() map[string]float64
	kernel string // what perf recorded (perf)
	// stack, for a deployed scenario: frozen but while its own rounds run,
	// so that its containers' health checks and logs cost the others
	// nothing.
	stack deployedStack
}

// measure warms every scenario up, then runs the rounds in turn — ceiling,
// /, /count, direct, ceiling, ... — so that the machine speeding up or
// slowing down during the run (other tenants, frequency scaling) falls on
// every scenario alike instead of on whichever ran at that moment. It
// returns the profile taken during the profiled scenario's first round.
func measure(scenarios []*scenario, p *procs, takeProfile func() string) (string, error) {
	// run runs f with s's stack, if it has one, thawed.
	run := func(s *scenario, f func() error) error {
		if s.stack == nil {
			return f()
		}
		if err := s.stack.resume(); err != nil {
			return err
		}
		time.Sleep(time.Second) // health checks due while frozen run now
		return errors.Join(f(), s.stack.pause())
	}
	for _, s := range scenarios {
		logf("warming up %s", s.name)
		if err := run(s, func() error { _, err := wrk(s.url, 2*time.Second); return err }); err != nil {
			return "", fmt.Errorf("%s: %w", s.name, err)
		}
	}
	for _, s := range scenarios {
		s.cpu = map[string]float64{}
	}
	profile := ""
	for round := range *rounds {
		for _, s := range scenarios {
			logf("round %d/%d: %s", round+1, *rounds, s.name)
			var profiled, perfed chan string
			if s.profile && round == 0 {
				profiled = make(chan string, 1)
				go func() { profiled <- takeProfile() }()
			}
			sample := s.sample
			if sample == nil {
				sample = func() map[string]float64 { return cpuTimes(*p) }
			}
			var before, after map[string]float64
			var f figure
			var start time.Time
			err := run(s, func() (err error) {
				if s.perf && round == 0 {
					perfed = make(chan string, 1)
					go func() { perfed <- kernelProfile(*duration - time.Second) }()
				}
				before, start = sample(), time.Now()
				f, err = wrk(s.url, *duration)
				after = sample()
				return err
			})
			if err != nil {
				return "", fmt.Errorf("%s: %w", s.name, err)
			}
			s.seconds += time.Since(start).Seconds()
			for name, t := range after {
				s.cpu[name] += t - before[name]
			}
			s.rounds = append(s.rounds, f)
			if profiled != nil {
				profile = <-profiled
			}
			if perfed != nil {
				s.kernel = <-perfed
			}
		}
	}
	for _, s := range scenarios {
		for name := range s.cpu {
			s.cpu[name] /= s.seconds
		}
		sorted := slices.Clone(s.rounds)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i].RPS < sorted[j].RPS })
		*s.into = sorted[len(sorted)/2]
	}
	return profile, nil
}

var (
	reqsRe = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	latRe  = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)`)
	errRe  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func wrk(url string, d time.Duration) (figure, error) {
	out, err := exec.Command("wrk", "-t2", "-c"+strconv.Itoa(*connections), "-d"+d.String(), "--latency", url).CombinedOutput()
	if err != nil {
		return figure{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	var f figure
	m := reqsRe.FindSubmatch(out)
	if m == nil {
		return f, fmt.Errorf("wrk printed no Requests/sec:\n%s", out)
	}
	f.RPS, _ = strconv.ParseFloat(string(m[1]), 64)
	for _, l := range latRe.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(l[2]), 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(l[3])]
		if string(l[1]) == "50" {
			f.P50 = time.Duration(v * float64(unit))
		} else {
			f.P99 = time.Duration(v * float64(unit))
		}
	}
	for _, e := range errRe.FindAllSubmatch(out, -1) {
		for _, g := range e[1:] {
			n, _ := strconv.Atoi(string(g))
			f.Errors += n
		}
	}
	return f, nil
}

// cpuTimes is each process group's user+system CPU seconds, and the whole
// machine's; what the groups do not account for is wrk and the kernel.
func cpuTimes(p procs) map[string]float64 {
	out := map[string]float64{}
	for _, c := range p {
		out[groupOf(c.Args[0])] += procCPU(c.Process.Pid)
		// nginx's work is done by its workers, the master's children.
		if strings.HasPrefix(c.Args[0], "nginx") {
			for _, child := range children(c.Process.Pid) {
				out[groupOf(c.Args[0])] += procCPU(child)
			}
		}
	}
	out[machineTotal] = machineCPU()
	_, _, out[taskSwitches] = machineTimes()
	return out
}

const (
	machineTotal    = "whole machine"
	againstReplicas = "app replicas at -against"
	floorReplicas   = "floor replicas"
)

// machineCPU is the busy CPU seconds of the whole machine, from /proc/stat.
func machineCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	busy := 0.0
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseFloat(v, 64)
		busy += n
	}
	return busy / 100
}

func groupOf(name string) string {
	switch {
	case strings.HasPrefix(name, "app"):
		return "app replicas"
	case strings.HasPrefix(name, "against"):
		return againstReplicas
	case strings.HasPrefix(name, "floor"):
		return floorReplicas
	case strings.HasPrefix(name, "wait"), name == "nginx-wait":
		return waitGroup
	case name == "nginx-app":
		return "nginx"
	default:
		return name
	}
}

func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

func children(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		n, _ := strconv.Atoi(f)
		out = append(out, n)
	}
	return out
}

func rssKB(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			n, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return n
		}
	}
	return 0
}

// imageProject is the Compose project the benchmark builds the app image in.
const imageProject = "tally-bench"

// imageSize builds the app image and returns its size in MB, or a note
// saying why it could not.
func imageSize(root, goImage string) (float64, string) {
	if exec.Command("docker", "info").Run() != nil {
		return 0, "no Docker engine"
	}
	logf("building the app image with %s", goImage)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// With Compose, as users build it: the Dockerfile's cache mounts need
	// BuildKit, which Compose v2 brings and a plain `docker build` may not.
	build := exec.CommandContext(ctx, "docker", "compose", "-p", imageProject, "build", "web")
	build.Dir = root
	build.Env = append(os.Environ(), "GO_IMAGE="+goImage)
	if out, err := build.CombinedOutput(); err != nil {
		return 0, "image build failed: " + strings.TrimSpace(lastLine(string(out)))
	}
	// Compose tags what it builds <project>-<service>.
	out, err := exec.Command("docker", "image", "inspect", "-f", "{{.Size}}", imageProject+"-web").Output()
	if err != nil {
		return 0, err.Error()
	}
	n, _ := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	return n / 1e6, ""
}

// cpuProfile takes a CPU profile of replica 1 while /count is measured and
// returns pprof's top entries.
func cpuProfile(bin string, debugPort int, dir string) string {
	// Within the round: past wrk's connecting, done before it stops.
	time.Sleep(500 * time.Millisecond)
	secs := int(duration.Seconds()) - 1
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", debugPort, max(secs, 1)))
	if err != nil {
		return "profile failed: " + err.Error()
	}
	defer resp.Body.Close()
	path := filepath.Join(dir, "cpu.pprof")
	f, err := os.Create(path)
	if err != nil {
		return err.Error()
	}
	_, err = io.Copy(f, resp.Body)
	f.Close()
	if err != nil {
		return "profile failed: " + err.Error()
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=15", bin, path).CombinedOutput()
	if err != nil {
		return "pprof failed: " + lastLine(string(out))
	}
	return strings.TrimSpace(string(out))
}

func goBench(root string) string {
	logf("running the Go benchmarks")
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", ".", "-benchtime", "2s", "-count", "1", "./web/", "./redis/")
	cmd.Dir = filepath.Join(root, "app")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "go test -bench failed: " + lastLine(string(out))
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Benchmark") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	var uts syscall.Utsname
	_ = syscall.Uname(&uts)
	rel := make([]byte, 0, len(uts.Release))
	for _, c := range uts.Release {
		if c == 0 {
			break
		}
		rel = append(rel, byte(c))
	}
	return fmt.Sprintf("%d × %s, Linux %s, %s", runtime.NumCPU(), model, rel, runtime.Version())
}

// freePort is testkit.OpenPort for the benchmark, which cannot go on
// without one.
func freePort() int {
	port, err := testkit.OpenPort()
	if err != nil {
		panic(err)
	}
	return port
}

func median(ds []time.Duration) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}
