// Package breaker is the per-placement circuit breaker of docs/spec.md section 5: states
// closed, open and half_open, a generation per state, an atomic half-open permit count
// and stale-outcome rejection. It does no I/O; the caller passes the current time.
package breaker

import (
	"sync"
	"time"

	"pingora-parity/go-baseline/internal/config"
)

// State is a breaker state; its value is the router_breaker_state gauge value.
type State int

// The three breaker states.
const (
	Closed   State = 0
	Open     State = 1
	HalfOpen State = 2
)

// String returns "closed", "open" or "half_open" as in the admin API.
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half_open"
	}
	return "unknown"
}

// Permit is what Admit hands out: the generation it was admitted in and whether it holds
// one of the half-open slots. The zero Permit belongs to no generation.
type Permit struct {
	gen      uint64
	halfOpen bool
}

// Breaker is one placement's breaker. A nil *Breaker is valid and always admits (a
// placement without circuit_breaker). Safe for concurrent use.
type Breaker struct {
	failureThreshold int64
	successThreshold int64
	halfOpenMax      int64
	openFor          time.Duration

	mu        sync.Mutex
	state     State
	gen       uint64
	failures  int64 // consecutive failures while closed
	successes int64 // consecutive successes while half-open
	openedAt  time.Time
	halfInUse int64 // half-open permits out
}

// New returns a closed breaker for cfg, or nil (always admits) when cfg is nil.
func New(cfg *config.CircuitBreaker) *Breaker {
	if cfg == nil {
		return nil
	}
	return &Breaker{
		failureThreshold: cfg.FailureThreshold,
		successThreshold: cfg.SuccessThreshold,
		halfOpenMax:      cfg.HalfOpenMaxRequests,
		openFor:          time.Duration(cfg.OpenMS) * time.Millisecond,
		gen:              1,
	}
}

// advance moves open to half_open once open_ms have passed. Caller holds mu.
func (b *Breaker) advance(now time.Time) {
	if b.state == Open && !now.Before(b.openedAt.Add(b.openFor)) {
		b.transition(HalfOpen, now)
	}
}

// transition enters state s and starts a new generation. Caller holds mu.
func (b *Breaker) transition(s State, now time.Time) {
	b.state = s
	b.gen++
	b.failures, b.successes, b.halfInUse = 0, 0, 0
	if s == Open {
		b.openedAt = now
	}
}

// Admit asks whether a request may go to this placement at time now. In half_open it
// takes one of half_open_max_requests permits; the permit must be given back by exactly
// one Record or Release.
func (b *Breaker) Admit(now time.Time) (Permit, bool) {
	if b == nil {
		return Permit{}, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(now)
	switch b.state {
	case Closed:
		return Permit{gen: b.gen}, true
	case HalfOpen:
		if b.halfInUse >= b.halfOpenMax {
			return Permit{}, false
		}
		b.halfInUse++
		return Permit{gen: b.gen, halfOpen: true}, true
	}
	return Permit{}, false
}

// Record reports the outcome of a request admitted with p. An outcome from an earlier
// generation is ignored. Closed: the failure_threshold-th consecutive failure opens the
// breaker, a success resets the count. Half-open: success_threshold consecutive
// successes close it, any failure opens it again.
func (b *Breaker) Record(p Permit, success bool, now time.Time) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.gen != b.gen {
		return
	}
	switch b.state {
	case Closed:
		if success {
			b.failures = 0
			return
		}
		b.failures++
		if b.failures >= b.failureThreshold {
			b.transition(Open, now)
		}
	case HalfOpen:
		if p.halfOpen {
			b.halfInUse--
		}
		if !success {
			b.transition(Open, now)
			return
		}
		b.successes++
		if b.successes >= b.successThreshold {
			b.transition(Closed, now)
		}
	}
}

// Release gives back p without an outcome (local rejection, client gone).
func (b *Breaker) Release(p Permit) {
	if b == nil || !p.halfOpen {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.gen == b.gen && b.state == HalfOpen && b.halfInUse > 0 {
		b.halfInUse--
	}
}

// State reports the state at time now; an open breaker whose open_ms have passed is
// half_open from that moment.
func (b *Breaker) State(now time.Time) State {
	if b == nil {
		return Closed
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(now)
	return b.state
}
