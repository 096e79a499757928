//! Metrics registry and families (docs/spec.md section 7), with exactly the spec's names
//! and labels, on the `prometheus` crate. Counters and the histogram are updated by the
//! proxy and the control plane; the per-placement gauges are rebuilt from the current
//! snapshot at every scrape ([`Metrics::render`]) so that only current placements appear.

use crate::errcode::Code;
use crate::routing::Snapshot;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::Mutex;
use std::time::Instant;

/// The `kind` label of `router_upstream_failures_total` (docs/spec.md section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// Connect failure, TLS included (step 6).
    Connect,
    /// No response headers within `request_ms` (step 7).
    Timeout,
    /// The upstream closed, reset or did not speak HTTP/1.x before the headers (step 7).
    Protocol,
    /// Upstream status >= 500 (step 9).
    Status5xx,
    /// Upstream failure after the response was committed (step 8).
    Aborted,
}

impl FailKind {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailKind::Connect => "connect",
            FailKind::Timeout => "timeout",
            FailKind::Protocol => "protocol",
            FailKind::Status5xx => "status_5xx",
            FailKind::Aborted => "aborted",
        }
    }
}

/// Buckets of `router_request_duration_seconds`, in seconds.
pub const DURATION_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// All router metrics, registered in one registry.
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// `router_requests_total{placement,status}`
    pub requests: IntCounterVec,
    /// `router_errors_total{code}`
    pub errors: IntCounterVec,
    /// `router_upstream_failures_total{placement,kind}`
    pub upstream_failures: IntCounterVec,
    /// `router_failovers_total{from,to}`
    pub failovers: IntCounterVec,
    /// `router_breaker_state{placement}` (refilled at each scrape)
    pub breaker_state: IntGaugeVec,
    /// `router_endpoint_healthy{placement}` (refilled at each scrape)
    pub endpoint_healthy: IntGaugeVec,
    /// `router_inflight{placement}` (refilled at each scrape)
    pub inflight: IntGaugeVec,
    /// `router_config_version`
    pub config_version: IntGauge,
    /// `router_config_accepted_total`
    pub config_accepted: IntCounter,
    /// `router_config_rejected_total{code}`
    pub config_rejected: IntCounterVec,
    /// `router_control_plane_connected`
    pub cp_connected: IntGauge,
    /// `router_control_plane_reconnects_total`
    pub cp_reconnects: IntCounter,
    /// `router_control_plane_pong_timeouts_total`: sessions closed because a ping went
    /// unanswered (spec section 6, "Keepalive")
    pub cp_pong_timeouts: IntCounter,
    /// `router_request_duration_seconds{placement}`
    pub duration: HistogramVec,
    /// `router_peer_healthy{placement,endpoint}` (refilled at each scrape)
    pub peer_healthy: IntGaugeVec,
    /// `router_peer_breaker_state{placement,endpoint}` (refilled at each scrape)
    pub peer_breaker_state: IntGaugeVec,
    /// `router_peer_requests_total{placement,endpoint}`: attempts that got a connection
    pub peer_requests: IntCounterVec,
    /// `router_peer_failures_total{placement,endpoint,kind}`
    pub peer_failures: IntCounterVec,
    /// `router_tls_handshakes_total{resumed}`: completed TLS handshakes on the data
    /// listener (registered by [`Metrics::enable_tls`] only)
    pub tls_handshakes: IntCounterVec,
    /// `router_tls_handshake_errors_total`: failed TLS handshakes ([`Metrics::enable_tls`])
    pub tls_handshake_errors: IntCounter,
    /// `router_tls_reloads_total{result}`: SIGHUP reloads, `ok` or `error`
    /// ([`Metrics::enable_tls`])
    pub tls_reloads: IntCounterVec,
    /// Makes scrapes one at a time: each resets and refills the per-placement gauges.
    scrape: Mutex<()>,
}

impl Metrics {
    /// Create and register every metric of spec section 7.
    pub fn new() -> Self {
        let registry = Registry::new();
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m;
                registry.register(Box::new(m.clone())).expect("register metric");
                m
            }};
        }
        let cv = |n: &str, h: &str, l: &[&str]| IntCounterVec::new(Opts::new(n, h), l).unwrap();
        let gv = |n: &str, h: &str, l: &[&str]| IntGaugeVec::new(Opts::new(n, h), l).unwrap();
        let m = Metrics {
            requests: reg!(cv("router_requests_total", "Responses sent to clients.", &["placement", "status"])),
            errors: reg!(cv("router_errors_total", "Router-made responses by code.", &["code"])),
            upstream_failures: reg!(cv(
                "router_upstream_failures_total",
                "Upstream failures by kind.",
                &["placement", "kind"]
            )),
            failovers: reg!(cv("router_failovers_total", "Steps down a fallback chain.", &["from", "to"])),
            breaker_state: reg!(gv("router_breaker_state", "0 closed, 1 open, 2 half_open.", &["placement"])),
            endpoint_healthy: reg!(gv("router_endpoint_healthy", "1 healthy, 0 unhealthy.", &["placement"])),
            inflight: reg!(gv("router_inflight", "Requests in flight.", &["placement"])),
            config_version: reg!(IntGauge::new("router_config_version", "Current config version, -1 without one.").unwrap()),
            config_accepted: reg!(IntCounter::new(
                "router_config_accepted_total",
                "Configs applied from the control plane."
            )
            .unwrap()),
            config_rejected: reg!(cv("router_config_rejected_total", "Configs nacked.", &["code"])),
            cp_connected: reg!(IntGauge::new("router_control_plane_connected", "1 connected, 0 not.").unwrap()),
            cp_reconnects: reg!(IntCounter::new(
                "router_control_plane_reconnects_total",
                "Successful control-plane connections after the first."
            )
            .unwrap()),
            cp_pong_timeouts: reg!(IntCounter::new(
                "router_control_plane_pong_timeouts_total",
                "Control-plane sessions closed because a ping went unanswered."
            )
            .unwrap()),
            duration: reg!(HistogramVec::new(
                HistogramOpts::new("router_request_duration_seconds", "From arrival to the end of the response.")
                    .buckets(DURATION_BUCKETS.to_vec()),
                &["placement"]
            )
            .unwrap()),
            peer_healthy: reg!(gv("router_peer_healthy", "One endpoint's health: 1 healthy, 0 unhealthy.", &["placement", "endpoint"])),
            peer_breaker_state: reg!(gv(
                "router_peer_breaker_state",
                "One endpoint's breaker: 0 closed, 1 open, 2 half_open.",
                &["placement", "endpoint"]
            )),
            peer_requests: reg!(cv(
                "router_peer_requests_total",
                "Attempts sent to an endpoint that got a connection.",
                &["placement", "endpoint"]
            )),
            peer_failures: reg!(cv(
                "router_peer_failures_total",
                "Upstream failures by endpoint and kind.",
                &["placement", "endpoint", "kind"]
            )),
            tls_handshakes: cv("router_tls_handshakes_total", "Completed TLS handshakes.", &["resumed"]),
            tls_handshake_errors: IntCounter::new("router_tls_handshake_errors_total", "Failed TLS handshakes.").unwrap(),
            tls_reloads: cv("router_tls_reloads_total", "Certificate reloads on SIGHUP.", &["result"]),
            registry,
            scrape: Mutex::new(()),
        };
        m.config_version.set(-1);
        m
    }
}

impl Metrics {
    /// Register the TLS families (the data listener is TLS): they appear from then on,
    /// every series at 0; on a plain listener they are never registered, so absent.
    pub fn enable_tls(&self) {
        self.registry.register(Box::new(self.tls_handshakes.clone())).expect("register metric");
        self.registry.register(Box::new(self.tls_handshake_errors.clone())).expect("register metric");
        self.registry.register(Box::new(self.tls_reloads.clone())).expect("register metric");
        for resumed in ["false", "true"] {
            self.tls_handshakes.with_label_values(&[resumed]);
        }
        for result in ["ok", "error"] {
            self.tls_reloads.with_label_values(&[result]);
        }
    }

    /// Count one completed TLS handshake in `router_tls_handshakes_total{resumed}`.
    pub fn count_tls_handshake(&self, resumed: bool) {
        self.tls_handshakes.with_label_values(&[if resumed { "true" } else { "false" }]).inc();
    }

    /// Count one router-made response in `router_errors_total{code}`.
    pub fn count_error(&self, code: Code) {
        self.errors.with_label_values(&[code.as_str()]).inc();
    }

    /// Count one upstream failure of endpoint `endpoint` (its url) of `placement` in
    /// `router_upstream_failures_total{placement,kind}` and
    /// `router_peer_failures_total{placement,endpoint,kind}`.
    pub fn count_failure(&self, placement: &str, endpoint: &str, kind: FailKind) {
        self.upstream_failures.with_label_values(&[placement, kind.as_str()]).inc();
        self.peer_failures.with_label_values(&[placement, endpoint, kind.as_str()]).inc();
    }

    /// Count one step down a chain in `router_failovers_total{from,to}`.
    pub fn count_failover(&self, from: &str, to: &str) {
        self.failovers.with_label_values(&[from, to]).inc();
    }

    /// Refresh the per-placement gauges from `snap` (the current snapshot; `None`: no
    /// config) and render the Prometheus text format (0.0.4).
    pub fn render(&self, snap: Option<&Snapshot>) -> String {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.breaker_state.reset();
        self.endpoint_healthy.reset();
        self.inflight.reset();
        self.peer_healthy.reset();
        self.peer_breaker_state.reset();
        let now = Instant::now();
        if let Some(snap) = snap {
            self.config_version.set(snap.config.version as i64);
            for (id, p) in &snap.placements {
                self.breaker_state.with_label_values(&[id]).set(p.breaker_state(now).gauge());
                self.endpoint_healthy.with_label_values(&[id]).set(p.is_healthy() as i64);
                self.inflight.with_label_values(&[id]).set(p.limiter.inflight() as i64);
                for e in p.endpoints.iter() {
                    let labels = [id.as_str(), e.cfg.url.as_str()];
                    self.peer_healthy.with_label_values(&labels).set(e.health.is_healthy() as i64);
                    self.peer_breaker_state.with_label_values(&labels).set(e.breaker.state(now).gauge());
                }
            }
        } else {
            self.config_version.set(-1);
        }
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("encode metrics");
        String::from_utf8(buf).expect("utf8 metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

