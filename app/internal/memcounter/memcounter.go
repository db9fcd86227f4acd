// Package memcounter is a tally.Counter in memory, for tests of the
// packages above the store (the HTTP layer): it keeps the domain's promises
// — each visit counted once, a visit id counted at most once — and fails
// as a store that cannot answer does, when told to.
package memcounter

import (
	"context"
	"sync"

	"tally/app"
)

// Counter counts in memory. The zero value is ready and up.
type Counter struct {
	mu    sync.Mutex
	n     int64
	seen  map[string]int64
	down  *tally.UnavailableError
	calls int
}

var _ tally.Counter = (*Counter)(nil)

// Increment counts a visit once per visitID ("" always counts).
func (c *Counter) Increment(_ context.Context, visitID string) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.down != nil {
		return 0, c.down
	}
	if n, ok := c.seen[visitID]; ok && visitID != "" {
		return n, nil
	}
	c.n++
	if visitID != "" {
		if c.seen == nil {
			c.seen = map[string]int64{}
		}
		c.seen[visitID] = c.n
	}
	return c.n, nil
}

// Ping fails while the counter is down.
func (c *Counter) Ping(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down != nil {
		return c.down
	}
	return nil
}

// Down makes every call fail with reason, as a store that cannot answer;
// Down("") brings it back.
func (c *Counter) Down(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = nil
	if reason != "" {
		c.down = &tally.UnavailableError{Reason: reason}
	}
}

// Count is the number of visits counted.
func (c *Counter) Count() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Calls is the number of Increment calls, counted or not.
func (c *Counter) Calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}
