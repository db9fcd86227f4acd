// Package tally is the visit counter's domain: what the HTTP layer needs from
// a counter store, and the one error it must tell apart. Packages below it
// adapt outside dependencies (redis, net/http) to these types.
package tally

import "context"

// Counter is the store behind /count. Increment must be atomic: two visits
// never see the same value, and each visit raises the count by exactly one.
//
// visitID makes a retried visit safe: a load balancer that resends a request
// after an instance died mid-request sends the same id, and a second call
// with an id already counted returns the first call's value without counting.
// An empty visitID always counts.
type Counter interface {
	Increment(ctx context.Context, visitID string) (int64, error)
	// Ping reports whether the store can serve requests right now.
	Ping(ctx context.Context) error
}

// UnavailableError says the store could not answer. Reason is short and safe
// to show to clients (no addresses, no credentials); Err keeps the detail for
// the logs.
type UnavailableError struct {
	Reason string
	Err    error
}

func (e *UnavailableError) Error() string {
	if e.Err == nil {
		return "counter store unavailable: " + e.Reason
	}
	return "counter store unavailable: " + e.Reason + ": " + e.Err.Error()
}

func (e *UnavailableError) Unwrap() error { return e.Err }
