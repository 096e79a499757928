//! The benchmark upstream: a small, fast hyper HTTP/1.1 server.
//!
//! `parity bench` runs it in a separate process (`parity bench --serve-upstream ADDR`), so
//! its CPU time is never counted in a proxy's samples; its own cost is what the `direct`
//! target measures. Every response is `200`, `X-Upstream-Name: bench`,
//! `X-Upstream-Port: <the port the request arrived on>` (multi-endpoint profiles read it
//! to see which endpoint a proxy chose), a fixed body. One process may listen on many
//! ports (`--upstream-ports N`), one per endpoint of a multi-endpoint placement.
//!
//! It counts the TCP connections it accepts (all ports together) and answers
//! `GET /_parity/accepts` with that count as a decimal body, so that the harness can tell
//! how many upstream connections a target opened during a window (issue 14: upstream
//! connections opened per request); [`read_accepts`] asks it.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// How the upstream answers.
#[derive(Debug, Clone)]
pub struct UpstreamOpts {
    /// Response body (the same bytes for every request).
    pub body: Bytes,
    /// A stall window `[from, to)`: a request that arrives inside it is held until `to`
    /// (simulates a paused upstream; used by the latency-accounting test).
    pub stall: Option<(Instant, Instant)>,
    /// TCP connections accepted so far, every port of the process together.
    pub accepts: Arc<AtomicU64>,
}

/// The path whose answer is the upstream's accept count (never forwarded by the
/// harness through a target; a target that forwards it gets the same count).
pub const ACCEPTS_PATH: &str = "/_parity/accepts";

impl UpstreamOpts {
    /// A plain upstream answering `n` bytes of `x`.
    pub fn with_body_len(n: usize) -> UpstreamOpts {
        UpstreamOpts { body: Bytes::from(vec![b'x'; n]), stall: None, accepts: Arc::new(AtomicU64::new(0)) }
    }
}

/// Serves HTTP/1.1 keep-alive connections from `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, opts: Arc<UpstreamOpts>) -> std::io::Result<()> {
    let port = hyper::header::HeaderValue::from(listener.local_addr()?.port());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            // Out of descriptors or similar: keep serving the connections we have.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            }
        };
        opts.accepts.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let (opts, port) = (opts.clone(), port.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, opts.clone(), port.clone()));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    opts: Arc<UpstreamOpts>,
    port: hyper::header::HeaderValue,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == ACCEPTS_PATH {
        let n = opts.accepts.load(Ordering::Relaxed);
        return Ok(Response::new(Full::new(Bytes::from(n.to_string()))));
    }
    if let Some((from, to)) = opts.stall {
        let now = Instant::now();
        if now >= from && now < to {
            tokio::time::sleep_until(to.into()).await;
        }
    }
    Ok(Response::builder()
        .header("x-upstream-name", "bench")
        .header("x-upstream-port", port)
        .header("content-type", "text/plain")
        .body(Full::new(opts.body.clone()))
        .expect("static response"))
}

/// The accept count of the upstream at `addr` (`GET /_parity/accepts` on a fresh
/// connection, blocking, at most 2 s), minus the one connection this call opened; `None`
/// when it cannot be read (an upstream that is not `parity bench --serve-upstream`).
/// Blocking on purpose: the load generator samples it at the edges of its measured
/// window from a synchronous probe.
pub fn read_accepts(addr: SocketAddr) -> Option<u64> {
    let t = Duration::from_secs(2);
    let mut s = std::net::TcpStream::connect_timeout(&addr, t).ok()?;
    s.set_read_timeout(Some(t)).ok()?;
    s.set_write_timeout(Some(t)).ok()?;
    write!(s, "GET {ACCEPTS_PATH} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    body.trim().parse::<u64>().ok().map(|n| n.saturating_sub(1))
}

/// Entry point of `parity bench --serve-upstream ADDR --upstream-ports N`: binds `N`
/// listeners on ADDR (N >= 1; ADDR's port should be 0 when N > 1), prints
/// `listening <addr> <addr> ...` (one line, space-separated) on stdout, and serves them
/// all forever on its own runtime of `threads` worker threads.
pub fn serve_process(addr: &str, ports: usize, threads: usize, body_len: usize) -> anyhow::Result<i32> {
    let addr = addr.to_string();
    // The caller is inside the main runtime: run ours on a fresh OS thread.
    let h = std::thread::spawn(move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let mut listeners = Vec::new();
            for _ in 0..ports.max(1) {
                listeners.push(tokio::net::TcpListener::bind(&addr).await?);
            }
            let addrs = listeners.iter().map(|l| l.local_addr().map(|a| a.to_string())).collect::<Result<Vec<_>, _>>()?;
            println!("listening {}", addrs.join(" "));
            use std::io::Write;
            std::io::stdout().flush()?;
            let opts = Arc::new(UpstreamOpts::with_body_len(body_len));
            let mut set = tokio::task::JoinSet::new();
            for l in listeners {
                set.spawn(serve(l, opts.clone()));
            }
            while let Some(r) = set.join_next().await {
                r??;
            }
            Ok(())
        })
    });
    h.join().map_err(|_| anyhow::anyhow!("upstream thread panicked"))??;
    Ok(0)
}
