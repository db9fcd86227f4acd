package testkit

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Client is the load generators' HTTP client: generous timeouts, and
// enough idle connections that steady load reuses them.
var Client = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256},
}

// Trust makes Client trust roots (in place of the system's): a stack
// serving a certificate of a test's own CA. With a serverName, Client
// checks certificates for that name whatever address it connects to (a
// domain's certificate, served on 127.0.0.1). Call it while no load runs.
func Trust(roots *x509.CertPool, serverName string) {
	Client.Transport = &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256, TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: serverName}}
}

// Reply is what one request got back.
type Reply struct {
	Code     int
	Count    int64
	Instance string
	Reason   string // a failure's, as tally says it ("error" in its JSON)
	Err      error
	Elapsed  time.Duration
	At       time.Time // when the answer arrived
}

// Get asks for path as JSON and decodes the fields tally answers with.
func Get(url string) Reply { return GetWith(Client, url) }

// GetWith is Get with another client (one that trusts a test's CA).
func GetWith(c *http.Client, url string) Reply {
	start := time.Now()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return Reply{Err: err, Elapsed: time.Since(start), At: time.Now()}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	r := Reply{Code: resp.StatusCode, Err: err, Elapsed: time.Since(start), At: time.Now()}
	var v struct {
		Count    int64  `json:"count"`
		Instance string `json:"instance"`
		Error    string `json:"error"`
	}
	if json.Unmarshal(body, &v) == nil {
		r.Count, r.Instance, r.Reason = v.Count, v.Instance, v.Error
	}
	return r
}

// Page returns the status and body of a GET of url as a browser asks for
// it (HTML).
func Page(url string) (int, string, error) {
	resp, err := Client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// Tally sums up replies: how many succeeded, how the others failed, which
// counts and instances were seen.
type Tally struct {
	mu        sync.Mutex
	OK        int
	Failures  map[string]int
	Counts    map[int64]int
	Instances map[string]bool
	Slowest   map[int]time.Duration // slowest answer, by status code
	// Reasons counts the failures tally answered with a reason, by it.
	Reasons map[string]int
	// oks are the 200s' times, sent and answered.
	oks []sentAnswered
	// LongestGap is the longest time between two successive 200s: how long
	// clients saw no service at all.
	LongestGap time.Duration
	lastOK     time.Time
}

// NewTally returns an empty Tally.
func NewTally() *Tally {
	return &Tally{Failures: map[string]int{}, Counts: map[int64]int{}, Instances: map[string]bool{}, Slowest: map[int]time.Duration{}, Reasons: map[string]int{}}
}

type sentAnswered struct{ sent, at time.Time }

// Add records one reply.
func (t *Tally) Add(r Reply) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.Slowest[r.Code] = max(t.Slowest[r.Code], r.Elapsed)
	switch {
	case r.Err != nil:
		t.Failures["error: "+r.Err.Error()]++
	case r.Code != 200:
		t.Failures[fmt.Sprintf("HTTP %d", r.Code)]++
		if r.Reason != "" {
			t.Reasons[r.Reason]++
		}
	default:
		t.OK++
		t.oks = append(t.oks, sentAnswered{r.At.Add(-r.Elapsed), r.At})
		t.Counts[r.Count]++
		t.Instances[r.Instance] = true
		if !t.lastOK.IsZero() {
			t.LongestGap = max(t.LongestGap, r.At.Sub(t.lastOK))
		}
		t.lastOK = r.At
	}
}

// Failed is the number of replies other than 200.
func (t *Tally) Failed() int {
	n := 0
	for _, c := range t.Failures {
		n += c
	}
	return n
}

// Merge adds what o saw to t: two clients' tallies as one.
func (t *Tally) Merge(o *Tally) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o.mu.Lock()
	defer o.mu.Unlock()
	t.OK += o.OK
	for k, n := range o.Failures {
		t.Failures[k] += n
	}
	for k, n := range o.Counts {
		t.Counts[k] += n
	}
	for k := range o.Instances {
		t.Instances[k] = true
	}
	for k, d := range o.Slowest {
		t.Slowest[k] = max(t.Slowest[k], d)
	}
	for k, n := range o.Reasons {
		t.Reasons[k] += n
	}
	t.oks = append(t.oks, o.oks...)
	t.LongestGap = max(t.LongestGap, o.LongestGap)
}

// FirstOKAfter is how long after at the first 200 came to a request sent
// after it, and whether one came: how long a failure kept clients from
// being served.
func (t *Tally) FirstOKAfter(at time.Time) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var first time.Time
	for _, ok := range t.oks {
		if ok.sent.After(at) && (first.IsZero() || ok.at.Before(first)) {
			first = ok.at
		}
	}
	return first.Sub(at), !first.IsZero()
}

// MaxCount is the highest count answered 200.
func (t *Tally) MaxCount() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var m int64
	for c := range t.Counts {
		m = max(m, c)
	}
	return m
}

// Duplicates lists counts handed out more than once.
func (t *Tally) Duplicates() []int64 {
	var d []int64
	for c, n := range t.Counts {
		if n > 1 {
			d = append(d, c)
		}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d
}

func (t *Tally) String() string {
	var parts []string
	for k, v := range t.Failures {
		parts = append(parts, fmt.Sprintf("%d× %s", v, k))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d ok, %d failed [%s], %d instances", t.OK, t.Failed(), strings.Join(parts, "; "), len(t.Instances))
}

// Burst sends n requests at once and waits for all of them.
func Burst(url string, n int) *Tally {
	res := NewTally()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res.Add(Get(url))
		}()
	}
	wg.Wait()
	return res
}

// SteadyLoad keeps `workers` clients sending requests in a loop until stop
// is called, then returns what they saw. Each worker pauses a little between
// requests so the load is steady, not a flood.
func SteadyLoad(url string, workers int) (stop func() *Tally) {
	return SteadyLoadWith(Client, url, workers)
}

// SteadyLoadWith is SteadyLoad with another client: one with a shorter
// timeout gives up on a request a dead node holds and sends the next.
func SteadyLoadWith(c *http.Client, url string, workers int) (stop func() *Tally) {
	res := NewTally()
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
				res.Add(GetWith(c, url))
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return func() *Tally {
		close(done)
		wg.Wait()
		return res
	}
}
