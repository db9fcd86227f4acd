package redis_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tally/app"
	"tally/app/internal/redistest"
	"tally/app/redis"
)

func newFailoverCounter(t testing.TB, r *redistest.Replicated) *redis.Counter {
	c := redis.New(redis.Config{
		Sentinels: r.Sentinels, MasterName: redistest.MasterName, Password: redistest.Password,
		Key: "visits", Timeout: 300 * time.Millisecond, Replicas: 1,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestVisitIsAcknowledgedOnceAReplicaHasIt(t *testing.T) {
	r := redistest.StartReplicated(t, 1)
	c := newFailoverCounter(t, r)
	ctx := t.Context()
	for i := int64(1); i <= 5; i++ {
		n, err := c.Increment(ctx, fmt.Sprint("visit-", i))
		if err != nil || n != i {
			t.Fatalf("visit %d through the Sentinels = %d, %v", i, n, err)
		}
		// WAIT: the replica holds the visit before it is acknowledged.
		if got, err := r.Servers[1].Client.Get(ctx, "visits").Int64(); got != i {
			t.Fatalf("after visit %d was acknowledged the replica holds %d (%v)", i, got, err)
		}
	}
}

func TestVisitNoReplicaConfirmsIsRefusedAndCountedOnce(t *testing.T) {
	r := redistest.StartReplicated(t, 1)
	c := newFailoverCounter(t, r)
	ctx := t.Context()
	r.Servers[1].Freeze()
	start := time.Now()
	_, err := c.Increment(ctx, "visit-1")
	took := time.Since(start)
	r.Servers[1].Thaw()
	var ue *tally.UnavailableError
	if !errors.Is(err, redis.ErrNotAcknowledged) || !errors.As(err, &ue) || !strings.Contains(ue.Reason, "replica") {
		t.Fatalf("a visit no replica confirmed: err = %v; want ErrNotAcknowledged with a reason naming the replica", err)
	}
	if took > time.Second {
		t.Errorf("the unacknowledged visit took %v to answer; want about half the timeout", took)
	}
	// The same request sent again gets the count it had, not a second one.
	if n, err := c.Increment(ctx, "visit-1"); err != nil || n != 1 {
		t.Fatalf("visit-1 resent = %d, %v; want 1", n, err)
	}
	if n, err := c.Increment(ctx, "visit-2"); err != nil || n != 2 {
		t.Fatalf("visit-2 = %d, %v; want 2", n, err)
	}
}

// TestFollowsAFailoverAndLosesNoAcknowledgedVisit kills the primary under
// load: the Sentinels promote a replica, the client finds it by itself,
// and every count acknowledged before or after is there, once.
func TestFollowsAFailoverAndLosesNoAcknowledgedVisit(t *testing.T) {
	// Two replicas: the one promoted still has one to confirm visits.
	r := redistest.StartReplicated(t, 2)
	c := newFailoverCounter(t, r)
	old := r.Primary()

	var (
		mu       sync.Mutex
		acked    []int64
		refused  = map[string]int{}
		killedAt atomic.Int64 // unix nanos
		resumed  atomic.Int64
		stop     atomic.Bool
		seq      atomic.Int64
		wg       sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				sent := time.Now().UnixNano()
				n, err := c.Increment(t.Context(), fmt.Sprint("visit-", seq.Add(1)))
				mu.Lock()
				if err == nil {
					acked = append(acked, n)
					// The first visit sent after the kill that is acknowledged.
					if k := killedAt.Load(); k != 0 && sent > k && resumed.Load() == 0 {
						resumed.Store(time.Now().UnixNano())
					}
				} else {
					var ue *tally.UnavailableError
					if errors.As(err, &ue) {
						refused[ue.Reason]++
					} else {
						refused[err.Error()]++
					}
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(time.Second)
	killedAt.Store(time.Now().UnixNano())
	old.Stop()
	deadline := time.Now().Add(15 * time.Second)
	for resumed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	stop.Store(true)
	wg.Wait()

	if resumed.Load() == 0 {
		t.Fatalf("no visit acknowledged within 15s of the primary's death; refused: %v", refused)
	}
	failover := time.Duration(resumed.Load() - killedAt.Load())
	primary := r.Primary()
	if primary == old {
		t.Fatalf("the Sentinels still name the dead primary %s", old.Addr)
	}
	final, err := primary.Client.Get(t.Context(), "visits").Int64()
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, n := range refused {
		failed += n
	}
	t.Logf("failover: counting resumed %v after the primary died; %d visits acknowledged, %d refused %v; the count is %d",
		failover.Round(time.Millisecond), len(acked), failed, refused, final)
	if failover > 10*time.Second {
		t.Errorf("counting resumed %v after the primary died; want within 10s", failover)
	}
	slices.Sort(acked)
	if len(slices.Compact(slices.Clone(acked))) != len(acked) {
		t.Errorf("a count was acknowledged twice")
	}
	if len(acked) > 0 && acked[len(acked)-1] > final {
		t.Errorf("count %d was acknowledged, but the new primary holds %d: an acknowledged visit was lost", acked[len(acked)-1], final)
	}
	// Every acknowledged visit counted; no visit counted that was not sent.
	if final < int64(len(acked)) || final > int64(len(acked)+failed) {
		t.Errorf("the count is %d for %d acknowledged and %d refused visits; want between the two", final, len(acked), len(acked)+failed)
	}
}

// BenchmarkWait is what acknowledging a visit only once a replica has it
// costs: the same primary, with and without WAIT 1 behind the count.
func BenchmarkWait(b *testing.B) {
	r := redistest.StartReplicated(b, 1)
	withWait := newFailoverCounter(b, r)
	primaryOnly := newCounter(b, r.Servers[0].Addr, redistest.Password, time.Second)
	var ids atomic.Int64
	for _, bc := range []struct {
		name string
		c    *redis.Counter
	}{{"primary only", primaryOnly}, {"acknowledged by a replica (WAIT 1)", withWait}} {
		b.Run(bc.name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := bc.c.Increment(b.Context(), fmt.Sprint("id", ids.Add(1))); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
