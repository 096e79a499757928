//! The generated half of `parity chaos`: the world every schedule runs in (upstreams,
//! placement ids, routing keys), the configs ([`ConfigSpec`], drawn from the shapes of
//! `spec/config.schema.json`: single endpoints, weighted multi-endpoint pools, fallback
//! chains, breakers, health checks, concurrency limits) and the events of a schedule
//! ([`Event`]). A schedule is a pure function of `(seed, case index)` ([`generate`]):
//! each case draws from its own ChaCha stream, so a case is the same whatever ran
//! before it.
//!
//! Events are *absolute* ("upstream u2 answers 500", "toxic black hole on u1", "push this
//! config with the version raised by 2"), so any subset of a schedule is again a valid
//! schedule: the shrinker ([`super::shrink`]) drops events freely and the model
//! ([`super::model`]) renders whatever is left.
use proptest::prelude::Rng;
use proptest::test_runner::{RngAlgorithm, TestRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Upstreams the probes reach (each behind its own Toxiproxy proxy), by index.
pub const UPSTREAMS: [&str; 4] = ["u0", "u1", "u2", "u3"];
/// The load's upstream: never faulted, not proxied; answers after [`LOAD_DELAY_MS`].
pub const LOAD_UPSTREAM: &str = "ld";
/// How long the load upstream takes per answer, ms (so a background load spans the event).
pub const LOAD_DELAY_MS: u64 = 20;
/// Routing keys the probes send; each may be routed or not.
pub const KEYS: [&str; 5] = ["k0", "k1", "k2", "k3", "k4"];
/// A key no config routes (always 404).
pub const UNROUTED_KEY: &str = "kx";
/// The load's key, always routed to [`LOAD_PLACEMENT`].
pub const LOAD_KEY: &str = "load";
/// The load's placement.
pub const LOAD_PLACEMENT: &str = "pl";
/// Single-endpoint placement ids.
pub const SINGLES: [&str; 4] = ["p0", "p1", "p2", "p3"];
/// The multi-endpoint pool's id.
pub const POOL: &str = "pp";
/// `connect_ms` of the probed placements.
pub const CONNECT_MS: u64 = 200;
/// `request_ms` of the probed placements; a slow upstream answers after [`SLOW_MS`].
pub const REQUEST_MS: u64 = 300;
/// Delay of a `slow` upstream, ms (above [`REQUEST_MS`]: 504).
pub const SLOW_MS: u64 = 700;
/// Breaker `open_ms`: longer than any case, so an open breaker stays open for the rest
/// of its case (the half-open timing is the scripted scenarios' business).
pub const OPEN_MS: u64 = 600_000;

/// One placement of a generated config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementSpec {
    /// Endpoints: index into [`UPSTREAMS`] and weight (a single-endpoint placement has
    /// one, written as `endpoint`).
    pub endpoints: Vec<(usize, u32)>,
    /// Written as `endpoints` (a pool) rather than `endpoint`.
    pub pool: bool,
    /// Health-checked (interval 50 ms, timeout 200 ms, unhealthy after 2, healthy after 1).
    pub health_check: bool,
    /// Circuit breaker `failure_threshold` (only on single-endpoint placements).
    pub breaker: Option<u32>,
    /// Fallback placement id (always a later id in [`ORDER`]: chains never cycle).
    pub fallback: Option<String>,
    /// `max_concurrency`.
    pub max_concurrency: u32,
}

/// Placement ids in the order fallbacks may point (only forward).
pub const ORDER: [&str; 5] = ["pp", "p0", "p1", "p2", "p3"];

/// A generated config without its version (given when the push is rendered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSpec {
    /// Routing key → placement id (the load key excluded: always `pl`).
    pub routes: BTreeMap<String, String>,
    /// Placements by id (the load placement excluded).
    pub placements: BTreeMap<String, PlacementSpec>,
    /// `max_concurrency` of the load placement (1: a load of 2 meets the limit).
    pub load_max_concurrency: u32,
}

/// What an upstream does with requests (its `/healthz` always answers 200).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Behaviour {
    /// 200.
    Ok,
    /// 500.
    Status500,
    /// 200 after [`SLOW_MS`] (past `request_ms`: 504).
    Slow,
    /// Reads the request, resets the connection.
    Reset,
    /// The port is closed (behind its proxy: connections accepted then closed).
    Down,
}

/// A network fault on the proxy in front of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Toxic {
    /// 40 ms latency each way (below every timeout: changes nothing but timing).
    Latency,
    /// Toxiproxy `timeout` 0 on the upstream stream: a black hole.
    BlackHole,
    /// Toxiproxy `reset_peer` 0: connections reset once data flows.
    ResetPeer,
    /// The proxy disabled: connections refused.
    Disabled,
}

/// An invalid push and the nack it must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Invalid {
    /// A top-level key the schema does not define: `unknown_field` at `/zz_chaos`.
    UnknownField,
    /// `max_concurrency: 0` in the first placement: `invalid_value`.
    BadValue,
    /// A route to a placement that does not exist: `unknown_placement`.
    UnknownPlacement,
    /// A lower version (or the same version with other content): `stale_version`.
    Stale,
    /// Padded over 1 MiB: `too_large`.
    TooLarge,
}

/// One event of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A valid config, version raised by `bump` (1..=3).
    Push { config: ConfigSpec, bump: u64 },
    /// An invalid push.
    PushInvalid(Invalid),
    /// An upstream changes behaviour.
    Upstream { up: usize, behaviour: Behaviour },
    /// A toxic on an upstream's proxy (`None`: every toxic removed, proxy enabled).
    Toxic { up: usize, toxic: Option<Toxic> },
    /// The control plane closes the router's connection (the router reconnects).
    CpDrop,
    /// The control plane stops (port refused), probes run, then it starts again.
    CpOutage,
    /// 100 ms latency between router and control plane while a valid config is pushed.
    CpLatencyPush { config: ConfigSpec, bump: u64 },
    /// A black hole between router and control plane while probes run.
    CpBlackHole,
    /// SIGTERM (graceful drain under the load) and a start on the same ports and state.
    Restart,
}

impl Event {
    /// A short name for counts and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Push { .. } => "push",
            Event::PushInvalid(_) => "push_invalid",
            Event::Upstream { .. } => "upstream",
            Event::Toxic { .. } => "toxic",
            Event::CpDrop => "cp_drop",
            Event::CpOutage => "cp_outage",
            Event::CpLatencyPush { .. } => "cp_latency_push",
            Event::CpBlackHole => "cp_blackhole",
            Event::Restart => "restart",
        }
    }
}

/// A schedule: the initial config (version 1) and the events, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Seed of the run.
    pub seed: u64,
    /// Case index within the run.
    pub index: u64,
    /// The initial config.
    pub initial: ConfigSpec,
    /// The events.
    pub events: Vec<Event>,
}

/// The deterministic random source of one case.
pub struct Draw(TestRng);

impl Draw {
    /// The stream of case `index` of seed `seed`.
    pub fn new(seed: u64, index: u64) -> Draw {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        s[8..16].copy_from_slice(&index.to_le_bytes());
        s[16..24].copy_from_slice(b"pp-chaos");
        Draw(TestRng::from_seed(RngAlgorithm::ChaCha, &s))
    }
    /// Uniform in `0..n` (`n` ≥ 1).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n.max(1)
    }
    /// True with probability `pct` %.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    /// One of `xs`, weighted.
    pub fn weighted<T: Copy>(&mut self, xs: &[(u64, T)]) -> T {
        let total: u64 = xs.iter().map(|x| x.0).sum();
        let mut r = self.below(total);
        for (w, x) in xs {
            if r < *w {
                return *x;
            }
            r -= w;
        }
        xs[xs.len() - 1].1
    }
}

/// A random config: 1..=4 single-endpoint placements, maybe a pool of 2..=3 endpoints,
/// forward-only fallbacks, some health checks and breakers, routes for most keys.
pub fn config(d: &mut Draw) -> ConfigSpec {
    let mut placements = BTreeMap::new();
    for (i, id) in SINGLES.iter().enumerate() {
        if i == 0 || d.chance(70) {
            placements.insert(
                id.to_string(),
                PlacementSpec {
                    endpoints: vec![(d.below(4) as usize, 1)],
                    pool: false,
                    health_check: d.chance(35),
                    breaker: if d.chance(40) { Some(1 + d.below(3) as u32) } else { None },
                    fallback: None,
                    max_concurrency: 4 + d.below(60) as u32,
                },
            );
        }
    }
    if d.chance(50) {
        let mut ups: Vec<usize> = (0..4).collect();
        // a random 2..=3 of the four, in a random order (config order is not member order)
        for i in (1..ups.len()).rev() {
            ups.swap(i, d.below(i as u64 + 1) as usize);
        }
        let n = 2 + d.below(2) as usize;
        let endpoints = ups[..n].iter().map(|&u| (u, 1 + d.below(3) as u32)).collect();
        placements.insert(POOL.to_string(), PlacementSpec { endpoints, pool: true, health_check: d.chance(40), breaker: None, fallback: None, max_concurrency: 4 + d.below(60) as u32 });
    }
    let ids: Vec<String> = ORDER.iter().filter(|id| placements.contains_key(**id)).map(|s| s.to_string()).collect();
    for (k, id) in ids.iter().enumerate() {
        if k + 1 < ids.len() && d.chance(45) {
            let to = ids[k + 1 + d.below((ids.len() - k - 1) as u64) as usize].clone();
            placements.get_mut(id).expect("present").fallback = Some(to);
        }
    }
    let mut routes = BTreeMap::new();
    for key in KEYS {
        if d.chance(85) {
            routes.insert(key.to_string(), ids[d.below(ids.len() as u64) as usize].clone());
        }
    }
    ConfigSpec { routes, placements, load_max_concurrency: if d.chance(50) { 1 } else { 8 } }
}

/// One random event.
pub fn event(d: &mut Draw) -> Event {
    let kind = d.weighted(&[(5, 0u8), (3, 1), (5, 2), (4, 3), (1, 4), (1, 5), (1, 6), (1, 7), (2, 8)]);
    match kind {
        0 => Event::Push { config: config(d), bump: 1 + d.below(3) },
        1 => Event::PushInvalid(d.weighted(&[(1, Invalid::UnknownField), (1, Invalid::BadValue), (1, Invalid::UnknownPlacement), (1, Invalid::Stale), (1, Invalid::TooLarge)])),
        2 => Event::Upstream {
            up: d.below(4) as usize,
            behaviour: d.weighted(&[(4, Behaviour::Ok), (2, Behaviour::Status500), (1, Behaviour::Slow), (1, Behaviour::Reset), (2, Behaviour::Down)]),
        },
        3 => Event::Toxic {
            up: d.below(4) as usize,
            toxic: d.weighted(&[(3, None), (2, Some(Toxic::Latency)), (1, Some(Toxic::BlackHole)), (1, Some(Toxic::ResetPeer)), (2, Some(Toxic::Disabled))]),
        },
        4 => Event::CpDrop,
        5 => Event::CpOutage,
        6 => Event::CpLatencyPush { config: config(d), bump: 1 + d.below(3) },
        7 => Event::CpBlackHole,
        _ => Event::Restart,
    }
}

/// The schedule of case `index` of seed `seed`, with `events` events.
pub fn generate(seed: u64, index: u64, events: usize) -> Schedule {
    let mut d = Draw::new(seed, index);
    let initial = config(&mut d);
    let events = (0..events).map(|_| event(&mut d)).collect();
    Schedule { seed, index, initial, events }
}
