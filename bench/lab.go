package main

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// deployedStack is a stack in containers that deployed scenarios measure,
// frozen but during their own rounds.
type deployedStack interface {
	url(path string) string
	tlsURL(path string) string // "" for a stack serving plain HTTP only
	sampler() func() map[string]float64
	pause() error
	resume() error
	stop()
}

// The lab's stacks: the Pulumi program deployed as users deploy it to a
// remote host (a node's engine) and to a swarm, measured by wrk on this
// machine, outside the nodes, through the address of a node, as a user's
// client reaches a server: no userland proxy on that path.
const (
	labNodeStack  = "benchnode"
	labSwarmStack = "benchswarm"
	labPort       = "8080"
)

// lab is lab/lab.sh with a swarm of three (SWARM=1), for as long as the
// bench runs.
type lab struct {
	script string
	keys   map[string]string // its KEY=value lines
}

// startLab starts the lab, or says why it cannot here.
func startLab(root string, images map[string]string) (*lab, error) {
	l := &lab{script: filepath.Join(root, "lab", "lab.sh")}
	env := append(os.Environ(), "SWARM=1", "LAB_IMAGES="+strings.Join(slices.Sorted(maps.Values(images)), " "))
	check := exec.Command("bash", l.script, "check")
	check.Env = env
	if out, err := check.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("the lab cannot run here: %s", strings.TrimSpace(string(out)))
	}
	logf("starting the lab (a swarm of three engines)")
	up := exec.Command("bash", l.script, "up")
	up.Env = env
	var stderr bytes.Buffer
	up.Stderr = &stderr
	out, err := up.Output()
	if err != nil {
		l.stop()
		return nil, fmt.Errorf("lab/lab.sh up: %v\n%s", err, lastLines(stderr.String(), 15))
	}
	l.keys = map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "LAB_") {
			l.keys[k] = v
		}
	}
	if len(strings.Fields(l.keys["LAB_SOCKETS"])) < 3 || l.keys["LAB_REGISTRY"] == "" {
		l.stop()
		return nil, fmt.Errorf("lab/lab.sh up printed no swarm of three: %v", l.keys)
	}
	return l, nil
}

func (l *lab) stop() {
	if out, err := exec.Command("bash", l.script, "down").CombinedOutput(); err != nil {
		logf("lab/lab.sh down: %v\n%s", err, out)
	}
}

func (l *lab) sockets() []string { return strings.Fields(l.keys["LAB_SOCKETS"]) }
func (l *lab) addrs() []string   { return strings.Fields(l.keys["LAB_ADDRS"]) }

// labStack is a Pulumi stack on the lab; its containers run on the engines
// at sockets, its edge answers at addr.
type labStack struct {
	*pulumiStack
	name    string
	sockets []string
	addr    string
}

// deployToNode deploys the program to the lab's node 3 (a plain engine,
// reached through its socket: how the API is reached does not touch the
// requests).
func (l *lab) deployToNode(root string, images map[string]string) (*labStack, error) {
	socket, addr := l.sockets()[2], l.addrs()[2]
	return deployToLab(root, labNodeStack, []string{socket}, addr, [][]string{
		{"tally:dockerHost", socket},
		{"tally:redisImage", images["REDIS_IMAGE"]},
		{"tally:nginxImage", images["NGINX_IMAGE"]},
		{"tally:goImage", images["GO_IMAGE"]},
		{"tally:retainData", "false"},
	})
}

// deployToSwarm deploys the program with tally:target=swarm through the
// swarm's manager, node 1, which runs nginx (managers do) and Redis (its
// label); the replicas spread over the three nodes, the images come from
// the lab's registry. Redis' volume stays on node 1 until the lab goes
// (a swarm's volume is not the stack's to remove).
func (l *lab) deployToSwarm(root string, images map[string]string) (*labStack, error) {
	registry := l.keys["LAB_REGISTRY"]
	return deployToLab(root, labSwarmStack, l.sockets(), l.addrs()[0], [][]string{
		{"tally:target", "swarm"},
		{"tally:dockerHost", l.sockets()[0]},
		{"tally:registry", registry},
		{"tally:redisImage", registry + "/" + path.Base(images["REDIS_IMAGE"])},
		{"tally:nginxImage", registry + "/" + path.Base(images["NGINX_IMAGE"])},
		{"tally:goImage", images["GO_IMAGE"]},
	})
}

func deployToLab(root, name string, sockets []string, addr string, config [][]string) (*labStack, error) {
	config = append(config, []string{"--secret", "tally:redisPassword", password}, []string{"tally:httpPort", labPort}, []string{"tally:plainHTTP", "true"})
	p, err := newPulumiStack(root, name, config)
	if err != nil {
		return nil, err
	}
	s := &labStack{pulumiStack: p, name: name, sockets: sockets, addr: addr}
	logf("deploying the stack %s to the lab (pulumi up)", name)
	if err := s.pulumi("up", "--yes"); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *labStack) url(path string) string { return "http://" + s.addr + ":" + labPort + path }

// The lab's stacks serve plain HTTP (tally:plainHTTP): the HTTPS figure is
// the loopback's and the Compose stack's.
func (s *labStack) tlsURL(string) string { return "" }

// containers are the stack's running containers on every engine, by role.
func (s *labStack) containers() map[string][]container {
	all := map[string][]container{}
	for _, socket := range s.sockets {
		for role, cs := range listContainers([]string{"-H", socket}, "label=tally.stack="+s.name, "tally.role") {
			all[role] = append(all[role], cs...)
		}
	}
	return all
}

func (s *labStack) sampler() func() map[string]float64 { return sampler(s.containers()) }

func (s *labStack) pause() error  { return s.each("pause") }
func (s *labStack) resume() error { return s.each("unpause") }

// each runs docker verb on each of the stack's containers.
func (s *labStack) each(verb string) error {
	for _, cs := range s.containers() {
		for _, c := range cs {
			if out, err := exec.Command("docker", append(slices.Clone(c.flags), verb, c.id)...).CombinedOutput(); err != nil {
				return fmt.Errorf("docker %s %.12s: %v %s", verb, c.id, err, out)
			}
		}
	}
	return nil
}

func (s *labStack) stop() {
	_ = s.resume() // a frozen container does not stop
	s.remove()
}
