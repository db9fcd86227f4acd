package main

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// results is what one run measured.
type results struct {
	Date, Machine                 string
	Ceiling, Index, Count, Direct figure
	CPU                           map[string]float64 // CPU cores busy per process group during /count
	Ready                         time.Duration
	IdleRSSKB                     int64
	ImageMB                       float64
	ImageNote                     string
	GoBench                       string
	Profile                       string // pprof -top of one replica during /count
}

// Targets for a 2-core machine (issue "Prove it").
const (
	targetRatio = 0.6
	targetP99   = 10 * time.Millisecond
	targetImage = 15.0 // MB
	targetRSS   = 15 * 1024
	targetReady = 200 * time.Millisecond
)

func verdict(ok bool) string {
	if ok {
		return "✅"
	}
	return "❌"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func (r results) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# tally benchmark\n\n%s · %s · wrk, %d connections, %d rounds of %v per scenario after a warm-up, the scenarios taking turns round by round; median round\n\n",
		r.Date, r.Machine, *connections, *rounds, *duration)
	b.WriteString("| scenario | requests/s | × ceiling | p50 | p99 | errors |\n|---|---:|---:|---:|---:|---:|\n")
	for _, row := range []struct {
		name string
		f    figure
	}{
		{"ceiling: nginx → upstream that only answers 200", r.Ceiling},
		{"`/` through nginx → 3 replicas", r.Index},
		{"`/count` through nginx → 3 replicas → Redis", r.Count},
		{"`/count` on one replica directly", r.Direct},
	} {
		fmt.Fprintf(&b, "| %s | %.0f | %.2f | %s | %s | %d |\n", row.name, row.f.RPS, row.f.RPS/r.Ceiling.RPS, ms(row.f.P50), ms(row.f.P99), row.f.Errors)
	}

	ratio := r.Count.RPS / r.Ceiling.RPS
	b.WriteString("\n| figure | value | target | |\n|---|---:|---:|---|\n")
	fmt.Fprintf(&b, "| `/count` through nginx ÷ ceiling | %.2f | ≥ %.1f | %s |\n", ratio, targetRatio, verdict(ratio >= targetRatio))
	fmt.Fprintf(&b, "| `/count` through nginx, p99 | %s | ≤ %s | %s |\n", ms(r.Count.P99), ms(targetP99), verdict(r.Count.P99 <= targetP99))
	if r.ImageNote == "" {
		fmt.Fprintf(&b, "| app image size | %.1f MB | ≤ %.0f MB | %s |\n", r.ImageMB, targetImage, verdict(r.ImageMB <= targetImage))
	} else {
		fmt.Fprintf(&b, "| app image size | not measured: %s | ≤ %.0f MB | |\n", r.ImageNote, targetImage)
	}
	fmt.Fprintf(&b, "| idle RSS of one replica | %.1f MB | ≤ %d MB | %s |\n", float64(r.IdleRSSKB)/1024, targetRSS/1024, verdict(r.IdleRSSKB <= targetRSS))
	fmt.Fprintf(&b, "| process start → `/readyz` 200 (median of 5) | %s | ≤ %s | %s |\n", ms(r.Ready), ms(targetReady), verdict(r.Ready <= targetReady))

	b.WriteString("\n## Where the CPU went during `/count` through nginx\n\n")
	b.WriteString("Cores busy on average over the measured rounds (the machine has " + strings.Fields(r.Machine)[0] + "):\n\n| process | cores |\n|---|---:|\n")
	total := r.CPU[machineTotal]
	var names []string
	accounted := 0.0
	for name := range r.CPU {
		if name != machineTotal && name != "nginx-ceiling" {
			names = append(names, name)
			accounted += r.CPU[name]
		}
	}
	sort.Slice(names, func(i, j int) bool { return r.CPU[names[i]] > r.CPU[names[j]] })
	for _, n := range names {
		fmt.Fprintf(&b, "| %s | %.2f |\n", n, r.CPU[n])
	}
	fmt.Fprintf(&b, "| wrk, kernel and the rest | %.2f |\n| **whole machine** | **%.2f** |\n", total-accounted, total)
	b.WriteString("\nWhen the whole machine is near its core count, the figure is bound by CPU shared between the load generator, nginx, the replicas and Redis, not by any one of them waiting; the split above says which part costs most.\n")

	if r.Profile != "" {
		b.WriteString("\n## Profile of one replica during `/count` through nginx\n\n")
		b.WriteString("`go tool pprof -top`, flat time first. `Syscall6` is the replica's reads and writes: the HTTP request and response, and the Redis command and reply — four system calls per visit that no user-space change removes.\n\n```\n" + r.Profile + "\n```\n")
	}
	if r.GoBench != "" {
		b.WriteString("\n## Go benchmarks (`app/web`, real Redis)\n\n```\n" + r.GoBench + "\n```\n")
	}
	return b.String()
}
