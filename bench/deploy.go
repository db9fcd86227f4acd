package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"tally/testkit"
)

// deployBench times what users wait for when they deploy, on this
// machine's Docker engine: with the real pulumi and docker provider (a
// stack of its own, in a temporary backend, on a copy of the repository,
// the program compiled once) and with Compose (make up, make rollout).
// Each figure is the median of runs; the app image's build cache is warm
// after the first, as it is for anyone iterating.
type deployBench struct {
	root   string       // the repository
	stack  *pulumiStack // its copy (stack.copy) is what the stack deploys
	port   int
	images map[string]string
	runs   int
	rows   []deployRow
}

type deployRow struct {
	what, how string
	times     []time.Duration
	note      string
}

func runDeployBench(root string, images map[string]string, runs int) (string, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	b := &deployBench{root: root, port: freePort(), images: images, runs: runs}
	b.stack, err = newPulumiStack(root, "bench", [][]string{
		{"--secret", "tally:redisPassword", "bench-password-" + strconv.Itoa(b.port)},
		{"tally:httpPort", strconv.Itoa(b.port)},
		{"tally:plainHTTP", "true"},
		{"tally:redisImage", images["REDIS_IMAGE"]},
		{"tally:nginxImage", images["NGINX_IMAGE"]},
		{"tally:goImage", images["GO_IMAGE"]},
		{"tally:retainData", "false"},
	})
	if err != nil {
		return "", err
	}
	defer b.stack.remove()
	for _, step := range []func() error{b.fromEmpty, b.noOp, b.appChange, b.scale, b.compose} {
		if err := step(); err != nil {
			return b.table(), err
		}
	}
	return b.table(), nil
}

func (b *deployBench) pulumi(args ...string) error { return b.stack.pulumi(args...) }

// timed runs f runs times, with prepare (not timed) before each.
func (b *deployBench) timed(what, how string, prepare, f func() error) (*deployRow, error) {
	row := deployRow{what: what, how: how}
	for i := range b.runs {
		if prepare != nil {
			if err := prepare(); err != nil {
				return nil, err
			}
		}
		start := time.Now()
		if err := f(); err != nil {
			return nil, fmt.Errorf("%s, run %d: %w", what, i+1, err)
		}
		row.times = append(row.times, time.Since(start))
		logf("%s (%s): %v", what, how, row.times[i].Round(100*time.Millisecond))
	}
	b.rows = append(b.rows, row)
	return &b.rows[len(b.rows)-1], nil
}

func (b *deployBench) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", b.port, path)
}

func (b *deployBench) fromEmpty() error {
	_, err := b.timed("empty → serving", "`pulumi up`, then `/count` answers", func() error {
		return b.pulumi("destroy", "--yes")
	}, func() error {
		if err := b.pulumi("up", "--yes"); err != nil {
			return err
		}
		return testkit.WaitFor(60*time.Second, answers(b.url("/count")))
	})
	return err
}

func (b *deployBench) noOp() error {
	if _, err := b.timed("no change", "`pulumi preview`", nil, func() error {
		return b.pulumi("preview", "--expect-no-changes")
	}); err != nil {
		return err
	}
	_, err := b.timed("no change", "`pulumi up`", nil, func() error {
		return b.pulumi("up", "--yes", "--expect-no-changes")
	})
	return err
}

// appChange adds a line to the welcome page and times pulumi up until every
// replica serves it, under load through nginx.
func (b *deployBench) appChange() error {
	return b.rollout("`pulumi up`, under load", b.url, func() error { return b.pulumi("up", "--yes") })
}

// rollout times deploy, after a one-line change to the welcome page, until
// every replica serves the new page, with clients counting visits.
func (b *deployBench) rollout(how string, url func(string) string, deploy func() error) error {
	var marker string
	stop := testkit.SteadyLoad(url("/count"), 4)
	row, err := b.timed("one-line app change → every replica serves it", how, func() error {
		marker = fmt.Sprintf("bench change %d", time.Now().UnixNano())
		return appendTo(filepath.Join(b.stack.copy, "app", "web", "pages", "index.html"), "<p>"+marker+"</p>\n")
	}, func() error {
		if err := deploy(); err != nil {
			return err
		}
		return testkit.WaitFor(60*time.Second, func() bool { return servedByAll(url("/"), marker) })
	})
	load := stop()
	if err != nil {
		return err
	}
	row.note = fmt.Sprintf("%d requests answered 200 during the %d rollouts, %d failed", load.OK, b.runs, load.Failed())
	return nil
}

func (b *deployBench) scale() error {
	_, err := b.timed("replicas 3 → 5 → the new ones serve", "`pulumi up`", func() error {
		if err := b.pulumi("config", "set", "tally:replicas", "3"); err != nil {
			return err
		}
		if err := b.pulumi("up", "--yes"); err != nil {
			return err
		}
		return b.pulumi("config", "set", "tally:replicas", "5")
	}, func() error {
		if err := b.pulumi("up", "--yes"); err != nil {
			return err
		}
		return testkit.WaitFor(30*time.Second, func() bool { return instances(b.url("/"), 60) >= 5 })
	})
	if err == nil {
		err = b.pulumi("destroy", "--yes")
	}
	return err
}

// compose times the same two paths with Compose: make up from nothing, and
// make rollout of a one-line change, on a project of its own.
func (b *deployBench) compose() error {
	st, err := newComposeStack(b.stack.copy, "deploy", b.images)
	if err != nil {
		return err
	}
	defer st.stop()
	if _, err := b.timed("empty → serving", "`make up` (Compose)", st.down, func() error {
		if err := st.up(); err != nil {
			return err
		}
		return testkit.WaitFor(60*time.Second, answers(st.url("/count")))
	}); err != nil {
		return err
	}
	return b.rollout("`make rollout` (Compose), under load", st.url, func() error {
		cmd := exec.Command("bash", filepath.Join(b.root, "scripts", "rollout.sh"))
		cmd.Dir, cmd.Env = st.dir, append(st.env, "COMPOSE=docker compose")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("make rollout: %v\n%s", err, lastLines(string(out), 15))
		}
		return nil
	})
}

func (b *deployBench) table() string {
	var s strings.Builder
	fmt.Fprintf(&s, "| what | how | median | runs | notes |\n|---|---|---:|---|---|\n")
	for _, r := range b.rows {
		var runs []string
		for _, t := range r.times {
			runs = append(runs, fmt.Sprintf("%.1f s", t.Seconds()))
		}
		fmt.Fprintf(&s, "| %s | %s | %.1f s | %s | %s |\n", r.what, r.how, median(r.times).Seconds(), strings.Join(runs, ", "), r.note)
	}
	return s.String()
}

// servedByAll says whether 30 answers in a row carry marker: with nginx
// spreading them, every replica then serves the new page.
func servedByAll(url, marker string) bool {
	for range 30 {
		if code, body, _ := testkit.Page(url); code != 200 || !strings.Contains(body, marker) {
			return false
		}
	}
	return true
}

// instances counts the replicas that answer among n requests.
func instances(url string, n int) int {
	seen := map[string]bool{}
	for range n {
		if r := testkit.Get(url); r.Code == 200 {
			seen[r.Instance] = true
		}
	}
	return len(seen)
}

// answers says whether url answers 200.
func answers(url string) func() bool {
	return func() bool { return testkit.Get(url).Code == 200 }
}

func appendTo(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	return errors.Join(err, f.Close())
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
