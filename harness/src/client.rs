//! The client of `send` steps: every request goes through the harness's own HTTP/1.1
//! client ([`crate::observe::client`]) on a fresh connection, `concurrency` at a time,
//! which records everything a client can observe ([`Exchange`]). [`Resp`] is the view of
//! it that expectations read. Nothing here fails: transport errors and timeouts are part
//! of the observation.

use crate::observe::client::{exchange, ConnEnd, Exchange, FailureKind, HttpRequest, Options, Outgoing, ReqBody};
use crate::observe::upstream::REQUEST_TAG;
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

/// Sends the step's `count` requests to `addr` (the router's data port, or a proxy in
/// front of it), `concurrency` at a time; the responses in request order. Request `n`
/// of step `step` carries the tag `<step>.<n>`. `progress` counts response body chunks
/// received over all the step's requests.
pub async fn send_all(addr: SocketAddr, step: i64, s: Send, progress: Arc<AtomicU64>) -> Vec<Resp> {
    let s = Arc::new(s);
    let _ = REQUEST_TAG;
    let futs = (0..s.count).map(|n| {
        let s = s.clone();
        let p = progress.clone();
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
                ..Default::default()
            };
            let ex = exchange(addr, outgoing(&s, &tag), &opts).await;
            Resp::of(ex, if raw { None } else { Some(tag) })
        }
    });
    futures_util::stream::iter(futs).buffered(s.concurrency as usize).collect().await
}

/// Whether the connection of `r` was kept alive after the response.
pub fn kept_alive(r: &Resp) -> bool {
    r.exchange.end == Some(ConnEnd::KeptAlive)
}
