// Package admin serves the admin HTTP API of docs/spec.md section 7: /healthz, /readyz,
// /admin/state and /metrics (the registry of package metrics).
package admin

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"pingora-parity/go-baseline/internal/metrics"
	"pingora-parity/go-baseline/internal/store"
)

// Impl is this router's name in /admin/state and in the control-plane hello.
const Impl = "go"

// PlacementState is one entry of /admin/state's "placements".
type PlacementState struct {
	Endpoint       string  `json:"endpoint"`
	Healthy        bool    `json:"healthy"`
	Breaker        string  `json:"breaker"`
	Inflight       int64   `json:"inflight"`
	MaxConcurrency int     `json:"max_concurrency"`
	Fallback       *string `json:"fallback"`
	// Selection is the placement's endpoint selection algorithm.
	Selection string `json:"selection"`
	// Endpoints are the placement's endpoints in config order.
	Endpoints []EndpointState `json:"endpoints"`
}

// EndpointState is one entry of a placement's "endpoints".
type EndpointState struct {
	URL     string `json:"url"`
	Weight  int    `json:"weight"`
	Healthy bool   `json:"healthy"`
	Breaker string `json:"breaker"`
}

// ControlPlaneState is /admin/state's "control_plane".
type ControlPlaneState struct {
	Connected  bool  `json:"connected"`
	Reconnects int64 `json:"reconnects"`
}

// State is the /admin/state document.
type State struct {
	Impl          string                    `json:"impl"`
	ConfigVersion *int64                    `json:"config_version"`
	ControlPlane  ControlPlaneState         `json:"control_plane"`
	Placements    map[string]PlacementState `json:"placements"`
}

// Snapshot computes the /admin/state document at time now.
func Snapshot(st *store.Store, now time.Time) State {
	s := State{Impl: Impl, Placements: map[string]PlacementState{}}
	s.ControlPlane.Connected, s.ControlPlane.Reconnects = st.ControlPlane()
	if snap := st.Load(); snap != nil {
		v := snap.Config.Version
		s.ConfigVersion = &v
		for id, p := range snap.Placements {
			ps := PlacementState{Endpoint: p.Config.Endpoint.Raw, Healthy: p.Healthy(),
				Breaker: p.BreakerState(now).String(), Inflight: p.Limiter.InFlight(),
				MaxConcurrency: p.Config.MaxConcurrency, Selection: p.Config.Selection.String()}
			for _, q := range p.Peers {
				ps.Endpoints = append(ps.Endpoints, EndpointState{URL: q.URL(), Weight: q.Endpoint.Weight,
					Healthy: q.Health.Healthy(), Breaker: q.Breaker.State(now).String()})
			}
			if p.Config.HasFallback {
				f := p.Config.Fallback
				ps.Fallback = &f
			}
			s.Placements[id] = ps
		}
	}
	return s
}

// Handler serves /healthz, /readyz, /admin/state (from st) and /metrics (m's registry).
func Handler(st *store.Store, m *metrics.Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if st.Load() == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"ready":false}`))
			return
		}
		_, _ = w.Write([]byte(`{"ready":true}`))
	})
	mux.HandleFunc("GET /admin/state", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Snapshot(st, time.Now()))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	return mux
}
