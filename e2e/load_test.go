package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

var client = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256},
}

type reply struct {
	code     int
	count    int64
	instance string
	err      error
	elapsed  time.Duration
}

// get asks for path as JSON and decodes the fields tally answers with.
func get(url string) reply {
	start := time.Now()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return reply{err: err, elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	r := reply{code: resp.StatusCode, err: err, elapsed: time.Since(start)}
	var v struct {
		Count    int64  `json:"count"`
		Instance string `json:"instance"`
	}
	if json.Unmarshal(body, &v) == nil {
		r.count, r.instance = v.Count, v.Instance
	}
	return r
}

// tally sums up replies: how many succeeded, how the others failed, which
// counts and instances were seen.
type tally struct {
	mu        sync.Mutex
	ok        int
	failures  map[string]int
	counts    map[int64]int
	instances map[string]bool
	slowest   map[int]time.Duration // slowest answer, by status code
}

func newTally() *tally {
	return &tally{failures: map[string]int{}, counts: map[int64]int{}, instances: map[string]bool{}, slowest: map[int]time.Duration{}}
}

func (t *tally) add(r reply) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.slowest[r.code] = max(t.slowest[r.code], r.elapsed)
	switch {
	case r.err != nil:
		t.failures["error: "+r.err.Error()]++
	case r.code != 200:
		t.failures[fmt.Sprintf("HTTP %d", r.code)]++
	default:
		t.ok++
		t.counts[r.count]++
		t.instances[r.instance] = true
	}
}

func (t *tally) failed() int {
	n := 0
	for _, c := range t.failures {
		n += c
	}
	return n
}

// duplicates lists counts handed out more than once.
func (t *tally) duplicates() []int64 {
	var d []int64
	for c, n := range t.counts {
		if n > 1 {
			d = append(d, c)
		}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d
}

func (t *tally) String() string {
	var parts []string
	for k, v := range t.failures {
		parts = append(parts, fmt.Sprintf("%d× %s", v, k))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d ok, %d failed [%s], %d instances", t.ok, t.failed(), strings.Join(parts, "; "), len(t.instances))
}

// burst sends n requests at once and waits for all of them.
func burst(url string, n int) *tally {
	res := newTally()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res.add(get(url))
		}()
	}
	wg.Wait()
	return res
}

// steadyLoad keeps `workers` clients sending requests in a loop until stop
// is called, then returns what they saw. Each worker pauses a little between
// requests so the load is steady, not a flood.
func steadyLoad(url string, workers int) (stop func() *tally) {
	res := newTally()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				res.add(get(url))
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return func() *tally {
		close(done)
		wg.Wait()
		return res
	}
}
