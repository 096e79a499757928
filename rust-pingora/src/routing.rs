//! Routing decision over one config snapshot (docs/spec.md section 3, steps 2-4 and the
//! chain walk of step 6): the routing key ([`routing_key`]), its route ([`route`]), the
//! chain walk ([`select`]) and the concurrency limit ([`choose`]). Pure with respect to
//! I/O: within a placement the endpoint is chosen by its [`Balancer`] (Pingora's
//! `LoadBalancer::select_with`) with availability as the accept rule; it reads health and
//! breaker state and takes breaker permits and limiter slots, with the time passed in.

use crate::balance::Balancer;
use crate::breaker::{Breaker, Permit, State};
use crate::config::{Config, EndpointCfg, HashKey, Placement};
use crate::errcode::Code;
use crate::health::Health;
use crate::limit::{Limiter, Slot};
use pingora::upstreams::peer::HttpPeer;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use http::{HeaderMap, HeaderName, HeaderValue};
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// One endpoint of a placement in the current snapshot.
pub struct EndpointRt {
    /// The endpoint's config (url as written, parsed origin, weight).
    pub cfg: EndpointCfg,
    /// Endpoint health (shared across snapshots while its identity holds, spec §4).
    pub health: Arc<Health>,
    /// Endpoint breaker (shared across snapshots while its identity holds, spec §5).
    pub breaker: Arc<Breaker>,
    /// Peer template, or why it could not be built (then every connect fails).
    pub peer: Result<HttpPeer, String>,
    /// `Host` sent upstream (`host:port` of the endpoint); `None` if not a valid value.
    pub host: Option<HeaderValue>,
    /// `router_peer_requests_total{placement, endpoint}` child, created on first use.
    requests: OnceLock<IntCounter>,
}

impl EndpointRt {
    /// An endpoint runtime from its parts.
    pub fn new(cfg: EndpointCfg, health: Arc<Health>, breaker: Arc<Breaker>, peer: Result<HttpPeer, String>) -> Self {
        let host = HeaderValue::from_str(&cfg.origin.authority()).ok();
        EndpointRt { cfg, health, breaker, peer, host, requests: OnceLock::new() }
    }

    /// `router_peer_requests_total{placement=id, endpoint=url}` of `vec`.
    pub fn requests(&self, vec: &IntCounterVec, id: &str) -> &IntCounter {
        self.requests.get_or_init(|| vec.with_label_values(&[id, &self.cfg.url]))
    }
}

/// Everything the data plane needs about one placement of the current snapshot.
pub struct PlacementRt {
    /// The placement's validated config.
    pub cfg: Placement,
    /// Its endpoints, in config order (index = `EndpointIdx` of the balancer's backends).
    pub endpoints: Box<[EndpointRt]>,
    /// Endpoint selection (a Pingora `LoadBalancer`), kept across snapshots while the
    /// endpoint list (urls, weights) and `selection` are unchanged (spec §3).
    pub balancer: Arc<Balancer>,
    /// In-flight counter of this placement id.
    pub limiter: Arc<Limiter>,
    /// Per-request values prepared once per snapshot (header values, metric children).
    pub hot: PlacementHot,
}

impl PlacementRt {
    /// The placement is healthy while at least one endpoint is (spec §4).
    pub fn is_healthy(&self) -> bool {
        self.endpoints.iter().any(|e| e.health.is_healthy())
    }

    /// The aggregate breaker state (spec §5): closed if any endpoint's is, else half_open
    /// if any is, else open.
    pub fn breaker_state(&self, now: Instant) -> State {
        let states: Vec<State> = self.endpoints.iter().map(|e| e.breaker.state(now)).collect();
        if states.contains(&State::Closed) {
            State::Closed
        } else if states.contains(&State::HalfOpen) {
            State::HalfOpen
        } else {
            State::Open
        }
    }

    /// The first available endpoint the selection offers for `key`, skipping `tried`
    /// (spec §3 step 3 and 6): healthy first, then its breaker's admission, whose permit
    /// is returned with the endpoint's index. `None`: no endpoint available.
    pub fn pick(&self, key: &[u8], now: Instant, tried: &[usize]) -> Option<(usize, Permit)> {
        let permit = RefCell::new(None);
        let idx = self.balancer.select(key, |i| {
            if tried.contains(&i) {
                return false;
            }
            let ep = &self.endpoints[i];
            if !ep.health.is_healthy() {
                return false;
            }
            match ep.breaker.try_admit(now) {
                Some(p) => {
                    *permit.borrow_mut() = Some(p);
                    true
                }
                None => false,
            }
        })?;
        Some((idx, permit.into_inner().expect("an accepted endpoint holds a permit")))
    }
}

/// Values the request path would otherwise rebuild on every request: the `Host` and
/// `X-Router-Placement` header value and this placement's metric children (the
/// Prometheus label lookup is a hash + lock per call). Metric children are created
/// lazily, on first use, so `/metrics` shows a series only once a request produced it.
pub struct PlacementHot {
    /// `X-Router-Placement` (the placement id); `None` if not a valid value.
    pub placement: Option<HeaderValue>,
    duration: OnceLock<Histogram>,
    /// `router_requests_total{placement, status}` children, index = status - 100.
    requests: Box<[OnceLock<IntCounter>]>,
}

impl PlacementHot {
    /// Prepare the values of placement `cfg`.
    pub fn new(cfg: &Placement) -> Self {
        PlacementHot {
            placement: HeaderValue::from_str(&cfg.id).ok(),
            duration: OnceLock::new(),
            requests: (100..600).map(|_| OnceLock::new()).collect(),
        }
    }

    /// `router_request_duration_seconds{placement=id}` of `vec`.
    pub fn duration(&self, vec: &HistogramVec, id: &str) -> &Histogram {
        self.duration.get_or_init(|| vec.with_label_values(&[id]))
    }

    /// `router_requests_total{placement=id, status}` of `vec`; `None` for a status outside
    /// 100..=599 (the caller then uses the label lookup).
    pub fn requests(&self, vec: &IntCounterVec, id: &str, status: u16) -> Option<&IntCounter> {
        let slot = self.requests.get(usize::from(status).checked_sub(100)?)?;
        Some(slot.get_or_init(|| vec.with_label_values(&[id, &status.to_string()])))
    }
}

/// One immutable config snapshot with its runtime objects.
pub struct Snapshot {
    /// The validated config document.
    pub config: Arc<Config>,
    /// Placement id -> runtime.
    pub placements: HashMap<String, Arc<PlacementRt>>,
}

/// Result of walking a chain.
pub enum Selection {
    /// The first available placement, its chosen endpoint (index) and the permit of that
    /// endpoint's breaker.
    Chosen(Arc<PlacementRt>, usize, Permit),
    /// No placement in the walked part of the chain is available.
    Exhausted,
}

/// The bytes a placement hashes for `consistent_hash` (spec §3 *Endpoint selection*),
/// given its `hash_key`; called only for placements that have one.
pub type HashInput<'a> = &'a dyn Fn(&HashKey) -> Vec<u8>;

/// Walk the chain starting at `first` (inclusive): the first placement with an available
/// endpoint ([`PlacementRt::pick`]), with that endpoint. Every step past a placement is
/// pushed to `failovers` as `(from, to)`.
pub fn select(
    snap: &Snapshot,
    first: &str,
    now: Instant,
    failovers: &mut Vec<(String, String)>,
    hash_input: HashInput<'_>,
) -> Selection {
    let mut cur = snap.placements.get(first);
    let mut steps = 0;
    while let Some(p) = cur {
        steps += 1;
        let key = p.cfg.hash_key.as_ref().map(hash_input).unwrap_or_default();
        if let Some((ep, permit)) = p.pick(&key, now, &[]) {
            return Selection::Chosen(p.clone(), ep, permit);
        }
        if steps > crate::config::MAX_CHAIN {
            break; // validated configs never get here
        }
        match &p.cfg.fallback {
            Some(f) => {
                failovers.push((p.cfg.id.clone(), f.clone()));
                cur = snap.placements.get(f);
            }
            None => break,
        }
    }
    Selection::Exhausted
}

/// Step 4: take a concurrency slot on the chosen placement, or `None` at the limit.
pub fn acquire_slot(p: &PlacementRt) -> Option<Slot> {
    p.limiter.try_acquire(p.cfg.max_concurrency)
}

/// The routing-key request header.
pub const ROUTING_KEY: HeaderName = HeaderName::from_static("x-routing-key");

/// Step 2, the key: the first `X-Routing-Key` value, exactly as sent (not trimmed; bytes
/// that are not UTF-8 replaced, so they match no route). Borrowed when the value is UTF-8.
/// Absent or empty: [`Code::MissingRoutingKey`].
pub fn routing_key(headers: &HeaderMap) -> Result<Cow<'_, str>, Code> {
    match headers.get(ROUTING_KEY) {
        Some(v) if !v.is_empty() => Ok(String::from_utf8_lossy(v.as_bytes())),
        _ => Err(Code::MissingRoutingKey),
    }
}

/// Step 2, the route: the id of the first placement of `key`'s chain (exact,
/// case-sensitive match), or [`Code::UnknownRoutingKey`].
pub fn route<'s>(snap: &'s Snapshot, key: &str) -> Result<&'s str, Code> {
    snap.config.routes.get(key).map(String::as_str).ok_or(Code::UnknownRoutingKey)
}

/// Outcome of steps 3 and 4 from one placement of a chain.
pub enum Choice {
    /// The placement to proxy to, with its endpoint, breaker permit and concurrency slot.
    Ready {
        /// The chosen placement.
        placement: Arc<PlacementRt>,
        /// Index of the chosen endpoint in `placement.endpoints`.
        endpoint: usize,
        /// That endpoint's breaker permit (an outcome is recorded at the end of the attempt).
        permit: Permit,
        /// The placement's concurrency slot (released when dropped).
        slot: Slot,
    },
    /// The chosen placement is at `max_concurrency` (its permit was given back without an
    /// outcome): [`Code::ConcurrencyLimit`], naming that placement; no spill.
    AtLimit(Arc<PlacementRt>),
    /// No placement of the walked part of the chain is available: [`Code::NoHealthyUpstream`].
    Exhausted,
}

/// Steps 3 and 4 from `first`: [`select`], then [`acquire_slot`] on the chosen placement.
/// Failover steps are pushed to `failovers` as `(from, to)`.
pub fn choose(
    snap: &Snapshot,
    first: &str,
    now: Instant,
    failovers: &mut Vec<(String, String)>,
    hash_input: HashInput<'_>,
) -> Choice {
    match select(snap, first, now, failovers, hash_input) {
        Selection::Exhausted => Choice::Exhausted,
        Selection::Chosen(placement, endpoint, permit) => match acquire_slot(&placement) {
            Some(slot) => Choice::Ready { placement, endpoint, permit, slot },
            None => {
                drop(permit); // given back without an outcome
                Choice::AtLimit(placement)
            }
        },
    }
}
