package selection

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"testing"

	"pingora-parity/go-baseline/internal/config"
)

func be(addr string, weight int) Backend {
	return Backend{Addr: netip.MustParseAddrPort(addr), Weight: weight}
}

func all(int) bool { return true }

func first(t *testing.T, s *Selector, key string) int {
	t.Helper()
	i, ok := s.Select(key, all)
	if !ok {
		t.Fatalf("no candidate for %q", key)
	}
	return i
}

// TestKetamaPingoraSample is pingora-load-balancing's selection/consistent.rs test_ketama:
// the same picks for test0..test9, before and after removing b3.
func TestKetamaPingoraSample(t *testing.T) {
	b1, b2, b3 := be("1.1.1.1:80", 1), be("1.0.0.1:80", 1), be("1.0.0.255:80", 1)
	s := New(config.ConsistentHash, []Backend{b1, b2, b3})
	want := []int{1, 0, 0, 0, 0, 2, 0, 2, 0, 1} // indexes: 0=b1 1=b2 2=b3
	for k, w := range want {
		if got := first(t, s, "test"+string(rune('0'+k))); got != w {
			t.Errorf("test%d: got backend %d, want %d", k, got, w)
		}
	}
	s = New(config.ConsistentHash, []Backend{b1, b2})
	want = []int{1, 0, 0, 0, 0, 1, 0, 0, 0, 1}
	for k, w := range want {
		if got := first(t, s, "test"+string(rune('0'+k))); got != w {
			t.Errorf("after removal test%d: got backend %d, want %d", k, got, w)
		}
	}
}

// TestRoundRobinPingoraSample is selection/weighted.rs test_round_robin's second half:
// b2 weight 8, backend order [b2, b3, b1], weighted [0 x8, 1, 2]; after 5 draws the
// first picks are b2, b2, b2, b3, b1, b2, b2.
func TestRoundRobinPingoraSample(t *testing.T) {
	b1, b2, b3 := be("1.1.1.1:80", 1), be("1.0.0.1:80", 8), be("1.0.0.255:80", 1)
	s := New(config.RoundRobin, []Backend{b1, b2, b3})
	s.counter.Store(5)
	for n, want := range []int{1, 1, 1, 2, 0, 1, 1} {
		if got := first(t, s, "test1"); got != want {
			t.Fatalf("request %d: got %d want %d", n, got, want)
		}
	}
}

// The stop rule: once every member was offered and refused, the select ends without
// more draws.
func TestStopRuleAndBound(t *testing.T) {
	s := New(config.RoundRobin, []Backend{be("127.0.0.1:1", 1)})
	if _, ok := s.Select("", func(int) bool { return false }); ok {
		t.Fatal("accepted")
	}
	if c := s.counter.Load(); c != 1 {
		t.Fatalf("counter %d after a refused single-member select", c)
	}
	s = New(config.RoundRobin, []Backend{be("127.0.0.1:1", 3), be("127.0.0.1:2", 1)})
	if s.MaxIterations() != 640 {
		t.Fatalf("max iterations %d", s.MaxIterations())
	}
}

func TestDuplicateAddressNeverChosen(t *testing.T) {
	s := New(config.RoundRobin, []Backend{be("127.0.0.1:1", 1), be("127.0.0.1:2", 1), be("127.0.0.1:1", 5)})
	for i := 0; i < 10; i++ {
		if got := first(t, s, ""); got == 2 {
			t.Fatal("the later duplicate was chosen")
		}
	}
}

func TestRandomDistribution(t *testing.T) {
	s := New(config.Random, []Backend{be("1.1.1.1:80", 1), be("1.0.0.1:80", 8), be("1.0.0.255:80", 1)})
	n := 0
	for i := 0; i < 10000; i++ {
		if first(t, s, "") == 1 {
			n++
		}
	}
	if n < 7000 || n > 9000 {
		t.Fatalf("weight-8 backend got %d of 10000", n)
	}
}

func TestBackendOrderV4BeforeV6(t *testing.T) {
	s := New(config.RoundRobin, []Backend{be("[::1]:1", 1), be("127.0.0.1:2", 1), be("10.0.0.1:9", 1)})
	if !slices.Equal(s.order, []int{2, 1, 0}) {
		t.Fatalf("order %v", s.order)
	}
}

// selectionVectors is spec/vectors/selection.json (format: /work/main's
// rust-pingora/tests/selection.rs header; docs/spec.md section 3).
type selectionVectors struct {
	Cases []struct {
		Name      string `json:"name"`
		Selection string `json:"selection"`
		Endpoints []struct {
			URL    string `json:"url"`
			Weight int    `json:"weight"`
		} `json:"endpoints"`
		Phases []struct {
			Down     []string   `json:"down"`
			Refuse   []string   `json:"refuse"`
			Requests int        `json:"requests"`
			Keys     []string   `json:"keys"`
			Expect   [][]string `json:"expect"`
		} `json:"phases"`
	} `json:"cases"`
}

// TestSelectionVectors runs every case of spec/vectors/selection.json (picks computed by
// Pingora's own LoadBalancer::select_with): per request, selects until an endpoint that
// does not refuse is found, each select refusing the down endpoints and those already
// tried; the list tried must be the expected one. Random cases are only those with at
// most one endpoint available, so their answers are determined.
func TestSelectionVectors(t *testing.T) {
	raw, err := os.ReadFile("../../../spec/vectors/selection.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs selectionVectors
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs.Cases) == 0 {
		t.Fatal("no cases")
	}
	algs := map[string]config.Selection{"round_robin": config.RoundRobin, "random": config.Random, "consistent_hash": config.ConsistentHash}
	for _, c := range vs.Cases {
		t.Run(c.Name, func(t *testing.T) {
			alg, ok := algs[c.Selection]
			if !ok {
				t.Fatalf("selection %q", c.Selection)
			}
			var bs []Backend
			var urls []string
			for _, e := range c.Endpoints {
				ep, ok := config.ParseEndpoint(e.URL)
				if !ok {
					t.Fatalf("url %q", e.URL)
				}
				bs = append(bs, Backend{Addr: netip.AddrPortFrom(netip.MustParseAddr(ep.Hostname()), uint16(ep.Port)), Weight: e.Weight})
				urls = append(urls, e.URL)
			}
			s := New(alg, bs)
			for pi, ph := range c.Phases {
				keys := ph.Keys
				if keys == nil {
					keys = make([]string, ph.Requests)
				}
				if len(keys) != len(ph.Expect) {
					t.Fatalf("phase %d: %d requests, %d expectations", pi, len(keys), len(ph.Expect))
				}
				for ri, key := range keys {
					var tried []string
					for {
						i, ok := s.Select(key, func(i int) bool {
							return !slices.Contains(ph.Down, urls[i]) && !slices.Contains(tried, urls[i])
						})
						if !ok {
							break
						}
						tried = append(tried, urls[i])
						if !slices.Contains(ph.Refuse, urls[i]) {
							break
						}
					}
					if want := ph.Expect[ri]; !slices.Equal(tried, want) && !(len(tried) == 0 && len(want) == 0) {
						t.Fatalf("phase %d request %d (key %q): tried %v, want %v", pi, ri, key, tried, want)
					}
				}
			}
		})
	}
}

// BenchmarkSelect: one select with every endpoint acceptable, for placements of 1, 4 and
// 16 endpoints (weights 1) under each algorithm: the selection's own cost per request.
func BenchmarkSelect(b *testing.B) {
	for _, alg := range []config.Selection{config.RoundRobin, config.Random, config.ConsistentHash} {
		for _, n := range []int{1, 4, 16} {
			var bs []Backend
			for i := 0; i < n; i++ {
				bs = append(bs, Backend{Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(9000+i)), Weight: 1})
			}
			s := New(alg, bs)
			b.Run(fmt.Sprintf("%s/%d", alg, n), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if _, ok := s.Select("user-12345", all); !ok {
						b.Fatal("none")
					}
				}
			})
		}
	}
}
