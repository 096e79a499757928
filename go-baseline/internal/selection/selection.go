// Package selection picks a placement's endpoint for a request the way the Pingora
// router's pingora-load-balancing 0.9.1 does (docs/spec.md section 3, "Endpoint
// selection"), so that the same request sequence picks the same endpoints in both
// routers:
//
//   - backend order: Pingora keeps backends in a BTreeSet<Backend>, ordered by socket
//     address (IPv4 before IPv6, then the address, then the port), then by weight;
//   - round_robin and random: Weighted<RoundRobin> / Weighted<Random>
//     (selection/weighted.rs): the first candidate comes from the weighted list (each
//     backend's position repeated weight times), later ones from the plain backend list,
//     each with a fresh draw from the algorithm;
//   - consistent_hash: KetamaHashing over pingora-ketama's Continuum V1 (160 points per
//     unit of weight, CRC-32 points and key hash), nginx's `hash ... consistent`;
//   - iteration: UniqueIterator (selection/mod.rs) skips candidates already offered and
//     stops after 160 x total weight steps, or once every member was offered and refused.
//
// The exact algorithms are written out in docs/spec.md
// section 3 and checked against spec/vectors/selection.json (computed by Pingora's own
// code).
//
// It does no I/O: addresses are resolved by the caller.
package selection

import (
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strconv"
	"sync/atomic"

	"pingora-parity/go-baseline/internal/config"
)

// PointsPerWeight is pingora-ketama's DEFAULT_POINT_MULTIPLE: ring points per unit of
// weight (Version::V1).
const PointsPerWeight = 160

// MaxBackends is the most backends a Selector takes: config.MaxEndpoints.
const MaxBackends = config.MaxEndpoints

// Backend is one endpoint as the selection sees it.
type Backend struct {
	// Addr is the endpoint's socket address (its IP resolved by the caller): the
	// backend order and the Ketama points are computed from it.
	Addr netip.AddrPort
	// Weight is 1 ..= 1000.
	Weight int
}

// point is one Ketama ring point: its hash and the backend (position in backend order)
// it belongs to.
type point struct {
	hash uint32
	node uint16
}

// Selector is the built selection of one placement: immutable but for the round-robin
// counter. Safe for concurrent use.
type Selector struct {
	alg config.Selection
	// order maps a member's position in backend order to the index the backend was given
	// in (config order). A backend with the same address as an earlier one (config
	// order) is no member: never chosen.
	order   []int
	maxIter int
	// weighted lists backend-order positions, each repeated weight times.
	weighted []uint16
	ring     []point
	counter  atomic.Uint64 // Pingora RoundRobin's AtomicUsize
}

// New builds the selector of algorithm alg over backends (given in config order; Iter
// yields indexes into this slice). It panics on an empty slice or more than
// MaxBackends backends.
func New(alg config.Selection, backends []Backend) *Selector {
	if len(backends) == 0 || len(backends) > MaxBackends {
		panic("selection.New: need 1 ..= MaxBackends backends")
	}
	s := &Selector{alg: alg}
	total := 0
	for i, b := range backends {
		dup := false
		for _, j := range s.order {
			dup = dup || backends[j].Addr == b.Addr
		}
		if !dup {
			s.order = append(s.order, i)
			total += b.Weight
		}
	}
	s.maxIter = PointsPerWeight * total
	sort.SliceStable(s.order, func(a, b int) bool {
		return backendLess(backends[s.order[a]], backends[s.order[b]])
	})
	switch alg {
	case config.ConsistentHash:
		s.ring = buildRing(backends, s.order)
	default:
		for pos, i := range s.order {
			for w := 0; w < backends[i].Weight; w++ {
				s.weighted = append(s.weighted, uint16(pos))
			}
		}
	}
	return s
}

// backendLess is Rust's derived Ord of pingora's Backend {addr, weight}: std's
// SocketAddr order (V4 before V6; then the IP; then the port; a V6 address's flowinfo
// and scope are zero here), then the weight.
func backendLess(a, b Backend) bool {
	aa, ba := a.Addr.Addr(), b.Addr.Addr()
	if aa.Is4() != ba.Is4() {
		return aa.Is4()
	}
	if c := aa.Compare(ba); c != 0 {
		return c < 0
	}
	if a.Addr.Port() != b.Addr.Port() {
		return a.Addr.Port() < b.Addr.Port()
	}
	return a.Weight < b.Weight
}

// buildRing is pingora-ketama's Continuum::new_with_version(V1): per backend in backend
// order, base = "<ip>\x00<port>" (the IP as Rust's Display prints it), point k's hash is
// CRC-32 of base ++ le32(hash of point k-1) (0 for the first); then points sorted by hash,
// of equal hashes only the first kept.
func buildRing(backends []Backend, order []int) []point {
	total := 0
	for _, i := range order {
		total += backends[i].Weight * PointsPerWeight
	}
	ring := make([]point, 0, total)
	for pos, i := range order {
		b := backends[i]
		base := []byte(rustIP(b.Addr.Addr()) + "\x00" + strconv.Itoa(int(b.Addr.Port())))
		baseCRC := crc32.ChecksumIEEE(base)
		var prev uint32
		buf := make([]byte, 4)
		for k := 0; k < b.Weight*PointsPerWeight; k++ {
			binary.LittleEndian.PutUint32(buf, prev)
			c := crc32.Update(baseCRC, crc32.IEEETable, buf)
			ring = append(ring, point{hash: c, node: uint16(pos)})
			prev = c
		}
	}
	// Rust's sort_unstable leaves the order of equal hashes unspecified; ties (2^-32 per
	// pair) are broken by backend position here.
	sort.Slice(ring, func(a, b int) bool {
		if ring[a].hash != ring[b].hash {
			return ring[a].hash < ring[b].hash
		}
		return ring[a].node < ring[b].node
	})
	out := ring[:0]
	for _, p := range ring {
		if len(out) > 0 && out[len(out)-1].hash == p.hash {
			continue
		}
		out = append(out, p)
	}
	return out
}

// rustIP prints an address as Rust's std::net::IpAddr Display does: dotted IPv4, and
// RFC 5952 text for IPv6 (an IPv4-mapped address as ::ffff:a.b.c.d), which is what
// netip.Addr.String gives for addresses without a zone.
func rustIP(a netip.Addr) string { return a.String() }

// Select is one LoadBalancer::select_with(key, MaxIterations(), accept) of the Pingora
// router (docs/spec.md section 3, "Endpoint selection"): it walks the algorithm's
// candidates (UniqueIterator: repeats skipped but counted as steps, the inner iterator
// advanced before the step bound is checked) and returns the first one accept takes, as
// an index into the backends given to New. It stops with false after MaxIterations
// steps, or as soon as the n-th distinct member has been offered and refused (the
// router's stop rule, so an all-refused select costs O(n) and draws no further from the
// round-robin counter). key is the consistent_hash key (ignored by the other
// algorithms). A fresh select takes a fresh first draw: a retry after a connect failure
// is a new Select whose accept refuses the endpoints already tried.
func (s *Selector) Select(key string, accept func(i int) bool) (int, bool) {
	it := walk{s: s, first: true}
	if s.alg == config.ConsistentHash {
		it.ring = s.nodeIdx(crc32.ChecksumIEEE([]byte(key)))
	} else {
		it.index = s.draw() // WeightedIterator::new
	}
	var seen [(MaxBackends + 63) / 64]uint64
	steps, distinct := 0, 0
	for {
		pos := it.candidate()
		if steps >= s.maxIter {
			return 0, false
		}
		steps++
		if seen[pos/64]&(1<<(pos%64)) != 0 {
			continue
		}
		seen[pos/64] |= 1 << (pos % 64)
		distinct++
		if i := s.order[pos]; accept(i) {
			return i, true
		}
		if distinct == len(s.order) {
			return 0, false
		}
	}
}

// MaxIterations is select_with's max_iterations: 160 times the members' total weight,
// at least the Ketama ring's length, so a walk can reach every member.
func (s *Selector) MaxIterations() int { return s.maxIter }

// walk is the algorithm's iterator for one select: WeightedIterator (round_robin,
// random) or OwnedNodeIterator (consistent_hash).
type walk struct {
	s     *Selector
	index uint64 // WeightedIterator's index seed
	first bool
	ring  int // OwnedNodeIterator's position
}

// draw is SelectionAlgorithm::next: RoundRobin's fetch_add(1), Random's random u64.
func (s *Selector) draw() uint64 {
	if s.alg == config.Random {
		return rand.Uint64()
	}
	return s.counter.Add(1) - 1
}

// nodeIdx is VersionedRing::node_idx: the first point whose hash is >= h, wrapping to 0.
func (s *Selector) nodeIdx(h uint32) int {
	i := sort.Search(len(s.ring), func(i int) bool { return s.ring[i].hash >= h })
	if i == len(s.ring) {
		return 0
	}
	return i
}

// candidate is BackendIter::next: a member position (backend order).
func (it *walk) candidate() int {
	s := it.s
	if s.alg == config.ConsistentHash {
		p := s.ring[it.ring]
		it.ring = (it.ring + 1) % len(s.ring)
		return int(p.node)
	}
	if it.first {
		it.first = false
		return int(s.weighted[it.index%uint64(len(s.weighted))])
	}
	it.index = s.draw()
	return int(it.index % uint64(len(s.order)))
}
