package controlplane

import "time"

// Backoff is the wait after the n-th consecutive failed attempt (n = 0, 1, ...):
// d = min(initial * 2^n, max), and the wait is d/2 + u*(d/2) for u in [0, 1], i.e.
// uniform in [d/2, d]. u comes from the caller (math/rand in production, fixed in tests).
func Backoff(n int, initial, max time.Duration, u float64) time.Duration {
	d := initial
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	if u < 0 {
		u = 0
	} else if u > 1 {
		u = 1
	}
	half := d / 2
	return half + time.Duration(u*float64(d-half))
}
