//! The data plane: `impl ProxyHttp` (docs/spec.md section 3).
//!
//! Hook mapping:
//! - `request_filter`: snapshot, routing key, `Content-Length` + `Transfer-Encoding`,
//!   header size, selection (step 3) and limit (step 4); local rejections are answered here.
//! - `upstream_peer`: returns the chosen placement's peer; after a connect failure of a
//!   bodiless request it continues the chain walk after the failed placement.
//! - `connected_to_upstream` / `request_body_filter`: start the `request_ms` response-header
//!   deadline ([`HeaderDeadline`]) once the request has been written.
//! - `fail_to_connect`: breaker failure (kind `connect`), slot release and `set_retry(true)`
//!   for bodiless requests.
//! - `upstream_request_filter`: `Host`, `X-Forwarded-*`, hop-by-hop removal.
//! - `upstream_response_filter`: deadline cancelled, hop-by-hop removal, `X-Router-Placement`.
//! - `response_filter`: marks the response committed.
//! - `error_while_proxy` / `fail_to_proxy`: error classification and the contract's
//!   router-made responses (504 for the header deadline, 502 otherwise).
//! - `logging`: breaker outcome, metrics, access log; the slot is released when the
//!   context drops.

use crate::breaker::{Outcome, Permit};
use crate::limit::Slot;
use crate::routing::{self, PlacementRt, Selection, Snapshot};
use crate::state::{ActiveGuard, Router};
use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use std::fmt::Write as _;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::Digest;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Request headers larger than this (sum of the raw header section) are answered 431.
pub const MAX_REQUEST_HEADER_BYTES: usize = 64 * 1024;

/// Hop-by-hop header names (RFC 9110 section 7.6.1) removed in both directions.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// [`HOP_BY_HOP`] as header names (no parsing or allocation per request).
static HOP_BY_HOP_NAMES: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_ROUTING_KEY: HeaderName = HeaderName::from_static("x-routing-key");

/// Response-header deadline (`request_ms`), implemented as a timer that shuts the upstream
/// socket down when it fires. Pingora's `PeerOptions.read_timeout` applies to every read,
/// body included, so it cannot express "no response headers within request_ms" without
/// also limiting the body; this timer runs only until `upstream_response_filter` sees the
/// headers. The socket is a `dup` of Pingora's descriptor held under a mutex, so the timer
/// can never act on a descriptor number that was closed and reused.
///
/// All deadlines share one timer thread ([`DeadlineTimer`]): arming is a heap push under a
/// mutex and disarming closes the dup, where a task per request (spawn, a tokio timer, and
/// a second poll to abort it) cost several microseconds of CPU per request under load.
pub struct HeaderDeadline {
    shared: Arc<DeadlineShared>,
}

/// What the timer thread and the request share (one allocation per armed deadline).
struct DeadlineShared {
    fired: AtomicBool,
    /// `Some` while armed; taken (and closed) by the request when it disarms or by the
    /// timer when it fires.
    fd: Mutex<Option<OwnedFd>>,
    armed: AtomicBool,
}

impl DeadlineShared {
    fn fire(&self) {
        let mut g = self.fd.lock().unwrap();
        if let Some(f) = g.take() {
            self.fired.store(true, Ordering::Release);
            self.armed.store(false, Ordering::Release);
            let s = std::net::TcpStream::from(f);
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// One armed deadline in the timer's heap (earliest first).
struct Pending {
    at: Instant,
    entry: Arc<DeadlineShared>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.at.cmp(&self.at) // reversed: BinaryHeap is a max-heap
    }
}

/// The process-wide header-deadline timer: a min-heap of armed deadlines served by one
/// thread (`header-deadline`, started on first use) that sleeps on a condvar until the
/// earliest one. Disarmed entries stay in the heap until they are pruned (at most every
/// [`DeadlineTimer::PRUNE`] while the heap is not empty) or reach their time.
pub struct DeadlineTimer {
    heap: Mutex<std::collections::BinaryHeap<Pending>>,
    cv: std::sync::Condvar,
}

impl DeadlineTimer {
    /// How often disarmed entries are dropped from the heap.
    pub const PRUNE: Duration = Duration::from_millis(100);

    fn get() -> &'static DeadlineTimer {
        static TIMER: std::sync::OnceLock<&'static DeadlineTimer> = std::sync::OnceLock::new();
        TIMER.get_or_init(|| {
            let t: &'static DeadlineTimer = Box::leak(Box::new(DeadlineTimer {
                heap: Mutex::new(std::collections::BinaryHeap::new()),
                cv: std::sync::Condvar::new(),
            }));
            std::thread::Builder::new()
                .name("header-deadline".into())
                .spawn(move || t.run())
                .expect("header-deadline thread");
            t
        })
    }

    fn arm(&self, at: Instant, entry: Arc<DeadlineShared>) {
        let mut h = self.heap.lock().unwrap();
        let wake = h.peek().is_none_or(|p| at < p.at);
        h.push(Pending { at, entry });
        drop(h);
        if wake {
            self.cv.notify_one();
        }
    }

    fn run(&self) {
        let mut h = self.heap.lock().unwrap();
        let mut last_prune = Instant::now();
        loop {
            let now = Instant::now();
            while h.peek().is_some_and(|p| p.at <= now) {
                let p = h.pop().expect("peeked");
                p.entry.fire();
            }
            if now.duration_since(last_prune) >= Self::PRUNE {
                h.retain(|p| p.entry.armed.load(Ordering::Acquire));
                last_prune = now;
            }
            h = match h.peek() {
                None => self.cv.wait(h).unwrap(),
                Some(p) => {
                    let wait = p.at.saturating_duration_since(now).min(Self::PRUNE);
                    self.cv.wait_timeout(h, wait).unwrap().0
                }
            };
        }
    }
}

impl HeaderDeadline {
    /// Start the deadline on `fd` (owned dup); [`HeaderDeadline::fired`] is set before the
    /// socket is shut.
    pub fn start(fd: OwnedFd, after: Duration) -> Self {
        let shared = Arc::new(DeadlineShared {
            fired: AtomicBool::new(false),
            fd: Mutex::new(Some(fd)),
            armed: AtomicBool::new(true),
        });
        DeadlineTimer::get().arm(Instant::now() + after, shared.clone());
        HeaderDeadline { shared }
    }

    /// Stop the timer and close the duplicate (idempotent); [`HeaderDeadline::fired`]
    /// keeps its value.
    pub fn disarm(&mut self) {
        if self.shared.armed.load(Ordering::Acquire) {
            // whoever takes the fd first (this or the timer's `fire`) decides
            self.shared.fd.lock().unwrap().take();
            self.shared.armed.store(false, Ordering::Release);
        }
    }

    /// Whether the deadline fired (the socket was shut down by the timer).
    pub fn fired(&self) -> bool {
        self.shared.fired.load(Ordering::Acquire)
    }
}

impl Drop for HeaderDeadline {
    fn drop(&mut self) {
        self.disarm();
    }
}

/// Failure kinds of `router_upstream_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    Connect,
    Timeout,
    Protocol,
    Status5xx,
    Aborted,
}

impl FailKind {
    fn as_str(self) -> &'static str {
        match self {
            FailKind::Connect => "connect",
            FailKind::Timeout => "timeout",
            FailKind::Protocol => "protocol",
            FailKind::Status5xx => "status_5xx",
            FailKind::Aborted => "aborted",
        }
    }
}

/// Per-request state.
pub struct Ctx {
    start: Instant,
    _active: ActiveGuard,
    snap: Option<Arc<Snapshot>>,
    key: Option<String>,
    /// The placement being tried (or last tried).
    placement: Option<Arc<PlacementRt>>,
    permit: Option<Permit>,
    slot: Option<Slot>,
    has_body: bool,
    /// Connect failure happened on `placement`; the next `upstream_peer` walks on.
    walk_on: bool,
    /// The next `upstream_peer` retries the same placement (stale pooled connection).
    same_again: bool,
    /// Router-made error decided before/at peer selection.
    error_code: Option<&'static str>,
    /// The router made the response itself (code).
    made: Option<&'static str>,
    upstream_status: Option<u16>,
    committed: bool,
    fail: Option<FailKind>,
    dup_fd: Option<OwnedFd>,
    body_done: bool,
    /// The current connection attempt's deadline (kept after disarming for `fired`).
    deadline: Option<HeaderDeadline>,
}

impl Ctx {
    /// The header deadline of the current attempt fired.
    fn timed_out(&self) -> bool {
        self.deadline.as_ref().is_some_and(HeaderDeadline::fired)
    }

    /// Stop the header deadline (headers arrived, or the attempt ended) and close the dup.
    fn disarm(&mut self) {
        if let Some(d) = &mut self.deadline {
            d.disarm();
        }
        self.dup_fd = None;
    }
}

/// The `ProxyHttp` implementation.
pub struct RouterProxy {
    /// Shared state.
    pub router: Arc<Router>,
}

fn message(code: &str) -> &'static str {
    match code {
        "no_config" => "no config loaded",
        "missing_routing_key" => "X-Routing-Key header is missing or empty",
        "unknown_routing_key" => "no route for this routing key",
        "no_healthy_upstream" => "no available placement in the chain",
        "concurrency_limit" => "placement is at its concurrency limit",
        "upstream_connect_failed" => "could not connect to the upstream",
        "upstream_timeout" => "upstream sent no response headers in time",
        "upstream_protocol_error" => "upstream response was not valid HTTP",
        "request_headers_too_large" => "request headers too large",
        _ => "bad request",
    }
}

/// Build a router-made response header (status, `X-Router-Error`, JSON content type,
/// optional `X-Router-Placement`) and its body.
pub fn error_response(status: u16, code: &'static str, placement: Option<&str>) -> (ResponseHeader, Bytes) {
    let body = serde_json::json!({"error": code, "message": message(code)}).to_string();
    let mut resp = ResponseHeader::build(status, Some(5)).expect("status");
    resp.insert_header("Content-Type", "application/json").unwrap();
    resp.insert_header("X-Router-Error", code).unwrap();
    resp.insert_header("Content-Length", body.len().to_string()).unwrap();
    if let Some(p) = placement {
        resp.insert_header("X-Router-Placement", p).unwrap();
    }
    (resp, Bytes::from(body))
}

fn status_of(code: &str) -> u16 {
    match code {
        "no_config" | "no_healthy_upstream" | "concurrency_limit" => 503,
        "missing_routing_key" | "bad_request" => 400,
        "unknown_routing_key" => 404,
        "upstream_connect_failed" | "upstream_protocol_error" => 502,
        "upstream_timeout" => 504,
        "request_headers_too_large" => 431,
        _ => 500,
    }
}

impl RouterProxy {
    async fn respond(&self, session: &mut Session, ctx: &mut Ctx, code: &'static str, with_placement: bool) -> Result<()> {
        let placement = if with_placement { ctx.placement.as_ref().map(|p| p.cfg.id.clone()) } else { None };
        let (resp, body) = error_response(status_of(code), code, placement.as_deref());
        ctx.made = Some(code);
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body), true).await?;
        Ok(())
    }

    fn count_failovers(&self, f: &[(String, String)]) {
        for (a, b) in f {
            self.router.metrics.failovers.with_label_values(&[a, b]).inc();
        }
    }

    /// Selection (step 3) + limit (step 4) from `first`; sets ctx placement/permit/slot or
    /// returns the error code.
    fn choose(&self, ctx: &mut Ctx, snap: &Snapshot, first: &str) -> Result<(), &'static str> {
        let mut failovers = Vec::new();
        let sel = routing::select(snap, first, Instant::now(), &mut failovers);
        self.count_failovers(&failovers);
        match sel {
            Selection::Exhausted => Err("no_healthy_upstream"),
            Selection::Chosen(p, permit) => {
                let slot = routing::acquire_slot(&p);
                ctx.placement = Some(p);
                match slot {
                    Some(s) => {
                        ctx.permit = Some(permit);
                        ctx.slot = Some(s);
                        Ok(())
                    }
                    None => {
                        drop(permit); // given back without an outcome
                        Err("concurrency_limit")
                    }
                }
            }
        }
    }

    fn record_failure(&self, ctx: &mut Ctx, kind: FailKind) {
        if let Some(p) = &ctx.placement {
            self.router.metrics.upstream_failures.with_label_values(&[&p.cfg.id, kind.as_str()]).inc();
        }
        if let Some(permit) = ctx.permit.take() {
            permit.record(Outcome::Failure, Instant::now());
        }
    }

    fn start_deadline(&self, ctx: &mut Ctx) {
        if ctx.deadline.is_some() {
            return;
        }
        let (Some(fd), Some(p)) = (ctx.dup_fd.take(), &ctx.placement) else { return };
        ctx.deadline = Some(HeaderDeadline::start(fd, Duration::from_millis(p.cfg.request_ms)));
    }
}

fn has_header_raw(raw: &[u8], name: &[u8]) -> bool {
    raw.split(|b| *b == b'\n').skip(1).any(|line| {
        line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name) && line[name.len()] == b':'
    })
}

/// Field names nominated by `Connection` (RFC 9110 section 7.6.1), lowercased; tokens that
/// are not valid field names are skipped (they name no header). Empty (no allocation)
/// when the message has no `Connection` header.
fn nominated(headers: &http::HeaderMap) -> Vec<HeaderName> {
    let mut names = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        if let Ok(s) = v.to_str() {
            for t in s.split(',') {
                let t = t.trim();
                if !t.is_empty() {
                    if let Ok(n) = HeaderName::from_bytes(t.as_bytes()) {
                        names.push(n);
                    }
                }
            }
        }
    }
    names
}

/// The hop-by-hop names present in `headers` to remove: the nominated ones and
/// [`HOP_BY_HOP`], except `Transfer-Encoding` (Pingora frames bodies itself from it) and,
/// when `keep_upgrade` (a `101`), except `Connection` and `Upgrade`. One pass over the
/// names present (a handful) rather than a hash lookup per listed name; no allocation
/// when there is nothing to remove.
fn hop_by_hop_present(headers: &http::HeaderMap, nominated: &[HeaderName], keep_upgrade: bool) -> Vec<HeaderName> {
    let mut out = Vec::new();
    for n in headers.keys() {
        if (HOP_BY_HOP_NAMES.contains(n) || nominated.contains(n))
            && *n != header::TRANSFER_ENCODING
            && !(keep_upgrade && (*n == header::CONNECTION || *n == header::UPGRADE))
        {
            out.push(n.clone());
        }
    }
    out
}

#[async_trait]
impl ProxyHttp for RouterProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            start: Instant::now(),
            _active: ActiveGuard::new(),
            snap: None,
            key: None,
            placement: None,
            permit: None,
            slot: None,
            has_body: false,
            walk_on: false,
            same_again: false,
            error_code: None,
            made: None,
            upstream_status: None,
            committed: false,
            fail: None,
            dup_fd: None,
            body_done: false,
            deadline: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // Framing checks on the raw header section: Pingora drops Content-Length when
        // Transfer-Encoding is also present, so look at the bytes the client sent.
        let (raw_len, both) = match session.as_downstream().as_http1() {
            Some(h1) => {
                let raw = h1.get_headers_raw_bytes();
                (raw.len(), has_header_raw(&raw, b"content-length") && has_header_raw(&raw, b"transfer-encoding"))
            }
            None => (0, false),
        };
        if raw_len > MAX_REQUEST_HEADER_BYTES {
            session.set_keepalive(None);
            self.respond(session, ctx, "request_headers_too_large", false).await?;
            return Ok(true);
        }
        if both {
            session.set_keepalive(None);
            self.respond(session, ctx, "bad_request", false).await?;
            return Ok(true);
        }
        let Some(snap) = self.router.snapshot.load_full() else {
            self.respond(session, ctx, "no_config", false).await?;
            return Ok(true);
        };
        ctx.snap = Some(snap.clone());
        let req = session.req_header();
        let key = match req.headers.get(X_ROUTING_KEY) {
            None => None,
            Some(v) if v.is_empty() => None,
            // borrowed when the value is UTF-8 (no allocation)
            Some(v) => Some(String::from_utf8_lossy(v.as_bytes())),
        };
        let Some(key) = key else {
            self.respond(session, ctx, "missing_routing_key", false).await?;
            return Ok(true);
        };
        let first = snap.config.routes.get(&*key);
        if self.router.access_log {
            ctx.key = Some(key.into_owned()); // only the access log reads it
        }
        let Some(first) = first else {
            self.respond(session, ctx, "unknown_routing_key", false).await?;
            return Ok(true);
        };
        let req = session.req_header();
        let h = &req.headers;
        ctx.has_body = h.contains_key(http::header::TRANSFER_ENCODING)
            || h
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0);
        if let Err(code) = self.choose(ctx, &snap, first) {
            let with = code == "concurrency_limit";
            self.respond(session, ctx, code, with).await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let snap = ctx.snap.clone().expect("snapshot chosen in request_filter");
        if ctx.same_again {
            ctx.same_again = false;
        } else if ctx.walk_on {
            ctx.walk_on = false;
            let failed = ctx.placement.clone().expect("placement");
            let Some(next) = failed.cfg.fallback.clone() else {
                ctx.error_code = Some("upstream_connect_failed");
                return Error::e_explain(ErrorType::ConnectError, "chain exhausted");
            };
            self.count_failovers(&[(failed.cfg.id.clone(), next.clone())]);
            match self.choose(ctx, &snap, &next) {
                Ok(()) => {}
                Err("concurrency_limit") => {
                    ctx.error_code = Some("concurrency_limit");
                    return Error::e_explain(ErrorType::ConnectError, "concurrency limit");
                }
                Err(_) => {
                    ctx.placement = Some(failed);
                    ctx.error_code = Some("upstream_connect_failed");
                    return Error::e_explain(ErrorType::ConnectError, "chain exhausted");
                }
            }
        }
        // A placement whose peer could not be built fails like a connect failure.
        loop {
            let p = ctx.placement.clone().expect("placement");
            match &p.peer {
                Ok(peer) => return Ok(Box::new(peer.clone())),
                Err(why) => {
                    log::warn!("placement {}: {why}", p.cfg.id);
                    self.record_failure(ctx, FailKind::Connect);
                    ctx.slot = None;
                    let next = if ctx.has_body { None } else { p.cfg.fallback.clone() };
                    let Some(next) = next else {
                        ctx.error_code = Some("upstream_connect_failed");
                        return Error::e_explain(ErrorType::ConnectError, "peer unavailable");
                    };
                    self.count_failovers(&[(p.cfg.id.clone(), next.clone())]);
                    match self.choose(ctx, &snap, &next) {
                        Ok(()) => continue,
                        Err("concurrency_limit") => {
                            ctx.error_code = Some("concurrency_limit");
                            return Error::e_explain(ErrorType::ConnectError, "concurrency limit");
                        }
                        Err(_) => {
                            ctx.placement = Some(p);
                            ctx.error_code = Some("upstream_connect_failed");
                            return Error::e_explain(ErrorType::ConnectError, "chain exhausted");
                        }
                    }
                }
            }
        }
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        fd: RawFd,
        _digest: Option<&Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // SAFETY: `fd` is the live upstream socket of this request for the duration of
        // this call; we only duplicate it.
        let dup = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned();
        ctx.deadline = None; // a new attempt: the previous one's deadline and flag are gone
        ctx.dup_fd = dup.ok();
        if !ctx.has_body || ctx.body_done {
            self.start_deadline(ctx);
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if end_of_stream {
            ctx.body_done = true;
            self.start_deadline(ctx);
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let p = ctx.placement.as_ref().expect("placement");
        let down = session.req_header();
        let is_upgrade = down.headers.contains_key(http::header::UPGRADE);
        let te_trailers = down
            .headers
            .get_all(http::header::TE)
            .iter()
            .any(|v| v.to_str().map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("trailers"))).unwrap_or(false));
        let client_host = down.headers.get(http::header::HOST).cloned();
        let nominated = nominated(&down.headers);
        // X-Forwarded-For: the incoming values joined, then the client address; a
        // hop-by-hop X-Forwarded-For does not travel on. One string, built in place.
        let mut xff = String::new();
        let mut xff_parts = 0usize;
        if !nominated.contains(&X_FORWARDED_FOR) {
            for v in down.headers.get_all(&X_FORWARDED_FOR) {
                if let Ok(s) = v.to_str() {
                    if xff_parts > 0 {
                        xff.push_str(", ");
                    }
                    xff.push_str(s);
                    xff_parts += 1;
                }
            }
        }
        let upgrade_value = if is_upgrade { down.headers.get(http::header::UPGRADE).cloned() } else { None };
        // Framing headers are Pingora's: it re-frames bodies itself.
        for name in hop_by_hop_present(&up.headers, &nominated, false) {
            up.remove_header(&name);
        }
        if let Some(u) = upgrade_value {
            up.insert_header(http::header::CONNECTION, "Upgrade")?;
            up.insert_header(http::header::UPGRADE, u)?;
        }
        if te_trailers {
            up.insert_header("TE", "trailers")?;
        }
        match &p.hot.host {
            Some(v) => up.insert_header(http::header::HOST, v.clone())?,
            None => up.insert_header(http::header::HOST, p.cfg.endpoint.authority())?,
        }
        match client_host {
            Some(h) => up.insert_header("X-Forwarded-Host", h)?,
            None => {
                up.remove_header("X-Forwarded-Host");
            }
        }
        up.insert_header("X-Forwarded-Proto", HeaderValue::from_static("http"))?;
        if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
            if xff_parts > 0 {
                xff.push_str(", ");
            }
            let _ = write!(xff, "{}", addr.ip());
            xff_parts += 1;
        }
        if up.headers.contains_key(&X_FORWARDED_FOR) {
            up.remove_header(&X_FORWARDED_FOR);
        }
        if xff_parts > 0 {
            up.insert_header("X-Forwarded-For", xff)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let status = resp.status.as_u16();
        if resp.status.is_informational() && status != 101 {
            return Ok(());
        }
        ctx.disarm(); // headers arrived: the request_ms deadline no longer applies
        ctx.upstream_status = Some(status);
        // The client talks HTTP/1.1 to the router whatever the upstream spoke.
        resp.set_version(http::Version::HTTP_11);
        // Transfer-Encoding stays: Pingora frames the downstream body from it.
        let nominated = nominated(&resp.headers);
        for name in hop_by_hop_present(&resp.headers, &nominated, status == 101) {
            resp.remove_header(&name);
        }
        if let Some(p) = &ctx.placement {
            match &p.hot.placement {
                Some(v) => resp.insert_header("X-Router-Placement", v.clone())?,
                None => resp.insert_header("X-Router-Placement", p.cfg.id.as_str())?,
            }
        }
        Ok(())
    }

    async fn response_filter(&self, _session: &mut Session, _resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        if ctx.upstream_status.is_some() {
            ctx.committed = true;
        }
        Ok(())
    }

    fn fail_to_connect(&self, _session: &mut Session, _peer: &HttpPeer, ctx: &mut Ctx, mut e: Box<Error>) -> Box<Error> {
        ctx.disarm();
        self.record_failure(ctx, FailKind::Connect);
        ctx.slot = None;
        if !ctx.has_body {
            ctx.walk_on = true;
            e.set_retry(true);
        } else {
            ctx.error_code = Some("upstream_connect_failed");
            e.set_retry(false);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let fired = ctx.timed_out();
        ctx.disarm();
        // A pooled connection the upstream had already closed: Pingora's default retry of
        // idempotent requests on reused connections, to the same placement, before any
        // response byte (as Go's Transport does). Everything else is final.
        if !fired
            && ctx.upstream_status.is_none()
            && *e.esource() == ErrorSource::Upstream
            && session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated()
            && !ctx.has_body
        {
            e.retry.decide_reuse(client_reused);
            if e.retry() {
                ctx.same_again = true;
            }
        } else {
            e.set_retry(false);
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        ctx.disarm();
        let no_reuse = FailToProxy { error_code: 0, can_reuse_downstream: false };
        if ctx.committed || session.response_written().is_some() {
            // Headers already went out: abort; never add an error body.
            if *e.esource() != ErrorSource::Downstream && ctx.upstream_status.is_some() {
                ctx.fail = Some(FailKind::Aborted);
            }
            return no_reuse;
        }
        let code: Option<&'static str> = if let Some(c) = ctx.error_code {
            Some(c)
        } else if ctx.timed_out() {
            ctx.fail = Some(FailKind::Timeout);
            Some("upstream_timeout")
        } else {
            match e.esource() {
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => None,
                    _ => Some("bad_request"),
                },
                _ => {
                    if ctx.placement.is_some() && ctx.permit.is_some() {
                        ctx.fail = Some(FailKind::Protocol);
                        Some("upstream_protocol_error")
                    } else {
                        Some("upstream_protocol_error")
                    }
                }
            }
        };
        let Some(code) = code else { return no_reuse };
        let with_placement = ctx.placement.is_some() && code != "bad_request";
        let status = status_of(code);
        if self.respond(session, ctx, code, with_placement).await.is_err() {
            return no_reuse;
        }
        FailToProxy { error_code: status, can_reuse_downstream: false }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _error: &Error) -> bool {
        true
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        ctx.disarm();
        let now = Instant::now();
        // Breaker outcome and failure metrics.
        let kind = ctx.fail.or(match ctx.upstream_status {
            Some(s) if s >= 500 => Some(FailKind::Status5xx),
            _ => None,
        });
        let kind = match (kind, e) {
            // an upstream error after the response was committed (body read failed)
            (None, Some(err)) if ctx.upstream_status.is_some() && *err.esource() == ErrorSource::Upstream => {
                Some(FailKind::Aborted)
            }
            (k, _) => k,
        };
        let client_gone = matches!(e, Some(err) if *err.esource() == ErrorSource::Downstream);
        match kind {
            Some(k) => self.record_failure(ctx, k),
            None => {
                if let Some(permit) = ctx.permit.take() {
                    if ctx.upstream_status.is_some() && !client_gone {
                        permit.record(Outcome::Success, now);
                    } else {
                        drop(permit); // no outcome: permit given back
                    }
                }
            }
        }
        if let Some(code) = ctx.made {
            self.router.metrics.errors.with_label_values(&[code]).inc();
        }
        let status = session.response_written().map(|r| r.status.as_u16()).unwrap_or(0);
        let m = &self.router.metrics;
        let dur = ctx.start.elapsed();
        // Metric children cached on the placement (no label hashing per request).
        match &ctx.placement {
            Some(p) => {
                let id = p.cfg.id.as_str();
                if status != 0 {
                    match p.hot.requests(&m.requests, id, status) {
                        Some(c) => c.inc(),
                        None => m.requests.with_label_values(&[id, &status.to_string()]).inc(),
                    }
                }
                p.hot.duration(&m.duration, id).observe(dur.as_secs_f64());
            }
            None => {
                if status != 0 {
                    m.requests.with_label_values(&["", &status.to_string()]).inc();
                }
                m.duration.with_label_values(&[""]).observe(dur.as_secs_f64());
            }
        }
        if self.router.access_log {
            let req = session.req_header();
            let line = serde_json::json!({
                "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "method": req.method.as_str(),
                "path": req.uri.path(),
                "key": ctx.key,
                "placement": ctx.placement.as_ref().map(|p| p.cfg.id.clone()),
                "status": status,
                "error": ctx.made,
                "duration_ms": (dur.as_secs_f64() * 1e6).round() / 1e3,
            });
            eprintln!("{line}");
        }
        ctx.slot = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    fn dup(s: &TcpStream) -> OwnedFd {
        use std::os::fd::AsFd;
        s.as_fd().try_clone_to_owned().unwrap()
    }

    #[test]
    fn deadline_fires_and_shuts_the_socket() {
        let (a, mut b) = pair();
        let d = HeaderDeadline::start(dup(&a), Duration::from_millis(30));
        let t0 = Instant::now();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(b.read(&mut buf).unwrap(), 0, "peer sees the shutdown as EOF");
        assert!(t0.elapsed() >= Duration::from_millis(25), "not before the deadline");
        assert!(d.fired());
    }

    #[test]
    fn disarmed_deadline_never_fires() {
        let (a, mut b) = pair();
        let mut d = HeaderDeadline::start(dup(&a), Duration::from_millis(20));
        // a later deadline on another socket proves the timer ran past the first one
        let (c, mut e) = pair();
        let d2 = HeaderDeadline::start(dup(&c), Duration::from_millis(60));
        d.disarm();
        e.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(e.read(&mut buf).unwrap(), 0);
        assert!(d2.fired());
        assert!(!d.fired());
        b.set_nonblocking(true).unwrap();
        let r = b.read(&mut buf);
        assert!(matches!(r, Err(ref err) if err.kind() == std::io::ErrorKind::WouldBlock), "socket still open: {r:?}");
    }
}
