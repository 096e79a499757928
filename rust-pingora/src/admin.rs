//! Admin API and metrics (docs/spec.md section 7).
//!
//! Served by a Pingora `ServeHttp` app on its own listening service (`--admin-listen`):
//! `GET /healthz`, `/readyz`, `/admin/state`, `/metrics`. Metrics use the `prometheus`
//! crate with exactly the names and labels of the spec; per-placement gauges are rebuilt
//! from the current snapshot at every scrape so that only current placements appear.

use crate::state::Router;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Instant;

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
    /// `router_request_duration_seconds{placement}`
    pub duration: HistogramVec,
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
            duration: reg!(HistogramVec::new(
                HistogramOpts::new("router_request_duration_seconds", "From arrival to the end of the response.")
                    .buckets(DURATION_BUCKETS.to_vec()),
                &["placement"]
            )
            .unwrap()),
            registry,
        };
        m.config_version.set(-1);
        m
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Refresh the per-placement gauges from the current snapshot and render the text format.
pub fn render_metrics(router: &Router) -> String {
    // one scrape at a time: the per-placement gauges are reset and refilled below
    static SCRAPE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = SCRAPE.lock().unwrap_or_else(|e| e.into_inner());
    let m = &router.metrics;
    m.breaker_state.reset();
    m.endpoint_healthy.reset();
    m.inflight.reset();
    let now = Instant::now();
    if let Some(snap) = router.snapshot.load_full() {
        m.config_version.set(snap.config.version as i64);
        for (id, p) in &snap.placements {
            m.breaker_state.with_label_values(&[id]).set(p.breaker.state(now).gauge());
            m.endpoint_healthy.with_label_values(&[id]).set(p.health.is_healthy() as i64);
            m.inflight.with_label_values(&[id]).set(p.limiter.inflight() as i64);
        }
    } else {
        m.config_version.set(-1);
    }
    let mut buf = Vec::new();
    TextEncoder::new().encode(&m.registry.gather(), &mut buf).expect("encode metrics");
    String::from_utf8(buf).expect("utf8 metrics")
}

/// The `/admin/state` document.
pub fn state_json(router: &Router) -> Value {
    let now = Instant::now();
    let snap = router.snapshot.load_full();
    let mut placements = Map::new();
    let mut version = Value::Null;
    if let Some(snap) = &snap {
        version = json!(snap.config.version);
        for (id, cfg) in &snap.config.placements {
            let p = &snap.placements[id];
            placements.insert(
                id.clone(),
                json!({
                    "endpoint": cfg.endpoint_raw,
                    "healthy": p.health.is_healthy(),
                    "breaker": p.breaker.state(now).as_str(),
                    "inflight": p.limiter.inflight(),
                    "max_concurrency": cfg.max_concurrency,
                    "fallback": cfg.fallback,
                }),
            );
        }
    }
    json!({
        "impl": "pingora",
        "config_version": version,
        "control_plane": {
            "connected": router.cp_connected.load(std::sync::atomic::Ordering::Acquire),
            "reconnects": router.metrics.cp_reconnects.get(),
        },
        "placements": Value::Object(placements),
    })
}

/// The admin app (Pingora `ServeHttp`).
pub struct AdminApp {
    /// Shared router state.
    pub router: Arc<Router>,
}

fn resp(status: u16, ctype: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("Content-Type", ctype)
        .header("Content-Length", body.len())
        .body(body)
        .unwrap()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path = req.uri.path().to_string();
        let is_get = req.method == http::Method::GET || req.method == http::Method::HEAD;
        if !is_get {
            return resp(405, "text/plain", b"method not allowed\n".to_vec());
        }
        match path.as_str() {
            "/healthz" => resp(200, "text/plain", b"ok".to_vec()),
            "/readyz" => {
                if self.router.snapshot.load().is_some() {
                    resp(200, "application/json", br#"{"ready":true}"#.to_vec())
                } else {
                    resp(503, "application/json", br#"{"ready":false}"#.to_vec())
                }
            }
            "/admin/state" => resp(200, "application/json", state_json(&self.router).to_string().into_bytes()),
            "/metrics" => resp(200, "text/plain; version=0.0.4", render_metrics(&self.router).into_bytes()),
            _ => resp(404, "text/plain", b"not found\n".to_vec()),
        }
    }
}
