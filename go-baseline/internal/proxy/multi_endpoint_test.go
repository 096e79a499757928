package proxy

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"pingora-parity/go-baseline/internal/config"
)

// namedUpstream answers 200 with X-Upstream-Name: name.
func namedUpstream(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream-Name", name)
		_, _ = w.Write([]byte(name))
	}))
	t.Cleanup(s.Close)
	return s
}

// pool is a placement over endpoints (host:port), each "weight" given, with extra JSON
// members appended.
func pool(weights map[string]int, order []string, extra string) string {
	var eps []string
	for _, hp := range order {
		eps = append(eps, fmt.Sprintf(`{"url":"http://%s","weight":%d}`, hp, weights[hp]))
	}
	return fmt.Sprintf(`{"endpoints":[%s],"max_concurrency":16,"timeouts":{"connect_ms":200,"request_ms":2000}%s}`,
		strings.Join(eps, ","), extra)
}

func served(t *testing.T, r *router, key string, hdr ...string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", r.url+"/x", nil)
	req.Header.Set("X-Routing-Key", key)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d %s (%s)", resp.StatusCode, resp.Header.Get("X-Router-Error"), body)
	}
	return resp.Header.Get("X-Upstream-Name")
}

// The weighted round-robin order follows the endpoints' socket addresses (Pingora's
// backend order), whatever the config order: weights 1:2:1 over three ports give
// lowest, middle, middle, highest by port.
func TestWeightedRoundRobinSequence(t *testing.T) {
	ups := []*httptest.Server{namedUpstream(t, "a"), namedUpstream(t, "b"), namedUpstream(t, "c")}
	byPort := map[string]string{}
	var hps []string
	for i, u := range ups {
		hps = append(hps, hostPort(u.URL))
		byPort[hostPort(u.URL)] = string(rune('a' + i))
	}
	weights := map[string]int{hps[0]: 1, hps[1]: 2, hps[2]: 1}
	r := newRouter(t, doc(`"k":"p"`, `"p":`+pool(weights, []string{hps[2], hps[0], hps[1]}, "")))
	sorted := append([]string(nil), hps...)
	for i := range sorted { // by port number
		for j := i + 1; j < len(sorted); j++ {
			if portOf(sorted[j]) < portOf(sorted[i]) {
				sorted[i], sorted[j] = sorted[j], sorted[i]
			}
		}
	}
	var want []string
	for _, hp := range sorted {
		for w := 0; w < weights[hp]; w++ {
			want = append(want, byPort[hp])
		}
	}
	for round := 0; round < 3; round++ {
		for i, w := range want {
			if got := served(t, r, "k"); got != w {
				t.Fatalf("round %d request %d: %s, want %s (sequence %v)", round, i, got, w, want)
			}
		}
	}
}

func portOf(hp string) int {
	var p int
	fmt.Sscanf(hp[strings.LastIndexByte(hp, ':')+1:], "%d", &p)
	return p
}

// A connect failure on one endpoint of a bodiless request moves to the next endpoint of
// the same placement (no client error, no failover counted), with a breaker failure and
// a connect failure for that endpoint only.
func TestRetryWithinPlacement(t *testing.T) {
	a := namedUpstream(t, "a")
	dead := deadAddr(t)
	weights := map[string]int{hostPort(a.URL): 1, dead: 1}
	cb := `,"circuit_breaker":{"failure_threshold":2,"open_ms":60000,"half_open_max_requests":1,"success_threshold":1}`
	r := newRouter(t, doc(`"k":"p"`, `"p":`+pool(weights, []string{dead, hostPort(a.URL)}, cb)))
	for i := 0; i < 6; i++ {
		if got := served(t, r, "k"); got != "a" {
			t.Fatalf("request %d served by %q", i, got)
		}
	}
	deadURL, aURL := "http://"+dead, a.URL
	// The dead endpoint was tried until its breaker opened (2 failures), then skipped.
	if n := testutil.ToFloat64(r.metrics.PeerFailures.WithLabelValues("p", deadURL, "connect")); n != 2 {
		t.Fatalf("peer connect failures %v", n)
	}
	if n := counter(t, r, "failures", "p", "connect"); n != 2 {
		t.Fatalf("placement connect failures %v", n)
	}
	if n := testutil.ToFloat64(r.metrics.PeerRequests.WithLabelValues("p", aURL)); n != 6 {
		t.Fatalf("peer requests of a %v", n)
	}
	if n := testutil.ToFloat64(r.metrics.PeerRequests.WithLabelValues("p", deadURL)); n != 0 {
		t.Fatalf("peer requests of the dead endpoint %v", n)
	}
	p := r.store.Load().Placements["p"]
	now := time.Now()
	if s := p.Peers[0].Breaker.State(now).String(); s != "open" {
		t.Fatalf("dead endpoint breaker %s", s)
	}
	if s := p.Peers[1].Breaker.State(now).String(); s != "closed" || p.BreakerState(now).String() != "closed" {
		t.Fatalf("sibling breaker %s, aggregate %s", s, p.BreakerState(now))
	}
	if n := testutil.CollectAndCount(r.metrics.Failovers); n != 0 {
		t.Fatalf("%d failover series", n)
	}
}

// With a body the request is not retried: 502 after the first endpoint's connect failure.
func TestNoRetryWithinPlacementWithBody(t *testing.T) {
	a := namedUpstream(t, "a")
	dead := deadAddr(t)
	r := newRouter(t, doc(`"k":"p"`, `"p":`+pool(map[string]int{dead: 1, hostPort(a.URL): 1}, []string{dead, hostPort(a.URL)}, "")))
	// Round robin starts at the lower port; send until a request meets the dead endpoint.
	sawDead := false
	for i := 0; i < 4; i++ {
		req, _ := http.NewRequest("POST", r.url+"/x", strings.NewReader("body"))
		req.Header.Set("X-Routing-Key", "k")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode == 502 {
			sawDead = true
			if resp.Header.Get("X-Router-Error") != "upstream_connect_failed" {
				t.Fatalf("error %q", resp.Header.Get("X-Router-Error"))
			}
		}
	}
	if !sawDead {
		t.Fatal("no request with a body met the dead endpoint")
	}
}

// All endpoints down: the chain moves to the fallback placement.
func TestAllEndpointsDownFallback(t *testing.T) {
	fb := namedUpstream(t, "fb")
	dead := deadAddrs(t, 2)
	d1, d2 := dead[0], dead[1]
	r := newRouter(t, doc(`"k":"p"`, `"p":`+pool(map[string]int{d1: 1, d2: 3}, []string{d1, d2}, `,"fallback":"q"`),
		`"q":`+placement(hostPort(fb.URL), "", 4, 2000, "")))
	if got := served(t, r, "k"); got != "fb" {
		t.Fatalf("served by %q", got)
	}
	if n := counter(t, r, "failovers", "p", "q"); n != 1 {
		t.Fatalf("failovers %v", n)
	}
	if n := counter(t, r, "failures", "p", "connect"); n != 2 {
		t.Fatalf("connect failures %v (each endpoint once)", n)
	}
}

// consistent_hash on a header: the same value always lands on the same endpoint, and
// removing one of four endpoints moves only the keys that lived on it.
func TestConsistentHashStickyAndMinimalMove(t *testing.T) {
	names := []string{"a", "b", "c", "d"}
	var hps []string
	weights := map[string]int{}
	byHP := map[string]string{}
	for _, n := range names {
		u := namedUpstream(t, n)
		hps = append(hps, hostPort(u.URL))
		weights[hostPort(u.URL)] = 1
		byHP[hostPort(u.URL)] = n
	}
	ch := `,"selection":"consistent_hash","hash_key":"header:X-User"`
	r := newRouter(t, doc(`"k":"p"`, `"p":`+pool(weights, hps, ch)))
	const keys = 200
	before := map[string]string{}
	for i := 0; i < keys; i++ {
		k := fmt.Sprintf("user-%d", i)
		before[k] = served(t, r, "k", "X-User", k)
		if again := served(t, r, "k", "x-user", k); again != before[k] {
			t.Fatalf("%s: %s then %s", k, before[k], again)
		}
	}
	cfg := doc(`"k":"p"`, `"p":`+pool(weights, hps[:3], ch))
	installDoc(t, r, strings.Replace(cfg, `"version":1`, `"version":2`, 1))
	removed := byHP[hps[3]]
	moved := 0
	for k, was := range before {
		now := served(t, r, "k", "X-User", k)
		if now != was {
			moved++
			if was != removed {
				t.Fatalf("%s moved from %s (not the removed %s) to %s", k, was, removed, now)
			}
		}
	}
	// Minimal movement, exactly: every key of the removed endpoint moved, no other key did
	// (checked above). How many keys that is depends on the ring points of this run's
	// ports (Ketama hashes ip NUL port), so a share bound such as 1/N + 5 % is a property
	// of many rings, not of one: with 4 endpoints and 200 keys it failed about 1 run in 12.
	// The spread over rings is the scenario multi-endpoint-consistent-hash's (8 endpoints).
	onRemoved := 0
	for _, was := range before {
		if was == removed {
			onRemoved++
		}
	}
	if moved != onRemoved {
		t.Fatalf("%d of %d keys moved, %d lived on the removed endpoint", moved, keys, onRemoved)
	}
}

// One endpoint's breaker opens while its sibling keeps the placement closed and healthy.
func TestPerEndpointBreakerAggregate(t *testing.T) {
	a := namedUpstream(t, "a")
	dead := deadAddr(t)
	cb := `,"circuit_breaker":{"failure_threshold":1,"open_ms":60000,"half_open_max_requests":1,"success_threshold":1}`
	r := newRouter(t, doc(`"k":"p"`, `"p":`+pool(map[string]int{dead: 1, hostPort(a.URL): 2}, []string{hostPort(a.URL), dead}, cb)))
	for i := 0; i < 4; i++ {
		served(t, r, "k")
	}
	p := r.store.Load().Placements["p"]
	if p.Peers[1].Breaker.State(time.Now()).String() != "open" || p.BreakerState(time.Now()).String() != "closed" || !p.Healthy() {
		t.Fatal("per-endpoint breaker / aggregate")
	}
}

// installDoc validates and installs doc on r's store.
func installDoc(t *testing.T, r *router, doc string) {
	t.Helper()
	cfg, err := config.Validate([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	r.store.Install(cfg)
}
