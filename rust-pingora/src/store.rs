//! The router's state, owned by one value ([`Store`]): the current snapshot, the rules for
//! installing a new config while keeping per-placement identity (docs/spec.md sections 4
//! and 6), the health-check loops, the metrics, the count of active requests and the
//! control-plane connected flag. The proxy, the admin API and the control plane each hold
//! an `Arc<Store>`; nothing of it is a process global.
//!
//! Identity, per endpoint (spec §4): an endpoint keeps its health object (its Pingora load
//! balancer and probe loop) when placement id, `url` (as written), `health_check` and `tls`
//! are unchanged; it keeps its breaker when placement id, `url` and `circuit_breaker` are
//! unchanged (a weight change keeps both). A placement keeps its selection
//! ([`crate::balance::Balancer`], the round-robin counter) when its endpoint list (urls and
//! weights, in order) and `selection` are unchanged (spec §3). The in-flight counter is
//! kept per id. [`Store::install`] stops the probe loops not carried over at swap time and
//! starts the new ones, so the number of loops equals the number of endpoints of
//! placements with a `health_check`.

use crate::balance::Balancer;
use crate::breaker::Breaker;
use crate::config::{Config, Placement};
use crate::health::{Checkers, Health};
use crate::limit::Limiter;
use crate::metrics::Metrics;
use crate::routing::{EndpointRt, PlacementHot, PlacementRt, Snapshot};
use crate::upstream;
use arc_swap::ArcSwapOption;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Router state shared by the proxy, the admin API and the control plane.
pub struct Store {
    /// Current config snapshot; `None` until a config is installed.
    snapshot: ArcSwapOption<Snapshot>,
    /// All metrics.
    pub metrics: Metrics,
    /// Control-plane connection state for `/admin/state`.
    cp_connected: AtomicBool,
    /// Directory of `last-known-good.json`.
    pub state_dir: PathBuf,
    /// `--access-log`.
    pub access_log: bool,
    /// Requests being handled by the data plane (all of them, for the drain).
    active: Arc<AtomicUsize>,
    /// Set once shutdown has begun: responses then end their connections (spec §8).
    draining: AtomicBool,
    /// The runtime and count of the health probe loops.
    checkers: Checkers,
    limiters: Mutex<HashMap<String, Arc<Limiter>>>,
    /// Serialises installs.
    install_lock: Mutex<()>,
}

impl Store {
    /// Empty state (no config).
    pub fn new(state_dir: PathBuf, access_log: bool) -> Arc<Self> {
        Store::with_checkers(state_dir, access_log, Checkers::new())
    }

    /// Empty state whose probe loops run on `checkers` ([`Checkers::disabled`]: none run).
    pub fn with_checkers(state_dir: PathBuf, access_log: bool, checkers: Checkers) -> Arc<Self> {
        Arc::new(Store {
            snapshot: ArcSwapOption::empty(),
            metrics: Metrics::new(),
            cp_connected: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            state_dir,
            access_log,
            active: Arc::new(AtomicUsize::new(0)),
            checkers,
            limiters: Mutex::new(HashMap::new()),
            install_lock: Mutex::new(()),
        })
    }

    /// The current snapshot (one atomic load), `None` before the first config.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.load_full()
    }

    /// Whether a config is installed (`/readyz`).
    pub fn has_config(&self) -> bool {
        self.snapshot.load().is_some()
    }

    /// The current config, if any.
    pub fn current_config(&self) -> Option<Arc<Config>> {
        self.snapshot.load().as_ref().map(|s| s.config.clone())
    }

    /// Number of health probe loops running now.
    pub fn checkers_running(&self) -> usize {
        self.checkers.running()
    }

    /// Requests being handled now (from the proxy's `new_ctx` to the context's drop).
    pub fn active_requests(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Mark the start of the shutdown drain: from now on every response says
    /// `Connection: close` and ends its connection, as Go's `http.Server.Shutdown` does
    /// (RFC 9112 §9.6: a server that closes announces it).
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether the shutdown drain has begun ([`Store::begin_drain`]).
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Count one request as active until the returned guard drops.
    pub fn enter(&self) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        ActiveGuard(self.active.clone())
    }

    /// Whether the control-plane WebSocket is connected.
    pub fn cp_connected(&self) -> bool {
        self.cp_connected.load(Ordering::Acquire)
    }

    /// Record the control-plane connection state (flag and `router_control_plane_connected`).
    pub fn set_cp_connected(&self, connected: bool) {
        self.cp_connected.store(connected, Ordering::Release);
        self.metrics.cp_connected.set(i64::from(connected));
    }

    /// Build the snapshot for `cfg` (reusing health/breaker/limiter state by identity),
    /// swap it in, stop the probe loops that were not carried over and start new ones.
    pub fn install(&self, cfg: Config) {
        let _g = self.install_lock.lock().unwrap();
        let old = self.snapshot.load_full();
        let now = Instant::now();
        let mut placements = HashMap::with_capacity(cfg.placements.len());
        let mut limiters = self.limiters.lock().unwrap();
        let mut kept_health: Vec<*const Health> = Vec::new();
        for (id, p) in &cfg.placements {
            let prev = old.as_ref().and_then(|o| o.placements.get(id));
            let mut endpoints = Vec::with_capacity(p.endpoints.len());
            for e in &p.endpoints {
                let prev_ep = prev.and_then(|pr| pr.endpoints.iter().find(|x| x.cfg.url == e.url).map(|x| (pr, x)));
                let peer = upstream::build_peer(p, e);
                let health = match prev_ep {
                    Some((pr, x)) if pr.cfg.health_check == p.health_check && pr.cfg.tls == p.tls => x.health.clone(),
                    _ => Health::for_endpoint(p.health_check.as_ref(), e, peer.as_ref().ok()),
                };
                kept_health.push(Arc::as_ptr(&health));
                let breaker = match prev_ep {
                    Some((pr, x)) if pr.cfg.circuit_breaker == p.circuit_breaker => x.breaker.clone(),
                    _ => Breaker::new(p.circuit_breaker.clone(), now),
                };
                endpoints.push(EndpointRt::new(e.clone(), health, breaker, peer));
            }
            let balancer = match prev {
                Some(pr) if same_selection(&pr.cfg, p) => pr.balancer.clone(),
                _ => Arc::new(Balancer::new(p.selection, &selection_members(&endpoints))),
            };
            let limiter = limiters.entry(id.clone()).or_default().clone();
            placements.insert(
                id.clone(),
                Arc::new(PlacementRt {
                    cfg: p.clone(),
                    endpoints: endpoints.into_boxed_slice(),
                    balancer,
                    limiter,
                    hot: PlacementHot::new(p),
                }),
            );
        }
        limiters.retain(|id, l| cfg.placements.contains_key(id) || l.inflight() > 0);
        drop(limiters);
        let version = cfg.version;
        let snap = Arc::new(Snapshot { config: Arc::new(cfg), placements });
        self.snapshot.store(Some(snap.clone()));
        self.metrics.config_version.set(version as i64);
        if let Some(old) = old {
            for e in old.placements.values().flat_map(|p| p.endpoints.iter()) {
                if !kept_health.contains(&Arc::as_ptr(&e.health)) {
                    e.health.stop();
                }
            }
        }
        for e in snap.placements.values().flat_map(|p| p.endpoints.iter()) {
            self.checkers.start(&e.health);
        }
    }
}

/// Same selection state (spec §3, last bullet of *Endpoint selection*): equal `selection`
/// and equal endpoint list (urls and weights, in order).
fn same_selection(a: &Placement, b: &Placement) -> bool {
    a.selection == b.selection
        && a.endpoints.len() == b.endpoints.len()
        && a.endpoints.iter().zip(&b.endpoints).all(|(x, y)| x.url == y.url && x.weight == y.weight)
}

/// The balancer's members: each endpoint's socket address (its peer's, resolved once when
/// the placement is built) and weight, in config order. An endpoint whose peer could not be
/// built orders as `0.0.0.0:<port>` (its connects fail, spec §3 step 6).
fn selection_members(endpoints: &[EndpointRt]) -> Vec<(std::net::SocketAddr, usize)> {
    endpoints
        .iter()
        .map(|e| {
            let addr = match e.peer.as_ref().map(|p| p._address.clone()) {
                Ok(pingora::protocols::l4::socket::SocketAddr::Inet(a)) => a,
                _ => std::net::SocketAddr::from(([0, 0, 0, 0], e.cfg.origin.port)),
            };
            (addr, e.cfg.weight as usize)
        })
        .collect()
}

/// One active request, counted in its [`Store`] until dropped (see [`Store::enter`]).
pub struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
