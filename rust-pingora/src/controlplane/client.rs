//! The control-plane WebSocket client: a Pingora `BackgroundService` (registered only with
//! `--control-plane`) that connects, says hello, answers each config frame with
//! [`super::handle_frame`] and reconnects with [`super::backoff_delay`].

use super::{backoff_delay, handle_frame, MAX_FRAME};
use crate::store::Store;
use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Limit for the WebSocket handshake, TCP connect included (spec section 6).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The control-plane background service.
pub struct ControlPlane {
    /// The router state configs are installed in.
    pub store: Arc<Store>,
    /// `--control-plane` URL.
    pub url: String,
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
            self.store.metrics.cp_reconnects.inc();
        }
        *first = false;
        self.store.set_cp_connected(true);
        let (mut tx, mut rx) = ws.split();
        let version = self.store.current_config().map(|c| json!(c.version)).unwrap_or(Value::Null);
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
                let store = self.store.clone();
                // validation + fsync are blocking work: keep them off the reactor
                let reply = tokio::task::spawn_blocking(move || handle_frame(&store, &text))
                    .await
                    .map_err(|e| format!("apply: {e}"))?;
                tx.send(Message::text(reply.to_json())).await.map_err(|e| format!("send: {e}"))?;
            }
            Ok(())
        }
        .await;
        self.store.set_cp_connected(false);
        res.and(Err("closed by control plane".into()))
    }

    async fn run(&self, url: &str) {
        let mut first = true;
        let mut failures: u32 = 0;
        loop {
            let before = self.store.metrics.cp_reconnects.get();
            let was_first = first;
            let r = self.session(url, &mut first).await;
            let connected = was_first != first || self.store.metrics.cp_reconnects.get() != before;
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
        tokio::select! {
            _ = self.run(&self.url) => {}
            _ = shutdown.changed() => {}
        }
    }
}
