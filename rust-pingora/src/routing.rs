//! Routing decision over one config snapshot (docs/spec.md section 3, steps 2-4 and the
//! chain walk of step 6): the routing key ([`routing_key`]), its route ([`route`]), the
//! chain walk ([`select`]) and the concurrency limit ([`choose`]). Pure with respect to
//! I/O: it reads health and breaker state and takes breaker permits and limiter slots,
//! with the time passed in.

use crate::breaker::{Breaker, Permit};
use crate::config::{Config, Placement};
use crate::errcode::Code;
use crate::health::Health;
use crate::limit::{Limiter, Slot};
use pingora::upstreams::peer::HttpPeer;
use std::borrow::Cow;
use std::collections::HashMap;
use http::{HeaderMap, HeaderName, HeaderValue};
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Everything the data plane needs about one placement of the current snapshot.
pub struct PlacementRt {
    /// The placement's validated config.
    pub cfg: Placement,
    /// Endpoint health (shared across snapshots while its identity holds).
    pub health: Arc<Health>,
    /// Breaker (shared across snapshots while its identity holds).
    pub breaker: Arc<Breaker>,
    /// In-flight counter of this placement id.
    pub limiter: Arc<Limiter>,
    /// Peer template, or why it could not be built (then every connect fails).
    pub peer: Result<HttpPeer, String>,
    /// Per-request values prepared once per snapshot (header values, metric children).
    pub hot: PlacementHot,
}

/// Values the request path would otherwise rebuild on every request: the `Host` and
/// `X-Router-Placement` header values and this placement's metric children (the
/// Prometheus label lookup is a hash + lock per call). Metric children are created
/// lazily, on first use, so `/metrics` shows a series only once a request produced it.
pub struct PlacementHot {
    /// `Host` sent upstream (`host:port` of the endpoint); `None` if not a valid value.
    pub host: Option<HeaderValue>,
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
            host: HeaderValue::from_str(&cfg.endpoint.authority()).ok(),
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
    /// The first available placement and the breaker permit it granted.
    Chosen(Arc<PlacementRt>, Permit),
    /// No placement in the walked part of the chain is available.
    Exhausted,
}

/// Walk the chain starting at `first` (inclusive): the first placement whose endpoint is
/// healthy and whose breaker admits (health first; an unhealthy placement's breaker is not
/// asked). Every step past a placement is pushed to `failovers` as `(from, to)`.
pub fn select(
    snap: &Snapshot,
    first: &str,
    now: Instant,
    failovers: &mut Vec<(String, String)>,
) -> Selection {
    let mut cur = snap.placements.get(first);
    let mut steps = 0;
    while let Some(p) = cur {
        steps += 1;
        if p.health.is_healthy() {
            if let Some(permit) = p.breaker.try_admit(now) {
                return Selection::Chosen(p.clone(), permit);
            }
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
    /// The placement to proxy to, with its breaker permit and concurrency slot.
    Ready {
        /// The chosen placement.
        placement: Arc<PlacementRt>,
        /// Its breaker permit (an outcome is recorded at the end of the exchange).
        permit: Permit,
        /// Its concurrency slot (released when dropped).
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
pub fn choose(snap: &Snapshot, first: &str, now: Instant, failovers: &mut Vec<(String, String)>) -> Choice {
    match select(snap, first, now, failovers) {
        Selection::Exhausted => Choice::Exhausted,
        Selection::Chosen(placement, permit) => match acquire_slot(&placement) {
            Some(slot) => Choice::Ready { placement, permit, slot },
            None => {
                drop(permit); // given back without an outcome
                Choice::AtLimit(placement)
            }
        },
    }
}
