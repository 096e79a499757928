//! Control-plane client and last-known-good file (docs/spec.md section 6).
//!
//! [`ControlPlane`] is a Pingora `BackgroundService`: on start it records its runtime for the
//! health probe loops, then (with `--control-plane`) runs a `tokio-tungstenite` client
//! loop: hello, config frames answered with ack/nack, reconnect with jittered exponential
//! backoff ([`backoff_delay`]). Accepted configs are written atomically to
//! `<state-dir>/last-known-good.json` ([`write_lkg`]) before they are swapped in and acked.

use crate::config::{self, check_version, Rejection, VersionCheck};
use crate::state::Router;
use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rand::Rng;
use serde_json::{json, value::RawValue, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// File name of the last-known-good config inside `--state-dir`.
pub const LKG_FILE: &str = "last-known-good.json";
/// Largest accepted WebSocket frame/message (16 MiB), so `too_large` can be reported.
pub const MAX_FRAME: usize = 16 << 20;
/// Limit for the WebSocket handshake, TCP connect included (spec section 6).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Path of the LKG file.
pub fn lkg_path(dir: &Path) -> PathBuf {
    dir.join(LKG_FILE)
}

/// Write `bytes` to `<dir>/last-known-good.json` atomically: temp file in the same
/// directory, fsync, rename, fsync of the directory.
pub fn write_lkg(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{LKG_FILE}.tmp-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, lkg_path(dir))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Result of loading the LKG file at start-up.
#[derive(Debug)]
pub enum LkgLoad {
    /// No file: start without a config.
    Missing,
    /// A valid config.
    Loaded(config::Config),
    /// Invalid: renamed to `.corrupt`; start without a config.
    Corrupt(String),
}

/// Load and validate (without the stale check) the LKG file; a file that fails is renamed
/// to `last-known-good.json.corrupt`, replacing an older one.
pub fn load_lkg(dir: &Path) -> LkgLoad {
    let path = lkg_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return LkgLoad::Missing,
        Err(e) => return LkgLoad::Corrupt(format!("reading {}: {e}", path.display())),
    };
    match config::parse_and_validate(&bytes) {
        Ok(c) => LkgLoad::Loaded(c),
        Err(r) => {
            let corrupt = dir.join(format!("{LKG_FILE}.corrupt"));
            let _ = std::fs::rename(&path, &corrupt);
            LkgLoad::Corrupt(format!("{}: {r}; moved to {}", path.display(), corrupt.display()))
        }
    }
}

/// Backoff before the n-th consecutive failed attempt's retry (n = 0, 1, ...): uniform in
/// `[d/2, d]` with `d = min(initial * 2^n, max)`, in milliseconds.
pub fn backoff_delay(n: u32, initial_ms: u64, max_ms: u64, rng: &mut impl Rng) -> Duration {
    let d = initial_ms.saturating_mul(1u64.checked_shl(n.min(63)).unwrap_or(u64::MAX)).min(max_ms);
    let lo = d / 2;
    let ms = if d > lo { rng.random_range(lo..=d) } else { d };
    Duration::from_millis(ms)
}

/// Reply to one control-plane frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `{"type":"ack","version":N}`
    Ack(u64),
    /// `{"type":"nack","version":N|null,"error":{...}}`
    Nack(Option<serde_json::Number>, Rejection),
}

impl Reply {
    /// The JSON text of the reply frame.
    pub fn to_json(&self) -> String {
        match self {
            Reply::Ack(v) => json!({"type":"ack","version":v}).to_string(),
            Reply::Nack(v, r) => json!({
                "type":"nack",
                "version": v.clone().map(Value::Number).unwrap_or(Value::Null),
                "error": {"code": r.code, "path": r.path, "message": r.message},
            })
            .to_string(),
        }
    }
}

#[derive(serde::Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    ty: Option<Value>,
    #[serde(borrow)]
    config: Option<&'a RawValue>,
}

fn version_of(raw: &[u8]) -> Option<serde_json::Number> {
    let v: Value = serde_json::from_slice(raw).ok()?;
    match v.get("version")? {
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.clone()),
        _ => None,
    }
}

/// Handle one text frame from the control plane: validate, compare versions, write the
/// LKG file, swap, and return the reply. A rejected config changes nothing.
pub fn handle_frame(router: &Router, text: &str) -> Reply {
    let malformed = |m: &str| Reply::Nack(None, Rejection { code: "malformed_json", path: String::new(), message: m.into() });
    let frame: Frame = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(e) => return count(router, malformed(&format!("frame is not a config object: {e}"))),
    };
    let (Some(Value::String(ty)), Some(raw)) = (&frame.ty, frame.config) else {
        return count(router, malformed("frame is not {\"type\":\"config\",\"config\":...}"));
    };
    if ty != "config" {
        return count(router, malformed("frame type is not config"));
    }
    apply_config_bytes(router, raw.get().as_bytes())
}

fn count(router: &Router, r: Reply) -> Reply {
    if let Reply::Nack(_, rej) = &r {
        router.metrics.config_rejected.with_label_values(&[rej.code]).inc();
    }
    r
}

/// Apply a config document from the control plane (raw bytes of the `config` member).
/// Nacks are counted in `router_config_rejected_total{code}`, applied configs in
/// `router_config_accepted_total`.
pub fn apply_config_bytes(router: &Router, raw: &[u8]) -> Reply {
    count(router, apply_inner(router, raw))
}

fn apply_inner(router: &Router, raw: &[u8]) -> Reply {
    let cfg = match config::parse_and_validate(raw) {
        Ok(c) => c,
        Err(r) => {
            let v = if raw.len() <= MAX_FRAME { version_of(raw) } else { None };
            return Reply::Nack(v, r);
        }
    };
    let current = router.current_config();
    match check_version(current.as_deref(), &cfg) {
        Err(r) => Reply::Nack(Some(cfg.version.into()), r),
        Ok(VersionCheck::Reack) => Reply::Ack(cfg.version),
        Ok(VersionCheck::Apply) => {
            if let Err(e) = write_lkg(&router.state_dir, raw) {
                eprintln!("pingora-router: cannot write last-known-good file: {e}");
                return Reply::Nack(
                    Some(cfg.version.into()),
                    Rejection { code: "internal_error", path: String::new(), message: format!("writing LKG: {e}") },
                );
            }
            let v = cfg.version;
            router.install(cfg);
            router.metrics.config_accepted.inc();
            Reply::Ack(v)
        }
    }
}

/// The control-plane background service.
pub struct ControlPlane {
    /// Shared router state.
    pub router: Arc<Router>,
    /// `--control-plane` URL; `None` runs on the LKG file alone.
    pub url: Option<String>,
    /// `--reconnect-initial-ms`
    pub initial_ms: u64,
    /// `--reconnect-max-ms`
    pub max_ms: u64,
}

impl ControlPlane {
    async fn session(&self, url: &str, first: &mut bool) -> Result<(), String> {
        let mut wsconf = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
        wsconf.max_message_size = Some(MAX_FRAME);
        wsconf.max_frame_size = Some(MAX_FRAME);
        let (ws, _) = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(url, Some(wsconf), false),
        )
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
        if !*first {
            self.router.metrics.cp_reconnects.inc();
        }
        *first = false;
        self.router.cp_connected.store(true, Ordering::Release);
        self.router.metrics.cp_connected.set(1);
        let (mut tx, mut rx) = ws.split();
        let version = self.router.current_config().map(|c| json!(c.version)).unwrap_or(Value::Null);
        let hello = json!({"type":"hello","impl":"pingora","config_version":version}).to_string();
        let res: Result<(), String> = async {
            tx.send(Message::text(hello)).await.map_err(|e| format!("send: {e}"))?;
            while let Some(msg) = rx.next().await {
                let msg = msg.map_err(|e| format!("recv: {e}"))?;
                let text = match msg {
                    Message::Text(t) => t.to_string(),
                    Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                let router = self.router.clone();
                // validation + fsync are blocking work: keep them off the reactor
                let reply = tokio::task::spawn_blocking(move || handle_frame(&router, &text))
                    .await
                    .map_err(|e| format!("apply: {e}"))?;
                tx.send(Message::text(reply.to_json())).await.map_err(|e| format!("send: {e}"))?;
            }
            Ok(())
        }
        .await;
        self.router.cp_connected.store(false, Ordering::Release);
        self.router.metrics.cp_connected.set(0);
        res.and(Err("closed by control plane".into()))
    }

    async fn run(&self, url: &str) {
        let mut first = true;
        let mut failures: u32 = 0;
        loop {
            let before = self.router.metrics.cp_reconnects.get();
            let was_first = first;
            let r = self.session(url, &mut first).await;
            let connected = was_first != first || self.router.metrics.cp_reconnects.get() != before;
            if connected {
                failures = 0;
            }
            if let Err(e) = r {
                // Always on stderr, as the Go router's log line: an operator must see why
                // the router is running without its control plane.
                eprintln!("pingora-router: control plane {url}: {e}");
            }
            let d = backoff_delay(failures, self.initial_ms, self.max_ms, &mut rand::rng());
            failures = failures.saturating_add(1);
            tokio::time::sleep(d).await;
        }
    }
}

#[async_trait]
impl BackgroundService for ControlPlane {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.router.start_checkers(tokio::runtime::Handle::current());
        match &self.url {
            Some(url) => {
                tokio::select! {
                    _ = self.run(url) => {}
                    _ = shutdown.changed() => {}
                }
            }
            None => {
                let _ = shutdown.changed().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_bounds() {
        let mut rng = rand::rng();
        for n in 0..40 {
            let d = (100u64.saturating_mul(1u64 << n.min(62))).min(5000);
            for _ in 0..200 {
                let got = backoff_delay(n, 100, 5000, &mut rng).as_millis() as u64;
                assert!(got >= d / 2 && got <= d, "n={n} got={got} d={d}");
            }
        }
        assert!(backoff_delay(0, 100, 5000, &mut rng) <= Duration::from_millis(100));
        assert!(backoff_delay(30, 100, 5000, &mut rng) >= Duration::from_millis(2500));
    }
}
