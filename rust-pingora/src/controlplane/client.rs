//! The control-plane WebSocket client: a Pingora `BackgroundService` (registered only with
//! `--control-plane`) that connects, says hello, answers each config frame with
//! [`super::handle_frame`], checks the session with [`Keepalive`] pings and reconnects
//! with [`super::backoff_delay`].

use super::{backoff_delay, handle_frame, MAX_FRAME};
use crate::store::Store;
use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Limit for the WebSocket handshake, TCP connect included (spec section 6).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The liveness check of an established session (docs/spec.md section 6, "Keepalive"):
/// a WebSocket Ping (RFC 6455 section 5.5.2) once `ping` has passed since the session
/// began or since the previous ping was answered, never while a config is being applied
/// (then right after it). Any frame received after the ping answers it (the control
/// plane's Pong, RFC 6455 section 5.5.3, or any other). Without an answer within
/// `pong_timeout` the session is lost: the connection is closed (no close handshake: the
/// peer is not answering), `router_control_plane_pong_timeouts_total` counts it, and the
/// client reconnects with the backoff as after any other session end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// `--cp-ping-ms`, > 0.
    pub ping: Duration,
    /// `--cp-pong-timeout-ms`, > 0.
    pub pong_timeout: Duration,
}

impl Keepalive {
    /// The routers' default: a ping every 10 s, 20 s for its answer. The timeout is two
    /// ping intervals so that a busy control plane, or a large config frame on a slow
    /// link (the Pong queues behind it), is not taken for a black hole; a silent black
    /// hole is detected within 30 s.
    pub const DEFAULT: Keepalive = Keepalive { ping: Duration::from_secs(10), pong_timeout: Duration::from_secs(20) };
}

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
    /// `--cp-ping-ms` and `--cp-pong-timeout-ms`
    pub keepalive: Keepalive,
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
        let ka = self.keepalive;
        let res: Result<(), String> = async {
            tx.send(Message::text(hello)).await.map_err(|e| format!("send: {e}"))?;
            // when the next ping is due, and while one waits for its answer, its deadline
            let mut next_ping = Instant::now() + ka.ping;
            let mut answer_by: Option<Instant> = None;
            let mut pings: u64 = 0;
            loop {
                tokio::select! {
                    // a frame already received answers a ping before its deadline is looked at
                    biased;
                    msg = rx.next() => {
                        let Some(msg) = msg else { break };
                        let msg = msg.map_err(|e| format!("recv: {e}"))?;
                        if answer_by.take().is_some() {
                            next_ping = Instant::now() + ka.ping;
                        }
                        let text = match msg {
                            Message::Text(t) => t.to_string(),
                            Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                            Message::Close(_) => break,
                            _ => continue, // Pong, or a Ping (tungstenite queues its Pong)
                        };
                        let store = self.store.clone();
                        // validation + fsync are blocking work: keep them off the reactor
                        let reply = tokio::task::spawn_blocking(move || handle_frame(&store, &text))
                            .await
                            .map_err(|e| format!("apply: {e}"))?;
                        tx.send(Message::text(reply.to_json())).await.map_err(|e| format!("send: {e}"))?;
                    }
                    _ = tokio::time::sleep_until(answer_by.unwrap_or(next_ping)) => {
                        if answer_by.is_some() {
                            self.store.metrics.cp_pong_timeouts.inc();
                            return Err(format!("no answer to a ping within {} ms", ka.pong_timeout.as_millis()));
                        }
                        pings += 1;
                        let deadline = Instant::now() + ka.pong_timeout;
                        // a send that cannot get out (peer not reading) is no answer either
                        match tokio::time::timeout_at(deadline, tx.send(Message::Ping(pings.to_be_bytes().to_vec().into()))).await {
                            Ok(r) => r.map_err(|e| format!("send ping: {e}"))?,
                            Err(_) => {
                                self.store.metrics.cp_pong_timeouts.inc();
                                return Err(format!("no answer to a ping within {} ms", ka.pong_timeout.as_millis()));
                            }
                        }
                        answer_by = Some(deadline);
                    }
                }
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
