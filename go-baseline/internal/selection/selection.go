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
//     stops after MaxIterations steps.
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

// MaxIterations bounds one request's walk over a placement's candidates, as the Pingora
// router's select_with(key, MaxIterations, accept); a repeated candidate counts as a step.
const MaxIterations = 256

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
	// order maps a position in backend order to the index the backend was given in
	// (config order).
	order []int
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
	s := &Selector{alg: alg, order: make([]int, len(backends))}
	for i := range s.order {
		s.order[i] = i
	}
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
	for _, b := range backends {
		total += b.Weight * PointsPerWeight
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

// Iter is one request's walk over a placement's candidates (Pingora's UniqueIterator
// over the algorithm's iterator). The zero Iter yields nothing.
type Iter struct {
	s     *Selector
	index uint64 // WeightedIterator's index seed
	first bool
	ring  int // KetamaHashing's OwnedNodeIterator position
	steps int
	seen  [(MaxBackends + 63) / 64]uint64
}

// Iter starts a walk for key (the consistent_hash key's bytes; ignored by the other
// algorithms). Starting a round_robin walk takes one draw from the counter, as
// WeightedIterator::new does.
func (s *Selector) Iter(key string) Iter {
	it := Iter{s: s, first: true}
	switch s.alg {
	case config.ConsistentHash:
		it.ring = s.nodeIdx(crc32.ChecksumIEEE([]byte(key)))
	default:
		it.index = s.draw()
	}
	return it
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

// candidate is the algorithm iterator's next (BackendIter::next): a backend-order
// position.
func (it *Iter) candidate() int {
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

// Next returns the next candidate not offered before in this walk, as an index into the
// backends given to New, or false when the walk is over (MaxIterations steps taken).
// As UniqueIterator::get_next, the algorithm's iterator is advanced before the step
// bound is checked (so a round_robin walk that ends still took its draw).
func (it *Iter) Next() (int, bool) {
	if it.s == nil {
		return 0, false
	}
	for {
		pos := it.candidate()
		if it.steps >= MaxIterations {
			return 0, false
		}
		it.steps++
		if it.seen[pos/64]&(1<<(pos%64)) == 0 {
			it.seen[pos/64] |= 1 << (pos % 64)
			return it.s.order[pos], true
		}
	}
}
