//! The control plane the routers connect to (spec section 6): a WebSocket server
//! (tokio-tungstenite) on a fixed loopback port that records every frame a router sends
//! (hello, ack, nack), pushes configs, and can be stopped (port refuses), started again on
//! the same port, or made to drop its connections while it keeps listening.

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// A frame received from a router.
#[derive(Debug, Clone, PartialEq)]
pub enum CpEvent {
    /// `{"type":"hello","impl":..,"config_version":..}`.
    Hello {
        /// `impl`.
        imp: String,
        /// `config_version`.
        version: Option<u64>,
    },
    /// `{"type":"ack","version":N}`.
    Ack {
        /// `version`.
        version: Option<u64>,
    },
    /// `{"type":"nack",...}`.
    Nack {
        /// `version` (null when the config had none).
        version: Option<u64>,
        /// `error.code`.
        code: String,
        /// `error.path`.
        path: String,
    },
    /// Anything else, verbatim.
    Other(String),
}

impl CpEvent {
    fn parse(text: &str) -> CpEvent {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => return CpEvent::Other(text.to_string()),
        };
        match v.get("type").and_then(|t| t.as_str()) {
            Some("hello") => CpEvent::Hello {
                imp: v.get("impl").and_then(|x| x.as_str()).unwrap_or("").to_string(),
                version: v.get("config_version").and_then(|x| x.as_u64()),
            },
            Some("ack") => CpEvent::Ack { version: v.get("version").and_then(|x| x.as_u64()) },
            Some("nack") => CpEvent::Nack {
                version: v.get("version").and_then(|x| x.as_u64()),
                code: v.pointer("/error/code").and_then(|x| x.as_str()).unwrap_or("").to_string(),
                path: v.pointer("/error/path").and_then(|x| x.as_str()).unwrap_or("<none>").to_string(),
            },
            _ => CpEvent::Other(text.to_string()),
        }
    }
}

struct Inner {
    events: Mutex<Vec<CpEvent>>,
    changed: watch::Sender<u64>,
    conns: Mutex<Vec<mpsc::UnboundedSender<String>>>,
    live: AtomicU32,
    /// Connections that ended after their WebSocket handshake, ever (monotonic).
    closed: AtomicU32,
    /// The config text pushed on hello.
    current: Mutex<Option<String>>,
    push_on_hello: bool,
    drop_gen: watch::Sender<u64>,
}

/// The harness's control plane.
pub struct ControlPlane {
    /// The fixed port.
    pub port: u16,
    inner: Arc<Inner>,
    server: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    /// While stopped: the port held without listening ([`crate::util::net::ReservedPort`]),
    /// so the router's reconnects are refused and no other run's upstream or router takes
    /// the port (seen: a router reconnecting to its stopped control plane reached another
    /// run's upstream that had picked the port).
    reserved: std::sync::Mutex<Option<crate::util::net::ReservedPort>>,
}

/// Builds a config frame around the config member's exact text.
pub fn config_frame(config_text: &str) -> String {
    format!("{{\"type\":\"config\",\"config\":{config_text}}}")
}

impl ControlPlane {
    /// Binds an ephemeral loopback port and starts listening. `initial` is the config
    /// text pushed on hello (when `push_on_hello`).
    pub async fn start(initial: Option<String>, push_on_hello: bool) -> Result<ControlPlane> {
        let l = TcpListener::bind("127.0.0.1:0").await.context("bind control plane")?;
        let port = l.local_addr()?.port();
        let inner = Arc::new(Inner {
            events: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
            conns: Mutex::new(Vec::new()),
            live: AtomicU32::new(0),
            closed: AtomicU32::new(0),
            current: Mutex::new(initial),
            push_on_hello,
            drop_gen: watch::channel(0).0,
        });
        let cp = ControlPlane { port, inner, server: tokio::sync::Mutex::new(None), reserved: std::sync::Mutex::new(None) };
        *cp.server.lock().await = Some(tokio::spawn(serve(l, cp.inner.clone())));
        Ok(cp)
    }

    /// `ws://127.0.0.1:port/`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// Closes the listener and every connection; the port stays held (refusing) until
    /// [`ControlPlane::restart`].
    pub async fn stop(&self) {
        if let Some(h) = self.server.lock().await.take() {
            h.abort();
            let _ = h.await;
            // Best effort: when the hold cannot be had the port is merely closed.
            *self.reserved.lock().unwrap() = crate::util::net::ReservedPort::new(self.port).ok();
        }
        self.inner.conns.lock().unwrap().clear();
    }

    /// Listens again on the same port.
    pub async fn restart(&self) -> Result<()> {
        let mut s = self.server.lock().await;
        if s.is_some() {
            return Ok(());
        }
        self.reserved.lock().unwrap().take();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let l = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) => {
                    if tokio::time::Instant::now() > deadline {
                        return Err(e).context("rebind control plane");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        *s = Some(tokio::spawn(serve(l, self.inner.clone())));
        Ok(())
    }

    /// Closes the current connections; keeps listening.
    pub fn drop_connections(&self) {
        self.inner.drop_gen.send_modify(|g| *g += 1);
    }

    /// Every frame received so far.
    pub fn events(&self) -> Vec<CpEvent> {
        self.inner.events.lock().unwrap().clone()
    }

    /// Live connections.
    pub fn live(&self) -> u32 {
        self.inner.live.load(Ordering::SeqCst)
    }

    /// Connections that ended after their WebSocket handshake since the start (a count
    /// that only grows, so a wait on it cannot miss a short gap between two connections
    /// the way a wait for `live() == 0` can).
    pub fn closed(&self) -> u32 {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` connections have ended (see [`ControlPlane::closed`]).
    pub async fn wait_closed(&self, n: u32, within: Duration) -> bool {
        let mut rx = self.inner.changed.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.closed() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return self.closed() >= n;
            }
        }
    }

    /// Number of hellos received.
    pub fn hellos(&self) -> usize {
        self.events().iter().filter(|e| matches!(e, CpEvent::Hello { .. })).count()
    }

    /// Sets the config pushed on later hellos.
    pub fn set_current(&self, text: String) {
        *self.inner.current.lock().unwrap() = Some(text);
    }

    /// Sends a frame to every live connection; returns the event index before sending.
    /// Fails when no router is connected.
    pub fn send_frame(&self, frame: String) -> Result<usize> {
        let idx = self.inner.events.lock().unwrap().len();
        let conns = self.inner.conns.lock().unwrap();
        let mut sent = 0;
        for c in conns.iter() {
            if c.send(frame.clone()).is_ok() {
                sent += 1;
            }
        }
        if sent == 0 {
            bail!("no router is connected to the control plane");
        }
        Ok(idx)
    }

    /// Waits until `pred` holds for the event list, or the deadline passes.
    pub async fn wait_for<F: Fn(&[CpEvent]) -> bool>(&self, pred: F, within: Duration) -> bool {
        let mut rx = self.inner.changed.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if pred(&self.inner.events.lock().unwrap()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return pred(&self.inner.events.lock().unwrap());
            }
        }
    }

    /// Waits until `n` connections are live.
    pub async fn wait_live(&self, n: u32, within: Duration) -> bool {
        let mut rx = self.inner.changed.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.live() == n {
                return true;
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return self.live() == n;
            }
        }
    }

    /// The first ack or nack at or after event `from` whose version is `version`.
    /// `version` None: the first answer whatever its version.
    pub async fn answer(&self, from: usize, version: Option<Option<u64>>, within: Duration) -> Option<CpEvent> {
        let find = |ev: &[CpEvent]| -> Option<CpEvent> {
            ev.iter().skip(from).find(|e| match e {
                CpEvent::Ack { version: v } | CpEvent::Nack { version: v, .. } => version.is_none_or(|w| *v == w),
                _ => false,
            }).cloned()
        };
        if self.wait_for(|ev| find(ev).is_some(), within).await {
            find(&self.inner.events.lock().unwrap())
        } else {
            None
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Ok(mut s) = self.server.try_lock() {
            if let Some(h) = s.take() {
                h.abort();
            }
        }
    }
}

async fn serve(l: TcpListener, inner: Arc<Inner>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            acc = l.accept() => {
                let Ok((s, _)) = acc else { continue };
                conns.spawn(conn(s, inner.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

struct LiveGuard(Arc<Inner>);
impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
        self.0.closed.fetch_add(1, Ordering::SeqCst);
        self.0.changed.send_modify(|g| *g += 1);
    }
}

async fn conn(s: tokio::net::TcpStream, inner: Arc<Inner>) {
    let mut cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    cfg.max_message_size = Some(64 << 20);
    cfg.max_frame_size = Some(64 << 20);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(s, Some(cfg)).await else { return };
    let (mut tx, mut rx) = ws.split();
    let (otx, mut orx) = mpsc::unbounded_channel::<String>();
    inner.conns.lock().unwrap().push(otx.clone());
    inner.live.fetch_add(1, Ordering::SeqCst);
    inner.changed.send_modify(|g| *g += 1);
    let _guard = LiveGuard(inner.clone());
    let mut drop_rx = inner.drop_gen.subscribe();
    drop_rx.borrow_and_update();
    loop {
        tokio::select! {
            _ = drop_rx.changed() => break,
            out = orx.recv() => match out {
                Some(text) => if tx.send(Message::text(text)).await.is_err() { break },
                None => break,
            },
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let ev = CpEvent::parse(t.as_str());
                    let push = matches!(ev, CpEvent::Hello { .. }) && inner.push_on_hello;
                    inner.events.lock().unwrap().push(ev);
                    inner.changed.send_modify(|g| *g += 1);
                    if push {
                        let cur = inner.current.lock().unwrap().clone();
                        if let Some(c) = cur {
                            let _ = otx.send(config_frame(&c));
                        }
                    }
                }
                Some(Ok(Message::Binary(b))) => {
                    inner.events.lock().unwrap().push(CpEvent::Other(format!("binary frame of {} bytes", b.len())));
                    inner.changed.send_modify(|g| *g += 1);
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    }
    inner.conns.lock().unwrap().retain(|c| !c.same_channel(&otx));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hello_gets_current_config_and_acks_are_recorded() {
        let cp = ControlPlane::start(Some("{\"version\":1}".into()), true).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::connect_async(cp.url()).await.unwrap();
        ws.send(Message::text(r#"{"type":"hello","impl":"go","config_version":null}"#)).await.unwrap();
        let m = ws.next().await.unwrap().unwrap();
        assert_eq!(m.to_text().unwrap(), r#"{"type":"config","config":{"version":1}}"#);
        ws.send(Message::text(r#"{"type":"ack","version":1}"#)).await.unwrap();
        let a = cp.answer(0, Some(Some(1)), Duration::from_secs(5)).await;
        assert_eq!(a, Some(CpEvent::Ack { version: Some(1) }));
        assert!(cp.wait_live(1, Duration::from_secs(5)).await);
        let idx = cp.send_frame(config_frame("{\"version\":2}")).unwrap();
        let m = ws.next().await.unwrap().unwrap();
        assert!(m.to_text().unwrap().contains("\"version\":2"));
        ws.send(Message::text(r#"{"type":"nack","version":null,"error":{"code":"malformed_json","path":"","message":"x"}}"#)).await.unwrap();
        let a = cp.answer(idx, Some(None), Duration::from_secs(5)).await.unwrap();
        assert_eq!(a, CpEvent::Nack { version: None, code: "malformed_json".into(), path: "".into() });
        // stop: connection closed and port refuses; restart on the same port
        cp.stop().await;
        assert!(cp.wait_live(0, Duration::from_secs(5)).await);
        assert!(tokio::net::TcpStream::connect(("127.0.0.1", cp.port)).await.is_err());
        assert!(cp.reserved.lock().unwrap().is_some());
        assert!((0..500).filter_map(|_| crate::util::net::free_port().ok()).all(|p| p != cp.port));
        cp.restart().await.unwrap();
        assert!(cp.reserved.lock().unwrap().is_none());
        let (mut ws2, _) = tokio_tungstenite::connect_async(cp.url()).await.unwrap();
        assert!(cp.wait_live(1, Duration::from_secs(5)).await);
        cp.drop_connections();
        assert!(cp.wait_live(0, Duration::from_secs(5)).await);
        let end = ws2.next().await;
        assert!(end.is_none() || matches!(end, Some(Err(_)) | Some(Ok(Message::Close(_)))));
    }
}
