package web

import (
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"tally/app/internal/memcounter"
)

// BenchmarkServe times requests through the whole handler stack, with the
// store in memory: what the HTTP layer costs. /healthz touches no store: it
// is the baseline the others compare against in the same run. What Redis
// adds is app/redis's BenchmarkIncrement, and both together make bench/.
func BenchmarkServe(b *testing.B) {
	h, _ := newHandler(b, &memcounter.Counter{})
	var ids atomic.Int64
	for _, bc := range []struct{ name, path, requestID string }{
		{"healthz (baseline)", "/healthz", ""},
		{"index", "/", ""},
		{"count", "/count", ""},
		{"count with proxy request id", "/count", "id"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest("GET", bc.path, nil)
					if bc.requestID != "" {
						req.Header.Set("X-Request-ID", bc.requestID+strconv.FormatInt(ids.Add(1), 10))
					}
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != 200 {
						b.Fatalf("%s = %d", bc.path, rec.Code)
					}
				}
			})
		})
	}
}
