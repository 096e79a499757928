//! Admin API (docs/spec.md section 7).
//!
//! Served by a Pingora `ServeHttp` app on its own listening service (`--admin-listen`):
//! `GET /healthz`, `/readyz`, `/admin/state`, `/metrics` (rendered by
//! [`crate::metrics::Metrics::render`]).

use crate::store::Store;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Instant;

/// The `/metrics` text of `store`: gauges refreshed from its current snapshot.
pub fn render_metrics(store: &Store) -> String {
    store.metrics.render(store.snapshot().as_deref())
}

/// The `/admin/state` document.
pub fn state_json(store: &Store) -> Value {
    let now = Instant::now();
    let snap = store.snapshot();
    let mut placements = Map::new();
    let mut version = Value::Null;
    if let Some(snap) = &snap {
        version = json!(snap.config.version);
        for (id, cfg) in &snap.config.placements {
            let p = &snap.placements[id];
            let endpoints: Vec<Value> = p
                .endpoints
                .iter()
                .map(|e| {
                    json!({
                        "url": e.cfg.url,
                        "weight": e.cfg.weight,
                        "healthy": e.health.is_healthy(),
                        "breaker": e.breaker.state(now).as_str(),
                    })
                })
                .collect();
            placements.insert(
                id.clone(),
                json!({
                    "endpoint": cfg.endpoints[0].url,
                    "healthy": p.is_healthy(),
                    "breaker": p.breaker_state(now).as_str(),
                    "inflight": p.limiter.inflight(),
                    "max_concurrency": cfg.max_concurrency,
                    "fallback": cfg.fallback,
                    "selection": cfg.selection.as_str(),
                    "endpoints": endpoints,
                }),
            );
        }
    }
    json!({
        "impl": "pingora",
        "config_version": version,
        "control_plane": {
            "connected": store.cp_connected(),
            "reconnects": store.metrics.cp_reconnects.get(),
        },
        "placements": Value::Object(placements),
    })
}

/// The admin app (Pingora `ServeHttp`).
pub struct AdminApp {
    /// The router state.
    pub store: Arc<Store>,
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
                if self.store.has_config() {
                    resp(200, "application/json", br#"{"ready":true}"#.to_vec())
                } else {
                    resp(503, "application/json", br#"{"ready":false}"#.to_vec())
                }
            }
            "/admin/state" => resp(200, "application/json", state_json(&self.store).to_string().into_bytes()),
            "/metrics" => resp(200, "text/plain; version=0.0.4", render_metrics(&self.store).into_bytes()),
            _ => resp(404, "text/plain", b"not found\n".to_vec()),
        }
    }
}
