//! Endpoint selection within one placement (docs/spec.md §3 "Endpoint selection";
//! the exact algorithm, for the Go router to reproduce, is in /work/notes/s2/lb-algorithms.md
//! and spec/vectors/selection.json).
//!
//! A [`Balancer`] is one Pingora `LoadBalancer` per placement and config snapshot, over
//! static backends (one `Backend` per endpoint: its socket address, its `weight`, and in
//! `Backend::ext` an [`EndpointIdx`], the endpoint's position in the config), with the
//! selection algorithm of the placement's `selection`:
//!
//! | `selection` | Pingora selector |
//! |---|---|
//! | `round_robin` | `selection::RoundRobin` (`Weighted<algorithms::RoundRobin>`) |
//! | `random` | `selection::Random` (`Weighted<algorithms::Random>`) |
//! | `consistent_hash` | `selection::Consistent` (`KetamaHashing`, pingora-ketama) |
//!
//! Availability (health, breaker, endpoints already tried by this request) is not Pingora's
//! health state: it is decided by the router's `accept` closure of
//! `LoadBalancer::select_with` (see [`Balancer::select`]). A balancer is built once per
//! config snapshot, so a round-robin counter starts at 0 at every config load.

use pingora::lb::discovery::Static;
use pingora::lb::selection::{Consistent, Random, RoundRobin};
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr as PSocketAddr;
use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;

/// Ring points per unit of weight in Ketama (`pingora_ketama::DEFAULT_POINT_MULTIPLE`, as
/// nginx's `hash ... consistent`).
pub const KETAMA_POINTS_PER_WEIGHT: usize = 160;

/// A placement's `selection` (spec §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SelectionKind {
    /// `round_robin` (the default): Pingora's weighted round robin.
    #[default]
    RoundRobin,
    /// `random`: Pingora's weighted random.
    Random,
    /// `consistent_hash`: Ketama consistent hashing over `hash_key`.
    ConsistentHash,
}

impl SelectionKind {
    /// Every selection, in spec order.
    pub const ALL: [SelectionKind; 3] = [SelectionKind::RoundRobin, SelectionKind::Random, SelectionKind::ConsistentHash];

    /// The config / admin name (`"round_robin"`, `"random"`, `"consistent_hash"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            SelectionKind::RoundRobin => "round_robin",
            SelectionKind::Random => "random",
            SelectionKind::ConsistentHash => "consistent_hash",
        }
    }

    /// Parse a config name; `None` for any other string.
    pub fn parse(s: &str) -> Option<SelectionKind> {
        SelectionKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for SelectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `Backend::ext` value: index of the endpoint in its placement's `endpoints`
/// (config order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointIdx(pub usize);

enum Lb {
    RoundRobin(LoadBalancer<RoundRobin>),
    Random(LoadBalancer<Random>),
    Consistent(LoadBalancer<Consistent>),
}

/// One placement's selection: a Pingora `LoadBalancer` over its endpoints.
pub struct Balancer {
    lb: Lb,
    /// Distinct backends in the selector (endpoints with a unique address).
    members: usize,
    /// The endpoint index when there is exactly one member: every algorithm can only offer
    /// it, so [`Balancer::select`] asks `accept` directly (same answer, no iterator).
    single: Option<usize>,
    /// `max_iterations` passed to `select_with`: 160 × the sum of the members' weights.
    max_iterations: usize,
}

fn build<S>(set: BTreeSet<Backend>) -> LoadBalancer<S>
where
    S: pingora::lb::selection::BackendSelection + 'static,
    S::Iter: pingora::lb::selection::BackendIter,
{
    use futures_util::FutureExt;
    let lb = LoadBalancer::<S>::from_backends(Backends::new(Static::new(set)));
    // Static discovery never awaits: the first update builds the selector now.
    lb.update().now_or_never().expect("static discovery is ready").expect("static discovery cannot fail");
    lb
}

impl Balancer {
    /// Build the selection of `kind` over `endpoints` = (address, weight) in config order.
    ///
    /// An endpoint whose address equals an earlier endpoint's takes no part in selection
    /// (Pingora's backends are identified by address). Weights are 1..=1000 (validated).
    pub fn new(kind: SelectionKind, endpoints: &[(SocketAddr, usize)]) -> Balancer {
        let mut seen = BTreeSet::new();
        let mut set = BTreeSet::new();
        let mut total_weight = 0usize;
        for (i, &(addr, weight)) in endpoints.iter().enumerate() {
            if !seen.insert(addr) {
                continue;
            }
            let mut b = Backend { addr: PSocketAddr::Inet(addr), weight, ext: Default::default() };
            b.ext.insert(EndpointIdx(i));
            set.insert(b);
            total_weight += weight;
        }
        let members = set.len();
        let single = if members == 1 { set.first().and_then(|b| b.ext.get::<EndpointIdx>()).map(|i| i.0) } else { None };
        let lb = match kind {
            SelectionKind::RoundRobin => Lb::RoundRobin(build(set)),
            SelectionKind::Random => Lb::Random(build(set)),
            SelectionKind::ConsistentHash => Lb::Consistent(build(set)),
        };
        Balancer { lb, members, single, max_iterations: KETAMA_POINTS_PER_WEIGHT * total_weight }
    }

    /// The `max_iterations` bound given to `select_with` (160 × total weight).
    pub fn max_iterations(&self) -> usize {
        self.max_iterations
    }

    /// The first endpoint the selection yields for `key` that `accept(index)` takes, by
    /// `LoadBalancer::select_with(key, max_iterations, ..)`; `None` when none does.
    ///
    /// `key` only matters for `consistent_hash`. Pingora offers each distinct backend at
    /// most once; once all members were offered and refused, the walk stops (the closure
    /// accepts the last one with a "refused" mark, so Ketama does not walk the rest of its
    /// ring and round robin does not advance its counter further). `accept` is called at
    /// most once per endpoint, in the selection's order. A placement with one member skips
    /// the iterator (Pingora could only offer that one).
    pub fn select(&self, key: &[u8], accept: impl Fn(usize) -> bool) -> Option<usize> {
        if let Some(only) = self.single {
            return accept(only).then_some(only);
        }
        let offered = Cell::new(0usize);
        let exhausted = Cell::new(false);
        let f = |b: &Backend, _pingora_health: bool| {
            let idx = b.ext.get::<EndpointIdx>().expect("every backend carries its index").0;
            if accept(idx) {
                return true;
            }
            offered.set(offered.get() + 1);
            if offered.get() >= self.members {
                exhausted.set(true);
                return true;
            }
            false
        };
        let got = match &self.lb {
            Lb::RoundRobin(lb) => lb.select_with(key, self.max_iterations, f),
            Lb::Random(lb) => lb.select_with(key, self.max_iterations, f),
            Lb::Consistent(lb) => lb.select_with(key, self.max_iterations, f),
        };
        if exhausted.get() {
            return None;
        }
        got.map(|b| b.ext.get::<EndpointIdx>().expect("every backend carries its index").0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(list: &[(&str, usize)]) -> Vec<(SocketAddr, usize)> {
        list.iter().map(|(a, w)| (a.parse().unwrap(), *w)).collect()
    }

    #[test]
    fn names_round_trip() {
        for k in SelectionKind::ALL {
            assert_eq!(SelectionKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(SelectionKind::parse("least_conn"), None);
    }

    /// Weights 1:2:1 give the weighted list in address order, one entry per request.
    #[test]
    fn round_robin_weighted_sequence() {
        let b = Balancer::new(SelectionKind::RoundRobin, &eps(&[("127.0.0.1:3", 1), ("127.0.0.1:2", 2), ("127.0.0.1:1", 1)]));
        let seq: Vec<_> = (0..8).map(|_| b.select(b"", |_| true).unwrap()).collect();
        // address order: :1 (idx 2), :2 (idx 1, weight 2), :3 (idx 0)
        assert_eq!(seq, vec![2, 1, 1, 0, 2, 1, 1, 0]);
    }

    #[test]
    fn none_available_is_none_and_duplicates_are_dropped() {
        let b = Balancer::new(SelectionKind::ConsistentHash, &eps(&[("127.0.0.1:1", 1), ("127.0.0.1:1", 5), ("127.0.0.1:2", 1)]));
        assert_eq!(b.members, 2);
        assert_eq!(b.select(b"k", |_| false), None);
        let only = b.select(b"k", |i| i == 2);
        assert_eq!(only, Some(2));
    }
}
