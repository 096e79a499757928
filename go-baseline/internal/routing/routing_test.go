package routing

import (
	"net/netip"
	"os"
	"reflect"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"pingora-parity/go-baseline/internal/breaker"
	"pingora-parity/go-baseline/internal/config"
	"pingora-parity/go-baseline/internal/errcode"
	"pingora-parity/go-baseline/internal/health"
	"pingora-parity/go-baseline/internal/limit"
	"pingora-parity/go-baseline/internal/selection"
)

var t0 = time.Unix(1_700_000_000, 0)

// build makes a snapshot with fresh state for every placement of doc.
func build(t testing.TB, doc []byte) *Snapshot {
	t.Helper()
	cfg, err := config.Validate(doc)
	if err != nil {
		t.Fatal(err)
	}
	ps := map[string]*Placement{}
	for id, pc := range cfg.Placements {
		p := &Placement{ID: id, Config: pc, Limiter: limit.New(pc.MaxConcurrency)}
		bs := make([]selection.Backend, len(pc.Endpoints))
		for i, ep := range pc.Endpoints {
			p.Peers = append(p.Peers, &Peer{Index: i, Endpoint: ep, Health: health.NewState(pc.HealthCheck),
				Breaker: breaker.New(pc.CircuitBreaker)})
			bs[i] = selection.Backend{Addr: netip.AddrPortFrom(netip.MustParseAddr(ep.Hostname()), uint16(ep.Port)), Weight: ep.Weight}
		}
		p.Selector = selection.New(pc.Selection, bs)
		ps[id] = p
	}
	return NewSnapshot(cfg, ps)
}

func benchDoc(t testing.TB) []byte {
	b, err := os.ReadFile("../../../spec/bench-config.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSelectErrors(t *testing.T) {
	s := build(t, benchDoc(t))
	if d := sel(nil, []string{"tenant-a"}, t0); d.Err != errcode.NoConfig {
		t.Fatalf("nil snapshot: %d", d.Err)
	}
	if d := sel(s, nil, t0); d.Err != errcode.MissingRoutingKey {
		t.Fatalf("no key: %d", d.Err)
	}
	if d := sel(s, []string{""}, t0); d.Err != errcode.MissingRoutingKey {
		t.Fatalf("empty key: %d", d.Err)
	}
	if d := sel(s, []string{"Tenant-a"}, t0); d.Err != errcode.UnknownRoutingKey {
		t.Fatalf("case-sensitive key: %d", d.Err)
	}
	if d := sel(s, []string{" tenant-a"}, t0); d.Err != errcode.UnknownRoutingKey {
		t.Fatalf("white space is part of the key: %d", d.Err)
	}
	if d := sel(s, []string{"tenant-b", "tenant-a"}, t0); d.Placement == nil || d.Placement.ID != "b" {
		t.Fatal("first header value must decide")
	}
}

func unhealthy(p *Placement) {
	for i := 0; i < 10; i++ {
		p.Peers[0].Health.Record(false)
	}
}

func trip(p *Placement, now time.Time) {
	for i := 0; i < 5; i++ {
		pm, _ := p.Peers[0].Breaker.Admit(now)
		p.Peers[0].Breaker.Record(pm, false, now)
	}
}

// sel is Select with no consistent-hash keys.
func sel(s *Snapshot, keys []string, now time.Time) Decision {
	return Select(s, keys, nil, now)
}

func TestFailoverDownTheChain(t *testing.T) {
	s := build(t, benchDoc(t))
	a, b, c := s.Placements["a"], s.Placements["b"], s.Placements["c"]
	if d := sel(s, []string{"tenant-a"}, t0); d.Placement != a || len(d.Failovers) != 0 {
		t.Fatalf("want a without failover, got %+v", d)
	}
	unhealthy(a)
	d := sel(s, []string{"tenant-a"}, t0)
	if d.Placement != b || !reflect.DeepEqual(d.Failovers, []Step{{"a", "b"}}) {
		t.Fatalf("want b after one failover, got %v %v", d.Placement.ID, d.Failovers)
	}
	trip(b, t0)
	d = sel(s, []string{"tenant-a"}, t0)
	if d.Placement != c || d.Index != 2 || !reflect.DeepEqual(d.Failovers, []Step{{"a", "b"}, {"b", "c"}}) {
		t.Fatalf("want c, got %+v", d)
	}
	trip(c, t0)
	d = sel(s, []string{"tenant-a"}, t0)
	if d.Err != errcode.NoHealthyUpstream || d.Placement != nil {
		t.Fatalf("want no_healthy_upstream, got %+v", d)
	}
	// open_ms later b is half-open with one permit: the first request takes it, the
	// next one finds c half-open too.
	later := t0.Add(time.Second)
	d1 := sel(s, []string{"tenant-a"}, later)
	d2 := sel(s, []string{"tenant-a"}, later)
	d3 := sel(s, []string{"tenant-a"}, later)
	if d1.Placement != b || d2.Placement != c || d3.Err != errcode.NoHealthyUpstream {
		t.Fatalf("half-open permits: %v %v %v", d1.Placement, d2.Placement, d3.Err)
	}
}

func TestUnhealthyBreakerNotAsked(t *testing.T) {
	s := build(t, benchDoc(t))
	a := s.Placements["a"]
	trip(a, t0)
	unhealthy(a)
	later := t0.Add(time.Second) // a's breaker half-open with one permit
	sel(s, []string{"tenant-a"}, later)
	a.Peers[0].Health.Record(true)
	a.Peers[0].Health.Record(true)
	if d := sel(s, []string{"tenant-a"}, later); d.Placement != a {
		t.Fatal("selection of an unhealthy placement took its half-open permit")
	}
}

func TestSelectFromContinuesAfterFailed(t *testing.T) {
	s := build(t, benchDoc(t))
	chain := s.Placements["a"].Chain
	d := SelectFrom(chain, 1, nil, t0)
	if d.Placement.ID != "b" || !reflect.DeepEqual(d.Failovers, []Step{{"a", "b"}}) {
		t.Fatalf("%+v", d)
	}
	d = SelectFrom(chain, 3, nil, t0)
	if d.Err != errcode.NoHealthyUpstream || len(d.Failovers) != 0 {
		t.Fatalf("past the end: %+v", d)
	}
}

// BenchmarkRoutingSelect: spec/bench-config.json, key "tenant-a", everything healthy and
// closed (a closed-state permit needs no outcome, so the breaker stays as it is).
func BenchmarkRoutingSelect(b *testing.B) {
	s := build(b, benchDoc(b))
	keys := []string{"tenant-a"}
	now := t0
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		d := Select(s, keys, nil, now)
		if d.Placement == nil {
			b.Fatal(d.Err)
		}
	}
}

// BenchmarkValidateSwap: validate spec/bench-config.json from its bytes and publish the
// result with one atomic pointer store.
func BenchmarkValidateSwap(b *testing.B) {
	doc := benchDoc(b)
	var cur atomic.Pointer[config.Config]
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for i := 0; i < b.N; i++ {
		cfg, err := config.Validate(doc)
		if err != nil {
			b.Fatal(err)
		}
		cur.Store(cfg)
	}
}

// Decision stays a multiple of 16 bytes (see its padding field).
func TestDecisionSize(t *testing.T) {
	if n := unsafe.Sizeof(Decision{}); n%16 != 0 {
		t.Fatalf("Decision is %d bytes", n)
	}
}
