//! The harness's own HTTP/1.1 client. It sends one request (or raw bytes) on a fresh
//! connection and records everything a client can observe there, byte-exact:
//!
//! - every interim (1xx) response and the final response: status line (version, code,
//!   reason as sent) and header fields in order, names as sent;
//! - the body framing the client had to use (RFC 9112 §6.3): no body, `Content-Length: n`,
//!   chunked (with trailers), close-delimited, or a tunnel after `101`;
//! - the body: length, SHA-256, the bytes up to a cap ([`crate::observe::body`]);
//! - how the connection ended after the response: kept alive, FIN, RST, still open when the
//!   client gave up, or closed by the client on purpose;
//! - for uploads, how many body bytes could be written before the exchange ended.
//!
//! Raw sends (malformed or pipelined requests) read every response the router writes until
//! the connection closes or stays idle for the linger time. Nothing is retried and no
//! connection is reused, so that what the router did to this one connection is what is
//! recorded.

use crate::observe::body::{BodyRecord, BodySink};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A request body.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ReqBody {
    /// No body, no framing header.
    #[default]
    Empty,
    /// These bytes, with `Content-Length` (unless the request's headers frame it).
    Bytes(Vec<u8>),
    /// `len` bytes of `a`, generated while writing (uploads of any size), with
    /// `Content-Length: len`.
    Generated {
        /// Body length, bytes.
        len: u64,
    },
}

/// A request built by the client: `METHOD target HTTP/1.1`, `Host` (first, unless given in
/// `headers`), the framing header of the body, then `headers` in order, names as given.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// Method token.
    pub method: String,
    /// Request target (origin form, e.g. `/a?b=1`).
    pub target: String,
    /// Header fields in the order written.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: ReqBody,
}

/// What is written on the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// A request the client builds.
    Http(HttpRequest),
    /// These bytes exactly (possibly several pipelined requests, or not HTTP at all).
    Raw {
        /// Bytes written first.
        bytes: Vec<u8>,
        /// After a `101` response: bytes written on the tunnel; as many are read back into
        /// the response body.
        tunnel_write: Option<Vec<u8>>,
    },
    /// These bytes exactly, in several writes: each `(pause, bytes)` is written `pause`
    /// after the previous write (after the connect for the first), while the responses
    /// are read.
    RawWrites(Vec<(Duration, Vec<u8>)>),
}

/// How the client reads.
#[derive(Debug, Clone)]
pub struct Options {
    /// Deadline of the whole exchange (connect to end of observation).
    pub timeout: Duration,
    /// Stop reading (and close) after this many body chunks: HTTP chunks of a chunked body,
    /// reads of any other body. The response then counts as complete.
    pub max_chunks: Option<u32>,
    /// Close the connection once this many body bytes arrived (a client that goes away).
    pub cancel_after_bytes: Option<u64>,
    /// Body bytes kept (beyond: length and hash only).
    pub keep_bytes: usize,
    /// After a response that keeps the connection open: how long to watch for a close (or,
    /// for raw sends, for a further response) before recording "kept alive".
    pub linger: Duration,
    /// After a response that announced `Connection: close`: how long to wait for the close.
    pub close_wait: Duration,
    /// Incremented for every body chunk received (for `wait: background_chunks`).
    pub progress: Option<Arc<AtomicU64>>,
    /// Start reading only this long after the connect (a client still busy writing).
    pub read_delay: Duration,
    /// Raw sends: read until this many final responses arrived (however long they take,
    /// within `timeout`), then watch `linger` for an extra one or the connection's end.
    /// `None`: after each response wait `linger` for the next.
    pub want_responses: Option<usize>,
    /// Speak TLS with this configuration on the connection (the `h1+tls` transport);
    /// None: plain TCP.
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(10),
            max_chunks: None,
            cancel_after_bytes: None,
            keep_bytes: crate::observe::body::KEEP_BYTES,
            linger: Duration::from_millis(15),
            close_wait: Duration::from_millis(1000),
            progress: None,
            read_delay: Duration::ZERO,
            want_responses: None,
            tls: None,
        }
    }
}

/// A status line with its header section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: String,
    /// Status code.
    pub status: u16,
    /// Reason phrase as sent (may be empty).
    pub reason: String,
    /// Header fields in order; names as sent, values as text (lossy UTF-8).
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header (e.g. `Connection`) carries `token`
    /// (case-insensitive, RFC 9110 §5.6.1 list syntax).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// How the client delimited a response body (RFC 9112 §6.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// No body: a response to HEAD, a 1xx, 204 or 304 (§6.3 rule 1).
    NoBody,
    /// `Content-Length: n` (§6.3 rule 5).
    Length(u64),
    /// `Transfer-Encoding` ending in `chunked` (§6.3 rule 4, §7.1).
    Chunked,
    /// Read until the server closed (§6.3 rules 4 and 8).
    CloseDelimited,
    /// `101 Switching Protocols`: the connection became a tunnel.
    Tunnel,
    /// HTTP/2: DATA frames until END_STREAM (RFC 9113 §8.1); recorded by
    /// [`crate::h2client`], never by this client.
    Http2,
    /// The framing headers were invalid (§6.3 rule 5: conflicting or bad Content-Length).
    Invalid(String),
}

/// How the connection was after the last response (or when the client stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnEnd {
    /// Still open after the linger time following a complete response.
    KeptAlive,
    /// The server closed its side (FIN).
    Fin,
    /// The server reset the connection (RST).
    Reset,
    /// Still open when the client gave up (the exchange's deadline, or the close wait
    /// after a response that announced `Connection: close`).
    Open,
    /// The client closed on purpose (read enough chunks, or cancelled after N bytes).
    ClientClosed,
    /// HTTP/2 ([`crate::h2client`]): the stream ended with `RST_STREAM` carrying this
    /// error code (RFC 9113 §6.4, §7).
    StreamReset(u32),
    /// HTTP/2: the server sent `GOAWAY` with this error code on the connection (RFC 9113
    /// §6.8); for a stream that ended whole before or after it.
    GoAway(u32),
}

/// Why an exchange went wrong, as a kind that compares between runs and a detail text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The kind.
    pub kind: FailureKind,
    /// Human text (OS error, parser error); not compared.
    pub detail: String,
}

/// Kinds of [`Failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The connection could not be made (refused or other connect error).
    Connect,
    /// The deadline passed first.
    Timeout,
    /// The server reset the connection before the response was complete.
    Reset,
    /// The server closed the connection before the response was complete.
    Closed,
    /// What arrived is not a valid HTTP/1.x response.
    Malformed,
    /// Writing the request failed.
    Write,
}

/// One response as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Interim (1xx other than 101) responses before it, in order.
    pub interim: Vec<Head>,
    /// The final status line and headers.
    pub head: Head,
    /// How the body was delimited.
    pub framing: Framing,
    /// The body (for a tunnel: the bytes read back).
    pub body: BodyRecord,
    /// The body arrived whole (for `max_chunks`: enough chunks arrived).
    pub complete: bool,
    /// Trailer fields of a chunked body, in order.
    pub trailers: Vec<(String, String)>,
    /// Body chunks received (see [`Options::max_chunks`]).
    pub chunks: u32,
    /// Longest gap between the head and the first chunk or between two chunks, ms.
    pub max_gap_ms: u64,
}

/// Upload progress of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// Body bytes written.
    pub sent: u64,
    /// The whole body was written.
    pub complete: bool,
}

/// Everything observed on one connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Exchange {
    /// Responses in order (one for a built request; any number for raw bytes).
    pub responses: Vec<Response>,
    /// How the connection ended (None: no connection).
    pub end: Option<ConnEnd>,
    /// What went wrong, if anything.
    pub failure: Option<Failure>,
    /// For a request with a body: how much of it was written.
    pub upload: Option<Upload>,
    /// Bytes received after the last response that do not form a response.
    pub trailing_bytes: u64,
    /// Connect to end of the last response, µs.
    pub latency_us: u64,
}

impl Exchange {
    /// The final response (the last one), if any.
    pub fn last(&self) -> Option<&Response> {
        self.responses.last()
    }
}

/// Connects to `addr`, writes `out`, and observes until the exchange is over or
/// `opts.timeout` passes; never fails (failures are part of the observation).
pub async fn exchange(addr: SocketAddr, out: Outgoing, opts: &Options) -> Exchange {
    let t0 = Instant::now();
    let mut st = State { ex: Exchange::default(), sink: None, t0, head_done: None };
    let res = tokio::time::timeout(opts.timeout, run(&mut st, addr, out, opts)).await;
    if res.is_err() {
        if st.ex.end.is_some() || st.sink.is_some() {
            st.ex.end = Some(ConnEnd::Open);
        }
        // A response whose end was being watched (linger) is fine; otherwise a timeout.
        let pending = st.sink.is_some() || st.ex.responses.is_empty();
        if pending {
            st.ex.failure = Some(Failure { kind: FailureKind::Timeout, detail: format!("no complete response within {:?}", opts.timeout) });
        }
    }
    st.close_body(false);
    if st.ex.latency_us == 0 {
        st.ex.latency_us = t0.elapsed().as_micros() as u64;
    }
    st.ex
}

struct State {
    ex: Exchange,
    /// Body being read for the last response.
    sink: Option<BodySink>,
    t0: Instant,
    head_done: Option<Instant>,
}

impl State {
    fn close_body(&mut self, complete: bool) {
        if let Some(s) = self.sink.take() {
            if let Some(r) = self.ex.responses.last_mut() {
                r.body = s.finish();
                r.complete = complete;
            }
        }
    }
}

fn io_failure(e: &std::io::Error, closed_kind: FailureKind) -> Failure {
    let kind = match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => FailureKind::Reset,
        std::io::ErrorKind::BrokenPipe => FailureKind::Reset,
        _ => closed_kind,
    };
    Failure { kind, detail: e.to_string() }
}

async fn run(st: &mut State, addr: SocketAddr, out: Outgoing, opts: &Options) {
    let s = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            st.ex.failure = Some(Failure { kind: FailureKind::Connect, detail: e.to_string() });
            return;
        }
    };
    let _ = s.set_nodelay(true);
    match &opts.tls {
        None => {
            let (r, w) = s.into_split();
            run_io(st, r, w, addr, out, opts).await
        }
        Some(cfg) => {
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").expect("valid name");
            match tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, s).await {
                Ok(t) => {
                    let (r, w) = tokio::io::split(t);
                    run_io(st, r, w, addr, out, opts).await
                }
                Err(e) => st.ex.failure = Some(Failure { kind: FailureKind::Connect, detail: format!("tls: {}", crate::tls::alert_of(&e)) }),
            }
        }
    }
}

/// The exchange on a connected stream (plain or TLS).
async fn run_io<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(st: &mut State, r: R, mut w: W, addr: SocketAddr, out: Outgoing, opts: &Options) {
    let mut rd = Rd { r, buf: Vec::new() };
    let read_delay = opts.read_delay.saturating_sub(st.t0.elapsed());
    match out {
        Outgoing::Raw { bytes, tunnel_write } => {
            if let Err(e) = w.write_all(&bytes).await {
                st.ex.failure = Some(io_failure(&e, FailureKind::Write));
            }
            tokio::time::sleep(read_delay).await;
            let heads = head_requests(&bytes);
            read_responses(st, &mut rd, Some(&mut w), tunnel_write.as_deref(), &heads, true, opts).await;
        }
        Outgoing::RawWrites(writes) => {
            let all: Vec<u8> = writes.iter().flat_map(|(_, b)| b.iter().copied()).collect();
            let heads = head_requests(&all);
            let writer = async {
                for (pause, b) in &writes {
                    tokio::time::sleep(*pause).await;
                    w.write_all(b).await?;
                }
                Ok::<(), std::io::Error>(())
            };
            tokio::pin!(writer);
            let mut wres: Option<std::io::Result<()>> = None;
            {
                let reader = async {
                    tokio::time::sleep(read_delay).await;
                    read_responses::<_, W>(st, &mut rd, None, None, &heads, true, opts).await
                };
                tokio::pin!(reader);
                loop {
                    tokio::select! {
                        _ = &mut reader => break,
                        r = &mut writer, if wres.is_none() => { wres = Some(r); }
                    }
                }
            }
            if let Some(Err(e)) = wres {
                if st.ex.responses.is_empty() && matches!(st.ex.failure, None | Some(Failure { kind: FailureKind::Closed, .. })) {
                    st.ex.failure = Some(io_failure(&e, FailureKind::Write));
                }
            }
        }
        Outgoing::Http(req) => {
            let is_head = req.method.eq_ignore_ascii_case("HEAD");
            let has_body = !matches!(req.body, ReqBody::Empty);
            let sent = AtomicU64::new(0);
            let wres = {
                let writer = write_request(&mut w, &req, addr, &sent);
                tokio::pin!(writer);
                let heads = [is_head];
                let reader = async {
                    tokio::time::sleep(read_delay).await;
                    read_responses::<_, W>(st, &mut rd, None, None, &heads, false, opts).await
                };
                tokio::pin!(reader);
                let mut wres: Option<std::io::Result<()>> = None;
                loop {
                    tokio::select! {
                        _ = &mut reader => break,
                        r = &mut writer, if wres.is_none() => { wres = Some(r); }
                    }
                }
                wres
            };
            if has_body {
                st.ex.upload = Some(Upload { sent: sent.load(Ordering::Relaxed), complete: matches!(wres, Some(Ok(()))) });
            }
            if let Some(Err(e)) = wres {
                if st.ex.responses.is_empty() && matches!(st.ex.failure, None | Some(Failure { kind: FailureKind::Closed, .. })) {
                    st.ex.failure = Some(io_failure(&e, FailureKind::Write));
                }
            }
        }
    }
}

async fn write_request<W: AsyncWrite + Unpin>(w: &mut W, req: &HttpRequest, addr: SocketAddr, sent: &AtomicU64) -> std::io::Result<()> {
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.target);
    let has = |n: &str| req.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("host") {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    let framed = has("content-length") || has("transfer-encoding");
    match &req.body {
        ReqBody::Bytes(b) if !framed => head.push_str(&format!("Content-Length: {}\r\n", b.len())),
        ReqBody::Generated { len } if !framed => head.push_str(&format!("Content-Length: {len}\r\n")),
        _ => {}
    }
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes()).await?;
    match &req.body {
        ReqBody::Empty => {}
        ReqBody::Bytes(b) => {
            w.write_all(b).await?;
            sent.store(b.len() as u64, Ordering::Relaxed);
        }
        ReqBody::Generated { len } => {
            const BLOCK: usize = 64 * 1024;
            let block = vec![b'a'; BLOCK];
            let mut left = *len;
            while left > 0 {
                let n = left.min(BLOCK as u64) as usize;
                w.write_all(&block[..n]).await?;
                left -= n as u64;
                sent.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
    w.flush().await
}

/// Buffered reader over the read half.
struct Rd<R> {
    r: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Rd<R> {
    /// Reads more bytes into the buffer; `Ok(0)` at EOF.
    async fn more(&mut self) -> std::io::Result<usize> {
        let mut tmp = [0u8; 16384];
        let n = match self.r.read(&mut tmp).await {
            // TLS: the peer closed without close_notify; the TCP end is a FIN all the same.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            r => r?,
        };
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Waits up to `wait` for more bytes after a response: `None` when some arrived,
    /// otherwise how the connection ended (`idle` when nothing came within `wait`).
    async fn end_or_more(&mut self, wait: Duration, idle: ConnEnd) -> Option<ConnEnd> {
        match tokio::time::timeout(wait, self.more()).await {
            Err(_) => Some(idle),
            Ok(Ok(0)) => Some(ConnEnd::Fin),
            Ok(Ok(_)) => None,
            Ok(Err(_)) => Some(ConnEnd::Reset),
        }
    }
}

enum HeadRead {
    Head(Head),
    /// EOF (or reset) with no byte of a head: `Ok` = FIN.
    Eof(std::io::Result<()>),
    Failed(Failure),
}

async fn read_head<R: AsyncRead + Unpin>(rd: &mut Rd<R>) -> HeadRead {
    loop {
        if !rd.buf.is_empty() {
            // Any number of header fields: as many slots as the buffer has lines.
            let lines = rd.buf.iter().filter(|b| **b == b'\n').count() + 1;
            let mut hdrs = vec![httparse::EMPTY_HEADER; lines];
            let mut resp = httparse::Response::new(&mut hdrs);
            match resp.parse(&rd.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let head = Head {
                        version: format!("HTTP/1.{}", resp.version.unwrap_or(1)),
                        status: resp.code.unwrap_or(0),
                        reason: resp.reason.unwrap_or("").to_string(),
                        headers: resp.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned())).collect(),
                    };
                    rd.buf.drain(..n);
                    return HeadRead::Head(head);
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return HeadRead::Failed(Failure { kind: FailureKind::Malformed, detail: format!("{e}: {:?}", String::from_utf8_lossy(&rd.buf[..rd.buf.len().min(64)])) }),
            }
        }
        match rd.more().await {
            Ok(0) if rd.buf.is_empty() => return HeadRead::Eof(Ok(())),
            Ok(0) => return HeadRead::Failed(Failure { kind: FailureKind::Malformed, detail: format!("connection closed inside a response head: {:?}", String::from_utf8_lossy(&rd.buf[..rd.buf.len().min(64)])) }),
            Ok(_) => {}
            Err(e) if rd.buf.is_empty() => return HeadRead::Eof(Err(e)),
            Err(e) => return HeadRead::Failed(io_failure(&e, FailureKind::Closed)),
        }
    }
}

/// Body framing of a response to a request (RFC 9112 §6.3).
pub fn framing_of(head: &Head, request_was_head: bool) -> Framing {
    let st = head.status;
    if st == 101 {
        return Framing::Tunnel;
    }
    if request_was_head || (100..200).contains(&st) || st == 204 || st == 304 {
        return Framing::NoBody;
    }
    let te: Vec<&str> = head.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding")).map(|(_, v)| v.as_str()).collect();
    if !te.is_empty() {
        let last = te.iter().flat_map(|v| v.split(',')).map(|t| t.trim()).filter(|t| !t.is_empty()).last().unwrap_or("");
        return if last.eq_ignore_ascii_case("chunked") { Framing::Chunked } else { Framing::CloseDelimited };
    }
    let cls: Vec<&str> = head.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).flat_map(|(_, v)| v.split(',')).map(|v| v.trim()).collect();
    if cls.is_empty() {
        return Framing::CloseDelimited;
    }
    let parsed: Vec<Option<u64>> = cls.iter().map(|v| if v.bytes().all(|b| b.is_ascii_digit()) && !v.is_empty() { v.parse().ok() } else { None }).collect();
    match parsed.first().copied().flatten() {
        Some(n) if parsed.iter().all(|p| *p == Some(n)) => Framing::Length(n),
        _ => Framing::Invalid(format!("Content-Length {cls:?}")),
    }
}

/// For each request written in `bytes` (pipelined requests, in order), whether it is a
/// `HEAD` (its response has no body, RFC 9112 §6.3 rule 1). Requests are delimited by their
/// heads and their bodies' framing (Content-Length, chunked); the scan stops at the first
/// head that does not parse (the router answers it, if at all, with a close).
pub fn head_requests(bytes: &[u8]) -> Vec<bool> {
    requests_on_the_wire(bytes).into_iter().map(|r| r.head).collect()
}

/// One request as [`requests_on_the_wire`] reads it from a client's byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRequest {
    /// Its method is `HEAD` (the method is the token before the line's first SP, RFC 9112
    /// §3, also in a head that does not parse).
    pub head: bool,
    /// The value of its request tag field ([`crate::observe::upstream::REQUEST_TAG`]),
    /// None when it has none or its head does not parse.
    pub tag: Option<String>,
}

/// The requests written in `bytes`, in order, delimited as [`head_requests`] says: a request
/// hidden in a body that is not framed as one stands at its own place in the list.
pub fn requests_on_the_wire(bytes: &[u8]) -> Vec<WireRequest> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        // RFC 9112 §2.2: empty lines (CRLF or LF) before a request line are ignored, as
        // httparse skips them; a lone CR is not an empty line but a malformed request line.
        let mut skip = 0;
        loop {
            match &rest[skip..] {
                [b'\r', b'\n', ..] => skip += 2,
                [b'\n', ..] => skip += 1,
                _ => break,
            }
        }
        let rest = &rest[skip..];
        if rest.is_empty() {
            break;
        }
        let lines = rest.iter().filter(|b| **b == b'\n').count() + 1;
        let mut hdrs = vec![httparse::EMPTY_HEADER; lines];
        let mut req = httparse::Request::new(&mut hdrs);
        let Ok(httparse::Status::Complete(n)) = req.parse(rest) else {
            out.push(WireRequest { head: rest.split(|b| *b == b' ').next().map(|m| m.eq_ignore_ascii_case(b"HEAD")).unwrap_or(false), tag: None });
            break;
        };
        let tag = req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(crate::observe::upstream::REQUEST_TAG)).map(|h| String::from_utf8_lossy(h.value).into_owned());
        out.push(WireRequest { head: req.method.map(|m| m.eq_ignore_ascii_case("HEAD")).unwrap_or(false), tag });
        let value = |name: &str| req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase());
        let mut body_end = n;
        if value("transfer-encoding").map(|v| v.trim_end().ends_with("chunked")).unwrap_or(false) {
            // chunk-size [ext] CRLF data CRLF ... 0 CRLF trailers CRLF
            loop {
                match httparse::parse_chunk_size(&rest[body_end.min(rest.len())..]) {
                    Ok(httparse::Status::Complete((k, 0))) => {
                        body_end += k;
                        // trailer section up to an empty line
                        match rest[body_end.min(rest.len())..].windows(2).position(|w| w == b"\r\n") {
                            Some(p) if p == 0 => body_end += 2,
                            _ => match rest[body_end.min(rest.len())..].windows(4).position(|w| w == b"\r\n\r\n") {
                                Some(p) => body_end += p + 4,
                                None => body_end = rest.len(),
                            },
                        }
                        break;
                    }
                    Ok(httparse::Status::Complete((k, size))) => body_end += k + size as usize + 2,
                    _ => {
                        body_end = rest.len();
                        break;
                    }
                }
            }
        } else if let Some(cl) = value("content-length").and_then(|v| v.trim().parse::<usize>().ok()) {
            body_end += cl;
        }
        at += skip + body_end.min(rest.len());
    }
    out
}

/// Whether the response announced that the connection closes after it (RFC 9112 §9.6,
/// §9.3: HTTP/1.0 without keep-alive).
fn announces_close(h: &Head) -> bool {
    h.has_token("connection", "close") || (h.version == "HTTP/1.0" && !h.has_token("connection", "keep-alive"))
}

enum BodyEnd {
    /// Complete; connection state unknown yet.
    Done,
    /// The client stopped on purpose.
    Stopped { complete: bool },
    /// Ended by the server closing: FIN (complete for close-delimited) or reset.
    Closed { end: ConnEnd, complete: bool, failure: Option<Failure> },
}

#[allow(clippy::too_many_arguments)]
async fn read_responses<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    st: &mut State,
    rd: &mut Rd<R>,
    mut tunnel_w: Option<&mut W>,
    tunnel_write: Option<&[u8]>,
    heads: &[bool],
    raw: bool,
    opts: &Options,
) {
    let mut interim = Vec::new();
    loop {
        let head = match read_head(rd).await {
            HeadRead::Head(h) => h,
            HeadRead::Eof(r) => {
                let end = if r.is_ok() { ConnEnd::Fin } else { ConnEnd::Reset };
                st.ex.end = Some(end);
                if st.ex.responses.is_empty() || !interim.is_empty() {
                    st.ex.failure.get_or_insert(Failure {
                        kind: if end == ConnEnd::Fin { FailureKind::Closed } else { FailureKind::Reset },
                        detail: match r {
                            Ok(()) => "connection closed without a response".into(),
                            Err(e) => e.to_string(),
                        },
                    });
                }
                return;
            }
            HeadRead::Failed(f) => {
                st.ex.failure = Some(f);
                st.ex.end = Some(ConnEnd::ClientClosed);
                return;
            }
        };
        if (100..200).contains(&head.status) && head.status != 101 {
            interim.push(head);
            continue;
        }
        // Responses answer the requests in order (RFC 9112 §9.3.2).
        let request_was_head = heads.get(st.ex.responses.len()).copied().unwrap_or(false);
        let framing = framing_of(&head, request_was_head);
        let close = announces_close(&head);
        st.ex.responses.push(Response {
            interim: std::mem::take(&mut interim),
            head,
            framing: framing.clone(),
            body: BodyRecord::default(),
            complete: false,
            trailers: vec![],
            chunks: 0,
            max_gap_ms: 0,
        });
        st.sink = Some(BodySink::new(opts.keep_bytes));
        st.head_done = Some(Instant::now());
        let end = read_body(st, rd, &framing, tunnel_w.as_deref_mut(), tunnel_write, opts).await;
        st.ex.latency_us = st.t0.elapsed().as_micros() as u64;
        match end {
            BodyEnd::Stopped { complete } => {
                st.close_body(complete);
                st.ex.end = Some(ConnEnd::ClientClosed);
                return;
            }
            BodyEnd::Closed { end, complete, failure } => {
                st.close_body(complete);
                st.ex.end = Some(end);
                if let Some(f) = failure {
                    st.ex.failure = Some(f);
                }
                return;
            }
            BodyEnd::Done => st.close_body(true),
        }
        if framing == Framing::Tunnel {
            st.ex.end = Some(ConnEnd::ClientClosed);
            return;
        }
        // What happens to the connection after the response: a raw send expecting more
        // responses waits for them (within the exchange's deadline); otherwise watch for
        // the close (announced) or for more bytes (linger).
        let more_due = raw && opts.want_responses.map(|n| st.ex.responses.len() < n).unwrap_or(false);
        let (wait, idle) = if close {
            (opts.close_wait, ConnEnd::Open)
        } else if more_due {
            (opts.timeout, ConnEnd::Open)
        } else {
            (opts.linger, ConnEnd::KeptAlive)
        };
        st.ex.end = Some(ConnEnd::Open);
        while rd.buf.is_empty() {
            if let Some(end) = rd.end_or_more(wait, idle).await {
                st.ex.end = Some(end);
                return;
            }
        }
        if !raw {
            // Bytes after the one response: count them and see how the connection ends.
            loop {
                st.ex.trailing_bytes += rd.buf.len() as u64;
                rd.buf.clear();
                if let Some(end) = rd.end_or_more(wait, idle).await {
                    st.ex.end = Some(end);
                    return;
                }
            }
        }
        // Raw: another pipelined response follows.
    }
}

fn chunk_seen(st: &mut State, opts: &Options) {
    let now = Instant::now();
    if let (Some(r), Some(prev)) = (st.ex.responses.last_mut(), st.head_done) {
        r.chunks += 1;
        r.max_gap_ms = r.max_gap_ms.max(now.duration_since(prev).as_millis() as u64);
    }
    st.head_done = Some(now);
    if let Some(p) = &opts.progress {
        p.fetch_add(1, Ordering::SeqCst);
    }
}

fn body_len(st: &State) -> u64 {
    st.sink.as_ref().map(|s| s.len()).unwrap_or(0)
}

fn enough_chunks(st: &State, opts: &Options) -> bool {
    match (opts.max_chunks, st.ex.responses.last()) {
        (Some(m), Some(r)) => r.chunks >= m,
        _ => false,
    }
}

/// Feeds `b` into the body; returns true when the client should stop (cancel cap).
fn feed(st: &mut State, b: &[u8], opts: &Options) -> bool {
    let take = match opts.cancel_after_bytes {
        Some(cap) => (cap.saturating_sub(body_len(st)) as usize).min(b.len()),
        None => b.len(),
    };
    if let Some(s) = st.sink.as_mut() {
        s.push(&b[..take]);
    }
    opts.cancel_after_bytes.map(|cap| body_len(st) >= cap).unwrap_or(false)
}

fn closed(r: std::io::Result<usize>, complete_on_fin: bool) -> BodyEnd {
    match r {
        Ok(_) => BodyEnd::Closed {
            end: ConnEnd::Fin,
            complete: complete_on_fin,
            failure: if complete_on_fin { None } else { Some(Failure { kind: FailureKind::Closed, detail: "connection closed inside the body".into() }) },
        },
        Err(e) => BodyEnd::Closed { end: ConnEnd::Reset, complete: false, failure: Some(io_failure(&e, FailureKind::Closed)) },
    }
}

async fn read_body<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(st: &mut State, rd: &mut Rd<R>, framing: &Framing, tunnel_w: Option<&mut W>, tunnel_write: Option<&[u8]>, opts: &Options) -> BodyEnd {
    match framing {
        Framing::NoBody | Framing::Invalid(_) | Framing::Http2 => BodyEnd::Done,
        Framing::Tunnel => {
            let (Some(w), Some(t)) = (tunnel_w, tunnel_write) else { return BodyEnd::Done };
            if let Err(e) = w.write_all(t).await {
                return BodyEnd::Closed { end: ConnEnd::Reset, complete: false, failure: Some(io_failure(&e, FailureKind::Write)) };
            }
            let _ = w.flush().await;
            loop {
                if !rd.buf.is_empty() {
                    let take = (t.len() as u64 - body_len(st)).min(rd.buf.len() as u64) as usize;
                    let b: Vec<u8> = rd.buf.drain(..take).collect();
                    feed(st, &b, opts);
                    chunk_seen(st, opts);
                }
                if body_len(st) >= t.len() as u64 {
                    return BodyEnd::Done;
                }
                match rd.more().await {
                    Ok(0) => return closed(Ok(0), false),
                    Ok(_) => {}
                    Err(e) => return closed(Err(e), false),
                }
            }
        }
        Framing::Length(n) => {
            let n = *n;
            loop {
                if !rd.buf.is_empty() && body_len(st) < n {
                    let take = (n - body_len(st)).min(rd.buf.len() as u64) as usize;
                    let b: Vec<u8> = rd.buf.drain(..take).collect();
                    let stop = feed(st, &b, opts);
                    chunk_seen(st, opts);
                    if stop {
                        return BodyEnd::Stopped { complete: false };
                    }
                    if enough_chunks(st, opts) && body_len(st) < n {
                        return BodyEnd::Stopped { complete: true };
                    }
                }
                if body_len(st) >= n {
                    return BodyEnd::Done;
                }
                match rd.more().await {
                    Ok(0) => return closed(Ok(0), false),
                    Ok(_) => {}
                    Err(e) => return closed(Err(e), false),
                }
            }
        }
        Framing::CloseDelimited => loop {
            if !rd.buf.is_empty() {
                let b = std::mem::take(&mut rd.buf);
                let stop = feed(st, &b, opts);
                chunk_seen(st, opts);
                if stop {
                    return BodyEnd::Stopped { complete: false };
                }
                if enough_chunks(st, opts) {
                    return BodyEnd::Stopped { complete: true };
                }
            }
            match rd.more().await {
                Ok(0) => return closed(Ok(0), true),
                Ok(_) => {}
                Err(e) => return closed(Err(e), false),
            }
        },
        Framing::Chunked => read_chunked(st, rd, opts).await,
    }
}

/// Takes one line (without its CRLF or LF) from the buffer, reading more as needed.
async fn line<R: AsyncRead + Unpin>(rd: &mut Rd<R>) -> Result<Vec<u8>, BodyEnd> {
    loop {
        if let Some(i) = rd.buf.iter().position(|b| *b == b'\n') {
            let mut l: Vec<u8> = rd.buf.drain(..=i).collect();
            l.pop();
            if l.last() == Some(&b'\r') {
                l.pop();
            }
            return Ok(l);
        }
        match rd.more().await {
            Ok(0) => return Err(closed(Ok(0), false)),
            Ok(_) => {}
            Err(e) => return Err(closed(Err(e), false)),
        }
    }
}

async fn read_chunked<R: AsyncRead + Unpin>(st: &mut State, rd: &mut Rd<R>, opts: &Options) -> BodyEnd {
    loop {
        let l = match line(rd).await {
            Ok(l) => l,
            Err(e) => return e,
        };
        let size_txt = String::from_utf8_lossy(&l);
        let size_txt = size_txt.split(';').next().unwrap_or("").trim();
        let Ok(size) = u64::from_str_radix(size_txt, 16) else {
            return BodyEnd::Closed { end: ConnEnd::ClientClosed, complete: false, failure: Some(Failure { kind: FailureKind::Malformed, detail: format!("bad chunk size line {:?}", String::from_utf8_lossy(&l)) }) };
        };
        if size == 0 {
            // Trailer section (RFC 9112 §7.1.2), then the end.
            loop {
                let t = match line(rd).await {
                    Ok(t) => t,
                    Err(e) => return e,
                };
                if t.is_empty() {
                    return BodyEnd::Done;
                }
                let t = String::from_utf8_lossy(&t).into_owned();
                let (k, v) = t.split_once(':').unwrap_or((t.as_str(), ""));
                if let Some(r) = st.ex.responses.last_mut() {
                    r.trailers.push((k.to_string(), v.trim().to_string()));
                }
            }
        }
        let mut left = size;
        while left > 0 {
            if rd.buf.is_empty() {
                match rd.more().await {
                    Ok(0) => return closed(Ok(0), false),
                    Ok(_) => {}
                    Err(e) => return closed(Err(e), false),
                }
            }
            let take = left.min(rd.buf.len() as u64) as usize;
            let b: Vec<u8> = rd.buf.drain(..take).collect();
            left -= take as u64;
            if feed(st, &b, opts) {
                return BodyEnd::Stopped { complete: false };
            }
        }
        match line(rd).await {
            Ok(l) if l.is_empty() => {}
            Ok(l) => {
                return BodyEnd::Closed { end: ConnEnd::ClientClosed, complete: false, failure: Some(Failure { kind: FailureKind::Malformed, detail: format!("chunk data not followed by CRLF: {:?}", String::from_utf8_lossy(&l)) }) }
            }
            Err(e) => return e,
        }
        chunk_seen(st, opts);
        if enough_chunks(st, opts) {
            return BodyEnd::Stopped { complete: true };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-connection server: reads until the request head (and `read_body` bytes more)
    /// arrived, writes `reply`, then does `then`.
    #[derive(Clone, Copy)]
    enum Then {
        Keep,
        Fin,
        Rst,
    }

    async fn server(reply: Vec<u8>, then: Then, read_body: usize) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut tmp = [0u8; 65536];
            loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    if buf.len() >= i + 4 + read_body {
                        break;
                    }
                }
                let n = s.read(&mut tmp).await.unwrap();
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            s.write_all(&reply).await.unwrap();
            s.flush().await.unwrap();
            match then {
                Then::Keep => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Then::Fin => {
                    let _ = s.shutdown().await;
                    let _ = s.read(&mut tmp).await;
                }
                Then::Rst => {
                    crate::selftest::inject::reset_on_close(&s);
                    drop(s);
                }
            }
        });
        a
    }

    fn get() -> Outgoing {
        Outgoing::Http(HttpRequest { method: "GET".into(), target: "/".into(), headers: vec![], body: ReqBody::Empty })
    }

    #[tokio::test]
    async fn content_length_keep_alive_names_as_sent() {
        let a = server(b"HTTP/1.1 200 Fine\r\nX-B: 1\r\ncontent-length: 5\r\nX-A: 2\r\n\r\nhello".to_vec(), Then::Keep, 0).await;
        let ex = exchange(a, get(), &Options::default()).await;
        assert_eq!(ex.failure, None);
        let r = ex.last().unwrap();
        assert_eq!((r.head.status, r.head.reason.as_str(), r.head.version.as_str()), (200, "Fine", "HTTP/1.1"));
        let names: Vec<&str> = r.head.headers.iter().map(|h| h.0.as_str()).collect();
        assert_eq!(names, ["X-B", "content-length", "X-A"]);
        assert_eq!(r.framing, Framing::Length(5));
        assert_eq!(r.body.kept, b"hello");
        assert!(r.complete);
        assert_eq!(ex.end, Some(ConnEnd::KeptAlive));
    }

    #[tokio::test]
    async fn chunked_with_trailers_then_fin() {
        let a = server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nX-T: done\r\n\r\n".to_vec(), Then::Fin, 0).await;
        let ex = exchange(a, get(), &Options::default()).await;
        let r = ex.last().unwrap();
        assert_eq!(r.framing, Framing::Chunked);
        assert_eq!(r.body.kept, b"hello!");
        assert_eq!(r.chunks, 2);
        assert_eq!(r.trailers, vec![("X-T".to_string(), "done".to_string())]);
        assert_eq!(ex.end, Some(ConnEnd::Fin));
        assert_eq!(ex.failure, None);
    }

    #[tokio::test]
    async fn close_delimited_and_reset() {
        let a = server(b"HTTP/1.1 200 OK\r\n\r\nuntil close".to_vec(), Then::Fin, 0).await;
        let ex = exchange(a, get(), &Options::default()).await;
        let r = ex.last().unwrap();
        assert_eq!(r.framing, Framing::CloseDelimited);
        assert!(r.complete);
        assert_eq!(r.body.kept, b"until close");
        assert_eq!(ex.end, Some(ConnEnd::Fin));

        let a = server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_vec(), Then::Rst, 0).await;
        let ex = exchange(a, get(), &Options::default()).await;
        assert!(ex.last().unwrap().complete);
        assert_eq!(ex.end, Some(ConnEnd::Reset));

        let a = server(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_vec(), Then::Fin, 0).await;
        let ex = exchange(a, get(), &Options::default()).await;
        let r = ex.last().unwrap();
        assert!(!r.complete);
        assert_eq!(r.body.len, 5);
        assert_eq!(ex.failure.as_ref().unwrap().kind, FailureKind::Closed);
    }

    #[tokio::test]
    async fn interim_no_body_and_no_response() {
        let a = server(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX: y\r\n\r\n".to_vec(), Then::Keep, 0).await;
        let ex = exchange(a, get(), &Options::default()).await;
        let r = ex.last().unwrap();
        assert_eq!(r.interim.len(), 1);
        assert_eq!(r.interim[0].status, 100);
        assert_eq!(r.framing, Framing::NoBody);
        assert_eq!(ex.responses.len(), 1);

        let a = server(b"".to_vec(), Then::Rst, 0).await;
        let ex = exchange(a, get(), &Options::default()).await;
        assert!(ex.responses.is_empty());
        assert_eq!(ex.failure.as_ref().unwrap().kind, FailureKind::Reset);
        assert_eq!(ex.end, Some(ConnEnd::Reset));

        let a = server(b"NOT HTTP\r\n\r\n".to_vec(), Then::Fin, 0).await;
        let ex = exchange(a, get(), &Options::default()).await;
        assert_eq!(ex.failure.as_ref().unwrap().kind, FailureKind::Malformed);

        // bound, never listening: refused, and no parallel test's process can take it
        let closed = crate::util::net::ReservedPort::new(0).unwrap();
        let ex = exchange(SocketAddr::from(([127, 0, 0, 1], closed.port())), get(), &Options::default()).await;
        assert_eq!(ex.failure.as_ref().unwrap().kind, FailureKind::Connect);
        assert_eq!(ex.end, None);
    }

    #[tokio::test]
    async fn timeout_keeps_what_arrived() {
        let a = server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial".to_vec(), Then::Keep, 0).await;
        let o = Options { timeout: Duration::from_millis(200), ..Default::default() };
        let ex = exchange(a, get(), &o).await;
        assert_eq!(ex.failure.as_ref().unwrap().kind, FailureKind::Timeout);
        assert_eq!(ex.end, Some(ConnEnd::Open));
        let r = ex.last().unwrap();
        assert_eq!(r.body.kept, b"partial");
        assert!(!r.complete);
    }

    #[tokio::test]
    async fn raw_pipelined_responses_and_head() {
        let a = server(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(), Then::Keep, 0).await;
        let o = Options { linger: Duration::from_millis(100), ..Default::default() };
        let ex = exchange(a, Outgoing::Raw { bytes: b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), tunnel_write: None }, &o).await;
        assert_eq!(ex.responses.iter().map(|r| r.head.status).collect::<Vec<_>>(), [200, 404]);
        assert_eq!(ex.end, Some(ConnEnd::KeptAlive));

        let a = server(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n".to_vec(), Then::Keep, 0).await;
        let ex = exchange(a, Outgoing::Raw { bytes: b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), tunnel_write: None }, &o).await;
        assert_eq!(ex.last().unwrap().framing, Framing::NoBody);
        assert!(ex.last().unwrap().complete);
    }

    #[tokio::test]
    async fn upload_is_written_while_reading() {
        let n = 3 * 1024 * 1024;
        let a = server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(), Then::Keep, n).await;
        let req = HttpRequest { method: "POST".into(), target: "/up".into(), headers: vec![("X-K".into(), "v".into())], body: ReqBody::Generated { len: n as u64 } };
        let ex = exchange(a, Outgoing::Http(req), &Options::default()).await;
        assert_eq!(ex.last().unwrap().head.status, 200);
        assert_eq!(ex.upload, Some(Upload { sent: n as u64, complete: true }));
    }

    #[tokio::test]
    async fn stops_after_chunks_or_bytes() {
        let mut reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for i in 0..10 {
            reply.extend_from_slice(format!("2\r\n{i}\n\r\n").as_bytes());
        }
        let a = server(reply.clone(), Then::Keep, 0).await;
        let p = Arc::new(AtomicU64::new(0));
        let o = Options { max_chunks: Some(3), progress: Some(p.clone()), ..Default::default() };
        let ex = exchange(a, get(), &o).await;
        let r = ex.last().unwrap();
        assert_eq!((r.chunks, r.complete, r.body.len), (3, true, 6));
        assert_eq!(p.load(Ordering::SeqCst), 3);
        assert_eq!(ex.end, Some(ConnEnd::ClientClosed));

        let a = server(reply, Then::Keep, 0).await;
        let o = Options { cancel_after_bytes: Some(5), ..Default::default() };
        let ex = exchange(a, get(), &o).await;
        let r = ex.last().unwrap();
        assert_eq!((r.complete, r.body.len), (false, 5));
        assert_eq!(ex.end, Some(ConnEnd::ClientClosed));
    }

    #[tokio::test]
    async fn tunnel_reads_back_what_was_written() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut tmp = [0u8; 1024];
            let _ = s.read(&mut tmp).await.unwrap();
            s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n").await.unwrap();
            let n = s.read(&mut tmp).await.unwrap();
            s.write_all(&tmp[..n]).await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        let ex = exchange(a, Outgoing::Raw { bytes: b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n".to_vec(), tunnel_write: Some(b"ping".to_vec()) }, &Options::default()).await;
        let r = ex.last().unwrap();
        assert_eq!(r.framing, Framing::Tunnel);
        assert_eq!(r.body.kept, b"ping");
        assert!(r.complete);
    }

    /// A server that answers each request head it reads (in order) with `replies[i]` after
    /// `delays[i]`, then keeps the connection open.
    async fn scripted(replies: Vec<(u64, Vec<u8>)>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut tmp = [0u8; 4096];
            for (delay, reply) in replies {
                let end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    let n = s.read(&mut tmp).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                };
                buf.drain(..end);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                s.write_all(&reply).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        a
    }

    const OK2: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    #[tokio::test]
    async fn raw_writes_are_timed_and_responses_awaited_to_the_expected_count() {
        // The second request is written 50 ms after the first; the first answer takes
        // 300 ms, so with only the 15 ms linger the second answer would be missed.
        let a = scripted(vec![(300, OK2.to_vec()), (0, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec())]).await;
        let o = Options { linger: Duration::from_millis(100), want_responses: Some(2), timeout: Duration::from_secs(5), ..Default::default() };
        let t0 = Instant::now();
        let out = Outgoing::RawWrites(vec![(Duration::ZERO, b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()), (Duration::from_millis(50), b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec())]);
        let ex = exchange(a, out, &o).await;
        assert_eq!(ex.responses.iter().map(|r| r.head.status).collect::<Vec<_>>(), [200, 404]);
        assert_eq!(ex.end, Some(ConnEnd::KeptAlive));
        assert_eq!(ex.failure, None);
        assert!(t0.elapsed() >= Duration::from_millis(300));

        // Without the expected count, a raw send stops watching after the linger.
        let a = scripted(vec![(0, OK2.to_vec()), (300, OK2.to_vec())]).await;
        let o = Options { linger: Duration::from_millis(50), ..Default::default() };
        let ex = exchange(a, Outgoing::Raw { bytes: b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), tunnel_write: None }, &o).await;
        assert_eq!(ex.responses.len(), 1);

        // An extra response within the linger after the expected ones is recorded.
        let a = scripted(vec![(0, OK2.to_vec()), (20, OK2.to_vec())]).await;
        let o = Options { linger: Duration::from_millis(200), want_responses: Some(1), ..Default::default() };
        let ex = exchange(a, Outgoing::Raw { bytes: b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), tunnel_write: None }, &o).await;
        assert_eq!(ex.responses.len(), 2);
    }

    #[tokio::test]
    async fn a_head_split_over_writes_and_a_late_reader_sees_the_reset() {
        let a = scripted(vec![(0, OK2.to_vec())]).await;
        let out = Outgoing::RawWrites(vec![(Duration::ZERO, b"GET /1 HT".to_vec()), (Duration::from_millis(30), b"TP/1.1\r\nHost: x\r\n\r\n".to_vec())]);
        let ex = exchange(a, out, &Options { want_responses: Some(1), linger: Duration::from_millis(50), ..Default::default() }).await;
        assert_eq!(ex.responses.len(), 1);
        assert!(ex.responses[0].complete);

        // The server answers after the head and resets the connection (unread bytes); the
        // client starts reading 100 ms later, after the reset arrived.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut tmp = [0u8; 64];
            let _ = s.read(&mut tmp).await.unwrap();
            s.write_all(b"HTTP/1.1 431 Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await.unwrap();
            crate::selftest::inject::reset_on_close(&s);
            drop(s);
        });
        let big = vec![b'a'; 1 << 20];
        let o = Options { read_delay: Duration::from_millis(100), ..Default::default() };
        let ex = exchange(a, Outgoing::Raw { bytes: [b"GET / HTTP/1.1\r\nX: ".as_slice(), &big].concat(), tunnel_write: None }, &o).await;
        assert_eq!(ex.end, Some(ConnEnd::Reset), "{ex:?}");
    }

    #[test]
    fn head_requests_follow_the_framing_of_pipelined_requests() {
        let b = b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 4\r\n\r\nHEADPOST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nHEAD\r\n0\r\nT: 1\r\n\r\n\r\nHEAD /d HTTP/1.1\r\n\r\nGET /e HTTP/1.1\r\n\r\ngarbage here";
        assert_eq!(head_requests(b), [true, false, false, true, false, false]);
        assert_eq!(head_requests(b""), Vec::<bool>::new());
        assert_eq!(head_requests(b"HEAD /partial HTTP/1.1\r\n"), [true]);
        assert_eq!(head_requests(b"\r\n\nHEAD / HTTP/1.1\r\n\r\n"), [true], "empty lines first");
        assert_eq!(head_requests(b"\rHEAD / HTTP/1.1\r\n\r\n"), [false], "a lone CR makes the line malformed");
        let tags: Vec<Option<String>> = requests_on_the_wire(b"GET / HTTP/1.1\r\nX-Parity-Request: k.0\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\nx-parity-request: k.s1\r\n\r\nGET \x01").into_iter().map(|r| r.tag).collect();
        assert_eq!(tags, [Some("k.0".into()), None, Some("k.s1".into()), None]);
    }

    #[tokio::test]
    async fn response_heads_of_any_field_count() {
        let mut reply = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..300 {
            reply.extend_from_slice(b"X-H: v\r\n");
        }
        reply.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
        let a = server(reply, Then::Keep, 0).await;
        let ex = exchange(a, get(), &Options::default()).await;
        assert_eq!(ex.failure, None);
        assert_eq!(ex.last().unwrap().head.headers.len(), 301);
        assert_eq!(ex.last().unwrap().body.kept, b"ok");
    }

    #[test]
    fn framing_rules() {
        let h = |st: u16, hs: &[(&str, &str)]| Head { version: "HTTP/1.1".into(), status: st, reason: String::new(), headers: hs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect() };
        assert_eq!(framing_of(&h(304, &[("Content-Length", "5")]), false), Framing::NoBody);
        assert_eq!(framing_of(&h(200, &[("Transfer-Encoding", "gzip, chunked"), ("Content-Length", "5")]), false), Framing::Chunked);
        assert_eq!(framing_of(&h(200, &[("Transfer-Encoding", "gzip")]), false), Framing::CloseDelimited);
        assert_eq!(framing_of(&h(200, &[("Content-Length", "5, 5")]), false), Framing::Length(5));
        assert!(matches!(framing_of(&h(200, &[("Content-Length", "5"), ("Content-Length", "6")]), false), Framing::Invalid(_)));
    }
}
