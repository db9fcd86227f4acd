package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// waitGroup is the CPU table's name for the processes of startWait's
// stack, which idle while /count is measured.
const waitGroup = "the WAIT scenario's stack"

// startWait runs /count's stack as a swarm with Redis replicas runs it:
// nginx, three replicas of the app that acknowledge a visit only once a
// Redis replica has it (REDIS_WAIT_REPLICAS=1: WAIT 1 behind the count),
// a primary of its own and its replica. Beside the /count scenario, it is
// what WAIT costs a visit.
func startWait(p *procs, dir, bin string) (nginxPorts, error) {
	primary, replica := freePort(), freePort()
	for _, r := range []struct {
		name  string
		port  int
		extra []string
	}{
		{"wait-redis", primary, nil},
		{"wait-redis-replica", replica, []string{"--replicaof", "127.0.0.1", strconv.Itoa(primary), "--masterauth", password}},
	} {
		data := filepath.Join(dir, r.name)
		if err := os.MkdirAll(data, 0o700); err != nil {
			return nginxPorts{}, err
		}
		args := append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--requirepass", password,
			"--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--dir", data}, r.extra...)
		if _, err := p.start(r.name, exec.Command("redis-server", args...)); err != nil {
			return nginxPorts{}, err
		}
	}
	if err := waitLinked(replica, 10*time.Second); err != nil {
		return nginxPorts{}, err
	}
	var ports []int
	for i := range 3 {
		port, _, err := startReplica(p, fmt.Sprintf("wait-app%d", i+1), bin, primary, "REDIS_WAIT_REPLICAS=1")
		if err != nil {
			return nginxPorts{}, err
		}
		ports = append(ports, port)
	}
	return startNginx(p, dir, "nginx-wait", ports, "")
}

// waitLinked waits until the Redis replica on port has synced with its
// primary: until then WAIT 1 is never satisfied.
func waitLinked(port int, limit time.Duration) error {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, _ := exec.Command("redis-cli", "-p", strconv.Itoa(port), "--no-auth-warning", "-a", password, "info", "replication").Output()
		if strings.Contains(string(out), "master_link_status:up") {
			return nil
		}
	}
	return fmt.Errorf("the WAIT scenario's Redis replica on port %d did not sync within %v", port, limit)
}
