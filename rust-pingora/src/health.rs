//! Active health of one endpoint of a placement (docs/spec.md section 4).
//!
//! Each endpoint of a placement with a `health_check` gets its own Pingora
//! `LoadBalancer<RoundRobin>` over that single backend, with Pingora's `HttpHealthCheck` (wrapped in [`TimedCheck`] for the
//! whole-probe `timeout_ms` and the 2xx rule) as the health check. Pingora's health state
//! already has the contract's semantics: backends start healthy, `consecutive_failure`
//! opposite results flip to unhealthy, `consecutive_success` flip back, and a result of the
//! current kind resets the count. "Available" is `LoadBalancer::select(..).is_some()`.
//!
//! The probe loop is one tokio task per checked endpoint, spawned by [`Health::start`] on
//! the [`Checkers`] runtime and aborted by [`Health::stop`] (called when a config update
//! drops or rebuilds the endpoint) or on drop, so the number of running checkers equals
//! the number of endpoints of placements with a `health_check`. (The placement's own
//! selection `LoadBalancer`, `crate::balance`, does not run Pingora's health check: its
//! accept closure reads this per-endpoint health, whose identity across config swaps is
//! per endpoint.) [`Checkers`] is owned by the store
//! (`store::Store`), which starts and stops the loops as it installs configs.

use crate::config::{EndpointCfg, HealthCheckCfg};
use async_trait::async_trait;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, LoadBalancer};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Where the probe loops run, and how many run: a one-thread tokio runtime
/// (`health-checks`), created on the first [`Checkers::start`] so that a router without
/// health checks has no such thread, and shut down (without blocking) when dropped.
pub struct Checkers {
    runtime: OnceLock<tokio::runtime::Runtime>,
    running: Arc<AtomicUsize>,
    enabled: bool,
}

impl Checkers {
    /// No runtime yet, no loop running.
    pub fn new() -> Self {
        Checkers { runtime: OnceLock::new(), running: Arc::new(AtomicUsize::new(0)), enabled: true }
    }

    /// Checkers that never start a loop: every endpoint keeps its health until probed by
    /// hand ([`Health::probe_once`]). For benchmarks over a real snapshot.
    pub fn disabled() -> Self {
        Checkers { runtime: OnceLock::new(), running: Arc::new(AtomicUsize::new(0)), enabled: false }
    }

    /// Number of probe loops running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Start `health`'s probe loop (see [`Health::start`]); no-op for unchecked health.
    pub fn start(&self, health: &Arc<Health>) {
        if !self.enabled || !matches!(health.kind, Kind::Checked { .. }) {
            return;
        }
        let rt = self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("health-checks")
                .enable_all()
                .build()
                .expect("health-check runtime")
        });
        health.start(rt.handle(), &self.running);
    }
}

impl Default for Checkers {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Checkers {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // may run inside another runtime (tests): never block here
            rt.shutdown_background();
        }
    }
}

/// A probe bounded by `timeout_ms` as a whole (connect + request + response header):
/// Pingora's `HttpHealthCheck` bounds connect and each read separately.
pub struct TimedCheck {
    inner: Box<dyn HealthCheck + Send + Sync>,
    timeout: Duration,
    healthy_threshold: usize,
    unhealthy_threshold: usize,
}

impl TimedCheck {
    /// Wrap any Pingora health check with a whole-probe deadline and thresholds.
    pub fn new(
        inner: Box<dyn HealthCheck + Send + Sync>,
        timeout: Duration,
        healthy_threshold: usize,
        unhealthy_threshold: usize,
    ) -> Self {
        TimedCheck { inner, timeout, healthy_threshold, unhealthy_threshold }
    }
}

#[async_trait]
impl HealthCheck for TimedCheck {
    async fn check(&self, target: &Backend) -> Result<()> {
        match tokio::time::timeout(self.timeout, self.inner.check(target)).await {
            Ok(r) => r,
            Err(_) => Error::e_explain(ErrorType::ReadTimedout, "health probe timed out"),
        }
    }
    fn health_threshold(&self, success: bool) -> usize {
        if success {
            self.healthy_threshold
        } else {
            self.unhealthy_threshold
        }
    }
}

/// Build the Pingora `HttpHealthCheck` for endpoint `e`: `GET <path>` with
/// `Host: host:port`, 2xx validator, connect/read timeouts of `timeout_ms`.
pub fn http_check(e: &EndpointCfg, hc: &HealthCheckCfg, peer: &HttpPeer) -> HttpHealthCheck {
    let authority = e.origin.authority();
    let mut check = HttpHealthCheck::new(&authority, e.origin.tls);
    check.peer_template = peer.clone();
    let t = Duration::from_millis(hc.timeout_ms);
    check.peer_template.options.connection_timeout = Some(t);
    check.peer_template.options.read_timeout = Some(t);
    check.req.set_uri(hc.path.parse().unwrap_or_else(|_| http::Uri::from_static("/")));
    check.validator = Some(Box::new(|resp| {
        if resp.status.is_success() {
            Ok(())
        } else {
            Error::e_explain(ErrorType::CustomCode("non 2xx", resp.status.as_u16()), "health probe")
        }
    }));
    check.reuse_connection = false;
    check
}

enum Kind {
    /// No `health_check`: always healthy.
    Always,
    /// Set by hand (tests).
    Manual(AtomicBool),
    /// Pingora load balancer with an active health check.
    Checked { lb: Arc<LoadBalancer<RoundRobin>>, interval: Duration, task: Mutex<Option<JoinHandle<()>>>, stopped: AtomicBool },
}

/// Health of one endpoint.
pub struct Health {
    kind: Kind,
}

impl Health {
    /// Always healthy (no `health_check`).
    pub fn always() -> Arc<Self> {
        Arc::new(Health { kind: Kind::Always })
    }

    /// Health set by hand with [`Health::set_manual`] (tests, benchmarks).
    pub fn manual(healthy: bool) -> Arc<Self> {
        Arc::new(Health { kind: Kind::Manual(AtomicBool::new(healthy)) })
    }

    /// Set a manual health value (no effect on other kinds).
    pub fn set_manual(&self, healthy: bool) {
        if let Kind::Manual(b) = &self.kind {
            b.store(healthy, Ordering::Release);
        }
    }

    /// A load balancer over `addr` with the given Pingora health check; the probe loop is
    /// not started until [`Health::start`].
    pub fn with_check(
        addr: std::net::SocketAddr,
        check: Box<dyn HealthCheck + Send + Sync>,
        interval: Duration,
    ) -> Arc<Self> {
        let mut lb = LoadBalancer::<RoundRobin>::try_from_iter([addr]).expect("static backend");
        lb.set_health_check(check);
        Arc::new(Health {
            kind: Kind::Checked { lb: Arc::new(lb), interval, task: Mutex::new(None), stopped: AtomicBool::new(false) },
        })
    }

    /// Build the health of endpoint `e` from its placement's `health_check` and the
    /// endpoint's peer template.
    pub fn for_endpoint(hc: Option<&HealthCheckCfg>, e: &EndpointCfg, peer: Option<&HttpPeer>) -> Arc<Self> {
        match (hc, peer) {
            (None, _) => Health::always(),
            (Some(hc), Some(peer)) => {
                let check = TimedCheck::new(
                    Box::new(http_check(e, hc, peer)),
                    Duration::from_millis(hc.timeout_ms),
                    hc.healthy_threshold as usize,
                    hc.unhealthy_threshold as usize,
                );
                let addr = match peer._address {
                    pingora::protocols::l4::socket::SocketAddr::Inet(a) => a,
                    _ => unreachable!("inet peers only"),
                };
                Health::with_check(addr, Box::new(check), Duration::from_millis(hc.interval_ms))
            }
            // Peer could not be built (DNS, TLS files): the endpoint cannot be probed;
            // it starts healthy and every request fails to connect instead.
            (Some(_), None) => Health::always(),
        }
    }

    /// Is the endpoint healthy now? For checked placements this is Pingora's
    /// `LoadBalancer::select`, `None` meaning "not available".
    pub fn is_healthy(&self) -> bool {
        match &self.kind {
            Kind::Always => true,
            Kind::Manual(b) => b.load(Ordering::Acquire),
            Kind::Checked { lb, .. } => lb.select(b"", 1).is_some(),
        }
    }

    /// Run one probe pass now (tests).
    pub async fn probe_once(&self) {
        if let Kind::Checked { lb, .. } = &self.kind {
            lb.backends().run_health_check(false).await;
        }
    }

    /// Start the probe loop on `rt` (first probe immediately, then every interval), counted
    /// in `running` while it lives. Idempotent; does nothing after [`Health::stop`].
    pub fn start(self: &Arc<Self>, rt: &tokio::runtime::Handle, running: &Arc<AtomicUsize>) {
        let Kind::Checked { lb, interval, task, stopped } = &self.kind else { return };
        let mut t = task.lock().unwrap();
        if t.is_some() || stopped.load(Ordering::Acquire) {
            return;
        }
        let lb = lb.clone();
        let interval = *interval;
        running.fetch_add(1, Ordering::AcqRel);
        struct Count(Arc<AtomicUsize>);
        impl Drop for Count {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let count = Count(running.clone()); // moved into the task: dropped even if it never runs
        *t = Some(rt.spawn(async move {
            let _c = count;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                lb.backends().run_health_check(false).await;
            }
        }));
    }

    /// Stop the probe loop for good.
    pub fn stop(&self) {
        if let Kind::Checked { task, stopped, .. } = &self.kind {
            stopped.store(true, Ordering::Release);
            if let Some(t) = task.lock().unwrap().take() {
                t.abort();
            }
        }
    }
}

impl Drop for Health {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    struct Scripted(Mutex<VecDeque<bool>>);

    #[async_trait]
    impl HealthCheck for Scripted {
        async fn check(&self, _t: &Backend) -> Result<()> {
            if self.0.lock().unwrap().pop_front().unwrap_or(true) {
                Ok(())
            } else {
                Error::e_explain(ErrorType::ConnectRefused, "scripted")
            }
        }
        fn health_threshold(&self, _s: bool) -> usize {
            1
        }
    }

    /// Thresholds as the spec states them, on Pingora's health state.
    #[tokio::test]
    async fn thresholds() {
        // results: F F (unhealthy at 2), S F (reset), S S S (healthy at 3)
        let script = [false, false, true, false, true, true, true];
        let check = TimedCheck::new(
            Box::new(Scripted(Mutex::new(script.into_iter().collect()))),
            Duration::from_secs(1),
            3,
            2,
        );
        let h = Health::with_check("127.0.0.1:1".parse().unwrap(), Box::new(check), Duration::from_secs(1));
        assert!(h.is_healthy(), "starts healthy");
        let mut seen = vec![];
        for _ in 0..script.len() {
            h.probe_once().await;
            seen.push(h.is_healthy());
        }
        assert_eq!(seen, vec![true, false, false, false, false, false, true]);
    }

    #[tokio::test]
    async fn timeout_counts_as_failure() {
        struct Slow;
        #[async_trait]
        impl HealthCheck for Slow {
            async fn check(&self, _t: &Backend) -> Result<()> {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            }
            fn health_threshold(&self, _s: bool) -> usize {
                1
            }
        }
        let check = TimedCheck::new(Box::new(Slow), Duration::from_millis(20), 1, 1);
        let h = Health::with_check("127.0.0.1:1".parse().unwrap(), Box::new(check), Duration::from_secs(1));
        h.probe_once().await;
        assert!(!h.is_healthy());
    }

    #[tokio::test]
    async fn stop_ends_checker() {
        let running = Arc::new(AtomicUsize::new(0));
        let check = TimedCheck::new(Box::new(Scripted(Mutex::new(VecDeque::new()))), Duration::from_secs(1), 1, 1);
        let h = Health::with_check("127.0.0.1:1".parse().unwrap(), Box::new(check), Duration::from_millis(10));
        h.start(&tokio::runtime::Handle::current(), &running);
        h.start(&tokio::runtime::Handle::current(), &running);
        assert_eq!(running.load(Ordering::SeqCst), 1, "start is idempotent");
        h.stop();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while running.load(Ordering::SeqCst) > 0 {
            assert!(std::time::Instant::now() < deadline, "checker did not stop");
            tokio::task::yield_now().await;
        }
    }
}
