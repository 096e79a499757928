// Package health keeps a placement endpoint's health (docs/spec.md section 4): pure
// threshold state that probe results feed, and a checker goroutine that probes.
package health

import (
	"sync"
	"sync/atomic"

	"pingora-parity/go-baseline/internal/config"
)

// State is the health of one endpoint. Endpoints start healthy; unhealthy_threshold
// consecutive failures mark it unhealthy, healthy_threshold consecutive successes mark it
// healthy, and a result of the other kind resets the count. A nil *State is always
// healthy (a placement without health_check). Safe for concurrent use.
type State struct {
	unhealthyThreshold int64
	healthyThreshold   int64

	healthy atomic.Bool
	mu      sync.Mutex
	run     int64 // consecutive results against the current state
}

// NewState returns a healthy state for cfg, or nil when cfg is nil.
func NewState(cfg *config.HealthCheck) *State {
	if cfg == nil {
		return nil
	}
	s := &State{unhealthyThreshold: cfg.UnhealthyThreshold, healthyThreshold: cfg.HealthyThreshold}
	s.healthy.Store(true)
	return s
}

// Healthy reports the current health.
func (s *State) Healthy() bool { return s == nil || s.healthy.Load() }

// Record feeds one probe result and reports whether the health flipped.
func (s *State) Record(ok bool) (changed bool) {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	healthy := s.healthy.Load()
	if ok == healthy { // a result agreeing with the state resets the opposite run
		s.run = 0
		return false
	}
	s.run++
	threshold := s.unhealthyThreshold
	if !healthy {
		threshold = s.healthyThreshold
	}
	if s.run >= threshold {
		s.healthy.Store(ok)
		s.run = 0
		return true
	}
	return false
}
