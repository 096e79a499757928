//! The TLS and HTTP/2 phase of `parity bench` (issue 15): per target, full TLS handshakes
//! per second, resumed handshakes per second and HTTP/2 multiplexed requests per second,
//! each with the CPU the target's process tree spent per handshake or request.
//!
//! Every target of [`TlsProfile::targets`] is started a second time, as a TLS instance
//! (`--tls-cert`/`--tls-key` for the routers and bare proxies, `listen ... ssl http2` for
//! nginx, `bind ... ssl crt ... alpn h2,http/1.1` for HAProxy) with a certificate the run
//! generates ([`make_certs`]: rcgen, ECDSA P-256, self-signed for `localhost` and
//! `127.0.0.1`; nothing private is committed), on the same CPUs and thread count as the
//! plain instance. All three measurements are closed loop (each worker starts its next
//! operation when the previous one ended); targets are interleaved per mode and repeat.
//!
//! - `full`: a new TCP connection per request, TLS with session resumption off in the
//!   client (rustls `Resumption::disabled`), ALPN `http/1.1`, one `GET /` with
//!   `Connection: close`, read to the end, close.
//! - `resumed`: the same with one rustls client session store shared by the workers
//!   (`Resumption::in_memory_sessions`), so every handshake after the first offers a
//!   ticket; the share of handshakes the server actually resumed is reported.
//! - `h2`: [`TlsProfile::h2_connections`] TLS connections negotiated with ALPN `h2`
//!   (hyper's HTTP/2 client), each with [`TlsProfile::h2_streams`] streams in flight.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore};

use super::profile::Phase;

/// The profile key `tls` (absent: no TLS phase).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsProfile {
    /// Targets measured over TLS (`go`, `pingora`, `go-bare`, `pingora-bare`, `nginx`,
    /// `haproxy`; `direct` has no TLS).
    pub targets: Vec<String>,
    /// Concurrent handshaking workers in the `full` and `resumed` modes (each holds at
    /// most one connection at a time).
    pub handshake_connections: usize,
    /// TLS connections of the `h2` mode.
    pub h2_connections: usize,
    /// Streams in flight on each `h2` connection.
    pub h2_streams: usize,
    /// Windows of every mode (targets interleaved per mode and repeat).
    #[serde(flatten)]
    pub phase: Phase,
}

impl TlsProfile {
    /// The checks serde cannot express.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.targets.is_empty(), "tls.targets must not be empty");
        for t in &self.targets {
            anyhow::ensure!(TLS_TARGETS.contains(&t.as_str()), "tls.targets: {t:?} cannot be measured over TLS (known: {TLS_TARGETS:?})");
        }
        anyhow::ensure!(self.handshake_connections >= 1, "tls.handshake_connections must be >= 1");
        anyhow::ensure!(self.h2_connections >= 1, "tls.h2_connections must be >= 1");
        anyhow::ensure!(self.h2_streams >= 1, "tls.h2_streams must be >= 1");
        anyhow::ensure!(self.phase.repeats >= 1, "tls.repeats must be >= 1");
        anyhow::ensure!(self.phase.duration_ms >= 1, "tls.duration_ms must be >= 1");
        Ok(())
    }
}

/// Targets that have a TLS instance.
pub const TLS_TARGETS: &[&str] = &["go", "pingora", "go-bare", "pingora-bare", "nginx", "haproxy"];

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Full handshakes, a new connection per request.
    Full,
    /// Resumed handshakes (session tickets), a new connection per request.
    Resumed,
    /// HTTP/2 requests multiplexed over few connections.
    H2,
}

impl Mode {
    /// Every mode, in the report's order.
    pub const ALL: [Mode; 3] = [Mode::Full, Mode::Resumed, Mode::H2];

    /// Name in the report and `bench.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Resumed => "resumed",
            Mode::H2 => "h2",
        }
    }
}

/// One measured window of one target in one mode.
#[derive(Debug, Clone, Serialize)]
pub struct TlsSeg {
    pub target: String,
    pub mode: Mode,
    pub repeat: usize,
    /// Completed operations (handshake + request + response, or h2 request) in the window.
    pub ok: u64,
    /// Failed operations in the window.
    pub errors: u64,
    /// `ok` per second of the window.
    pub per_sec: f64,
    /// CPU of the target's process tree per completed operation, microseconds.
    pub cpu_us_per_op: f64,
    /// Handshakes the server resumed, as a share of `ok` (`full`/`resumed` modes).
    pub resumed_share: Option<f64>,
    /// CPU share of the generator (this process) over the window.
    pub generator_cpu_util: f64,
    /// The first error seen, if any (for the report).
    pub first_error: Option<String>,
}

/// Everything the TLS phase measured.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TlsResults {
    pub segs: Vec<TlsSeg>,
    /// TLS instances that could not run, and why.
    pub absent: Vec<super::targets::Absent>,
    /// TLS instances that ran, with their notes.
    pub present: Vec<(String, String)>,
}

/// The certificate files of a run and the client's trust anchor for them.
pub struct Certs {
    /// PEM certificate (self-signed, SAN `localhost`, `127.0.0.1`).
    pub cert: PathBuf,
    /// PEM private key (PKCS#8).
    pub key: PathBuf,
    /// Certificate then key in one file (HAProxy's `crt`).
    pub combined: PathBuf,
    /// Roots the client trusts: the certificate itself.
    pub roots: Arc<RootCertStore>,
}

/// Generates a self-signed ECDSA P-256 certificate for `localhost` and `127.0.0.1` into
/// `dir` (rcgen). The harness helper's scenario PKI (CA-signed) is for the scenarios;
/// a benchmark needs one leaf only.
pub fn make_certs(dir: &Path) -> anyhow::Result<Certs> {
    std::fs::create_dir_all(dir)?;
    let key = rcgen::KeyPair::generate()?;
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    let cert = params.self_signed(&key)?;
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    let c = Certs { cert: dir.join("bench-cert.pem"), key: dir.join("bench-key.pem"), combined: dir.join("bench-combined.pem"), roots: Arc::new(RootCertStore::empty()) };
    std::fs::write(&c.cert, &cert_pem)?;
    std::fs::write(&c.key, &key_pem)?;
    std::fs::write(&c.combined, format!("{cert_pem}{key_pem}"))?;
    let mut roots = RootCertStore::empty();
    roots.add(cert.der().clone())?;
    Ok(Certs { roots: Arc::new(roots), ..c })
}

/// A rustls client config trusting `roots`, offering `alpn`, with resumption on or off.
pub fn client_config(roots: &Arc<RootCertStore>, alpn: &[u8], resume: bool) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    cfg.resumption = if resume { rustls::client::Resumption::in_memory_sessions(1024) } else { rustls::client::Resumption::disabled() };
    Arc::new(cfg)
}

fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("valid name")
}

/// One request on a new TLS connection (ALPN `http/1.1`, `Connection: close`), read to
/// the end. Ok(resumed) when the answer is a 2xx.
pub async fn one_handshake(addr: SocketAddr, cfg: Arc<ClientConfig>) -> anyhow::Result<bool> {
    one_handshake_version(addr, cfg).await.map(|(resumed, _)| resumed)
}

/// [`one_handshake`], also giving the negotiated protocol version (e.g. `TLSv1_3`).
async fn one_handshake_version(addr: SocketAddr, cfg: Arc<ClientConfig>) -> anyhow::Result<(bool, String)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut s = tokio_rustls::TlsConnector::from(cfg).connect(server_name(), tcp).await?;
    let resumed = s.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let version = s.get_ref().1.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Routing-Key: {}\r\nConnection: close\r\n\r\n", super::targets::ROUTING_KEY).as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    // A peer that closes without close_notify is an error to rustls; the bytes read count.
    let r = s.read_to_end(&mut buf).await;
    anyhow::ensure!(buf.starts_with(b"HTTP/1.1 2"), "answer {:?} ({r:?})", String::from_utf8_lossy(&buf[..buf.len().min(40)]));
    Ok((resumed, version))
}

/// The hyper HTTP/2 request sender of a new TLS connection that negotiated `h2`.
async fn h2_connect(addr: SocketAddr, roots: &Arc<RootCertStore>) -> anyhow::Result<hyper::client::conn::http2::SendRequest<Empty<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let s = tokio_rustls::TlsConnector::from(client_config(roots, b"h2", false)).connect(server_name(), tcp).await?;
    let alpn = s.get_ref().1.alpn_protocol().map(|a| String::from_utf8_lossy(a).into_owned());
    anyhow::ensure!(alpn.as_deref() == Some("h2"), "the server did not select h2 (ALPN {alpn:?})");
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s)).await?;
    tokio::spawn(conn);
    Ok(send)
}

async fn h2_request(send: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>, authority: &str) -> anyhow::Result<bool> {
    send.ready().await?;
    let req = hyper::Request::get(format!("https://{authority}/")).header("x-routing-key", super::targets::ROUTING_KEY).body(Empty::<Bytes>::new())?;
    let resp = send.send_request(req).await?;
    anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
    resp.into_body().collect().await?;
    Ok(false)
}

/// A TLS probe for readiness: one full handshake and a 2xx; the negotiated version.
pub async fn probe(addr: SocketAddr, roots: &Arc<RootCertStore>) -> anyhow::Result<String> {
    one_handshake_version(addr, client_config(roots, b"http/1.1", false)).await.map(|(_, v)| v)
}

type Op = Arc<dyn Fn() -> BoxFuture<'static, anyhow::Result<bool>> + Send + Sync>;

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    err: AtomicU64,
    resumed: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

/// Runs `ops` (one closed-loop worker each) for `warmup` then `window`; returns
/// (ok, errors, resumed, target CPU s, generator CPU s, first error) of the window.
async fn drive(ops: Vec<Op>, warmup: Duration, window: Duration, pids: &[i32]) -> (u64, u64, u64, f64, f64, Option<String>) {
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for op in ops {
        let (counts, stop) = (counts.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match op().await {
                    Ok(r) => {
                        counts.ok.fetch_add(1, Ordering::Relaxed);
                        if r {
                            counts.resumed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        counts.err.fetch_add(1, Ordering::Relaxed);
                        counts.first_error.lock().unwrap().get_or_insert_with(|| format!("{e:#}"));
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(warmup).await;
    let snap = |c: &Counts| (c.ok.load(Ordering::Relaxed), c.err.load(Ordering::Relaxed), c.resumed.load(Ordering::Relaxed));
    let (a, cpu_a, gen_a) = (snap(&counts), super::procs::usage(pids).cpu_secs, super::procs::self_cpu_secs());
    tokio::time::sleep(window).await;
    let (b, cpu_b, gen_b) = (snap(&counts), super::procs::usage(pids).cpu_secs, super::procs::self_cpu_secs());
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let ab = t.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), t).await.is_err() {
            ab.abort();
        }
    }
    let first = counts.first_error.lock().unwrap().take();
    (b.0 - a.0, b.1 - a.1, b.2 - a.2, cpu_b - cpu_a, gen_b - gen_a, first)
}

/// One window of `mode` against the TLS instance at `addr` whose process tree is `pids`.
pub async fn measure(target: &str, addr: SocketAddr, pids: &[i32], mode: Mode, repeat: usize, p: &TlsProfile, roots: &Arc<RootCertStore>) -> TlsSeg {
    let mut setup_error = None;
    let ops: Vec<Op> = match mode {
        Mode::Full | Mode::Resumed => {
            let cfg = client_config(roots, b"http/1.1", mode == Mode::Resumed);
            (0..p.handshake_connections)
                .map(|_| {
                    let cfg = cfg.clone();
                    Arc::new(move || -> BoxFuture<'static, anyhow::Result<bool>> { Box::pin(one_handshake(addr, cfg.clone())) }) as Op
                })
                .collect()
        }
        Mode::H2 => {
            let mut ops = Vec::new();
            for _ in 0..p.h2_connections {
                match h2_connect(addr, roots).await {
                    Ok(send) => {
                        for _ in 0..p.h2_streams {
                            let send = send.clone();
                            let authority = format!("localhost:{}", addr.port());
                            ops.push(Arc::new(move || -> BoxFuture<'static, anyhow::Result<bool>> {
                                let (mut send, authority) = (send.clone(), authority.clone());
                                Box::pin(async move { h2_request(&mut send, &authority).await })
                            }) as Op);
                        }
                    }
                    Err(e) => {
                        setup_error = Some(format!("h2 connection: {e:#}"));
                        break;
                    }
                }
            }
            if setup_error.is_some() {
                ops.clear();
            }
            ops
        }
    };
    let window = Duration::from_millis(p.phase.duration_ms);
    let (ok, errors, resumed, cpu, gen, first) = if ops.is_empty() {
        (0, 0, 0, 0.0, 0.0, setup_error)
    } else {
        drive(ops, Duration::from_millis(p.phase.warmup_ms), window, pids).await
    };
    let secs = window.as_secs_f64();
    TlsSeg {
        target: target.into(),
        mode,
        repeat,
        ok,
        errors,
        per_sec: ok as f64 / secs,
        cpu_us_per_op: if ok > 0 { cpu * 1e6 / ok as f64 } else { f64::NAN },
        resumed_share: (mode != Mode::H2 && ok > 0).then(|| resumed as f64 / ok as f64),
        generator_cpu_util: gen / secs,
        first_error: first,
    }
}

/// The nginx `server` lines that make its listener TLS with HTTP/2 (nginx 1.22's
/// `listen ... ssl http2` form), TLS 1.2/1.3, session tickets on (nginx's default key,
/// made at start), no server-side session cache (tickets only, as the routers).
pub fn nginx_tls_lines(listen: SocketAddr, c: &Certs) -> String {
    format!(
        "listen {listen} ssl http2;\n        ssl_certificate {};\n        ssl_certificate_key {};\n        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_session_tickets on;\n        ssl_session_cache off;",
        c.cert.display(),
        c.key.display()
    )
}

/// The HAProxy `bind` line of a TLS listener: certificate and key in one file, ALPN
/// `h2,http/1.1`, TLS 1.2 at least (tickets are on by default).
pub fn haproxy_tls_bind(listen: SocketAddr, c: &Certs) -> String {
    format!("bind {listen} ssl crt {} alpn h2,http/1.1 ssl-min-ver TLSv1.2", c.combined.display())
}

/// `nginx.conf` text ([`super::targets::nginx_conf`]) with its listener made TLS.
pub fn nginx_tls_conf(conf: &str, listen: SocketAddr, c: &Certs) -> String {
    conf.replace(&format!("listen {listen};"), &nginx_tls_lines(listen, c))
}

/// `haproxy.cfg` text ([`super::targets::haproxy_conf`]) with its `bind` made TLS.
pub fn haproxy_tls_conf(conf: &str, listen: SocketAddr, c: &Certs) -> String {
    conf.replace(&format!("bind {listen}\n"), &format!("{}\n", haproxy_tls_bind(listen, c)))
}

/// The median of `f` over the repeats of `target` in `mode` (NaN when none).
pub fn median_of(r: &TlsResults, target: &str, mode: Mode, f: impl Fn(&TlsSeg) -> f64) -> f64 {
    crate::util::stats::median(r.segs.iter().filter(|s| s.target == target && s.mode == mode).map(f).collect())
}

/// The report's rows: per TLS target, full/s, CPU µs per full handshake, resumed/s, CPU
/// per resumed handshake, the resumed share, h2 req/s, CPU per h2 request, errors.
pub fn rows(r: &TlsResults) -> Vec<Vec<String>> {
    let f0 = |x: f64| if x.is_finite() { format!("{x:.0}") } else { "—".into() };
    let f1 = |x: f64| if x.is_finite() { format!("{x:.1}") } else { "—".into() };
    let mut out = Vec::new();
    for (name, _) in &r.present {
        let m = |mode, f: fn(&TlsSeg) -> f64| median_of(r, name, mode, f);
        let share = m(Mode::Resumed, |s| s.resumed_share.unwrap_or(f64::NAN));
        let errors: u64 = r.segs.iter().filter(|s| &s.target == name).map(|s| s.errors).sum();
        out.push(vec![
            format!("`{name}`"),
            f0(m(Mode::Full, |s| s.per_sec)),
            f1(m(Mode::Full, |s| s.cpu_us_per_op)),
            f0(m(Mode::Resumed, |s| s.per_sec)),
            f1(m(Mode::Resumed, |s| s.cpu_us_per_op)),
            if share.is_finite() { format!("{:.0}%", share * 100.0) } else { "—".into() },
            f0(m(Mode::H2, |s| s.per_sec)),
            f1(m(Mode::H2, |s| s.cpu_us_per_op)),
            errors.to_string(),
        ]);
    }
    out
}

/// Column heads of [`rows`].
pub const HEADS: [&str; 9] = ["target", "full handshakes/s", "CPU µs/full", "resumed/s", "CPU µs/resumed", "resumed share", "h2 req/s", "CPU µs/h2 req", "errors"];

/// The report section "TLS and HTTP/2" as blocks.
pub(super) fn blocks(p: &TlsProfile, r: &TlsResults) -> Vec<super::report::Block> {
    use super::report::Block;
    let mut b = vec![Block::H(2, "TLS and HTTP/2".into())];
    b.push(Block::P(format!(
        "Closed loop, medians of {} repeat(s) of {} ms windows after {} ms warm-up, targets interleaved per mode. Each target runs a second, TLS instance (same threads and CPUs; certificate: ECDSA P-256, self-signed, generated by the run; logs off; the version each negotiated is in the list of targets below the table). **full**: {} workers, each a new TCP + TLS connection per request with client-side resumption off, `GET /` over HTTP/1.1 with `Connection: close`. **resumed**: the same with one shared rustls session store (tickets); *resumed share* is the part of those handshakes the server resumed. **h2**: {} TLS connections with ALPN h2, {} streams in flight on each (hyper client). CPU is the target's process tree (utime + stime) per handshake or request; the generator (rustls, inside `parity`) shares the load CPUs and can be the limit (see `generator_cpu_util` in bench.json).",
        p.phase.repeats, p.phase.duration_ms, p.phase.warmup_ms, p.handshake_connections, p.h2_connections, p.h2_streams
    )));
    b.push(Block::Table(HEADS.iter().map(|s| s.to_string()).collect(), rows(r)));
    let mut notes: Vec<String> = r.present.iter().map(|(n, note)| format!("`{n}`: {note}")).collect();
    notes.extend(r.absent.iter().map(|a| format!("`{}`: **absent** over TLS ({})", a.name, a.reason)));
    for (name, _) in &r.present {
        if let Some(s) = r.segs.iter().find(|s| &s.target == name && s.first_error.is_some()) {
            notes.push(format!("`{name}` {}: first error: {}", s.mode.as_str(), s.first_error.as_deref().unwrap_or("")));
        }
    }
    if !notes.is_empty() {
        b.push(Block::List(notes));
    }
    b
}

/// `bench.json`'s `tls` object: per target and mode the medians, and every window.
pub fn json(p: &TlsProfile, r: &TlsResults) -> serde_json::Value {
    let mut targets = serde_json::Map::new();
    for (name, note) in &r.present {
        let mut o = serde_json::Map::new();
        o.insert("note".into(), note.clone().into());
        for mode in Mode::ALL {
            let m = |f: fn(&TlsSeg) -> f64| {
                let x = median_of(r, name, mode, f);
                if x.is_finite() { serde_json::json!((x * 100.0).round() / 100.0) } else { serde_json::Value::Null }
            };
            o.insert(mode.as_str().into(), serde_json::json!({"per_sec": m(|s| s.per_sec), "cpu_us_per_op": m(|s| s.cpu_us_per_op), "resumed_share": m(|s| s.resumed_share.unwrap_or(f64::NAN)), "generator_cpu_util": m(|s| s.generator_cpu_util)}));
        }
        targets.insert(name.clone(), o.into());
    }
    for a in &r.absent {
        targets.insert(a.name.clone(), serde_json::json!({"present": false, "reason": a.reason}));
    }
    serde_json::json!({"profile": p, "targets": targets, "segments": r.segs})
}

/// Waits until the TLS instance at `addr` answers a TLS request (20 s at most) or its
/// child exits; Ok(the negotiated version), or Err(reason) with its log's error line.
pub async fn wait_ready(addr: SocketAddr, roots: &Arc<RootCertStore>, child: &mut tokio::process::Child, log: &Path) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let last = match probe(addr, roots).await {
            Ok(v) => return Ok(v),
            Err(e) => format!("{e:#}"),
        };
        if let Ok(Some(st)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let why = text.lines().find(|l| l.contains("error")).map(str::to_string)
                .unwrap_or_else(|| text.lines().rev().take(3).collect::<Vec<_>>().join(" | "));
            return Err(format!("exited ({st}) before answering over TLS: {}", why.trim()));
        }
        if Instant::now() > deadline {
            return Err(format!("did not answer 2xx over TLS within 20 s (last: {last})"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(yaml: &str) -> anyhow::Result<TlsProfile> {
        let p: TlsProfile = serde_yaml_ng::from_str(yaml)?;
        p.check()?;
        Ok(p)
    }

    #[test]
    fn the_tls_key_parses_and_is_checked() {
        let p = profile("{targets: [go, nginx], handshake_connections: 4, h2_connections: 2, h2_streams: 16, repeats: 1, warmup_ms: 10, duration_ms: 100}").unwrap();
        assert_eq!((p.h2_connections, p.h2_streams, p.phase.duration_ms), (2, 16, 100));
        assert!(profile("{targets: [direct], handshake_connections: 4, h2_connections: 2, h2_streams: 16, repeats: 1, warmup_ms: 10, duration_ms: 100}").unwrap_err().to_string().contains("cannot be measured over TLS"));
        assert!(profile("{targets: [go], handshake_connections: 4, h2_connections: 2, h2_streams: 0, repeats: 1, warmup_ms: 10, duration_ms: 100}").unwrap_err().to_string().contains("h2_streams"));
        assert!(profile("{targets: [go], handshake_connections: 4, h2_connections: 2, h2_streams: 1, repeats: 1, warmup_ms: 10, duration_ms: 100, handshakes: 3}").is_err());
    }

    #[test]
    fn nginx_and_haproxy_get_a_tls_listener_with_h2_and_tickets() {
        let dir = tempfile::tempdir().unwrap();
        let c = make_certs(dir.path()).unwrap();
        let listen: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let p = super::super::targets::Placement { endpoints: vec!["127.0.0.1:9001".parse().unwrap()], selection: None };
        let n = nginx_tls_conf(&super::super::targets::nginx_conf(dir.path(), listen, &p, 1, 4096, 16), listen, &c);
        assert!(n.contains("listen 127.0.0.1:8443 ssl http2;") && n.contains("ssl_session_tickets on;") && n.contains(&format!("ssl_certificate {};", c.cert.display())), "{n}");
        let h = haproxy_tls_conf(&super::super::targets::haproxy_conf(listen, p.endpoints[0], 1, 4096, 16), listen, &c);
        assert!(h.contains(&format!("bind 127.0.0.1:8443 ssl crt {} alpn h2,http/1.1", c.combined.display())), "{h}");
        let combined = std::fs::read_to_string(&c.combined).unwrap();
        assert!(combined.contains("BEGIN CERTIFICATE") && combined.contains("PRIVATE KEY"));
    }

    fn seg(t: &str, mode: Mode, rep: usize, per_sec: f64, cpu: f64) -> TlsSeg {
        TlsSeg { target: t.into(), mode, repeat: rep, ok: per_sec as u64, errors: 0, per_sec, cpu_us_per_op: cpu, resumed_share: (mode != Mode::H2).then_some(1.0), generator_cpu_util: 0.5, first_error: None }
    }

    #[test]
    fn the_report_rows_give_medians_side_by_side_and_absent_targets_with_their_reason() {
        let r = TlsResults {
            segs: vec![
                seg("go", Mode::Full, 0, 1000.0, 400.0),
                seg("go", Mode::Full, 1, 1200.0, 300.0),
                seg("go", Mode::Full, 2, 1100.0, 350.0),
                seg("go", Mode::Resumed, 0, 3000.0, 100.0),
                seg("go", Mode::H2, 0, 20000.0, 20.0),
            ],
            absent: vec![super::super::targets::Absent { name: "pingora-bare".into(), reason: "no --tls-cert".into() }],
            present: vec![("go".into(), "router".into())],
        };
        let rows = rows(&r);
        assert_eq!(rows, vec![vec!["`go`", "1100", "350.0", "3000", "100.0", "100%", "20000", "20.0", "0"]]);
        let p = profile("{targets: [go, pingora-bare], handshake_connections: 4, h2_connections: 2, h2_streams: 16, repeats: 3, warmup_ms: 10, duration_ms: 100}").unwrap();
        let md = super::super::report::md(&blocks(&p, &r));
        assert!(md.contains("## TLS and HTTP/2"), "{md}");
        assert!(md.contains("`pingora-bare`: **absent** over TLS (no --tls-cert)"), "{md}");
        let j = json(&p, &r);
        assert_eq!(j["targets"]["go"]["full"]["per_sec"], 1100.0);
        assert_eq!(j["targets"]["pingora-bare"]["present"], false);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handshake_against_a_rustls_server_resumes_with_the_session_store() {
        let dir = tempfile::tempdir().unwrap();
        let c = make_certs(dir.path()).unwrap();
        // A rustls server with tickets, answering every request with a 200 and closing.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert_pem = std::fs::read(&c.cert).unwrap();
        let key_pem = std::fs::read(&c.key).unwrap();
        use rustls::pki_types::pem::PemObject;
        let chain = vec![rustls::pki_types::CertificateDer::from_pem_slice(&cert_pem).unwrap()];
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key_pem).unwrap();
        let mut sc = rustls::ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_no_client_auth().with_single_cert(chain, key).unwrap();
        sc.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(sc));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = l.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let mut s = acceptor.accept(tcp).await.unwrap();
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                    let _ = s.shutdown().await;
                });
            }
        });
        let full = client_config(&c.roots, b"http/1.1", false);
        assert!(!one_handshake(addr, full.clone()).await.unwrap());
        assert!(!one_handshake(addr, full).await.unwrap());
        let resume = client_config(&c.roots, b"http/1.1", true);
        assert!(!one_handshake(addr, resume.clone()).await.unwrap(), "the first handshake is full");
        assert!(one_handshake(addr, resume).await.unwrap(), "the second resumes with the ticket");
    }
}
