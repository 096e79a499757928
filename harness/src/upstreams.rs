//! Mock upstreams. Each has a name, a fixed port for the whole scenario, a behaviour that
//! steps can change, and can be taken down (its port then refuses connections and every
//! open connection is closed) and brought back on the same port.
//!
//! Every behaviour, plain or TLS, is served by the harness's own TCP server below: it
//! reads requests itself (`httparse`, Content-Length and chunked bodies) so it can
//! misbehave at the byte level (RST before headers, close, garbage, short body, drip,
//! hang, hold), echo exactly what arrived, and record every request it receives byte-exact
//! (names as received, in order, with the body) into the run's
//! [`crate::observe::upstream::Recorder`].
//!
//! Every HTTP response carries `X-Upstream-Name: <name>`. `GET /healthz*` always answers
//! the upstream's health status (default 200), whatever the behaviour.

use crate::observe::body::BodySink;
use crate::observe::upstream::{ReqFraming, UpstreamRequest};
use crate::scenario::{Behaviour, UpstreamSpec};
use crate::util::net::addr;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// State shared by the servers of one upstream; survives down/up cycles.
pub struct Shared {
    /// Upstream name, sent in `X-Upstream-Name`.
    pub name: String,
    behaviour: Mutex<Behaviour>,
    health_status: AtomicU16,
    /// Non-health requests received.
    pub requests: AtomicU64,
    /// Body bytes received (all requests).
    pub body_bytes: AtomicU64,
    released: watch::Sender<bool>,
    /// Where every non-health request received is recorded.
    pub recorder: crate::observe::upstream::Recorder,
}

enum Running {
    Raw(JoinHandle<()>),
}

/// One mock upstream.
pub struct Upstream {
    shared: Arc<Shared>,
    /// The port, fixed for the scenario.
    pub port: u16,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// CA certificate (PEM) for TLS upstreams.
    pub ca_file: Option<PathBuf>,
    running: tokio::sync::Mutex<Option<Running>>,
    /// While down: the port held without listening ([`crate::util::net::ReservedPort`]),
    /// so connections are refused and no other socket takes the port before `up`.
    reserved: std::sync::Mutex<Option<crate::util::net::ReservedPort>>,
}

impl Upstream {
    /// Creates an upstream on a fresh ephemeral port of 127.0.0.1; starts it when
    /// `spec.up`. TLS material goes to `dir`.
    pub async fn start(name: &str, spec: &UpstreamSpec, dir: &Path, recorder: crate::observe::upstream::Recorder) -> Result<Upstream> {
        let std_l = std::net::TcpListener::bind("127.0.0.1:0").context("bind upstream")?;
        Upstream::start_on(std_l, name, spec, dir, recorder).await
    }

    /// [`Upstream::start`] on a socket already bound (not yet listening) to a port of
    /// 127.0.0.1, so a caller can choose which upstream gets which port.
    pub async fn start_on(std_l: std::net::TcpListener, name: &str, spec: &UpstreamSpec, dir: &Path, recorder: crate::observe::upstream::Recorder) -> Result<Upstream> {
        let shared = Arc::new(Shared {
            name: name.to_string(),
            behaviour: Mutex::new(spec.behaviour.clone()),
            health_status: AtomicU16::new(spec.health_status),
            requests: AtomicU64::new(0),
            body_bytes: AtomicU64::new(0),
            released: watch::channel(false).0,
            recorder,
        });
        let (tls, ca_file) = if spec.tls {
            let (acc, ca) = make_tls(name, dir)?;
            (Some(acc), Some(ca))
        } else {
            (None, None)
        };
        let port = std_l.local_addr()?.port();
        let up = Upstream { shared, port, tls, ca_file, running: tokio::sync::Mutex::new(None), reserved: std::sync::Mutex::new(None) };
        if spec.up {
            up.serve(Some(std_l)).await?;
        } else {
            drop(std_l);
            up.hold_port();
        }
        Ok(up)
    }

    /// `scheme://127.0.0.1:port`.
    pub fn origin(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Shared counters and state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    async fn serve(&self, listener: Option<std::net::TcpListener>) -> Result<()> {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return Ok(());
        }
        let std_l = match listener {
            Some(l) => l,
            None => {
                self.reserved.lock().unwrap().take();
                bind_same_port(self.port).await?
            }
        };
        std_l.set_nonblocking(true)?;
        let l = TcpListener::from_std(std_l)?;
        let shared = self.shared.clone();
        let tls = self.tls.clone();
        *running = Some(Running::Raw(tokio::spawn(accept_loop(l, shared, tls))));
        Ok(())
    }

    /// Closes the port and every connection.
    pub async fn down(&self) {
        let r = self.running.lock().await.take();
        match r {
            Some(Running::Raw(h)) => {
                h.abort();
                let _ = h.await;
            }
            None => return,
        }
        // Return only once the port refuses connections, so that "down" is true when the
        // step ends.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            match tokio::net::TcpStream::connect(addr(self.port)).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        self.hold_port();
    }

    /// Holds the port while the upstream is down (best effort: when the hold cannot be
    /// had, the port is merely closed, as before).
    fn hold_port(&self) {
        if let Ok(r) = crate::util::net::ReservedPort::new(self.port) {
            *self.reserved.lock().unwrap() = Some(r);
        }
    }

    /// Listens again on the same port.
    pub async fn up(&self) -> Result<()> {
        self.serve(None).await
    }

    /// Whether the port is listening.
    pub async fn is_up(&self) -> bool {
        self.running.lock().await.is_some()
    }

    /// Changes the behaviour; restarts the server (open connections are closed).
    pub async fn set_behaviour(&self, b: Behaviour) -> Result<()> {
        *self.shared.behaviour.lock().unwrap() = b;
        if self.is_up().await {
            self.down().await;
            self.serve(None).await?;
        }
        Ok(())
    }

    /// Changes the `/healthz` status.
    pub fn set_health(&self, status: u16) {
        self.shared.health_status.store(status, Ordering::SeqCst);
    }

    /// Lets held requests answer.
    pub fn release(&self) {
        self.shared.released.send_replace(true);
    }

    /// Stops everything.
    pub async fn shutdown(&self) {
        self.down().await;
    }
}

async fn bind_same_port(port: u16) -> Result<std::net::TcpListener> {
    // The previous listener's socket may take a moment to go; std sets SO_REUSEADDR.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => return Ok(l),
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e).context(format!("rebind upstream port {port}")),
        }
    }
}

fn make_tls(name: &str, dir: &Path) -> Result<(tokio_rustls::TlsAcceptor, PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, format!("parity test CA {name}"));
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate()?;
    let leaf_params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;
    let ca_file = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&ca_file, ca_cert.pem())?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )?;
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(cfg)), ca_file))
}

async fn accept_loop(l: TcpListener, shared: Arc<Shared>, tls: Option<tokio_rustls::TlsAcceptor>) {
    // Dropping the JoinSet (when this task is aborted) aborts every connection task,
    // which closes their sockets.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            acc = l.accept() => {
                let Ok((s, _peer)) = acc else { continue };
                let _ = s.set_nodelay(true);
                let shared = shared.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
                    match tls {
                        Some(t) => {
                            if let Ok(ts) = t.accept(s).await {
                                let _ = serve_conn(ts, &shared, fd).await;
                            }
                        }
                        None => {
                            let _ = serve_conn(s, &shared, fd).await;
                        }
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct Head {
    /// Method.
    pub method: String,
    /// Request target.
    pub target: String,
    /// `HTTP/1.x`.
    pub version: String,
    /// Headers with lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Headers in arrival order, names as received.
    pub raw_headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The largest request head a mock upstream reads (1 MiB): any number of header fields
/// fits, so that a head the router forwards (its own limit is 64 KiB, spec section 3) is
/// never refused by the harness.
pub const MAX_HEAD_BYTES: usize = 1 << 20;

/// Parses a request head at the start of `buf`: `Ok(None)` while incomplete, else the head
/// and its length. Any number of header fields: a fixed array first, then one sized by the
/// line count.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>> {
    let mut slots = 128;
    loop {
        let mut hdrs = vec![httparse::EMPTY_HEADER; slots];
        let mut req = httparse::Request::new(&mut hdrs);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let head = Head {
                    method: req.method.unwrap_or("").to_string(),
                    target: req.path.unwrap_or("").to_string(),
                    version: format!("HTTP/1.{}", req.version.unwrap_or(1)),
                    headers: req
                        .headers
                        .iter()
                        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect(),
                    raw_headers: req.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned())).collect(),
                };
                return Ok(Some((head, n)));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                let lines = buf.iter().filter(|b| **b == b'\n').count() + 1;
                anyhow::ensure!(lines > slots, "too many header fields");
                slots = lines;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads one request head (at most [`MAX_HEAD_BYTES`]); `None` on a clean close before
/// any byte.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Result<Option<Head>> {
    loop {
        if let Some((head, n)) = parse_head(buf)? {
            buf.drain(..n);
            return Ok(Some(head));
        }
        anyhow::ensure!(buf.len() <= MAX_HEAD_BYTES, "request head above {MAX_HEAD_BYTES} bytes");
        let mut tmp = [0u8; 65536];
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            anyhow::bail!("eof in head");
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

async fn fill<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Result<()> {
    let mut tmp = [0u8; 65536];
    let n = s.read(&mut tmp).await?;
    if n == 0 {
        anyhow::bail!("eof in body");
    }
    buf.extend_from_slice(&tmp[..n]);
    Ok(())
}

/// Reads one CRLF-terminated line from `buf` (filling it from `s` as needed), removes it
/// with its CRLF from `buf`, and returns it without the CRLF.
async fn read_line<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Result<String> {
    let end = loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            break i;
        }
        fill(s, buf).await?;
    };
    let line = String::from_utf8_lossy(&buf[..end]).to_string();
    buf.drain(..end + 2);
    Ok(line)
}

/// Discards the next `n` bytes (from `buf`, then from `s`), calling `progress` with the
/// size of each piece as it goes.
async fn discard<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>, n: u64, mut progress: impl FnMut(&[u8])) -> Result<()> {
    let mut left = n;
    while left > 0 {
        if buf.is_empty() {
            fill(s, buf).await?;
        }
        let take = (buf.len() as u64).min(left) as usize;
        progress(&buf[..take]);
        buf.drain(..take);
        left -= take as u64;
    }
    Ok(())
}

/// Reads (and discards) the body of `head`, returning its length.
async fn read_body<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>, head: &Head, shared: &Shared, sink: &mut BodySink) -> Result<u64> {
    let chunked = head.get("transfer-encoding").map(|v| v.to_ascii_lowercase().contains("chunked")).unwrap_or(false);
    let mut total = 0u64;
    if chunked {
        loop {
            let line = read_line(s, buf).await?;
            let size = u64::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).context("chunk size")?;
            if size == 0 {
                // trailers until an empty line
                while !read_line(s, buf).await?.is_empty() {}
                return Ok(total);
            }
            let mut k = 0u64;
            discard(s, buf, size + 2, |b| {
                let take = (size.saturating_sub(k) as usize).min(b.len());
                sink.push(&b[..take]);
                k += b.len() as u64;
            })
            .await?;
            total += size;
            shared.body_bytes.fetch_add(size, Ordering::Relaxed);
        }
    } else {
        let len: u64 = head.get("content-length").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        discard(s, buf, len, |b| {
            sink.push(b);
            total += b.len() as u64;
            shared.body_bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
        })
        .await?;
        Ok(total)
    }
}

/// Holds the socket's writes (TCP_CORK) until its shutdown, which sends what is held with
/// the FIN in the same segment (Linux `tcp_send_fin` tacks the FIN onto unsent data). An
/// upstream that closes right after its response so closes it for the router at the same
/// moment as the response arrives, never a scheduling delay later: a router that reuses the
/// connection for the next request has had the close in hand (the reuse check of both
/// routers, docs/spec.md section 4, "Pool identity"), instead of racing it
/// (scenarios/fuzz-stale-pooled-conn.yaml). Not for a reset: corked bytes would be dropped.
pub(crate) fn cork(fd: std::os::fd::RawFd) {
    use nix::sys::socket::{setsockopt, sockopt::TcpCork};
    // The fd is owned by the stream that is still alive in the caller.
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let _ = setsockopt(&bfd, TcpCork, &true);
}

fn set_linger_zero(fd: std::os::fd::RawFd) {
    use nix::sys::socket::{setsockopt, sockopt::Linger};
    // SAFETY-free: the fd is owned by the stream that is still alive in the caller.
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let _ = setsockopt(&bfd, Linger, &nix::libc::linger { l_onoff: 1, l_linger: 0 });
}

async fn write_simple<S: AsyncWrite + Unpin>(s: &mut S, name: &str, status: u16, extra: &[(String, String)], body: &[u8]) -> Result<()> {
    let mut h = format!("HTTP/1.1 {status} {}\r\nX-Upstream-Name: {name}\r\nContent-Length: {}\r\n", reason(status), body.len());
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    s.write_all(h.as_bytes()).await?;
    s.write_all(body).await?;
    s.flush().await?;
    Ok(())
}

/// The canonical reason phrase of `status` (RFC 9110 §15), `Status` for codes it has none.
fn reason(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status).ok().and_then(|c| c.canonical_reason()).unwrap_or("Status")
}

async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, shared: &Shared, fd: std::os::fd::RawFd) -> Result<()> {
    let name = shared.name.clone();
    let mut buf = Vec::new();
    let conn = shared.recorder.next_conn();
    let mut index = 0u32;
    loop {
        let Some(head) = read_head(&mut s, &mut buf).await? else { return Ok(()) };
        if head.target.starts_with("/healthz") {
            read_body(&mut s, &mut buf, &head, shared, &mut BodySink::new(0)).await?;
            index += 1;
            let st = shared.health_status.load(Ordering::SeqCst);
            write_simple(&mut s, &name, st, &[], b"health").await?;
            if head.get("connection").map(|v| v.to_ascii_lowercase().contains("close")).unwrap_or(false) {
                let _ = s.shutdown().await;
                return Ok(());
            }
            continue;
        }
        shared.requests.fetch_add(1, Ordering::SeqCst);
        let mut sink = BodySink::new(crate::observe::body::KEEP_BYTES);
        let body = read_body(&mut s, &mut buf, &head, shared, &mut sink).await;
        shared.recorder.push(UpstreamRequest {
            upstream: name.clone(),
            conn,
            index,
            method: head.method.clone(),
            target: head.target.clone(),
            version: head.version.clone(),
            headers: head.raw_headers.clone(),
            framing: if head.get("transfer-encoding").map(|v| v.to_ascii_lowercase().contains("chunked")).unwrap_or(false) {
                ReqFraming::Chunked
            } else {
                match head.get("content-length").and_then(|v| v.trim().parse().ok()) {
                    Some(n) => ReqFraming::Length(n),
                    None => ReqFraming::None,
                }
            },
            body: sink.finish(),
            body_complete: body.is_ok(),
        });
        index += 1;
        let beh = shared.behaviour.lock().unwrap().clone();
        let n = match body {
            Ok(n) => n,
            Err(_) if matches!(beh, Behaviour::Hang | Behaviour::ResetBeforeHeaders | Behaviour::CloseBeforeHeaders) => 0,
            Err(e) => return Err(e),
        };
        let close = head.get("connection").map(|v| v.to_ascii_lowercase().contains("close")).unwrap_or(false)
            || head.version == "HTTP/1.0";
        match beh {
            Behaviour::Respond(r) => {
                if r.delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(r.delay_ms)).await;
                }
                let extra: Vec<(String, String)> = r.headers.into_iter().collect();
                let body = r.body.unwrap_or_else(|| format!("hello from {name}"));
                write_simple(&mut s, &name, r.status, &extra, body.as_bytes()).await?;
            }
            Behaviour::Echo(e) => {
                if e.delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(e.delay_ms)).await;
                }
                let doc = serde_json::json!({
                    "method": head.method, "target": head.target, "version": head.version,
                    "headers": head.headers, "body_bytes": n,
                });
                let body = serde_json::to_vec(&doc)?;
                write_simple(&mut s, &name, 200, &[("Content-Type".into(), "application/json".into())], &body).await?;
            }
            Behaviour::Sink => {
                write_simple(&mut s, &name, 200, &[("X-Received-Bytes".into(), n.to_string())], b"received").await?;
            }
            Behaviour::Hang => {
                // Keep the connection open, never answer; the peer's close ends us.
                let mut tmp = [0u8; 1024];
                loop {
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => return Ok(()),
                        Ok(_) => {}
                    }
                }
            }
            Behaviour::ResetBeforeHeaders => {
                set_linger_zero(fd);
                return Ok(()); // dropping the stream sends RST
            }
            Behaviour::CloseBeforeHeaders => {
                let _ = s.shutdown().await;
                return Ok(());
            }
            Behaviour::Garbage => {
                s.write_all(b"SMTP READY, NOT HTTP AT ALL\r\n\r\n").await?;
                s.flush().await?;
                let _ = s.shutdown().await;
                return Ok(());
            }
            Behaviour::AbortMidBody { declared, sent } => {
                let h = format!("HTTP/1.1 200 OK\r\nX-Upstream-Name: {name}\r\nContent-Length: {declared}\r\n\r\n");
                s.write_all(h.as_bytes()).await?;
                s.write_all(&vec![b'x'; sent as usize]).await?;
                s.flush().await?;
                // A FIN, not an RST: an RST could make the router's kernel drop the head
                // before the router read it; the short body is the failure either way.
                let _ = s.shutdown().await;
                return Ok(());
            }
            Behaviour::Drip { chunks, interval_ms, sse } => {
                let ct = if sse { "text/event-stream" } else { "application/octet-stream" };
                let h = format!("HTTP/1.1 200 OK\r\nX-Upstream-Name: {name}\r\nContent-Type: {ct}\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n");
                s.write_all(h.as_bytes()).await?;
                s.flush().await?;
                let mut i: u64 = 0;
                loop {
                    if chunks > 0 && i >= chunks as u64 {
                        break;
                    }
                    if i > 0 || !sse {
                        tokio::time::sleep(Duration::from_millis(interval_ms)).await;
                    }
                    let data = if sse { format!("data: {i}\n\n") } else { format!("chunk {i}\n") };
                    s.write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes()).await?;
                    s.flush().await?;
                    i += 1;
                }
                s.write_all(b"0\r\n\r\n").await?;
                s.flush().await?;
            }
            Behaviour::Upgrade => {
                let proto = head.get("upgrade").unwrap_or("websocket").to_string();
                let h = format!("HTTP/1.1 101 Switching Protocols\r\nX-Upstream-Name: {name}\r\nConnection: Upgrade\r\nUpgrade: {proto}\r\n\r\n");
                s.write_all(h.as_bytes()).await?;
                s.write_all(&buf).await?;
                s.flush().await?;
                let mut tmp = [0u8; 16384];
                loop {
                    let n = s.read(&mut tmp).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    s.write_all(&tmp[..n]).await?;
                    s.flush().await?;
                }
            }
            Behaviour::Raw(r) => {
                if r.delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(r.delay_ms)).await;
                }
                if r.close {
                    cork(fd); // the FIN goes out with the last bytes
                }
                s.write_all(&crate::client::bytes_of(&crate::scenario::text::expand_repeats(&r.bytes))).await?;
                s.flush().await?;
                if r.close {
                    let _ = s.shutdown().await;
                    return Ok(());
                }
            }
            Behaviour::Hold => {
                let mut rx = shared.released.subscribe();
                let _ = rx.wait_for(|r| *r).await;
                write_simple(&mut s, &name, 200, &[], format!("hello from {name}").as_bytes()).await?;
            }
        }
        if close {
            let _ = s.shutdown().await;
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;

    async fn get(port: u16, path: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(addr(port)).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn spec(b: Behaviour) -> UpstreamSpec {
        UpstreamSpec { tls: false, up: true, health_status: 200, behaviour: b }
    }

    #[tokio::test]
    async fn respond_names_itself_and_goes_down_and_up() {
        let d = tempfile::tempdir().unwrap();
        let u = Upstream::start("primary", &spec(Behaviour::default()), d.path(), Default::default()).await.unwrap();
        let r = get(u.port, "/x").await.unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.to_ascii_lowercase().contains("x-upstream-name: primary"), "{r}");
        assert!(r.ends_with("hello from primary"), "{r}");
        u.down().await;
        let e = TcpStream::connect(addr(u.port)).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        // While down the port is held: no ephemeral bind picks it.
        assert!(u.reserved.lock().unwrap().is_some());
        assert!((0..500).filter_map(|_| crate::util::net::free_port().ok()).all(|p| p != u.port));
        u.up().await.unwrap();
        assert!(u.reserved.lock().unwrap().is_none());
        assert!(get(u.port, "/x").await.unwrap().starts_with("HTTP/1.1 200"));
        assert_eq!(u.shared().requests.load(Ordering::SeqCst), 2);
        u.set_health(503);
        assert!(get(u.port, "/healthz").await.unwrap().starts_with("HTTP/1.1 503"));
        assert_eq!(u.shared().requests.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn echo_reports_request_line_and_headers() {
        let d = tempfile::tempdir().unwrap();
        let u = Upstream::start("e", &spec(Behaviour::Echo(Default::default())), d.path(), Default::default()).await.unwrap();
        let r = get(u.port, "/a?b=1").await.unwrap();
        let body = &r[r.find("\r\n\r\n").unwrap() + 4..];
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["method"], "GET");
        assert_eq!(v["target"], "/a?b=1");
        assert_eq!(v["headers"][0][0], "host");
        assert!(r.contains("X-Upstream-Name: e"));
    }

    #[tokio::test]
    async fn reset_and_garbage_and_abort() {
        let d = tempfile::tempdir().unwrap();
        let u = Upstream::start("r", &spec(Behaviour::ResetBeforeHeaders), d.path(), Default::default()).await.unwrap();
        match get(u.port, "/").await {
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
            Ok(s) => assert!(s.is_empty(), "{s}"),
        }
        u.set_behaviour(Behaviour::Garbage).await.unwrap();
        assert!(get(u.port, "/").await.unwrap().starts_with("SMTP"));
        u.set_behaviour(Behaviour::AbortMidBody { declared: 100, sent: 10 }).await.unwrap();
        let mut s = TcpStream::connect(addr(u.port)).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let t = String::from_utf8_lossy(&out);
        assert!(t.contains("Content-Length: 100"), "{t}");
        assert_eq!(t.len() - t.find("\r\n\r\n").unwrap() - 4, 10);
        // health still answers on a misbehaving upstream
        assert!(get(u.port, "/healthz").await.unwrap().starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn hold_until_release_and_chunked_sink() {
        let d = tempfile::tempdir().unwrap();
        let u = Arc::new(Upstream::start("h", &spec(Behaviour::Hold), d.path(), Default::default()).await.unwrap());
        let port = u.port;
        let t = tokio::spawn(async move { get(port, "/").await.unwrap() });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while u.shared().requests.load(Ordering::SeqCst) < 1 {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!t.is_finished());
        u.release();
        assert!(t.await.unwrap().starts_with("HTTP/1.1 200"));
        u.set_behaviour(Behaviour::Sink).await.unwrap();
        let mut s = TcpStream::connect(addr(port)).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert!(String::from_utf8_lossy(&out).contains("X-Received-Bytes: 8"));
    }

    #[tokio::test]
    async fn raw_replies_exactly_and_keeps_or_closes() {
        let d = tempfile::tempdir().unwrap();
        let bytes = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n\u{e9}{{repeat 1 \"!\"}}".to_string();
        let u = Upstream::start("r", &spec(Behaviour::Raw(crate::scenario::RawReply { bytes, close: false, delay_ms: 0 })), d.path(), Default::default()).await.unwrap();
        let mut s = TcpStream::connect(addr(u.port)).await.unwrap();
        let want: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n\xe9!";
        for body in ["", "hi"] {
            // kept open: a second request on the same connection gets the same bytes
            s.write_all(format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes()).await.unwrap();
            let mut got = vec![0u8; want.len()];
            s.read_exact(&mut got).await.unwrap();
            assert_eq!(got, want);
        }
        let recs = u.shared().recorder.snapshot();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].body.kept, b"hi");
        u.set_behaviour(Behaviour::Raw(crate::scenario::RawReply { bytes: "X".into(), close: true, delay_ms: 100 })).await.unwrap();
        let t0 = std::time::Instant::now();
        let r = get(u.port, "/").await.unwrap();
        assert_eq!(r, "X");
        assert!(t0.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn echo_waits_and_heads_of_any_field_count_are_read() {
        let d = tempfile::tempdir().unwrap();
        let u = Upstream::start("e", &spec(Behaviour::Echo(crate::scenario::EchoSpec { delay_ms: 150 })), d.path(), Default::default()).await.unwrap();
        let mut head = String::from("GET /many HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for i in 0..5000 {
            head.push_str(&format!("X-H{i}: v\r\n"));
        }
        head.push_str("\r\n");
        let t0 = std::time::Instant::now();
        let mut s = TcpStream::connect(addr(u.port)).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let r = String::from_utf8_lossy(&out);
        assert!(r.starts_with("HTTP/1.1 200"), "{}", &r[..r.len().min(200)]);
        assert!(r.contains("x-h4999"));
        assert!(t0.elapsed() >= Duration::from_millis(150));
        assert_eq!(u.shared().recorder.snapshot()[0].headers.len(), 5002);
        // Above 1 MiB without the end of the head: the connection is dropped, nothing recorded.
        let mut s = TcpStream::connect(addr(u.port)).await.unwrap();
        let big = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD_BYTES + 10));
        let _ = s.write_all(big.as_bytes()).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        assert!(out.is_empty());
        assert_eq!(u.shared().recorder.len(), 1);
    }

    #[tokio::test]
    async fn tls_upstream_serves_with_generated_ca() {
        let d = tempfile::tempdir().unwrap();
        let mut sp = spec(Behaviour::default());
        sp.tls = true;
        let u = Upstream::start("s", &sp, d.path(), Default::default()).await.unwrap();
        assert!(u.origin().starts_with("https://127.0.0.1:"));
        let pem = std::fs::read_to_string(u.ca_file.as_ref().unwrap()).unwrap();
        assert!(pem.contains("BEGIN CERTIFICATE"));
        let ca = reqwest_ca(&pem);
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let cfg = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let tcp = TcpStream::connect(addr(u.port)).await.unwrap();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut s = conn.connect(name, tcp).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    }

    fn reqwest_ca(pem: &str) -> tokio_rustls::rustls::pki_types::CertificateDer<'static> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        tokio_rustls::rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }
}
