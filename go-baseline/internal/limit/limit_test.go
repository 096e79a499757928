package limit

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestExactUnderRace(t *testing.T) {
	l := New(7)
	var got atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if l.TryAcquire() {
				got.Add(1)
			}
		}()
	}
	wg.Wait()
	if got.Load() != 7 || l.InFlight() != 7 {
		t.Fatalf("acquired %d, in flight %d, want 7", got.Load(), l.InFlight())
	}
	l.Release()
	if !l.TryAcquire() || l.TryAcquire() {
		t.Fatal("release must free exactly one slot")
	}
	l.SetMax(9)
	if !l.TryAcquire() || !l.TryAcquire() || l.TryAcquire() {
		t.Fatal("SetMax(9) must allow exactly 2 more")
	}
}
