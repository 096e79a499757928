package breaker

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pingora-parity/go-baseline/internal/config"
)

var t0 = time.Unix(1_700_000_000, 0)

func newB(fail, open, half, succ int64) *Breaker {
	return New(&config.CircuitBreaker{FailureThreshold: fail, OpenMS: open, HalfOpenMaxRequests: half, SuccessThreshold: succ})
}

func admit(t *testing.T, b *Breaker, now time.Time) Permit {
	t.Helper()
	p, ok := b.Admit(now)
	if !ok {
		t.Fatalf("want admitted at %v, state %v", now.Sub(t0), b.State(now))
	}
	return p
}

func TestNilBreakerAlwaysAdmits(t *testing.T) {
	var b *Breaker
	for i := 0; i < 10; i++ {
		p, ok := b.Admit(t0)
		if !ok {
			t.Fatal("nil breaker refused")
		}
		b.Record(p, false, t0)
	}
	if b.State(t0) != Closed {
		t.Fatal("nil breaker not closed")
	}
}

func TestNthFailureTripsAndSuccessResets(t *testing.T) {
	b := newB(3, 1000, 1, 1)
	b.Record(admit(t, b, t0), false, t0)
	b.Record(admit(t, b, t0), false, t0)
	b.Record(admit(t, b, t0), true, t0) // resets
	b.Record(admit(t, b, t0), false, t0)
	b.Record(admit(t, b, t0), false, t0)
	if b.State(t0) != Closed {
		t.Fatal("opened before the 3rd consecutive failure")
	}
	b.Record(admit(t, b, t0), false, t0)
	if b.State(t0) != Open {
		t.Fatalf("3rd consecutive failure did not open: %v", b.State(t0))
	}
	if _, ok := b.Admit(t0.Add(999 * time.Millisecond)); ok {
		t.Fatal("open breaker admitted")
	}
	// Exactly open_ms later it is half-open, before any request arrives.
	if s := b.State(t0.Add(1000 * time.Millisecond)); s != HalfOpen {
		t.Fatalf("want half_open at open_ms, got %v", s)
	}
}

func TestHalfOpenPermitsAndClose(t *testing.T) {
	b := newB(1, 100, 2, 2)
	b.Record(admit(t, b, t0), false, t0)
	now := t0.Add(100 * time.Millisecond)
	p1 := admit(t, b, now)
	p2 := admit(t, b, now)
	if _, ok := b.Admit(now); ok {
		t.Fatal("third request admitted with half_open_max_requests=2")
	}
	b.Release(p2) // request ended without outcome: permit returns
	p3 := admit(t, b, now)
	b.Record(p1, true, now)
	if b.State(now) != HalfOpen {
		t.Fatal("closed after 1 of 2 successes")
	}
	b.Record(p3, true, now)
	if b.State(now) != Closed {
		t.Fatalf("2 successes did not close: %v", b.State(now))
	}
	// Closed again with a fresh failure count.
	b.Record(admit(t, b, now), false, now)
	if b.State(now) != Open {
		t.Fatal("failure_threshold=1 did not re-open")
	}
}

func TestHalfOpenFailureReopensWithFreshOpenMS(t *testing.T) {
	b := newB(1, 100, 1, 1)
	b.Record(admit(t, b, t0), false, t0)
	now := t0.Add(150 * time.Millisecond)
	b.Record(admit(t, b, now), false, now)
	if s := b.State(now.Add(99 * time.Millisecond)); s != Open {
		t.Fatalf("want open for a fresh open_ms, got %v", s)
	}
	if s := b.State(now.Add(100 * time.Millisecond)); s != HalfOpen {
		t.Fatalf("want half_open after fresh open_ms, got %v", s)
	}
}

func TestStaleOutcomesIgnored(t *testing.T) {
	b := newB(2, 100, 1, 1)
	old1 := admit(t, b, t0)
	old2 := admit(t, b, t0)
	b.Record(admit(t, b, t0), false, t0)
	b.Record(admit(t, b, t0), false, t0) // opens: new generation
	b.Record(old1, true, t0)
	if b.State(t0) != Open {
		t.Fatal("stale success changed an open breaker")
	}
	now := t0.Add(100 * time.Millisecond)
	p := admit(t, b, now) // half-open permit
	b.Record(old2, false, now)
	if b.State(now) != HalfOpen {
		t.Fatal("stale failure re-opened a half-open breaker")
	}
	b.Release(old2) // stale release must not free the current permit
	if _, ok := b.Admit(now); ok {
		t.Fatal("stale release freed a half-open permit")
	}
	b.Record(p, true, now)
	if b.State(now) != Closed {
		t.Fatal("half-open success did not close")
	}
	b.Record(p, false, now) // outcome of a half-open permit after closing: stale
	if b.State(now) != Closed {
		t.Fatal("stale half-open failure opened a closed breaker")
	}
}

// Many goroutines race for the half-open permits: exactly half_open_max_requests win.
func TestHalfOpenPermitRace(t *testing.T) {
	for _, max := range []int64{1, 3, 17} {
		b := newB(1, 10, max, 1000)
		b.Record(admit(t, b, t0), false, t0)
		now := t0.Add(10 * time.Millisecond)
		var won atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < 200; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if _, ok := b.Admit(now); ok {
					won.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		if won.Load() != max {
			t.Fatalf("max=%d: %d goroutines got a permit", max, won.Load())
		}
	}
}

// Racing admit/record in half-open never exceeds the permit count in flight.
func TestHalfOpenPermitsNeverExceeded(t *testing.T) {
	const max = 4
	b := newB(1, 10, max, 1_000_000)
	b.Record(admit(t, b, t0), false, t0)
	now := t0.Add(10 * time.Millisecond)
	var inflight, peak atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 500; j++ {
				p, ok := b.Admit(now)
				if !ok {
					continue
				}
				n := inflight.Add(1)
				for {
					m := peak.Load()
					if n <= m || peak.CompareAndSwap(m, n) {
						break
					}
				}
				inflight.Add(-1)
				if j%2 == 0 {
					b.Record(p, true, now)
				} else {
					b.Release(p)
				}
			}
		}()
	}
	wg.Wait()
	if peak.Load() > max || peak.Load() < 1 {
		t.Fatalf("peak in flight %d, max %d", peak.Load(), max)
	}
	if b.State(now) != HalfOpen {
		t.Fatal("left half_open")
	}
	for i := 0; i < max; i++ {
		admit(t, b, now) // every permit came back
	}
}

func BenchmarkBreakerAdmitRecord(b *testing.B) {
	br := newB(5, 1000, 1, 1)
	now := t0
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p, _ := br.Admit(now)
		br.Record(p, true, now)
	}
}
