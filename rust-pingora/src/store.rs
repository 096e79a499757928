//! The router's state, owned by one value ([`Store`]): the current snapshot, the rules for
//! installing a new config while keeping per-placement identity (docs/spec.md sections 4
//! and 6), the health-check loops, the metrics, the count of active requests and the
//! control-plane connected flag. The proxy, the admin API and the control plane each hold
//! an `Arc<Store>`; nothing of it is a process global.
//!
//! Identity: a placement keeps its health object (and its Pingora load balancer and probe
//! loop) when id, endpoint and `health_check` are unchanged; it keeps its breaker when id,
//! endpoint and `circuit_breaker` are unchanged. The in-flight counter is kept per id.
//! [`Store::install`] stops the probe loops not carried over at swap time and starts the
//! new ones, so the number of loops equals the number of placements with a `health_check`.

use crate::breaker::Breaker;
use crate::config::Config;
use crate::health::{Checkers, Health};
use crate::limit::Limiter;
use crate::metrics::Metrics;
use crate::routing::{PlacementHot, PlacementRt, Snapshot};
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
            let peer = upstream::build_peer(p);
            let health = match prev {
                Some(pr)
                    if pr.cfg.endpoint_raw == p.endpoint_raw
                        && pr.cfg.health_check == p.health_check
                        && pr.cfg.tls == p.tls =>
                {
                    pr.health.clone()
                }
                _ => Health::for_placement(p, peer.as_ref().ok()),
            };
            kept_health.push(Arc::as_ptr(&health));
            let breaker = match prev {
                Some(pr) if pr.cfg.endpoint_raw == p.endpoint_raw && pr.cfg.circuit_breaker == p.circuit_breaker => {
                    pr.breaker.clone()
                }
                _ => Breaker::new(p.circuit_breaker.clone(), now),
            };
            let limiter = limiters.entry(id.clone()).or_default().clone();
            placements.insert(
                id.clone(),
                Arc::new(PlacementRt { cfg: p.clone(), health, breaker, limiter, peer, hot: PlacementHot::new(p) }),
            );
        }
        limiters.retain(|id, l| cfg.placements.contains_key(id) || l.inflight() > 0);
        drop(limiters);
        let version = cfg.version;
        let snap = Arc::new(Snapshot { config: Arc::new(cfg), placements });
        self.snapshot.store(Some(snap.clone()));
        self.metrics.config_version.set(version as i64);
        if let Some(old) = old {
            for p in old.placements.values() {
                if !kept_health.contains(&Arc::as_ptr(&p.health)) {
                    p.health.stop();
                }
            }
        }
        for p in snap.placements.values() {
            self.checkers.start(&p.health);
        }
    }
}

/// One active request, counted in its [`Store`] until dropped (see [`Store::enter`]).
pub struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
