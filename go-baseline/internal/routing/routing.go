// Package routing is the pure routing decision of docs/spec.md section 3, steps 1 to 3:
// routing key to placement, then the first available placement down the fallback chain.
// It does no I/O; the caller passes the current time.
package routing

import (
	"time"

	"pingora-parity/go-baseline/internal/breaker"
	"pingora-parity/go-baseline/internal/config"
	"pingora-parity/go-baseline/internal/errcode"
	"pingora-parity/go-baseline/internal/health"
	"pingora-parity/go-baseline/internal/limit"
)

// Placement is one placement of a snapshot with its live state. Health, Breaker and
// Limiter may be shared with the previous snapshot's placement of the same id (identity
// rules in docs/spec.md section 4).
type Placement struct {
	ID      string
	Config  *config.Placement
	Health  *health.State    // nil: always healthy
	Breaker *breaker.Breaker // nil: always admits
	Limiter *limit.Limiter
	// Chain is this placement followed by its fallbacks (at most 8 placements).
	Chain []*Placement
	// Upstream is the I/O side's per-placement state (transport etc.), opaque here.
	Upstream any
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

// Decision is the outcome of a selection. On success Placement is set, Index is its
// position in Chain and Permit is the breaker permit taken (to be given back by exactly
// one Record or Release). On failure Err is the router error (no_config,
// missing_routing_key, unknown_routing_key or no_healthy_upstream); on success it is 0.
type Decision struct {
	Placement *Placement
	Chain     []*Placement
	Index     int
	Permit    breaker.Permit
	Failovers []Step
	Err       errcode.Code
	// _ keeps Decision at 96 bytes, a multiple of 16. At 88 bytes (since Err became a
	// one-byte Code) the 16-byte moves that copy the result from SelectFrom through
	// Select overlapped the 8-byte tail and BenchmarkRoutingSelect took ~10 ns longer.
	_ [8]byte
}

// Select decides for routing key key (keys holds the header's values, only the first
// counts) over snapshot s at time now.
func Select(s *Snapshot, keys []string, now time.Time) Decision {
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
	return SelectFrom(s.Placements[id].Chain, 0, now)
}

// SelectFrom walks chain from position from and picks the first available placement:
// healthy (checked first) and admitted by its breaker. Each step past a placement to the
// next is recorded in Failovers; with from > 0 the step from chain[from-1] (the placement
// just given up) to chain[from] is recorded too.
func SelectFrom(chain []*Placement, from int, now time.Time) Decision {
	d := Decision{Chain: chain, Err: errcode.NoHealthyUpstream}
	for i := from; i < len(chain); i++ {
		if i > 0 {
			d.Failovers = append(d.Failovers, Step{From: chain[i-1].ID, To: chain[i].ID})
		}
		p := chain[i]
		if !p.Health.Healthy() {
			continue
		}
		permit, ok := p.Breaker.Admit(now)
		if !ok {
			continue
		}
		d.Placement, d.Index, d.Permit, d.Err = p, i, permit, 0
		return d
	}
	return d
}
