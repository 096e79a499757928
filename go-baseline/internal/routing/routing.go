// Package routing is the pure routing decision of docs/spec.md section 3, steps 1 to 3:
// routing key to placement, then the first placement down the fallback chain with an
// available endpoint, in the order of the placement's endpoint selection.
// It does no I/O; the caller passes the current time.
package routing

import (
	"time"

	"pingora-parity/go-baseline/internal/breaker"
	"pingora-parity/go-baseline/internal/config"
	"pingora-parity/go-baseline/internal/errcode"
	"pingora-parity/go-baseline/internal/health"
	"pingora-parity/go-baseline/internal/limit"
	"pingora-parity/go-baseline/internal/selection"
)

// Peer is one endpoint of a placement with its live state. Health and Breaker may be
// shared with the previous snapshot's peer of the same placement id and url (identity
// rules in docs/spec.md section 4).
type Peer struct {
	// Index is the endpoint's position in the placement's config order.
	Index    int
	Endpoint config.WeightedEndpoint
	Health   *health.State    // nil: always healthy
	Breaker  *breaker.Breaker // nil: always admits
	// Upstream is the I/O side's per-endpoint state (transport etc.), opaque here.
	Upstream any
}

// URL is the endpoint's url exactly as written in the config (the metrics' and admin
// API's endpoint label).
func (p *Peer) URL() string { return p.Endpoint.Raw }

// Placement is one placement of a snapshot with its live state. Limiter (and the
// selector's round-robin position) may be shared with the previous snapshot's placement
// of the same id.
type Placement struct {
	ID     string
	Config *config.Placement
	// Peers are the endpoints in config order (one or more).
	Peers []*Peer
	// Selector orders the peers for a request (docs/spec.md section 3, "Endpoint
	// selection"); its indexes are positions in Peers.
	Selector *selection.Selector
	Limiter  *limit.Limiter
	// Chain is this placement followed by its fallbacks (at most 8 placements).
	Chain []*Placement
}

// Healthy is the placement's aggregate health: at least one peer healthy.
func (p *Placement) Healthy() bool {
	for _, q := range p.Peers {
		if q.Health.Healthy() {
			return true
		}
	}
	return false
}

// BreakerState is the placement's aggregate breaker state at now: closed if any peer's
// breaker is closed, else half_open if any is, else open.
func (p *Placement) BreakerState(now time.Time) breaker.State {
	best := breaker.Open
	for _, q := range p.Peers {
		switch q.Breaker.State(now) {
		case breaker.Closed:
			return breaker.Closed
		case breaker.HalfOpen:
			best = breaker.HalfOpen
		}
	}
	return best
}

// KeySource gives a request's consistent-hash key for a hash_key (docs/spec.md section
// 3, "Endpoint selection").
type KeySource interface {
	HashKey(k config.HashKey) string
}

// Tried is the set of a placement's endpoints (by Peer.Index) a request has tried.
type Tried [(selection.MaxBackends + 63) / 64]uint64

// Add marks endpoint i as tried.
func (t *Tried) Add(i int) { t[i/64] |= 1 << (i % 64) }

// Has reports whether endpoint i was tried.
func (t *Tried) Has(i int) bool { return t[i/64]&(1<<(i%64)) != 0 }

// Pick is one select of p's endpoint selection for a request (keys: its consistent-hash
// key): the first candidate not in tried that is available, healthy (checked first) and
// admitted by its breaker; the permit taken is returned. false: none.
func (p *Placement) Pick(keys KeySource, tried *Tried, now time.Time) (*Peer, breaker.Permit, bool) {
	key := ""
	if p.Config.Selection == config.ConsistentHash && keys != nil {
		key = keys.HashKey(p.Config.HashKey)
	}
	var permit breaker.Permit
	i, ok := p.Selector.Select(key, func(i int) bool {
		q := p.Peers[i]
		if (tried != nil && tried.Has(i)) || !q.Health.Healthy() {
			return false
		}
		var admitted bool
		permit, admitted = q.Breaker.Admit(now)
		return admitted
	})
	if !ok {
		return nil, breaker.Permit{}, false
	}
	return p.Peers[i], permit, true
}

// Snapshot is one applied config with the placements' live state. Immutable once built;
// requests keep the snapshot they started with.
type Snapshot struct {
	Config     *config.Config
	Placements map[string]*Placement
}

// NewSnapshot links placements (keyed by id, one per id of cfg) into chains.
func NewSnapshot(cfg *config.Config, placements map[string]*Placement) *Snapshot {
	for _, p := range placements {
		p.Chain = p.Chain[:0]
		for cur := p; ; {
			p.Chain = append(p.Chain, cur)
			if !cur.Config.HasFallback {
				break
			}
			cur = placements[cur.Config.Fallback]
		}
	}
	return &Snapshot{Config: cfg, Placements: placements}
}

// Step is one step down a chain, counted by router_failovers_total{from,to}.
type Step struct{ From, To string }

// Decision is the outcome of a selection. On success Placement and Peer are set, Index
// is the placement's position in Chain and Permit is the peer's breaker permit taken (to
// be given back by exactly one Record or Release). On failure Err is the
// router error (no_config, missing_routing_key, unknown_routing_key or
// no_healthy_upstream); on success it is 0.
type Decision struct {
	Placement *Placement
	Peer      *Peer
	Chain     []*Placement
	Index     int
	Permit    breaker.Permit
	Failovers []Step
	Err       errcode.Code
	// Decision is kept a multiple of 16 bytes (96 now, TestDecisionSize): at 88 bytes
	// the 16-byte moves that copy the result from SelectFrom through Select overlapped
	// the 8-byte tail and BenchmarkRoutingSelect took ~10 ns longer. Add padding here if
	// a field change breaks it.
}

// Select decides for routing key key (keys holds the header's values, only the first
// counts) over snapshot s at time now. req gives consistent-hash keys (nil: empty keys).
func Select(s *Snapshot, keys []string, req KeySource, now time.Time) Decision {
	if s == nil {
		return Decision{Err: errcode.NoConfig}
	}
	if len(keys) == 0 || keys[0] == "" {
		return Decision{Err: errcode.MissingRoutingKey}
	}
	id, ok := s.Config.Routes[keys[0]]
	if !ok {
		return Decision{Err: errcode.UnknownRoutingKey}
	}
	return SelectFrom(s.Placements[id].Chain, 0, req, now)
}

// SelectFrom walks chain from position from and picks the first placement with an
// available peer (one Placement.Pick each). Each step past a placement to the next is
// recorded in Failovers; with from > 0 the step from chain[from-1] (the placement just
// given up) to chain[from] is recorded too.
func SelectFrom(chain []*Placement, from int, req KeySource, now time.Time) Decision {
	d := Decision{Chain: chain, Err: errcode.NoHealthyUpstream}
	for i := from; i < len(chain); i++ {
		if i > 0 {
			d.Failovers = append(d.Failovers, Step{From: chain[i-1].ID, To: chain[i].ID})
		}
		p := chain[i]
		peer, permit, ok := p.Pick(req, nil, now)
		if !ok {
			continue
		}
		d.Placement, d.Peer, d.Index, d.Permit, d.Err = p, peer, i, permit, 0
		return d
	}
	return d
}
