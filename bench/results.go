package main

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// results is what one run measured.
type results struct {
	Date, Machine                 string
	Ceiling, Index, Count, Direct figure
	CountTLS                      figure // /count through nginx over HTTPS, keep-alive
	CountWait                     figure // /count, each visit acknowledged by a Redis replica (wait.go)
	Floor                         figure // net/http and one INCR per request behind the same nginx (floor.go)
	Against                       figure // /count through nginx on the app at AgainstRev (-against)
	AgainstRev                    string
	AgainstCPU                    float64            // cores its replicas kept busy
	CPU                           map[string]float64 // CPU cores busy per process group during /count
	CeilingCores, IndexCores      float64            // whole machine's busy cores during the ceiling and /
	Ready                         time.Duration
	IdleRSSKB                     int64
	ImageMB                       float64
	ImageNote                     string
	GoBench                       string
	Deploy, DeployNote            string // the deploy figures' table, or why there is none
	Profile                       string // pprof -top of one replica during /count

	// The stack as deployed, in the same rounds: Compose, a lab node, the
	// lab's swarm.
	Deployed []*deployedResult
}

// deployedResult is one deployed stack's figures.
type deployedResult struct {
	Title, How string
	Rows       []deployedRow      // /count first
	CPU        map[string]float64 // during /count: cores per service and daemon, user and kernel; task switches and TCP opens a second
	Kernel     string             // perf during /count, where recorded
	Note       string             // why it was not measured, in place of the rest
}

type deployedRow struct {
	Name     string
	F        figure
	Loopback *figure // the loopback figure it is compared with
}

// Targets for a 2-core machine (issue "Prove it").
const (
	targetRatio = 0.6
	targetP99   = 10 * time.Millisecond
	targetImage = 15.0 // MB
	targetRSS   = 15 * 1024
	targetReady = 200 * time.Millisecond

	targetFloor    = 0.9 // loopback /count ÷ the floor (issue "Fast as deployed")
	targetDeployed = 0.6 // deployed /count ÷ loopback /count (issue "Fast as deployed")

	targetAppChange = 20 * time.Second // issue "Speed where users wait"
	targetPreview   = 5 * time.Second
	targetEmpty     = 60 * time.Second
)

func verdict(ok bool) string {
	if ok {
		return "✅"
	}
	return "❌"
}

// perRequest turns cores kept busy at rps requests a second into µs of CPU per request.
func perRequest(cores, rps float64) float64 { return cores / rps * 1e6 }

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func (r results) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# tally benchmark\n\n%s · %s · wrk, %d connections, %d rounds of %v per scenario after a warm-up, the scenarios taking turns round by round; median round\n\n",
		r.Date, r.Machine, *connections, *rounds, *duration)
	b.WriteString("| scenario | requests/s | × ceiling | p50 | p99 | errors |\n|---|---:|---:|---:|---:|---:|\n")
	type row struct {
		name string
		f    figure
	}
	rows := []row{
		{"ceiling: nginx → upstream that only answers 200", r.Ceiling},
		{"floor: nginx → 3 × net/http and one INCR → Redis", r.Floor},
		{"`/` through nginx → 3 replicas", r.Index},
		{"`/count` through nginx → 3 replicas → Redis", r.Count},
		{"`/count` as above, over HTTPS (TLS 1.3, keep-alive)", r.CountTLS},
		{"`/count` as above, each visit acknowledged by a Redis replica (`WAIT 1`, a swarm's setting)", r.CountWait},
		{"`/count` on one replica directly", r.Direct},
	}
	if r.AgainstRev != "" {
		rows = append(rows, row{"`/count` through nginx → 3 replicas of the app at " + r.AgainstRev + " → Redis", r.Against})
	}
	for _, row := range rows {
		fmt.Fprintf(&b, "| %s | %.0f | %.2f | %s | %s | %d |\n", row.name, row.f.RPS, row.f.RPS/r.Ceiling.RPS, ms(row.f.P50), ms(row.f.P99), row.f.Errors)
	}
	if r.CountWait.RPS > 0 {
		fmt.Fprintf(&b, "\nWhat `WAIT 1` costs a visit (same run): %.0f%% of `/count`'s throughput; p50 %s → %s, p99 %s → %s.\n",
			100*r.CountWait.RPS/r.Count.RPS, ms(r.Count.P50), ms(r.CountWait.P50), ms(r.Count.P99), ms(r.CountWait.P99))
	}
	if r.AgainstRev != "" {
		fmt.Fprintf(&b, "\nCPU of the replicas per `/count` through nginx: %.0f µs here, %.0f µs at %s.\n",
			perRequest(r.CPU["app replicas"], r.Count.RPS), perRequest(r.AgainstCPU, r.Against.RPS), r.AgainstRev)
	}

	ratio := r.Count.RPS / r.Ceiling.RPS
	b.WriteString("\n| figure | value | target | |\n|---|---:|---:|---|\n")
	fmt.Fprintf(&b, "| `/count` through nginx ÷ ceiling | %.2f | ≥ %.1f | %s |\n", ratio, targetRatio, verdict(ratio >= targetRatio))
	floor := r.Count.RPS / r.Floor.RPS
	fmt.Fprintf(&b, "| `/count` through nginx ÷ floor | %.2f | ≥ %.1f | %s |\n", floor, targetFloor, verdict(floor >= targetFloor))
	fmt.Fprintf(&b, "| `/count` through nginx, p99 | %s | ≤ %s | %s |\n", ms(r.Count.P99), ms(targetP99), verdict(r.Count.P99 <= targetP99))
	if r.ImageNote == "" {
		fmt.Fprintf(&b, "| app image size | %.1f MB | ≤ %.0f MB | %s |\n", r.ImageMB, targetImage, verdict(r.ImageMB <= targetImage))
	} else {
		fmt.Fprintf(&b, "| app image size | not measured: %s | ≤ %.0f MB | |\n", r.ImageNote, targetImage)
	}
	fmt.Fprintf(&b, "| idle RSS of one replica | %.1f MB | ≤ %d MB | %s |\n", float64(r.IdleRSSKB)/1024, targetRSS/1024, verdict(r.IdleRSSKB <= targetRSS))
	fmt.Fprintf(&b, "| process start → `/readyz` 200 (median of 5) | %s | ≤ %s | %s |\n", ms(r.Ready), ms(targetReady), verdict(r.Ready <= targetReady))

	b.WriteString("\n## Where the CPU went during `/count` through nginx\n\n")
	b.WriteString("Cores busy on average over the measured rounds (the machine has " + strings.Fields(r.Machine)[0] +
		"), and what that is per request:\n\n| process | cores | µs of CPU per request |\n|---|---:|---:|\n")
	total := r.CPU[machineTotal]
	var names []string
	accounted := 0.0
	for name := range r.CPU {
		if !slices.Contains([]string{machineTotal, taskSwitches, "nginx-ceiling", "nginx-against", againstReplicas, "nginx-floor", floorReplicas, waitGroup}, name) {
			names = append(names, name)
			accounted += r.CPU[name]
		}
	}
	sort.Slice(names, func(i, j int) bool { return r.CPU[names[i]] > r.CPU[names[j]] })
	for _, n := range names {
		fmt.Fprintf(&b, "| %s | %.2f | %.0f |\n", n, r.CPU[n], perRequest(r.CPU[n], r.Count.RPS))
	}
	fmt.Fprintf(&b, "| wrk, kernel and the rest | %.2f | %.0f |\n| **whole machine** | **%.2f** | **%.0f** |\n",
		total-accounted, perRequest(total-accounted, r.Count.RPS), total, perRequest(total, r.Count.RPS))
	if r.CeilingCores > 0 && r.IndexCores > 0 {
		ceiling, index, count := perRequest(r.CeilingCores, r.Ceiling.RPS), perRequest(r.IndexCores, r.Index.RPS), perRequest(total, r.Count.RPS)
		fmt.Fprintf(&b, "\nA request through the ceiling costs the machine %.0f µs of CPU, so at %.1f× the ceiling's rate a visit may cost %.0f µs. "+
			"`/` through nginx, the same hop to a replica without Redis, costs %.0f µs (%.2f× the ceiling); `/count` costs %.0f µs: "+
			"its Redis round trip and script add %.0f µs.\n",
			ceiling, targetRatio, ceiling/targetRatio, index, r.Index.RPS/r.Ceiling.RPS, count, count-index)
	}
	b.WriteString("\nWhen the whole machine is near its core count, the figure is bound by CPU shared between the load generator, nginx, the replicas and Redis, not by any one of them waiting; the split above says which part costs most.\n")

	if r.Profile != "" {
		b.WriteString("\n## Profile of one replica during `/count` through nginx\n\n")
		b.WriteString("`go tool pprof -top`, flat time first. `Syscall6` is the replica's system calls; `strace -c` on a replica counts, per visit, 2 writes (the response, the Redis command), 2 reads (the request, the reply) and 1 recvfrom (go-redis peeks at a pooled connection before each use), besides the futex calls that wake goroutines.\n\n```\n" + r.Profile + "\n```\n")
	}
	b.WriteString(r.deployedMarkdown())
	b.WriteString("\n## Deploys: edit → live\n\n")
	if r.Deploy != "" {
		fmt.Fprintf(&b, "The real `pulumi` and docker provider, and Compose, on this machine's Docker engine; a stack of their own on a copy of the repository, the program compiled once, the app image's build cache warm after the first run. Targets: one-line app change live on every replica ≤ %v, no-op preview ≤ %v, empty → serving ≤ %v.\n\n%s",
			targetAppChange, targetPreview, targetEmpty, r.Deploy)
	}
	if r.DeployNote != "" {
		b.WriteString("\n" + r.DeployNote + "\n")
	}
	if r.GoBench != "" {
		b.WriteString("\n## Go benchmarks (`app/web`, real Redis)\n\n```\n" + r.GoBench + "\n```\n")
	}
	return b.String()
}

// What each deployed stack is, and how it is reached.
const (
	composeHow = "Three web replicas, nginx in its edge container's network namespace, Redis, each in its container with its limits, logging through Docker's `json-file` driver; wrk on 127.0.0.1 through the published port, so Docker's userland proxy (`docker-proxy`) carries every connection."
	nodeHow    = "The Pulumi program (`pulumi up`, the real provider) on the lab's node 3, an engine in network namespaces of its own on this machine: the same services and limits; wrk on this machine, outside the node, through the node's address (%s), as a client reaches a server: the kernel forwards the port (iptables DNAT), no userland proxy."
	swarmHow   = "The Pulumi program with `tally:target=swarm` on the lab's swarm of three: nginx and Redis on the manager (node 1), the three replicas wherever Swarm puts them (dnsrr on the overlay network, host-mode port); wrk on this machine through the manager's address (%s)."
)

// deployedMarkdown is the section on the stack as deployed: for each of
// its stacks, the figures beside the loopback ones, and where the CPU went.
func (r results) deployedMarkdown() string {
	var b strings.Builder
	b.WriteString("\n## As deployed\n\nThe same machine, the same rounds as the figures above, each stack frozen (`docker pause`) while the others run.\n")
	for _, d := range r.Deployed {
		b.WriteString(d.markdown(r))
	}
	return b.String()
}

func (d *deployedResult) markdown(r results) string {
	var b strings.Builder
	b.WriteString("\n### " + strings.ToUpper(d.Title[:1]) + d.Title[1:] + "\n\n")
	if d.Note != "" {
		b.WriteString(d.Note + "\n")
		return b.String()
	}
	b.WriteString(d.How + "\n\n| scenario | requests/s | × loopback | p50 | p99 | errors |\n|---|---:|---:|---:|---:|---:|\n")
	for _, row := range d.Rows {
		fmt.Fprintf(&b, "| %s | %.0f | %.2f | %s | %s | %d |\n", row.Name, row.F.RPS, row.F.RPS/row.Loopback.RPS, ms(row.F.P50), ms(row.F.P99), row.F.Errors)
	}
	visits := d.Rows[0].F.RPS
	ratio := visits / r.Count.RPS
	fmt.Fprintf(&b, "\n| figure | value | target | |\n|---|---:|---:|---|\n| deployed `/count` ÷ loopback `/count` | %.2f | ≥ %.1f | %s |\n", ratio, targetDeployed, verdict(ratio >= targetDeployed))

	b.WriteString("\nWhere the CPU went during `/count`: cores busy on average, user and kernel, per service (its containers' cgroups) and per Docker daemon on the host (every engine's), and per visit:\n\n| part | user cores | kernel cores | µs of CPU per visit |\n|---|---:|---:|---:|\n")
	var names []string
	for k := range d.CPU {
		if name, ok := strings.CutSuffix(k, ", user"); ok && k != machineUser {
			names = append(names, name)
		}
	}
	busy := func(n string) float64 { return d.CPU[n+", user"] + d.CPU[n+", kernel"] }
	sort.Slice(names, func(i, j int) bool { return busy(names[i]) > busy(names[j]) })
	for _, n := range names {
		if busy(n) >= 0.005 {
			fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.0f |\n", n, d.CPU[n+", user"], d.CPU[n+", kernel"], perRequest(busy(n), visits))
		}
	}
	mu, mk := d.CPU[machineUser], d.CPU[machineKernel]
	fmt.Fprintf(&b, "| **whole machine** | **%.2f** | **%.2f** | **%.0f** |\n", mu, mk, perRequest(mu+mk, visits))
	fmt.Fprintf(&b, "\nTask switches, the whole machine: %.0f a second, %.1f per visit (loopback `/count`: %.1f per visit).\n",
		d.CPU[taskSwitches], d.CPU[taskSwitches]/visits, r.CPU[taskSwitches]/r.Count.RPS)

	b.WriteString("\nConnection reuse: TCP connections each service's network namespace opened and accepted, per 1,000 visits (health checks, which connect inside their own container, included; wrk's own connections are counted where nginx accepts them; nginx shares its port holder's namespace, `edge` or `nginx-port`, so both rows count the same connections):\n\n| service | opened | accepted |\n|---|---:|---:|\n")
	for _, n := range slices.Sorted(maps.Keys(d.CPU)) {
		if svc, ok := strings.CutSuffix(n, tcpOpened); ok {
			fmt.Fprintf(&b, "| %s | %.1f | %.1f |\n", svc, d.CPU[n]/visits*1000, d.CPU[svc+tcpAccepted]/visits*1000)
		}
	}
	if d.Kernel != "" {
		b.WriteString("\nperf, the whole machine, during `/count`:\n\n```\n" + d.Kernel + "\n```\n")
	}
	return b.String()
}
