package store

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"pingora-parity/go-baseline/internal/config"
	"pingora-parity/go-baseline/internal/testwait"
)

func mustCfg(t *testing.T, doc string) *config.Config {
	t.Helper()
	c, err := config.Validate([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pdoc(version int, host string, interval int, failureThreshold int, max int) string {
	return fmt.Sprintf(`{"version":%d,"routes":{"k":"p"},"placements":{"p":{"endpoint":"http://%s","max_concurrency":%d,
	"timeouts":{"connect_ms":100,"request_ms":1000},
	"health_check":{"path":"/hc","interval_ms":%d,"timeout_ms":200,"unhealthy_threshold":1,"healthy_threshold":1},
	"circuit_breaker":{"failure_threshold":%d,"open_ms":60000,"half_open_max_requests":1,"success_threshold":1}}}}`,
		version, host, max, interval, failureThreshold)
}

func TestStateKeptOrResetAcrossUpdates(t *testing.T) {
	var probes atomic.Int64
	var healthy atomic.Bool
	var host string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probes.Add(1)
		if r.URL.Path != "/hc" || r.Host != host {
			t.Errorf("probe %s Host %s", r.URL.Path, r.Host)
		}
		if !healthy.Load() {
			w.WriteHeader(500)
		}
	}))
	defer up.Close()
	host = strings.TrimPrefix(up.URL, "http://")
	s := New()
	defer s.Close()
	s.Install(mustCfg(t, pdoc(1, host, 3600000, 1, 4)))
	if s.Checkers() != 1 {
		t.Fatalf("checkers %d", s.Checkers())
	}
	p := s.Load().Placements["p"]
	// The first probe runs at once and fails: threshold 1.
	testwait.For(t, "the first probe to mark the endpoint unhealthy", func() bool { return !p.Peers[0].Health.Healthy() })
	pm, _ := p.Peers[0].Breaker.Admit(time.Now())
	p.Peers[0].Breaker.Record(pm, false, time.Now()) // opens (threshold 1)
	if !p.Limiter.TryAcquire() {
		t.Fatal("limiter")
	}

	// Same endpoint, health_check and circuit_breaker, other max_concurrency: all state
	// kept, the checker not restarted (no new immediate probe), the in-flight count kept.
	before := probes.Load()
	s.Install(mustCfg(t, pdoc(2, host, 3600000, 1, 8)))
	q := s.Load().Placements["p"]
	if q.Peers[0].Health != p.Peers[0].Health || q.Peers[0].Breaker != p.Peers[0].Breaker || q.Limiter != p.Limiter {
		t.Fatal("state not kept across an update that keeps the placement")
	}
	if q.Limiter.Max() != 8 || q.Limiter.InFlight() != 1 || q.Peers[0].Health.Healthy() || q.Peers[0].Breaker.State(time.Now()).String() != "open" {
		t.Fatal("kept state changed")
	}
	if s.Checkers() != 1 || probes.Load() != before {
		t.Fatalf("checker restarted: %d checkers, %d new probes", s.Checkers(), probes.Load()-before)
	}

	// Other circuit_breaker: breaker fresh, health kept.
	s.Install(mustCfg(t, pdoc(3, host, 3600000, 2, 8)))
	r := s.Load().Placements["p"]
	if r.Peers[0].Breaker == p.Peers[0].Breaker || r.Peers[0].Breaker.State(time.Now()).String() != "closed" || r.Peers[0].Health != p.Peers[0].Health {
		t.Fatal("breaker identity rule")
	}
	// Other health_check: health fresh (healthy), a new checker probes at once.
	healthy.Store(true)
	s.Install(mustCfg(t, pdoc(4, host, 3000001, 2, 8)))
	h := s.Load().Placements["p"]
	if h.Peers[0].Health == p.Peers[0].Health || !h.Peers[0].Health.Healthy() || h.Peers[0].Breaker != r.Peers[0].Breaker || s.Checkers() != 1 {
		t.Fatal("health identity rule")
	}
	// Many updates never grow the number of checkers.
	for v := 5; v < 50; v++ {
		s.Install(mustCfg(t, pdoc(v, host, 3000000+v, 1, 8)))
	}
	if s.Checkers() != 1 {
		t.Fatalf("%d checkers after 45 updates", s.Checkers())
	}
	// Removing the health check stops the checker.
	s.Install(mustCfg(t, `{"version":99,"routes":{},"placements":{"p":{"endpoint":"http://`+host+`","max_concurrency":1,"timeouts":{"connect_ms":1,"request_ms":1}}}}`))
	if s.Checkers() != 0 {
		t.Fatal("checker of a removed health_check still running")
	}
}

// Per-endpoint identity: adding and removing endpoints keeps the state of the others;
// the checkers follow the number of endpoints; a weight change keeps state and checker.
func TestEndpointIdentityAcrossUpdates(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	host := strings.TrimPrefix(up.URL, "http://")
	mk := func(version int, eps string) *config.Config {
		return mustCfg(t, fmt.Sprintf(`{"version":%d,"routes":{},"placements":{"p":{"endpoints":[%s],"max_concurrency":4,
		"timeouts":{"connect_ms":100,"request_ms":1000},
		"health_check":{"path":"/hc","interval_ms":3600000,"timeout_ms":200,"unhealthy_threshold":1,"healthy_threshold":1},
		"circuit_breaker":{"failure_threshold":1,"open_ms":60000,"half_open_max_requests":1,"success_threshold":1}}}}`, version, eps))
	}
	a := `{"url":"http://` + host + `"}`
	b := `{"url":"http://127.0.0.1:9"}`
	s := New()
	defer s.Close()
	s.Install(mk(1, a+","+b))
	if s.Checkers() != 2 {
		t.Fatalf("checkers %d", s.Checkers())
	}
	p := s.Load().Placements["p"]
	pa, pb := p.Peers[0], p.Peers[1]
	pm, _ := pa.Breaker.Admit(time.Now())
	pa.Breaker.Record(pm, false, time.Now())
	// b removed, c added, a's weight changed: a keeps health and breaker.
	c := `{"url":"http://127.0.0.1:10","weight":3}`
	s.Install(mk(2, `{"url":"http://`+host+`","weight":5},`+c))
	q := s.Load().Placements["p"]
	if q.Peers[0].Breaker != pa.Breaker || q.Peers[0].Health != pa.Health || q.Peers[0].Endpoint.Weight != 5 {
		t.Fatal("a's state not kept")
	}
	if q.Peers[1].Breaker == pb.Breaker || q.Peers[1].URL() != "http://127.0.0.1:10" || s.Checkers() != 2 {
		t.Fatal("c is fresh")
	}
	if q.Selector == p.Selector {
		t.Fatal("selection kept although the endpoint list changed")
	}
	s.Install(mk(3, `{"url":"http://`+host+`","weight":5},`+c))
	if s.Load().Placements["p"].Selector != q.Selector {
		t.Fatal("selection not kept for the same endpoint list")
	}
	s.Install(mk(4, a))
	if s.Checkers() != 1 {
		t.Fatalf("checkers %d after removing an endpoint", s.Checkers())
	}
}

// TestPoolOutlivesRemoval: an endpoint that leaves the config and comes back finds its
// upstream pool (the same Transport, so its idle connections), as Pingora's pool keyed by
// peer and group key does; other timeouts or another placement id are another pool
// (docs/spec.md section 1, "Pool identity"). Found by parity chaos: Pingora reused (and,
// on a reset after delivery, retried) where Go had dialled afresh.
func TestPoolOutlivesRemoval(t *testing.T) {
	mk := func(version int, ep string, requestMS int) *config.Config {
		return mustCfg(t, fmt.Sprintf(`{"version":%d,"routes":{"k":"p"},"placements":{"p":{"endpoint":"http://%s","max_concurrency":4,
		"timeouts":{"connect_ms":100,"request_ms":%d}},"q":{"endpoint":"http://127.0.0.1:7","max_concurrency":4,
		"timeouts":{"connect_ms":100,"request_ms":%d}}}}`, version, ep, requestMS, requestMS))
	}
	s := New()
	defer s.Close()
	s.Install(mk(1, "127.0.0.1:7", 1000))
	first := s.Load().Placements["p"].Peers[0].Upstream
	if first == s.Load().Placements["q"].Peers[0].Upstream {
		t.Fatal("two placements share a pool (Pingora's group key includes the placement id)")
	}
	s.Install(mk(2, "127.0.0.1:8", 1000))
	if s.Load().Placements["p"].Peers[0].Upstream == first {
		t.Fatal("another endpoint got the old pool")
	}
	s.Install(mk(3, "127.0.0.1:7", 1000))
	if s.Load().Placements["p"].Peers[0].Upstream != first {
		t.Fatal("the endpoint came back without its pool")
	}
	s.Install(mk(4, "127.0.0.1:7", 2000))
	if s.Load().Placements["p"].Peers[0].Upstream == first {
		t.Fatal("other timeouts kept the pool")
	}
	if len(s.pools) != 3 {
		t.Fatalf("pools %d, want 3 (p:7 with the new timeouts, p:8 unused, q:7)", len(s.pools))
	}
}

// The placement's protocol is part of the pool identity (docs/spec.md section 4): h2 is
// another pool, and absent and "http/1.1" are the same one.
func TestPoolIdentityIncludesProtocol(t *testing.T) {
	mk := func(version int, protocol string) *config.Config {
		return mustCfg(t, fmt.Sprintf(`{"version":%d,"routes":{"k":"p"},"placements":{"p":{"endpoint":"https://127.0.0.1:7","max_concurrency":4,
		"timeouts":{"connect_ms":100,"request_ms":1000}%s}}}`, version, protocol))
	}
	s := New()
	defer s.Close()
	s.Install(mk(1, ""))
	first := s.Load().Placements["p"].Peers[0].Upstream
	s.Install(mk(2, `,"protocol":"http/1.1"`))
	if s.Load().Placements["p"].Peers[0].Upstream != first {
		t.Fatal(`"protocol": "http/1.1" written out started another pool`)
	}
	s.Install(mk(3, `,"protocol":"h2"`))
	if s.Load().Placements["p"].Peers[0].Upstream == first {
		t.Fatal("protocol h2 kept the HTTP/1.1 pool")
	}
}
