package main

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"

	"tally/testkit"
)

var swarmReport = flag.String("swarm-report", "", "write the Swarm drills' figures into this file, in place of its Swarm section (make drill: bench/drills.md)")

// TestDeployToSwarm deploys the program with tally:target=swarm to the
// lab's swarm (SWARM=1: node 1 the manager, reached over SSH, nodes 2 and
// 3 workers, node 2 made a second manager for the last steps; the app image
// goes through the lab's registry; a Redis and a Sentinel on each node)
// and drives it through scaling, a rollout, a broken image, the loss of a
// worker, Redis failovers (asked for, and the primary's node killed; the
// node back; a replica's node killed), and certificates given and by ACME,
// each under load, checking the counter rose by exactly the number of 200s,
// or where requests failed, that no visit answered 200 was lost.
func TestDeployToSwarm(t *testing.T) {
	ws := newWorkspace(t)
	lab := testkit.Lab(t, "..", slices.Collect(maps.Values(ws.images)), "SWARM=1")
	d := newDeployment(t, ws, "sw", swarmEngine(t, lab), 0)
	// Redis and nginx from the registry, as users' nodes pull them: Swarm
	// pins a tag to its digest there, which the program must match.
	for _, key := range []string{"REDIS_IMAGE", "NGINX_IMAGE"} {
		d.setConfig("tally:"+strings.ToLower(strings.TrimSuffix(key, "_IMAGE"))+"Image", lab["LAB_REGISTRY"]+"/"+path.Base(ws.images[key]))
	}
	redis := redisLab{d: d, sockets: strings.Fields(lab["LAB_SOCKETS"])}
	var lostNode int
	var report []string
	// drill records a step's figures for the report; t.Failed() says
	// whether its checks (the counter exact among them) held.
	drill := func(t *testing.T, name string, load *testkit.Tally, note string) {
		result := "✅"
		if t.Failed() {
			result = "❌"
		}
		line := fmt.Sprintf("| %s | %d | %d | %s | %s | %s |", name, load.OK+load.Failed(), load.OK, failures(load), note, result)
		report = append(report, line)
		t.Logf("drill: %s", line)
	}

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"up serves through nginx from replicas on more than one node", func(t *testing.T) {
			d.expectServing(d.up(), d.url+"/", 3)
			d.expectOnlyPublicRoutes()
			if nodes := d.taskNodes("web"); len(slices.Compact(slices.Sorted(slices.Values(nodes)))) < 2 {
				t.Errorf("web's tasks run on %v; want more than one node", nodes)
			}
			d.expectPasswordHidden()
			for _, svc := range []string{"web", "redis", "redis-2", "redis-3", "sentinel-1", "sentinel-2", "sentinel-3", "nginx"} {
				if out, _ := d.engine.docker("service", "inspect", "tally-sw-"+svc).Output(); bytes.Contains(out, []byte(d.password)) {
					t.Errorf("docker service inspect shows the Redis password for %s", svc)
				}
			}
			d.expectNoChanges()
		}},
		{"replicas 3 to 6 under load", func(t *testing.T) {
			d.setConfig("tally:replicas", "6")
			res, load := d.upUnderLoad()
			d.expectChanges(res, map[string]int{"update": 1})
			d.expectNoFailures(load)
			d.expectInstances(6)
			drill(t, "scale web 3 → 6", load, fmt.Sprintf("tasks on %v", d.taskNodes("web")))
		}},
		{"an app change rolls out under load with no failed request", func(t *testing.T) {
			marker := "rolled out " + randomHex(4)
			d.appendFile("app/web/pages/index.html", "<p>"+marker+"</p>\n")
			res, load := d.upUnderLoad()
			// The image is rebuilt and pushed, and the service rolled.
			d.expectChanges(res, map[string]int{"update": 2})
			d.expectNoFailures(load)
			for range 12 {
				if body := d.page("/"); !strings.Contains(body, marker) {
					t.Fatalf("a replica still serves the old page after the rollout: %q", body)
				}
			}
			drill(t, "app rollout (start-first, one task at a time)", load, "every replica serves the new page")
		}},
		{"an nginx config change reloads every nginx task in place with no failed request", func(t *testing.T) {
			marker := "release-" + randomHex(3)
			d.editFile("nginx/routes.conf", "add_header Referrer-Policy no-referrer always;",
				"add_header Referrer-Policy no-referrer always;\n        add_header X-Tally-Test "+marker+" always;")
			tasks := d.taskIDs("nginx")
			before := d.counter()
			stop := testkit.SteadyLoad(d.url+"/count", 4)
			res := d.up()
			// The release service is global, which the provider does not
			// wait for: its new task writes the release, and nginx
			// reloads, a moment after up returns.
			d.expectHeader("X-Tally-Test", marker)
			time.Sleep(2 * time.Second)
			load := stop()
			d.expectExactCount(before, load)
			d.expectChanges(res, map[string]int{"update": 1}) // the release service
			if after := d.taskIDs("nginx"); !slices.Equal(tasks, after) {
				t.Errorf("nginx's tasks were %v, now %v; want the same tasks reloaded", tasks, after)
			}
			d.expectNoFailures(load)
			d.expectNoChanges()
			drill(t, "nginx config change (reload in place on every task)", load, "the same nginx tasks serve the new config")
		}},
		{"an image whose health check never passes rolls back by itself", func(t *testing.T) {
			before := d.serviceImage("web")
			broken := d.brokenImage(lab["LAB_REGISTRY"])
			d.setConfig("tally:appImage", broken)
			start := time.Now()
			load, said, err := d.upUnderLoadFails()
			if err == nil {
				t.Fatal("pulumi up with an image that never gets healthy succeeded")
			}
			if !strings.Contains(said, "rollback") {
				t.Errorf("the failed up does not say the update was rolled back:\n%s", said)
			}
			took := time.Since(start)
			if after := d.serviceImage("web"); after != before {
				t.Errorf("after the failed update web runs %s, want %s as before", after, before)
			}
			d.expectNoFailures(load)
			d.expectInstances(6)
			drill(t, "broken image (health check never passes)", load, fmt.Sprintf("pulumi up failed after %v, web rolled back to the old image by itself", took.Round(time.Second)))

			// Back to the built image: it serves, and the stack matches its program.
			if err := d.stack.RemoveConfig(d.ctx, "tally:appImage"); err != nil {
				t.Fatal(err)
			}
			d.up()
			d.expectNoChanges()
		}},
		{"a worker engine killed under load: its tasks come back on the others", func(t *testing.T) {
			const worker = "3"
			if !slices.Contains(d.taskNodes("web"), "lab"+worker) {
				t.Fatalf("no web task on lab%s to lose: %v", worker, d.taskNodes("web"))
			}
			before := d.counter()
			stop := testkit.SteadyLoad(d.url+"/count", 4)
			time.Sleep(2 * time.Second)
			killed := time.Now()
			labNode(t, "kill", worker)
			back := testkit.WaitUntil(2*time.Minute, func() bool {
				nodes := d.taskNodes("web")
				return len(nodes) == 6 && !slices.Contains(nodes, "lab"+worker)
			})
			recovered := time.Since(killed)
			time.Sleep(2 * time.Second)
			load := stop()
			if !back {
				t.Fatalf("two minutes after lab%s died, web's tasks are on %v; want 6 on the other nodes", worker, d.taskNodes("web"))
			}
			rose := d.expectCountWithin(before, load)
			// A few requests may meet a replica as it dies; nginx retries
			// them on another, so nearly all succeed.
			if load.Failed() > (load.OK+load.Failed())/100 {
				t.Errorf("more than 1%% of requests failed while a worker died: %v", load)
			}
			drill(t, "kill -9 a worker's engine (lab"+worker+")", load, fmt.Sprintf("6 tasks running on the others after %v; longest wait for an answer %v; the counter rose by %d for %d 200s",
				recovered.Round(time.Second), load.LongestGap.Round(time.Millisecond), rose, load.OK))

			before = d.counter()
			stop = testkit.SteadyLoad(d.url+"/count", 4)
			labNode(t, "start", worker)
			rejoined := testkit.WaitUntil(time.Minute, func() bool { return d.nodeStatus("lab"+worker) == "ready" })
			time.Sleep(5 * time.Second)
			load = stop()
			if !rejoined {
				t.Fatalf("lab%s did not rejoin the swarm within a minute", worker)
			}
			d.expectExactCount(before, load)
			d.expectNoFailures(load)
			drill(t, "the worker rejoins", load, "nothing moves back; no request fails")
			d.expectNoChanges()
		}},
		{"make failover moves the primary under load; no acknowledged visit lost", func(t *testing.T) {
			note, load := redis.stepPlannedFailover(t)
			drill(t, "make failover (planned: writes held, a replica caught up, promoted, the old primary its replica)", load, note)
		}},
		{"the primary's node killed under load: counting resumes within 10 s, no acknowledged visit lost", func(t *testing.T) {
			var note string
			var load *testkit.Tally
			lostNode, note, load = redis.stepPrimaryNodeKilled(t)
			drill(t, fmt.Sprintf("kill -9 the Redis primary's node (lab%d)", lostNode), load, note)
		}},
		{"the old primary's node comes back as a replica; nothing else moves, no request fails", func(t *testing.T) {
			note, load := redis.stepNodeBack(t, lostNode)
			drill(t, fmt.Sprintf("lab%d back", lostNode), load, note)
		}},
		{"a replica's node and its Sentinel killed under load: no request fails", func(t *testing.T) {
			// The worker whose Redis is not the primary.
			n := 2
			if redis.node(redis.primary()) == 2 {
				n = 3
			}
			note, load := redis.stepReplicaNodeKilled(t, n)
			drill(t, fmt.Sprintf("kill -9 a Redis replica's node (lab%d)", n), load, note)
			note, load = redis.stepNodeBack(t, n)
			drill(t, fmt.Sprintf("lab%d back", n), load, note)
			d.expectNoChanges()
		}},
		{"a new nginx image on two managers replaces one task at a time", func(t *testing.T) {
			d.secondManager("lab2")
			image := d.pushedImage(lab["LAB_REGISTRY"], "tally-nginx-next", lab["LAB_REGISTRY"]+"/"+path.Base(ws.images["NGINX_IMAGE"]))
			d.setConfig("tally:nginxImage", image)
			addrs := strings.Fields(lab["LAB_ADDRS"])
			before := d.counter()
			// A client on each manager's address.
			var stops []func() *testkit.Tally
			for _, addr := range addrs[:2] {
				stops = append(stops, testkit.SteadyLoad(fmt.Sprintf("http://%s:%d/count", addr, d.port), 2))
			}
			start := time.Now()
			d.up()
			// The provider does not wait for a global service: Swarm
			// replaces one task, waits until it is healthy, then the other.
			done := testkit.WaitUntil(2*time.Minute, func() bool {
				out, _ := d.engine.docker("service", "inspect", "-f", "{{.UpdateStatus.State}}", d.serviceName("nginx")).Output()
				return strings.TrimSpace(string(out)) == "completed"
			})
			took := time.Since(start)
			time.Sleep(2 * time.Second)
			load := testkit.NewTally()
			for _, stop := range stops {
				load.Merge(stop())
			}
			if !done {
				t.Fatalf("nginx's update did not complete within two minutes")
			}
			d.expectExactCount(before, load)
			drill(t, "new nginx image, 2 managers (one task at a time, stop-first)", load, fmt.Sprintf(
				"a client on each manager's address; the update took %v; longest time without an answer %v (a task stops before its node's port is free for the new one)",
				took.Round(time.Second), load.LongestGap.Round(time.Millisecond)))
			t.Logf("a new nginx image on two managers: %v", load)
		}},
		{"a certificate given reaches every nginx task; a new one reloads them in place", func(t *testing.T) {
			d.secondManager("lab2")
			managers := strings.Fields(lab["LAB_ADDRS"])[:2]
			ca, err := testkit.NewCA()
			if err != nil {
				t.Fatal(err)
			}
			d.ca, d.tlsPort = ca, 8443
			key := d.giveCertificate(managers...)
			if err := d.stack.RemoveConfig(d.ctx, "tally:plainHTTP"); err != nil {
				t.Fatal(err)
			}
			d.up() // a second port: nginx's tasks replaced, one at a time
			d.expectServedCertificate(managers...)
			testkit.Trust(ca.Pool(), "")
			httpURL := d.url
			d.url = fmt.Sprintf("https://%s:%d", managers[0], d.tlsPort)
			defer func() { d.url = httpURL }()

			load := d.reloadedUnderLoad(managers, func() {
				key = d.giveCertificate(managers...)
				d.up()
				d.expectServedCertificate(managers...)
			})
			line := strings.Split(key, "\n")[1]
			for _, svc := range []string{"web", "redis", "nginx", "nginx-conf"} {
				if out, _ := d.engine.docker("service", "inspect", d.serviceName(svc)).Output(); bytes.Contains(out, []byte(line)) {
					t.Errorf("docker service inspect shows the TLS key for %s", svc)
				}
			}
			drill(t, "new certificate, 2 managers (a release, reloaded in place)", load, "a client on each manager's address over HTTPS; the same nginx tasks serve the new certificate")
			d.expectNoChanges()
		}},
		{"a certificate by ACME reaches every nginx task and renews under load with no failed request", func(t *testing.T) {
			d.secondManager("lab2")
			managers := strings.Fields(lab["LAB_ADDRS"])[:2]
			// Pebble on this machine at the lab's own address, where the
			// keeper's task reaches it; it validates at the first manager.
			const validity = 2 * time.Minute
			pebble := testkit.StartPebble(t, "..", testkit.PebbleOptions{HTTPPort: d.port, Validity: validity, IPv4: managers[0], Listen: lab["LAB_HOST"], Hosts: []string{lab["LAB_HOST"]}})
			for _, k := range []string{"tally:tlsCert", "tally:tlsKey"} {
				if err := d.stack.RemoveConfig(d.ctx, k); err != nil {
					t.Fatal(err)
				}
			}
			for k, v := range map[string]string{"tally:domain": acmeDomain, "tally:acmeEmail": "ops@" + acmeDomain,
				"tally:acmeServer": strings.Replace(pebble.Directory, "127.0.0.1", lab["LAB_HOST"], 1), "tally:acmeRoots": pebble.RootsPEM} {
				d.setConfig(k, v)
			}
			start := time.Now()
			d.up()
			first := d.expectACMECertificate(pebble, nil, 3*time.Minute, managers...)
			issued := time.Since(start)
			testkit.Trust(d.pebbleRoots(pebble), acmeDomain)
			httpURL := d.url
			d.url = fmt.Sprintf("https://%s:%d", managers[0], d.tlsPort)
			defer func() { d.url = httpURL }()

			var renewed *x509.Certificate
			load := d.reloadedUnderLoad(managers, func() {
				renewed = d.expectACMECertificate(pebble, first, validity, managers...)
			})
			key := d.shareKey()
			d.expectHidden("the certificate's share key", key)
			for _, svc := range []string{"web", "redis", "nginx", "nginx-conf", "certs", "certs-copy"} {
				if out, _ := d.engine.docker("service", "inspect", d.serviceName(svc)).Output(); bytes.Contains(out, []byte(key)) {
					t.Errorf("docker service inspect shows the certificate's share key for %s", svc)
				}
			}
			drill(t, "certificate by ACME renewed, 2 managers (copied to each, reloaded in place)", load, fmt.Sprintf(
				"first certificate on both managers %v after up began; renewed %v before it expired; a client on each manager's address over HTTPS",
				issued.Round(time.Second), time.Until(first.NotAfter).Round(time.Second)))
			if after := d.servedCertificateAt(managers[1]); !after.Equal(renewed) {
				t.Errorf("the second manager serves %x, want the renewed %x", after.SerialNumber, renewed.SerialNumber)
			}
			d.expectNoChanges()
		}},
		{"destroy removes services, networks and secret, keeps Redis' volume", func(t *testing.T) {
			d.destroy()
			for _, kind := range []string{"service", "network", "secret"} {
				if out, _ := d.engine.docker(kind, "ls", "-q", "--filter", "label=tally.stack="+d.name).Output(); len(bytes.TrimSpace(out)) > 0 {
					t.Errorf("after destroy, %s ls shows %s", kind, out)
				}
			}
			if err := d.engine.docker("volume", "inspect", d.volume()).Run(); err != nil {
				t.Errorf("Redis' volume %s is gone from the manager after destroy; it must be kept", d.volume())
			}
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) { d.t = t; s.run(t) }) {
			t.Fatalf("stopping: step %q failed", s.name)
		}
	}
	if *swarmReport != "" {
		writeSwarmReport(t, *swarmReport, report)
	}
}

// reloadedUnderLoad runs change with a client on each manager's address
// over HTTPS and returns what they saw, having checked that none failed,
// the counter rose by exactly the 200s, and nginx's tasks are the ones it
// had: the change reloaded them in place.
func (d *deployment) reloadedUnderLoad(managers []string, change func()) *testkit.Tally {
	d.t.Helper()
	tasks := d.taskIDs("nginx")
	before := d.counter()
	var stops []func() *testkit.Tally
	for _, addr := range managers {
		stops = append(stops, testkit.SteadyLoad(fmt.Sprintf("https://%s:%d/count", addr, d.tlsPort), 2))
	}
	change()
	time.Sleep(2 * time.Second)
	load := testkit.NewTally()
	for _, stop := range stops {
		load.Merge(stop())
	}
	d.expectExactCount(before, load)
	d.expectNoFailures(load)
	if after := d.taskIDs("nginx"); !slices.Equal(tasks, after) {
		d.t.Errorf("nginx's tasks were %v, now %v; want the same tasks reloaded", tasks, after)
	}
	return load
}

// shareKey is the key the swarm's certs services seal the certificate
// with, from the stack's state (the certs image has neither shell nor cat
// to read its secret file with, and a Swarm secret cannot be read back).
func (d *deployment) shareKey() string {
	d.t.Helper()
	cmd := exec.Command("pulumi", "stack", "export", "--show-secrets", "--stack", d.stack.Name())
	cmd.Dir = filepath.Join(d.root, "infra")
	cmd.Env = append(os.Environ(), "PULUMI_BACKEND_URL=file://"+d.ws.backend, "PULUMI_CONFIG_PASSPHRASE="+testPassphrase)
	out, err := cmd.Output()
	if err != nil {
		d.t.Fatalf("pulumi stack export: %v", err)
	}
	var state struct {
		Deployment struct {
			Resources []struct {
				URN    string
				Type   string
				Inputs struct{ Data json.RawMessage }
			}
		}
	}
	if err := json.Unmarshal(out, &state); err != nil {
		d.t.Fatal(err)
	}
	for _, r := range state.Deployment.Resources {
		if r.Type == "docker:index/secret:Secret" && strings.HasSuffix(r.URN, "::tally-"+d.name+"-certs-share-key") {
			// A secret exported with --show-secrets: its value, as JSON,
			// in "plaintext".
			var secret struct{ Plaintext string }
			var data string
			if err := json.Unmarshal(r.Inputs.Data, &secret); err != nil || json.Unmarshal([]byte(secret.Plaintext), &data) != nil {
				d.t.Fatalf("the share key in the state is not a secret: %s", r.Inputs.Data)
			}
			key, err := base64.StdEncoding.DecodeString(data)
			if err != nil || len(key) < 32 {
				d.t.Fatalf("the share key in the state: %v %q", err, key)
			}
			return string(key)
		}
	}
	d.t.Fatal("no share key in the stack's state")
	return ""
}

// swarmEngine is the lab's swarm, reached through its manager over SSH.
func swarmEngine(t *testing.T, lab map[string]string) engine {
	sockets, addrs := strings.Fields(lab["LAB_SOCKETS"]), strings.Fields(lab["LAB_ADDRS"])
	if lab["LAB_SWARM_MANAGER"] == "" || lab["LAB_REGISTRY"] == "" || len(sockets) < 3 {
		t.Fatalf("the lab has no swarm of three: %v", lab)
	}
	opts, _ := json.Marshal(strings.Fields(lab["LAB_SSH_OPTS"]))
	return engine{
		name: "the lab's swarm", flags: []string{"-H", sockets[0]}, addr: addrs[0],
		config: auto.ConfigMap{
			"tally:target":     {Value: "swarm"},
			"tally:dockerHost": {Value: lab["LAB_SWARM_MANAGER"]},
			"tally:sshOpts":    {Value: string(opts)},
			"tally:registry":   {Value: lab["LAB_REGISTRY"]},
		},
	}
}

// secondManager makes node a manager of the swarm, so nginx runs on two,
// each with the port on its own address, as users point DNS at several.
// It stays one until the lab goes: each demotion and promotion is a Raft
// membership change, and a Swarm secret made after a demote-promote cycle
// timed out in Raft (context deadline exceeded), twice in full runs.
func (d *deployment) secondManager(node string) {
	d.t.Helper()
	role, _ := d.engine.docker("node", "inspect", "-f", "{{.Spec.Role}}", node).Output()
	if strings.TrimSpace(string(role)) != "manager" {
		if out, err := d.engine.docker("node", "promote", node).CombinedOutput(); err != nil {
			d.t.Fatalf("docker node promote %s: %v\n%s", node, err, out)
		}
	}
	if !testkit.WaitUntil(time.Minute, func() bool {
		out, _ := d.engine.docker("node", "inspect", "-f", "{{.ManagerStatus.Reachability}}", node).Output()
		return strings.TrimSpace(string(out)) == "reachable" && len(d.taskNodes("nginx")) == 2
	}) {
		d.t.Fatalf("%s is not a reachable manager, or nginx runs on %v; want both managers", node, d.taskNodes("nginx"))
	}
}

// taskNodes lists the node of each running task of the stack's service.
func (d *deployment) taskNodes(service string) []string {
	d.t.Helper()
	out, err := d.engine.docker("service", "ps", "--filter", "desired-state=running", "--format", "{{.Node}} {{.CurrentState}}", d.serviceName(service)).Output()
	if err != nil {
		d.t.Fatalf("docker service ps: %v", err)
	}
	var nodes []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if node, state, ok := strings.Cut(line, " "); ok && strings.HasPrefix(state, "Running") {
			nodes = append(nodes, node)
		}
	}
	return nodes
}

// taskIDs lists the IDs of the stack's service's running tasks, sorted.
func (d *deployment) taskIDs(service string) []string {
	d.t.Helper()
	out, err := d.engine.docker("service", "ps", "-q", "--filter", "desired-state=running", d.serviceName(service)).Output()
	if err != nil {
		d.t.Fatalf("docker service ps: %v", err)
	}
	return slices.Sorted(slices.Values(strings.Fields(string(out))))
}

func (d *deployment) serviceName(role string) string { return "tally-" + d.name + "-" + role }

func (d *deployment) serviceImage(role string) string {
	d.t.Helper()
	out, err := d.engine.docker("service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", d.serviceName(role)).Output()
	if err != nil {
		d.t.Fatalf("docker service inspect: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func (d *deployment) nodeStatus(node string) string {
	out, _ := d.engine.docker("node", "inspect", "--format", "{{.Status.State}}", node).Output()
	return strings.TrimSpace(string(out))
}

// brokenImage pushes to the lab's registry an image that starts and runs
// but never passes the app's health check (it has no /tally), and returns
// its name.
func (d *deployment) brokenImage(registry string) string {
	d.t.Helper()
	return d.pushedImage(registry, "tally-broken", d.images["REDIS_IMAGE"], `ENTRYPOINT ["sleep", "infinity"]`)
}

// pushedImage builds an image named registry/name:<random> from base, with
// lines added to its Dockerfile, and pushes it.
func (d *deployment) pushedImage(registry, name, base string, lines ...string) string {
	d.t.Helper()
	image := registry + "/" + name + ":" + randomHex(3)
	build := d.engine.docker("build", "-q", "-t", image, "-")
	build.Stdin = strings.NewReader(fmt.Sprintf("FROM %s\nLABEL tally.test=%s\n%s\n", base, image, strings.Join(lines, "\n")))
	if out, err := build.CombinedOutput(); err != nil {
		d.t.Fatalf("building %s: %v\n%s", image, err, out)
	}
	if out, err := d.engine.docker("push", "-q", image).CombinedOutput(); err != nil {
		d.t.Fatalf("pushing %s: %v\n%s", image, err, out)
	}
	return image
}

// upUnderLoadFails runs an up that is to fail under load, and checks the
// counter rose by exactly the number of 200s all the same.
func (d *deployment) upUnderLoadFails() (load *testkit.Tally, said string, err error) {
	d.t.Helper()
	before := d.counter()
	stop := testkit.SteadyLoad(d.url+"/count", 4)
	var out bytes.Buffer
	_, err = d.stack.Up(d.ctx, optup.ProgressStreams(&out))
	time.Sleep(2 * time.Second)
	load = stop()
	var errLines []string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "error") {
			errLines = append(errLines, strings.TrimSpace(line))
		}
	}
	d.t.Logf("pulumi up: %v; it said:\n%s", err, strings.Join(errLines, "\n"))
	d.expectExactCount(before, load)
	return load, strings.Join(errLines, "\n"), err
}

// expectCountWithin checks the counter's rise where some requests failed:
// besides the 200s it may hold the failures whose fate the client cannot
// know (a timeout, a 502 or 504: the visit may have been counted before
// its answer was lost), and nothing more (expectRise).
func (d *deployment) expectCountWithin(before int64, load *testkit.Tally) int64 {
	d.t.Helper()
	unknown := 0
	for kind, n := range load.Failures {
		if !strings.HasPrefix(kind, "HTTP") || kind == "HTTP 502" || kind == "HTTP 504" {
			unknown += n
		}
	}
	return d.expectRise(before, load, unknown)
}

// labNode runs lab/lab.sh kill N or start N.
func labNode(t *testing.T, verb, node string) {
	t.Helper()
	if out, err := exec.Command("bash", "../lab/lab.sh", verb, node).CombinedOutput(); err != nil {
		t.Fatalf("lab/lab.sh %s %s: %v\n%s", verb, node, err, out)
	}
}

func failures(load *testkit.Tally) string {
	if load.Failed() == 0 {
		return "none"
	}
	var parts []string
	for _, kind := range slices.Sorted(maps.Keys(load.Failures)) {
		parts = append(parts, fmt.Sprintf("%d × %s", load.Failures[kind], kind))
	}
	return strings.Join(parts, ", ")
}

// writeSwarmReport puts the drills' figures in the file at path (make
// drill: bench/drills.md, beside the single-host drills), in place of an
// earlier Swarm section.
func writeSwarmReport(t *testing.T, path string, lines []string) {
	const heading = "## Docker Swarm\n"
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var b strings.Builder
	if before, _, found := strings.Cut(string(old), heading); found {
		b.WriteString(before)
	} else if len(old) > 0 {
		b.WriteString(strings.TrimRight(string(old), "\n") + "\n\n")
	}
	fmt.Fprintf(&b, "%s\n%s · the lab's swarm (1 manager, 2 workers: engines in namespaces on one machine), 4 clients counting visits through nginx on the manager during each drill (`go test ./infra -run TestDeployToSwarm`)\n\n",
		heading, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	b.WriteString("| drill | requests | 200 | failures | notes | counter exact, checks held |\n|---|---:|---:|---|---|---|\n")
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
