// Package limit is the exact per-placement in-flight limit (docs/spec.md section 3,
// step 4): a compare-and-swap counter that never lets more than max requests in.
package limit

import "sync/atomic"

// Limiter counts in-flight requests of one placement. The limit can change with a config
// update while requests are in flight; the count is kept. Safe for concurrent use.
type Limiter struct {
	max atomic.Int64
	n   atomic.Int64
}

// New returns a limiter admitting at most max requests at once.
func New(max int) *Limiter {
	l := &Limiter{}
	l.max.Store(int64(max))
	return l
}

// TryAcquire takes a slot if fewer than max are in flight; it never overshoots.
func (l *Limiter) TryAcquire() bool {
	for {
		cur := l.n.Load()
		if cur >= l.max.Load() {
			return false
		}
		if l.n.CompareAndSwap(cur, cur+1) {
			return true
		}
	}
}

// Release gives back a slot taken by TryAcquire.
func (l *Limiter) Release() { l.n.Add(-1) }

// InFlight is the number of slots taken.
func (l *Limiter) InFlight() int64 { return l.n.Load() }

// Max is the current limit.
func (l *Limiter) Max() int64 { return l.max.Load() }

// SetMax changes the limit (config update); requests already in flight stay counted.
func (l *Limiter) SetMax(max int) { l.max.Store(int64(max)) }
