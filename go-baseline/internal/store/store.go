// Package store holds the router's state in one owned value: the current routing
// snapshot behind an atomic pointer, and Install, which turns a validated config into a
// new snapshot: it keeps health and breaker state across updates by the identity rules of
// docs/spec.md section 4, reuses upstream pools, and starts and stops the health checkers
// so that there is always exactly one per placement with a health_check. It also holds
// the control-plane session status that the admin API and the metrics report.
package store

import (
	"sync"
	"sync/atomic"
	"time"

	"pingora-parity/go-baseline/internal/breaker"
	"pingora-parity/go-baseline/internal/config"
	"pingora-parity/go-baseline/internal/health"
	"pingora-parity/go-baseline/internal/limit"
	"pingora-parity/go-baseline/internal/routing"
	"pingora-parity/go-baseline/internal/upstream"
)

// entry is the live state kept per placement id between snapshots.
type entry struct {
	cfg      *config.Placement
	health   *health.State
	breaker  *breaker.Breaker
	limiter  *limit.Limiter
	up       *upstream.Upstream
	checker  *health.Checker
	checkCfg *config.Placement // the config the checker was started with
}

// Store is the router's state, owned by one value per router: the current snapshot, the
// per-placement state kept across updates, the running health checkers and the
// control-plane session status. Load and ControlPlane are lock-free; Install is
// serialised.
type Store struct {
	cur     atomic.Pointer[routing.Snapshot]
	mu      sync.Mutex
	entries map[string]*entry
	closed  bool

	cpConnected  atomic.Bool  // a control-plane WebSocket session is up
	cpReconnects atomic.Int64 // successful control-plane connections after the first
}

// New returns an empty store (no config: requests get no_config).
func New() *Store { return &Store{entries: map[string]*entry{}} }

// Load returns the current snapshot, nil before the first config.
func (s *Store) Load() *routing.Snapshot { return s.cur.Load() }

// Config returns the current config, nil before the first one.
func (s *Store) Config() *config.Config {
	if snap := s.cur.Load(); snap != nil {
		return snap.Config
	}
	return nil
}

// SetControlPlaneConnected records that a control-plane session came up (true) or ended
// (false).
func (s *Store) SetControlPlaneConnected(up bool) { s.cpConnected.Store(up) }

// CountControlPlaneReconnect counts one successful control-plane connection after the
// first (/admin/state "reconnects", router_control_plane_reconnects_total).
func (s *Store) CountControlPlaneReconnect() { s.cpReconnects.Add(1) }

// ControlPlane reports whether a control-plane session is up and how many reconnects
// succeeded. A router without a control plane reports (false, 0).
func (s *Store) ControlPlane() (connected bool, reconnects int64) {
	return s.cpConnected.Load(), s.cpReconnects.Load()
}

// Checkers returns the number of running health checkers.
func (s *Store) Checkers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.entries {
		if e.checker != nil {
			n++
		}
	}
	return n
}

// Install builds a snapshot for the validated cfg and swaps it in atomically. Health
// state is kept when id, endpoint and health_check are the same; breaker state when id,
// endpoint and circuit_breaker are the same; the in-flight count always per id.
func (s *Store) Install(cfg *config.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	next := make(map[string]*entry, len(cfg.Placements))
	var retired []*upstream.Upstream
	for id, pc := range cfg.Placements {
		old := s.entries[id]
		e := &entry{cfg: pc}
		if old != nil && old.cfg.Endpoint == pc.Endpoint && config.SameHealthCheck(old.cfg.HealthCheck, pc.HealthCheck) {
			e.health = old.health
		} else {
			e.health = health.NewState(pc.HealthCheck)
		}
		if old != nil && old.cfg.Endpoint == pc.Endpoint && config.SameCircuitBreaker(old.cfg.CircuitBreaker, pc.CircuitBreaker) {
			e.breaker = old.breaker
		} else {
			e.breaker = breaker.New(pc.CircuitBreaker)
		}
		if old != nil {
			e.limiter = old.limiter
			e.limiter.SetMax(pc.MaxConcurrency)
		} else {
			e.limiter = limit.New(pc.MaxConcurrency)
		}
		if old != nil && upstream.Same(old.cfg, pc) {
			e.up = old.up
		} else {
			e.up = upstream.New(pc)
			if old != nil {
				retired = append(retired, old.up)
			}
		}
		// The checker survives when it probes the same thing into the same state.
		if old != nil && old.checker != nil && e.health == old.health && e.up == old.up {
			e.checker, e.checkCfg = old.checker, old.checkCfg
			old.checker = nil
		} else if pc.HealthCheck != nil {
			e.checker, e.checkCfg = startChecker(e), pc
		}
		next[id] = e
	}
	for id, old := range s.entries {
		if old.checker != nil {
			old.checker.Stop()
		}
		if _, kept := next[id]; !kept {
			retired = append(retired, old.up)
		}
	}
	placements := make(map[string]*routing.Placement, len(next))
	for id, e := range next {
		placements[id] = &routing.Placement{ID: id, Config: e.cfg, Health: e.health,
			Breaker: e.breaker, Limiter: e.limiter, Upstream: e.up}
	}
	s.entries = next
	s.cur.Store(routing.NewSnapshot(cfg, placements))
	for _, u := range retired {
		u.Close()
	}
}

func startChecker(e *entry) *health.Checker {
	hc := e.cfg.HealthCheck
	url := e.cfg.Endpoint.Scheme + "://" + e.cfg.Endpoint.HostPort() + hc.Path
	return health.Start(e.health, health.HTTPProbe(e.up.Probe, url),
		time.Duration(hc.IntervalMS)*time.Millisecond, time.Duration(hc.TimeoutMS)*time.Millisecond)
}

// Close stops every checker; later Installs do nothing.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, e := range s.entries {
		if e.checker != nil {
			e.checker.Stop()
			e.checker = nil
		}
	}
}
