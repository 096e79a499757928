//! The client of `send` steps: every request goes through the harness's own HTTP/1.1
//! client ([`crate::observe::client`]) on a fresh connection, plain or TLS, or as an
//! HTTP/2 stream ([`crate::h2client`]) by the run's [`Transport`], `concurrency` at a time,
//! which records everything a client can observe ([`Exchange`]). [`Resp`] is the view of
//! it that expectations read. Nothing here fails: transport errors and timeouts are part
//! of the observation.

use crate::observe::client::{exchange, ConnEnd, Exchange, FailureKind, HttpRequest, Options, Outgoing, ReqBody};
use crate::h2client::{conn_failure, H2Conn, H2Request};
use crate::observe::upstream::REQUEST_TAG;
use crate::tls::Transport;
use crate::scenario::Send;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// One response as the client saw it, as expectations read it, with the full
/// observation in [`Resp::exchange`].
#[derive(Debug, Clone, Default)]
pub struct Resp {
    /// Status (None: no response, or none complete before the deadline).
    pub status: Option<u16>,
    /// Response headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Body (possibly partial; at most the kept prefix).
    pub body: Vec<u8>,
    /// The body arrived complete.
    pub complete: bool,
    /// Chunks read (with `read_chunks`).
    pub chunks: u32,
    /// Longest gap between head and first chunk or between chunks, ms.
    pub max_gap_ms: u64,
    /// Request latency (to the end of the body), µs.
    pub latency_us: u64,
    /// Transport error text, when any.
    pub failure: Option<String>,
    /// Everything observed on the connection.
    pub exchange: Exchange,
    /// The request tag sent (`<step>.<n>`), None for raw sends.
    pub tag: Option<String>,
}

impl Resp {
    /// The first value of header `name` (lower case), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The expectation view of an exchange: its first response (raw sends may see several).
    pub fn of(ex: Exchange, tag: Option<String>) -> Resp {
        let timed_out = ex.failure.as_ref().map(|f| f.kind == FailureKind::Timeout).unwrap_or(false);
        let mut r = Resp { latency_us: ex.latency_us, failure: ex.failure.as_ref().map(|f| format!("{:?}: {}", f.kind, f.detail).to_lowercase()), tag, ..Default::default() };
        if let Some(first) = ex.responses.first() {
            // A response cut by the deadline counts as none (as a client library's timeout).
            if !(timed_out && !first.complete) {
                r.status = Some(first.head.status);
            }
            r.headers = first.head.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
            r.body = first.body.kept.clone();
            r.complete = first.complete;
            r.chunks = first.chunks;
            r.max_gap_ms = first.max_gap_ms;
        }
        if timed_out {
            r.failure = Some("timeout".into());
        }
        r.exchange = ex;
        r
    }
}

/// The request of send `s` as the client writes it, tagged with `tag` (see
/// [`REQUEST_TAG`]): `X-Routing-Key` (from `key`), `X-Padding` (from `pad_header_bytes`),
/// the step's headers, the tag.
pub fn outgoing(s: &Send, tag: &str) -> Outgoing {
    if let Some(raw) = &s.raw {
        return Outgoing::Raw { bytes: bytes_of(raw), tunnel_write: s.tunnel_write.as_ref().map(|t| bytes_of(t)) };
    }
    if let Some(ws) = &s.raw_writes {
        return Outgoing::RawWrites(ws.iter().map(|w| (Duration::from_millis(w.after_ms), bytes_of(&w.bytes))).collect());
    }
    let mut headers = Vec::new();
    if let Some(k) = &s.key {
        headers.push(("X-Routing-Key".to_string(), k.clone()));
    }
    if let Some(n) = s.pad_header_bytes {
        headers.push(("X-Padding".to_string(), "p".repeat(n)));
    }
    headers.extend(s.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    headers.push(("X-Parity-Request".to_string(), tag.to_string()));
    let body = match (&s.body, s.body_bytes) {
        (Some(b), _) => ReqBody::Bytes(b.as_bytes().to_vec()),
        (None, Some(n)) => ReqBody::Generated { len: n },
        _ => ReqBody::Empty,
    };
    Outgoing::Http(HttpRequest { method: s.method.clone(), target: s.path.clone(), headers, body })
}

/// The bytes of a Latin-1 string of the scenario (validated at load; a character above
/// U+00FF, which validation refuses, would be written as its UTF-8 bytes).
pub fn bytes_of(s: &str) -> Vec<u8> {
    crate::scenario::text::latin1(s).unwrap_or_else(|_| s.as_bytes().to_vec())
}

/// How long a raw send watches the connection after the responses it expects (or, without
/// `expect.responses`, after each response) for an extra response or the connection's end.
pub const RAW_LINGER: Duration = Duration::from_millis(200);

/// Whether send `s` writes raw bytes (`raw` or `raw_writes`).
pub fn is_raw(s: &Send) -> bool {
    s.raw.is_some() || s.raw_writes.is_some()
}

/// How a send reaches the router: the transport and, over TLS, the client configuration
/// (CA, client certificate, ALPN of the transport).
#[derive(Debug, Clone, Default)]
pub struct Conn {
    /// The transport.
    pub transport: Transport,
    /// The TLS configuration (`h1+tls`, `h2+tls`).
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

/// Sends the step's `count` requests to `addr` (the router's data port, or a proxy in
/// front of it), `concurrency` at a time; the responses in request order. Request `n`
/// of step `step` carries the tag `<step>.<n>`. `progress` counts response body chunks
/// received over all the step's requests (HTTP/1.1 only).
pub async fn send_all(addr: SocketAddr, step: i64, s: Send, progress: Arc<AtomicU64>, conn: Conn) -> Vec<Resp> {
    if let (Transport::H2Tls, Some(cfg)) = (conn.transport, conn.tls.clone()) {
        return send_all_h2(addr, step, s, cfg).await;
    }
    let s = Arc::new(s);
    let _ = REQUEST_TAG;
    let futs = (0..s.count).map(|n| {
        let s = s.clone();
        let p = progress.clone();
        let tls = conn.tls.clone();
        async move {
            let tag = format!("{step}.{n}");
            let raw = is_raw(&s);
            let opts = Options {
                timeout: Duration::from_millis(s.timeout_ms),
                max_chunks: s.read_chunks,
                progress: Some(p),
                // Raw sends may be pipelined: wait longer for a further response (or, with
                // `expect.responses`, for the expected number, then this long for an extra).
                linger: if raw { RAW_LINGER } else { Duration::from_millis(15) },
                read_delay: Duration::from_millis(s.read_delay_ms),
                want_responses: if raw { s.expect.responses.as_ref().map(|r| r.len()) } else { None },
                tls,
                ..Default::default()
            };
            let ex = exchange(addr, outgoing(&s, &tag), &opts).await;
            Resp::of(ex, if raw { None } else { Some(tag) })
        }
    });
    futures_util::stream::iter(futs).buffered(s.concurrency as usize).collect().await
}

/// The HTTP/2 streams of send `s` (`h2+tls`): built requests as streams; raw bytes parsed
/// into requests ([`H2Request::parse_raw`]), each raw send's requests on one connection,
/// one after the other, its responses in one exchange. With `one_connection`, the
/// `count` requests share one connection, `concurrency` streams open at a time, then
/// `after_goaway` more once the GOAWAY has arrived.
async fn send_all_h2(addr: SocketAddr, step: i64, s: Send, cfg: Arc<tokio_rustls::rustls::ClientConfig>) -> Vec<Resp> {
    let timeout = Duration::from_millis(s.timeout_ms);
    let keep = crate::observe::body::KEEP_BYTES;
    let raw = is_raw(&s);
    let requests = |tag: &str| -> Option<Vec<H2Request>> {
        match outgoing(&s, tag) {
            Outgoing::Http(r) => Some(vec![H2Request::from_http(&r, addr)]),
            Outgoing::Raw { bytes, .. } => H2Request::parse_raw(&bytes, addr),
            Outgoing::RawWrites(ws) => H2Request::parse_raw(&ws.into_iter().flat_map(|(_, b)| b).collect::<Vec<u8>>(), addr),
        }
    };
    let not_h2 = || conn_failure("the raw bytes are not well-formed HTTP/1.1 requests; not expressible over HTTP/2".into());
    let tag_of = |n: u32| if raw { None } else { Some(format!("{step}.{n}")) };
    if s.one_connection {
        let conn = match tokio::time::timeout(timeout, H2Conn::open(addr, cfg)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return (0..s.count + s.after_goaway).map(|n| Resp::of(conn_failure(e.clone()), tag_of(n))).collect(),
            Err(_) => return (0..s.count + s.after_goaway).map(|n| Resp::of(conn_failure("connect timeout".into()), tag_of(n))).collect(),
        };
        let conn = &conn;
        let one = |n: u32| {
            let reqs = requests(&format!("{step}.{n}"));
            async move {
                match reqs.and_then(|r| r.into_iter().next()) {
                    Some(r) => Resp::of(conn.request(r, timeout, keep).await, tag_of(n)),
                    None => Resp::of(not_h2(), tag_of(n)),
                }
            }
        };
        let mut out: Vec<Resp> = futures_util::stream::iter((0..s.count).map(one)).buffered(s.concurrency.max(1) as usize).collect().await;
        if s.after_goaway > 0 {
            let deadline = tokio::time::Instant::now() + timeout;
            while conn.goaway().is_none() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for n in s.count..s.count + s.after_goaway {
                out.push(one(n).await);
            }
        }
        return out;
    }
    let futs = (0..s.count).map(|n| {
        let reqs = requests(&format!("{step}.{n}"));
        let cfg = cfg.clone();
        async move {
            let Some(reqs) = reqs else { return Resp::of(not_h2(), tag_of(n)) };
            if reqs.len() == 1 {
                let r = reqs.into_iter().next().expect("one");
                return Resp::of(crate::h2client::exchange(addr, cfg, r, timeout, keep).await, tag_of(n));
            }
            let ex = match tokio::time::timeout(timeout, H2Conn::open(addr, cfg)).await {
                Ok(Ok(c)) => {
                    let mut all = crate::observe::client::Exchange::default();
                    for r in reqs {
                        let ex = c.request(r, timeout, keep).await;
                        all.responses.extend(ex.responses);
                        all.end = ex.end;
                        all.latency_us = ex.latency_us;
                        if ex.failure.is_some() {
                            all.failure = ex.failure;
                            break;
                        }
                    }
                    all
                }
                Ok(Err(e)) => conn_failure(e),
                Err(_) => conn_failure("connect timeout".into()),
            };
            Resp::of(ex, tag_of(n))
        }
    });
    futures_util::stream::iter(futs).buffered(s.concurrency.max(1) as usize).collect().await
}

/// One exchange over `conn`'s transport: [`exchange`] (plain or TLS) or, over `h2+tls`, a
/// built request as one HTTP/2 stream on its own connection (raw bytes: their first
/// request).
pub async fn exchange_over(addr: SocketAddr, out: Outgoing, opts: &Options, conn: &Conn) -> Exchange {
    match (conn.transport, &conn.tls) {
        (Transport::H2Tls, Some(cfg)) => {
            let req = match out {
                Outgoing::Http(r) => Some(H2Request::from_http(&r, addr)),
                Outgoing::Raw { bytes, .. } => H2Request::parse_raw(&bytes, addr).and_then(|v| v.into_iter().next()),
                Outgoing::RawWrites(ws) => H2Request::parse_raw(&ws.into_iter().flat_map(|(_, b)| b).collect::<Vec<u8>>(), addr).and_then(|v| v.into_iter().next()),
            };
            match req {
                Some(r) => crate::h2client::exchange(addr, cfg.clone(), r, opts.timeout, opts.keep_bytes).await,
                None => conn_failure("not expressible over HTTP/2".into()),
            }
        }
        _ => exchange(addr, out, &Options { tls: conn.tls.clone(), ..opts.clone() }).await,
    }
}

/// Whether the connection of `r` was kept alive after the response.
pub fn kept_alive(r: &Resp) -> bool {
    r.exchange.end == Some(ConnEnd::KeptAlive)
}
