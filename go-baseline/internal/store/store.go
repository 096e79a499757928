// Package store holds the router's state in one owned value: the current routing
// snapshot behind an atomic pointer, and Install, which turns a validated config into a
// new snapshot: it keeps health and breaker state per endpoint across updates by the
// identity rules of docs/spec.md section 4, reuses upstream pools, and starts and stops the
// health checkers so that there is always exactly one per endpoint of each placement with
// a health_check. It also holds
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
	"pingora-parity/go-baseline/internal/selection"
	"pingora-parity/go-baseline/internal/upstream"
)

// entry is the live state kept per placement id between snapshots.
type entry struct {
	cfg      *config.Placement
	limiter  *limit.Limiter
	selector *selection.Selector
	peers    []*peerEntry // config order
}

// peerEntry is the live state kept per endpoint (placement id + url) between snapshots.
type peerEntry struct {
	ep      config.WeightedEndpoint
	health  *health.State
	breaker *breaker.Breaker
	up      *upstream.Upstream
	checker *health.Checker
}

// pooled is an upstream pool the store keeps by pool identity (placement id + endpoint
// url), also while no placement uses it, so that an endpoint removed and added again
// within upstream.IdleConnTimeout finds its idle connections, as Pingora's connection
// pool (keyed by peer and group key, not by config version) does (docs/spec.md section 1,
// "Pool identity"). cfg and ep are what up was built for.
type pooled struct {
	cfg    *config.Placement
	ep     config.Endpoint
	up     *upstream.Upstream
	unused time.Time // zero while a placement of the current config uses it
}

// Store is the router's state, owned by one value per router: the current snapshot, the
// per-placement state kept across updates, the running health checkers and the
// control-plane session status. Load and ControlPlane are lock-free; Install is
// serialised.
type Store struct {
	cur     atomic.Pointer[routing.Snapshot]
	mu      sync.Mutex
	entries map[string]*entry
	pools   map[string]*pooled // by placement id + "\x00" + endpoint url
	closed  bool

	cpConnected  atomic.Bool  // a control-plane WebSocket session is up
	cpReconnects atomic.Int64 // successful control-plane connections after the first
}

// New returns an empty store (no config: requests get no_config).
func New() *Store { return &Store{entries: map[string]*entry{}, pools: map[string]*pooled{}} }

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

// Checkers returns the number of running health checkers (one per endpoint of each
// placement with a health_check).
func (s *Store) Checkers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.entries {
		for _, pe := range e.peers {
			if pe.checker != nil {
				n++
			}
		}
	}
	return n
}

// Install builds a snapshot for the validated cfg and swaps it in atomically. Per
// endpoint (docs/spec.md section 4): health state is kept when placement id, url and
// health_check are the same; breaker state when id, url and circuit_breaker are the
// same; the upstream pool when the endpoint, timeouts and tls are the same, also when the
// endpoint left the config and came back within upstream.IdleConnTimeout (s.pools). Per
// placement id: the in-flight count always; the selection (round-robin position) when
// the endpoint list (urls and weights, in order) and the algorithm are the same.
func (s *Store) Install(cfg *config.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	next := make(map[string]*entry, len(cfg.Placements))
	kept := map[*upstream.Upstream]bool{}
	var retiredNow []*upstream.Upstream // pools replaced by one of other settings
	for id, pc := range cfg.Placements {
		old := s.entries[id]
		e := &entry{cfg: pc}
		if old != nil {
			e.limiter = old.limiter
			e.limiter.SetMax(pc.MaxConcurrency)
		} else {
			e.limiter = limit.New(pc.MaxConcurrency)
		}
		if old != nil && sameSelection(old.cfg, pc) {
			e.selector = old.selector
		} else {
			e.selector = newSelector(pc)
		}
		for _, ep := range pc.Endpoints {
			var op *peerEntry
			if old != nil {
				for _, c := range old.peers {
					if c.ep.Raw == ep.Raw {
						op = c
						break
					}
				}
			}
			pe := &peerEntry{ep: ep}
			if op != nil && config.SameHealthCheck(old.cfg.HealthCheck, pc.HealthCheck) {
				pe.health = op.health
			} else {
				pe.health = health.NewState(pc.HealthCheck)
			}
			if op != nil && config.SameCircuitBreaker(old.cfg.CircuitBreaker, pc.CircuitBreaker) {
				pe.breaker = op.breaker
			} else {
				pe.breaker = breaker.New(pc.CircuitBreaker)
			}
			key := id + "\x00" + ep.Raw
			if pl := s.pools[key]; pl != nil && upstream.Same(pl.cfg, pl.ep, pc, ep.Endpoint) {
				pe.up = pl.up
				pl.unused = time.Time{}
			} else {
				pe.up = upstream.New(pc, ep.Endpoint)
				if pl != nil {
					retiredNow = append(retiredNow, pl.up)
				}
				s.pools[key] = &pooled{cfg: pc, ep: ep.Endpoint, up: pe.up}
			}
			kept[pe.up] = true
			// The checker survives when it probes the same thing into the same state.
			if op != nil && op.checker != nil && pe.health == op.health && pe.up == op.up {
				pe.checker = op.checker
				op.checker = nil
			} else if pc.HealthCheck != nil {
				pe.checker = startChecker(pc.HealthCheck, pe)
			}
			e.peers = append(e.peers, pe)
		}
		next[id] = e
	}
	for _, old := range s.entries {
		for _, op := range old.peers {
			if op.checker != nil {
				op.checker.Stop()
			}
		}
	}
	// A pool no placement uses any more stays (its idle connections close after
	// IdleConnTimeout by themselves) until it has been unused that long.
	retired := retiredNow
	now := time.Now()
	for key, pl := range s.pools {
		switch {
		case kept[pl.up]:
		case pl.unused.IsZero():
			pl.unused = now
		case now.Sub(pl.unused) >= upstream.IdleConnTimeout:
			retired = append(retired, pl.up)
			delete(s.pools, key)
		}
	}
	placements := make(map[string]*routing.Placement, len(next))
	for id, e := range next {
		p := &routing.Placement{ID: id, Config: e.cfg, Selector: e.selector, Limiter: e.limiter}
		for i, pe := range e.peers {
			p.Peers = append(p.Peers, &routing.Peer{Index: i, Endpoint: pe.ep, Health: pe.health,
				Breaker: pe.breaker, Upstream: pe.up})
		}
		placements[id] = p
	}
	s.entries = next
	s.cur.Store(routing.NewSnapshot(cfg, placements))
	for _, u := range retired {
		u.Close()
	}
}

// sameSelection reports whether a placement's selector can be kept: the same endpoints
// (urls and weights, in order) and the same algorithm.
func sameSelection(a, b *config.Placement) bool {
	if a.Selection != b.Selection || len(a.Endpoints) != len(b.Endpoints) {
		return false
	}
	for i := range a.Endpoints {
		if a.Endpoints[i].Raw != b.Endpoints[i].Raw || a.Endpoints[i].Weight != b.Endpoints[i].Weight {
			return false
		}
	}
	return true
}

// newSelector builds a placement's selection over its endpoints' addresses
// (upstream.Resolve) and weights.
func newSelector(pc *config.Placement) *selection.Selector {
	bs := make([]selection.Backend, len(pc.Endpoints))
	for i, ep := range pc.Endpoints {
		bs[i] = selection.Backend{Addr: upstream.Resolve(ep.Endpoint), Weight: ep.Weight}
	}
	return selection.New(pc.Selection, bs)
}

func startChecker(hc *config.HealthCheck, pe *peerEntry) *health.Checker {
	url := pe.ep.Scheme + "://" + pe.ep.HostPort() + hc.Path
	return health.Start(pe.health, health.HTTPProbe(pe.up.Probe, url),
		time.Duration(hc.IntervalMS)*time.Millisecond, time.Duration(hc.TimeoutMS)*time.Millisecond)
}

// Close stops every checker; later Installs do nothing.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, e := range s.entries {
		for _, pe := range e.peers {
			if pe.checker != nil {
				pe.checker.Stop()
				pe.checker = nil
			}
		}
	}
}
