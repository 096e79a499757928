//! Shared router state: the current snapshot in an `ArcSwapOption`, metrics, and the
//! rules for installing a new config while keeping per-placement identity
//! (docs/spec.md sections 4 and 6).
//!
//! Identity: a placement keeps its health object (and its Pingora load balancer and probe
//! loop) when id, endpoint and `health_check` are unchanged; it keeps its breaker when id,
//! endpoint and `circuit_breaker` are unchanged. The in-flight counter is kept per id.
//! Health objects not carried over are stopped at swap time, so the number of probe loops
//! equals the number of placements with a `health_check`.

use crate::admin::Metrics;
use crate::breaker::Breaker;
use crate::config::Config;
use crate::health::Health;
use crate::limit::Limiter;
use crate::routing::{PlacementHot, PlacementRt, Snapshot};
use crate::upstream;
use arc_swap::ArcSwapOption;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Requests currently being handled by the data plane (all of them, for the drain).
pub static ACTIVE_REQUESTS: AtomicUsize = AtomicUsize::new(0);

/// Process-wide router state shared by the proxy, the admin API and the control plane.
pub struct Router {
    /// Current config snapshot; `None` until a config is loaded.
    pub snapshot: ArcSwapOption<Snapshot>,
    /// All metrics.
    pub metrics: Metrics,
    /// Control-plane connection state for `/admin/state`.
    pub cp_connected: AtomicBool,
    /// Directory of `last-known-good.json`.
    pub state_dir: PathBuf,
    /// `--access-log`.
    pub access_log: bool,
    /// Runtime on which probe loops run (set when the background service starts).
    pub bg_runtime: OnceLock<tokio::runtime::Handle>,
    limiters: Mutex<HashMap<String, Arc<Limiter>>>,
    /// Serialises config installs.
    install_lock: Mutex<()>,
}

impl Router {
    /// Empty state (no config).
    pub fn new(state_dir: PathBuf, access_log: bool) -> Arc<Self> {
        Arc::new(Router {
            snapshot: ArcSwapOption::empty(),
            metrics: Metrics::new(),
            cp_connected: AtomicBool::new(false),
            state_dir,
            access_log,
            bg_runtime: OnceLock::new(),
            limiters: Mutex::new(HashMap::new()),
            install_lock: Mutex::new(()),
        })
    }

    /// The current config, if any.
    pub fn current_config(&self) -> Option<Arc<Config>> {
        self.snapshot.load().as_ref().map(|s| s.config.clone())
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
        if let Some(rt) = self.bg_runtime.get() {
            for p in snap.placements.values() {
                p.health.start(rt);
            }
        }
    }

    /// Record the background runtime and start the probe loops of the current snapshot.
    pub fn start_checkers(&self, rt: tokio::runtime::Handle) {
        let _g = self.install_lock.lock().unwrap();
        let rt = self.bg_runtime.get_or_init(|| rt);
        if let Some(snap) = self.snapshot.load_full() {
            for p in snap.placements.values() {
                p.health.start(rt);
            }
        }
    }
}

/// RAII count of a request in [`ACTIVE_REQUESTS`].
pub struct ActiveGuard;

impl ActiveGuard {
    /// Count one more active request.
    pub fn new() -> Self {
        ACTIVE_REQUESTS.fetch_add(1, Ordering::AcqRel);
        ActiveGuard
    }
}

impl Default for ActiveGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        ACTIVE_REQUESTS.fetch_sub(1, Ordering::AcqRel);
    }
}
