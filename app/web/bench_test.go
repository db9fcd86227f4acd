package web

import (
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"tally/app/internal/redistest"
)

// BenchmarkServe times requests through the whole handler stack with a real
// Redis. /healthz touches no Redis: it is the baseline the others compare
// against in the same run; the Redis sub-benchmark is the raw INCR under them.
func BenchmarkServe(b *testing.B) {
	srv := redistest.Start(b)
	h, _ := newHandler(b, srv.Addr)
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
	b.Run("redis INCR alone", func(b *testing.B) {
		ctx := b.Context()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := srv.Client.Incr(ctx, "raw").Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
