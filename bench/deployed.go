package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"tally/testkit"
)

// composeStack is the Compose stack as `make up` starts it (three web
// replicas, nginx in its edge container's namespace, Redis, the published
// port through Docker's proxy) from the repository at dir, for the deployed
// scenarios: what users run, measured beside the loopback processes.
type composeStack struct {
	dir, project  string
	port, tlsPort int // HTTP, HTTPS
	env           []string
}

func startCompose(dir, name string, images map[string]string) (*composeStack, error) {
	s, err := newComposeStack(dir, name, images)
	if err == nil {
		err = s.up()
	}
	if err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// newComposeStack is the stack's settings, a project and port of its own;
// up starts it.
func newComposeStack(dir, name string, images map[string]string) (*composeStack, error) {
	s := &composeStack{dir: dir, port: freePort(), tlsPort: freePort()}
	s.project = fmt.Sprintf("tally-bench-%s-%d", name, s.port)
	secret := filepath.Join(os.TempDir(), s.project+"-password")
	if err := os.WriteFile(secret, []byte(password+"\n"), 0o644); err != nil {
		return nil, err
	}
	s.env = append(os.Environ(), "COMPOSE_PROJECT_NAME="+s.project, "HTTP_PORT="+strconv.Itoa(s.port), "HTTPS_PORT="+strconv.Itoa(s.tlsPort),
		"REDIS_PASSWORD_SECRET="+secret, "REDIS_IMAGE="+images["REDIS_IMAGE"], "NGINX_IMAGE="+images["NGINX_IMAGE"],
		"GO_IMAGE="+images["GO_IMAGE"], "VERSION=bench")
	return s, nil
}

// up starts the stack as make up does.
func (s *composeStack) up() error {
	logf("starting the Compose stack %s (make up's defaults)", s.project)
	return s.compose("up", "-d", "--build", "--wait", "--wait-timeout", "300", "--scale", "web=3")
}

func (s *composeStack) compose(args ...string) error {
	cmd := exec.Command("docker", append([]string{"compose"}, args...)...)
	cmd.Dir, cmd.Env = s.dir, s.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker compose %s: %v\n%s", strings.Join(args, " "), err, lastLines(string(out), 15))
	}
	return nil
}

func (s *composeStack) down() error { return s.compose("down", "-v", "--remove-orphans") }

// stop removes the stack, its volumes and the app image it built.
func (s *composeStack) stop() {
	if err := s.compose("down", "-v", "--remove-orphans", "--rmi", "local"); err != nil {
		logf("stopping %s: %v", s.project, err)
	}
}

func (s *composeStack) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.port, path)
}

func (s *composeStack) tlsURL(path string) string {
	return fmt.Sprintf("https://127.0.0.1:%d%s", s.tlsPort, path)
}

// container is one container of a deployed stack, on the engine docker
// reaches with flags (none: this machine's).
type container struct {
	flags []string
	id    string
}

// containers are the stack's running containers by Compose service.
func (s *composeStack) containers() map[string][]container {
	return listContainers(nil, "label=com.docker.compose.project="+s.project, "com.docker.compose.service")
}

// listContainers lists the running containers filter matches on the engine
// flags name, by the value of their label by.
func listContainers(flags []string, filter, by string) map[string][]container {
	args := append(slices.Clone(flags), "ps", "--no-trunc", "--filter", filter, "--format", `{{.ID}} {{.Label "`+by+`"}}`)
	out, _ := exec.Command("docker", args...).Output()
	found := map[string][]container{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if id, svc, ok := strings.Cut(line, " "); ok {
			found[svc] = append(found[svc], container{flags, id})
		}
	}
	return found
}

// Keys of a deployed sample besides the per-service and per-daemon CPU.
const (
	machineUser   = "machine, user"
	machineKernel = "machine, kernel"
	taskSwitches  = "task switches"
	// Per service, TCP connections its network namespace opened and
	// accepted: whether every hop reuses its connections.
	tcpOpened   = ", tcp opened"
	tcpAccepted = ", tcp accepted"
)

// sampler reads the CPU seconds, user and kernel, of each service of a
// stack (its containers' cgroups) and of the Docker daemons on the host
// (dockerd, containerd, the shims, docker-proxy), the machine's, its count
// of task switches, and the TCP connections each service's network
// namespace opened and accepted.
func sampler(by map[string][]container) func() map[string]float64 {
	type where struct {
		cgroup string
		pid    int
	}
	found := map[string][]where{}
	for svc, cs := range by {
		for _, c := range cs {
			pid, err := testkit.ContainerPID(c.flags, c.id)
			if err != nil {
				continue
			}
			if dir, err := cgroupDir(pid); err == nil {
				found[svc] = append(found[svc], where{dir, pid})
			}
		}
	}
	return func() map[string]float64 {
		out := map[string]float64{}
		for svc, ws := range found {
			for _, w := range ws {
				user, kernel := cgroupCPU(w.cgroup)
				out[svc+", user"] += user
				out[svc+", kernel"] += kernel
				opened, accepted, _ := testkit.TCPOpens(w.pid)
				out[svc+tcpOpened] += float64(opened)
				out[svc+tcpAccepted] += float64(accepted)
			}
		}
		for _, pid := range daemonPIDs() {
			name, user, kernel := procTimes(pid)
			out[name+", user"] += user
			out[name+", kernel"] += kernel
		}
		user, kernel, switches := machineTimes()
		out[machineUser], out[machineKernel], out[taskSwitches] = user, kernel, switches
		return out
	}
}

func (s *composeStack) sampler() func() map[string]float64 { return sampler(s.containers()) }

// cgroupDir is the directory of a running process's CPU accounting: its
// cgroup v2 directory, or on cgroup v1 its cpuacct one.
func cgroupDir(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		switch {
		case len(f) != 3:
		case f[1] == "" && f[0] == "0":
			return filepath.Join("/sys/fs/cgroup", f[2]), nil
		case slices.Contains(strings.Split(f[1], ","), "cpuacct"):
			return filepath.Join("/sys/fs/cgroup/cpuacct", f[2]), nil
		}
	}
	return "", fmt.Errorf("process %d: no CPU accounting cgroup in %q", pid, b)
}

// cgroupCPU reads a cgroup's CPU seconds, user and kernel: cpu.stat (v2,
// microseconds) or cpuacct.stat (v1, USER_HZ ticks).
func cgroupCPU(dir string) (user, kernel float64) {
	keys := map[string]*float64{"user_usec": &user, "system_usec": &kernel}
	unit := 1e6
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		b, _ = os.ReadFile(filepath.Join(dir, "cpuacct.stat"))
		keys, unit = map[string]*float64{"user": &user, "system": &kernel}, clockTicks
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		if dst, ok := keys[k]; ok {
			n, _ := strconv.ParseFloat(v, 64)
			*dst = n / unit
		}
	}
	return user, kernel
}

// pause freezes the stack's containers, health checks and all, so that
// it costs nothing while other scenarios run; resume thaws them.
func (s *composeStack) pause() error  { return s.compose("pause") }
func (s *composeStack) resume() error { return s.compose("unpause") }

// daemons are the host processes of the Docker engine that a request
// through a published port may cost.
var daemons = []string{"dockerd", "containerd", "containerd-shim", "docker-proxy"}

func daemonPIDs() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
		if slices.Contains(daemons, strings.TrimSpace(string(comm))) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procTimes is a process's name and CPU seconds, user and kernel.
func procTimes(pid int) (string, float64, float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, 0
	}
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < 0 {
		return "", 0, 0
	}
	f := strings.Fields(string(b[end+2:]))
	user, _ := strconv.ParseFloat(f[11], 64)
	kernel, _ := strconv.ParseFloat(f[12], 64)
	return string(b[open+1 : end]), user / clockTicks, kernel / clockTicks
}

const clockTicks = 100 // USER_HZ on Linux

// machineTimes is the machine's CPU seconds in user and kernel mode (irq and
// softirq counted as kernel), and its task switches, from /proc/stat.
func machineTimes() (user, kernel, switches float64) {
	b, _ := os.ReadFile("/proc/stat")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 7 && f[0] == "cpu":
			n := func(i int) float64 { v, _ := strconv.ParseFloat(f[i], 64); return v / clockTicks }
			user, kernel = n(1)+n(2), n(3)+n(6)+n(7)
		case len(f) == 2 && f[0] == "ctxt":
			switches, _ = strconv.ParseFloat(f[1], 64)
		}
	}
	return user, kernel, switches
}

// kernelProfile records where the whole machine's CPU goes for d while the
// deployed /count scenario runs, with perf: by process and object, and the
// kernel's busiest functions. "" where perf cannot record here.
func kernelProfile(d time.Duration) string {
	if _, err := exec.LookPath("perf"); err != nil {
		return "perf is not installed (apt-get install linux-perf)"
	}
	data := filepath.Join(os.TempDir(), fmt.Sprintf("tally-bench-perf-%d.data", os.Getpid()))
	defer os.Remove(data)
	if out, err := exec.Command("perf", "record", "-a", "-q", "-o", data, "--", "sleep", strconv.Itoa(int(d.Seconds()))).CombinedOutput(); err != nil {
		return fmt.Sprintf("perf record failed: %v %s", err, lastLines(string(out), 3))
	}
	report := func(sort string, n int, filter ...string) string {
		args := append([]string{"report", "-i", data, "--stdio", "-q", "--sort", sort, "--percent-limit", "1"}, filter...)
		out, err := exec.Command("perf", args...).Output()
		if err != nil {
			return "perf report failed: " + err.Error()
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return strings.Join(lines[:min(n, len(lines))], "\n")
	}
	return "by process and object:\n" + report("comm,dso", 15) +
		"\n\nthe kernel's busiest functions:\n" + report("sym", 20, "--dsos", "[kernel.kallsyms]")
}
