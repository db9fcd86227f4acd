package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The floor: what a visit costs with nothing of tally's in it, net/http
// and one INCR per request through the same Redis client, behind the same
// nginx. The loopback /count is held to a share of it (issue "Fast as
// deployed"). The bench binary serves it itself when started with
// floorEnv set, so it needs no program of its own.
const floorEnv = "TALLY_BENCH_FLOOR" // "port redisPort"

// serveFloor serves the floor, if this process was started as one; it
// returns false otherwise.
func serveFloor() bool {
	spec := os.Getenv(floorEnv)
	if spec == "" {
		return false
	}
	var port, redisPort int
	if _, err := fmt.Sscan(spec, &port, &redisPort); err != nil {
		fmt.Fprintf(os.Stderr, "bench floor: %s=%q: want \"port redisPort\"\n", floorEnv, spec)
		os.Exit(2)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(redisPort), Password: password, DisableIdentity: true})
	http.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		n, err := rdb.Incr(r.Context(), "bench-floor").Result()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "%d\n", n)
	})
	http.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := rdb.Ping(context.Background()).Err(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	fmt.Fprintln(os.Stderr, http.ListenAndServe("127.0.0.1:"+strconv.Itoa(port), nil))
	os.Exit(1)
	return true
}

// startFloor runs three floor replicas, as GOMAXPROCS-bound as the app's,
// behind an nginx of their own, and returns that nginx's port.
func startFloor(p *procs, dir string, redisPort int) (nginxPorts, error) {
	self, err := os.Executable()
	if err != nil {
		return nginxPorts{}, err
	}
	var ports []int
	for i := range 3 {
		port := freePort()
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), floorEnv+"="+fmt.Sprintf("%d %d", port, redisPort), "GOMAXPROCS=1")
		if _, err := p.start(fmt.Sprintf("floor%d", i+1), cmd); err != nil {
			return nginxPorts{}, err
		}
		if _, err := waitReady(port, 5*time.Second); err != nil {
			return nginxPorts{}, err
		}
		ports = append(ports, port)
	}
	return startNginx(p, dir, "nginx-floor", ports, "")
}
