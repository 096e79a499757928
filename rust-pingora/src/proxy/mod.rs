//! The data plane: `impl ProxyHttp for RouterProxy` (docs/spec.md section 3). This file
//! holds the hooks only; each answers early where the request ends there.
//!
//! Hook mapping:
//! - `early_request_filter`: pipelining on (RFC 9112 section 9.3.2), no 1xx for HTTP/1.0
//!   clients, an `Upgrade` that is not an upgrade removed (RFC 9110 section 7.8).
//! - `request_filter`: framing checks (431, CL+TE → 400), the request-target form, CONNECT
//!   and Host ([`target`]), `Content-Length` ([`framing`]), snapshot, routing key and route
//!   ([`crate::routing`]), selection and limit (steps 3-4); local rejections are answered
//!   here ([`respond`]); the refusals of the head (400 `bad_request`, 431) close, the others
//!   first discard an unread body as net/http does and keep the connection when it ended
//!   within 256 KiB ([`respond::discard_body`]).
//! - `upstream_peer`: returns the chosen endpoint's peer; after a connect failure of a
//!   bodiless request it tries the placement's next available endpoint not tried yet
//!   (Pingora's `select_with` again, `crate::balance`), then walks the chain on after the
//!   failed placement ([`NextPeer`]).
//! - `connected_to_upstream` / `request_body_filter`: start the `request_ms` response-header
//!   deadline ([`deadline`]) once the request has been written.
//! - `fail_to_connect`: the endpoint's breaker failure (kind `connect`) and
//!   `set_retry(true)` for bodiless requests (the slot is kept while the placement retries).
//! - `upstream_request_filter` / `upstream_response_filter`: [`headers`] and [`framing`]
//!   (the target byte for byte, origin-form for absolute-form, one `Content-Length`, no framing fields on
//!   1xx/204/304, 502 for framing the router cannot forward or a 101 that answers no
//!   upgrade offered, the standard reason phrase);
//!   the deadline is disarmed when the response header arrives.
//! - `response_filter`: marks the response committed; HTTP/1.0 clients get an `HTTP/1.0`
//!   status line and never `Transfer-Encoding` (RFC 9112 section 6.1).
//! - `error_while_proxy` / `fail_to_proxy`: error classification and the router-made
//!   responses (504 for the header deadline, 502 otherwise, also after a forwarded 1xx);
//!   the client connection is kept when the request was read whole.
//! - `logging`: breaker outcome, metrics, [`accesslog`]; the slot is released when the
//!   context drops; after a committed response that failed, the lingering close
//!   ([`respond::close_after_abort`]).

pub mod accesslog;
pub mod ctx;
pub mod deadline;
pub mod framing;
pub mod headers;
pub mod respond;
pub mod target;

pub use ctx::{Ctx, HeaderTimer, NextPeer};
pub use deadline::{DeadlineTimer, HeaderDeadline};
pub use respond::error_response;

use crate::breaker::Outcome;
use crate::config::HashKey;
use crate::errcode::Code;
use crate::metrics::FailKind;
use crate::routing::{self, Choice, Snapshot};
use crate::store::Store;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Digest;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING, UPGRADE};
use http::Version;
use std::os::fd::{BorrowedFd, RawFd};
use target::TargetForm;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `ProxyHttp` implementation: the router state and the header-deadline timer.
pub struct RouterProxy {
    /// The router state.
    pub store: Arc<Store>,
    /// The `request_ms` deadlines of this proxy's requests.
    pub deadlines: DeadlineTimer,
}

impl RouterProxy {
    /// A proxy over `store`, with its own deadline timer (thread `header-deadline`).
    pub fn new(store: Arc<Store>) -> Self {
        RouterProxy { store, deadlines: DeadlineTimer::new() }
    }

    /// Answer `code` and remember it for the metrics and the access log. The response
    /// names the placement tried when the code is one decided after selection.
    async fn respond(&self, session: &mut Session, ctx: &mut Ctx, code: Code) -> Result<()> {
        if self.store.draining() {
            session.set_keepalive(None);
        }
        ctx.made = Some(code);
        let placement = if code.names_placement() { ctx.placement_id() } else { None };
        respond::respond(session, code, placement).await
    }

    /// Answer `code` from `request_filter`, before the request body was read: the body is
    /// first read and discarded as Go's net/http does ([`respond::discard_body`]); the
    /// connection is kept when the body was read whole, otherwise the answer says
    /// `Connection: close` and ends it with a lingering close.
    async fn answer_unread(&self, session: &mut Session, ctx: &mut Ctx, code: Code) -> Result<()> {
        if respond::discard_body(session).await {
            self.respond(session, ctx, code).await
        } else {
            self.answer_and_close(session, ctx, code).await
        }
    }

    fn count_failovers(&self, steps: &[(String, String)]) {
        for (from, to) in steps {
            self.store.metrics.count_failover(from, to);
        }
    }

    /// Steps 3 and 4 from `first`: sets the context's placement, endpoint, permit and
    /// slot, or returns the error code (the placement stays set for `concurrency_limit`).
    fn choose(&self, ctx: &mut Ctx, session: &Session, snap: &Snapshot, first: &str) -> Result<(), Code> {
        let mut failovers = Vec::new();
        let input = |hk: &HashKey| hash_input(session, hk);
        let choice = routing::choose(snap, first, Instant::now(), &mut failovers, &input);
        self.count_failovers(&failovers);
        match choice {
            Choice::Ready { placement, endpoint, permit, slot } => {
                ctx.placement = Some(placement);
                ctx.endpoint = Some(endpoint);
                ctx.tried = vec![endpoint];
                ctx.permit = Some(permit);
                ctx.slot = Some(slot);
                Ok(())
            }
            Choice::AtLimit(placement) => {
                ctx.placement = Some(placement);
                ctx.endpoint = None;
                Err(Code::ConcurrencyLimit)
            }
            Choice::Exhausted => Err(Code::NoHealthyUpstream),
        }
    }

    /// Step 6 after a connect failure: a bodiless request tries the same placement's next
    /// available endpoint not tried yet (keeping the placement's slot); otherwise the slot
    /// is released and the chain walks on ([`RouterProxy::walk_on`]).
    fn retry(&self, ctx: &mut Ctx, session: &Session, snap: &Snapshot) -> Result<()> {
        let p = ctx.placement.clone().expect("placement");
        if !ctx.has_body {
            let key = p.cfg.hash_key.as_ref().map(|hk| hash_input(session, hk)).unwrap_or_default();
            if let Some((ep, permit)) = p.pick(&key, Instant::now(), &ctx.tried) {
                ctx.endpoint = Some(ep);
                ctx.tried.push(ep);
                ctx.permit = Some(permit);
                return Ok(());
            }
        }
        ctx.slot = None;
        self.walk_on(ctx, session, snap)
    }

    /// Step 6 after the context's placement has no endpoint left to try: walk on from its
    /// `fallback` (bodiless requests only). On failure the decided code is stored in the
    /// context (`upstream_connect_failed` naming the failed placement, or
    /// `concurrency_limit` naming the new one) and returned as a connect error.
    fn walk_on(&self, ctx: &mut Ctx, session: &Session, snap: &Snapshot) -> Result<()> {
        let failed = ctx.placement.clone().expect("placement");
        let failed_ep = ctx.endpoint;
        let next = if ctx.has_body { None } else { failed.cfg.fallback.clone() };
        let Some(next) = next else {
            ctx.error = Some(Code::UpstreamConnectFailed);
            return Error::e_explain(ErrorType::ConnectError, "chain exhausted");
        };
        self.count_failovers(&[(failed.cfg.id.clone(), next.clone())]);
        match self.choose(ctx, session, snap, &next) {
            Ok(()) => Ok(()),
            Err(Code::ConcurrencyLimit) => {
                ctx.error = Some(Code::ConcurrencyLimit);
                Error::e_explain(ErrorType::ConnectError, "concurrency limit")
            }
            Err(_) => {
                ctx.placement = Some(failed);
                ctx.endpoint = failed_ep;
                ctx.error = Some(Code::UpstreamConnectFailed);
                Error::e_explain(ErrorType::ConnectError, "chain exhausted")
            }
        }
    }

    fn record_failure(&self, ctx: &mut Ctx, kind: FailKind) {
        if let (Some(id), Some(ep)) = (ctx.placement_id(), ctx.endpoint_rt()) {
            self.store.metrics.count_failure(id, &ep.cfg.url, kind);
        }
        if let Some(permit) = ctx.permit.take() {
            permit.record(Outcome::Failure, Instant::now());
        }
    }

    /// Answer `bad_request` and close: a request the router does not accept (its framing or
    /// head may hide a second request, so the connection is not reused).
    async fn refuse(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        self.answer_and_close(session, ctx, Code::BadRequest).await?;
        Ok(true)
    }

    /// Answer `code`, keep-alive off, then a lingering close ([`respond::linger`]): the
    /// request's body (or a pipelined request) may still be arriving.
    async fn answer_and_close(&self, session: &mut Session, ctx: &mut Ctx, code: Code) -> Result<()> {
        session.set_keepalive(None);
        self.respond(session, ctx, code).await?;
        respond::linger(session).await;
        Ok(())
    }

    /// Arm the `request_ms` deadline of the current attempt (once connected and written).
    fn arm_deadline(&self, ctx: &mut Ctx) {
        if let Some(p) = &ctx.placement {
            ctx.timer.arm(&self.deadlines, Duration::from_millis(p.cfg.request_ms));
        }
    }
}

/// The bytes `consistent_hash` hashes for `hk` (spec §3 *Endpoint selection*):
/// `routing_key` the `X-Routing-Key` value; `path` the request target's path as received,
/// without the query (absolute-form: its origin-form; asterisk-form: `*`); `header:<name>`
/// the field's first value, empty when absent.
fn hash_input(session: &Session, hk: &HashKey) -> Vec<u8> {
    let req = session.req_header();
    match hk {
        HashKey::RoutingKey => req.headers.get(routing::ROUTING_KEY).map(|v| v.as_bytes().to_vec()).unwrap_or_default(),
        HashKey::Header(name) => req.headers.get(name).map(|v| v.as_bytes().to_vec()).unwrap_or_default(),
        HashKey::Path => {
            let raw = session.as_downstream().as_http1().map(|h1| h1.get_headers_raw_bytes());
            let sent = raw.as_deref().and_then(target::raw_target).unwrap_or(req.raw_path());
            let mut path = target::classify(&req.method, sent).origin_bytes().unwrap_or_else(|| sent.to_vec());
            if let Some(q) = path.iter().position(|b| *b == b'?') {
                path.truncate(q);
            }
            path
        }
    }
}

/// Whether a request written on a reused connection that failed before any response byte
/// may be sent again: net/http's `Request.isReplayable` (the Go router's Transport), a
/// method RFC 9110 section 9.2.2 makes idempotent and Go lists (GET, HEAD, OPTIONS, TRACE),
/// or any method with an `Idempotency-Key` or `X-Idempotency-Key` field. Pingora's own
/// `Method::is_idempotent` also takes PUT and DELETE, which Go does not retry: the routers
/// would differ (docs/spec.md section 4, "Pool identity").
fn replayable_method(req: &RequestHeader) -> bool {
    matches!(req.method, http::Method::GET | http::Method::HEAD | http::Method::OPTIONS | http::Method::TRACE)
        || req.headers.contains_key("idempotency-key")
        || req.headers.contains_key("x-idempotency-key")
}

/// Ends an HTTP/2 response already committed to the client (head sent, body unfinished) with
/// `RST_STREAM` `INTERNAL_ERROR` (0x2) on its stream, after the HEADERS and DATA already
/// queued, as Go's net/http server does for an aborted handler (docs/spec.md section 3, *TLS
/// and HTTP/2 on the listener*; RFC 9113 §8.1: a server that cannot finish a response resets
/// its stream; §7: `INTERNAL_ERROR`). The response body writer is taken out of the session and
/// dropped with that reason set (the h2 crate's reset on drop, `vendor/h2.patch`), so nothing
/// can end the stream cleanly afterwards; the reset goes out when the session drops the
/// stream's other handles. An explicit reset (`shutdown_with_reason`, h2's `send_reset`)
/// would clear the frames not yet written. Nothing happens on HTTP/1 or before a head.
fn abort_h2_stream(session: &mut Session) {
    if let ServerSession::H2(h2) = session.as_downstream_mut() {
        if let Some(mut body) = h2.take_response_body_writer() {
            body.set_reset_on_drop(h2::Reason::INTERNAL_ERROR);
        }
    }
}

#[async_trait]
impl ProxyHttp for RouterProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new(self.store.enter())
    }

    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        // RFC 9112 section 9.3.2: requests a client pipelines are read and served in order.
        // Pingora's default would answer the first and close the connection, or, when the
        // next one arrives while the first is in flight, fail the first as a client error.
        session.set_pipelining_enabled(true);
        let req = session.req_header();
        let http10 = req.version < Version::HTTP_11;
        // RFC 9110 section 7.8: `Upgrade` only asks for an upgrade on HTTP/1.1 with the
        // `upgrade` connection option; otherwise it is an ordinary hop-by-hop field, and
        // removing it here keeps Pingora and `upstream_request` from treating the request as
        // an upgrade.
        let not_an_upgrade = req.headers.contains_key(UPGRADE) && (http10 || !headers::connection_has(&req.headers, "upgrade"));
        if not_an_upgrade {
            session.req_header_mut().remove_header(&UPGRADE);
        }
        if http10 {
            // RFC 9110 section 15.2: a server must not send a 1xx response to HTTP/1.0.
            session.set_ignore_info_resp(true);
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // `close` in any `Connection` line ends the connection after this response (RFC
        // 9112 section 9.6), as net/http reads it; Pingora looks at the first line only, so
        // `Connection: Upgrade` then `Connection: close` kept it open.
        if headers::connection_has(&session.req_header().headers, "close") {
            session.set_keepalive(None);
        } else if session.req_header().version == Version::HTTP_10 && headers::connection_has(&session.req_header().headers, "keep-alive") {
            // An HTTP/1.0 request persists with the `keep-alive` option anywhere in its
            // `Connection` list (RFC 9112 section 9.3; net/http's hasToken): Pingora sees it
            // only as the whole value, so `Connection: upgrade, keep-alive` was closed after
            // the response (parity fuzz seed 7, http10.client-header-connection). Whether
            // the response lets it persist (a length) is `response_filter`'s.
            session.set_keepalive(Some(0));
        }
        // Framing checks on the raw header section: Pingora drops Content-Length when
        // Transfer-Encoding is also present, so look at the bytes the client sent.
        let (raw_len, both) = match session.as_downstream().as_http1() {
            Some(h1) => {
                let raw = h1.get_headers_raw_bytes();
                let both = headers::has_header_raw(&raw, b"content-length")
                    && headers::has_header_raw(&raw, b"transfer-encoding");
                (raw.len(), both)
            }
            // HTTP/2: the decoded header list size (Pingora's h2 framing has no
            // Content-Length/Transfer-Encoding conflict to look for).
            None if session.req_header().version == Version::HTTP_2 => (headers::h2_header_list_size(session.req_header()), false),
            None => (0, false),
        };
        if raw_len > headers::MAX_REQUEST_HEADER_BYTES {
            self.answer_and_close(session, ctx, Code::RequestHeadersTooLarge).await?;
            return Ok(true);
        }
        if both {
            return self.refuse(session, ctx).await;
        }
        // The request-target form (RFC 9112 section 3.2) from the bytes the client sent, the
        // Host (one valid value on HTTP/1.1, optional on HTTP/1.0) and the body framing
        // (RFC 9112 section 6: Content-Length one decimal value, Pingora accepts and would
        // forward a list such as `2, 2`).
        let (form, host_ok, length_ok) = {
            let req = session.req_header();
            let raw = session.as_downstream().as_http1().map(|h1| h1.get_headers_raw_bytes());
            let raw_target = raw.as_deref().and_then(target::raw_target).unwrap_or(req.raw_path());
            let form = match target::classify(&req.method, raw_target) {
                TargetForm::Invalid => Err(()),
                TargetForm::Origin | TargetForm::Absolute { .. } | TargetForm::Asterisk => Ok(()),
            };
            let mut hosts = req.headers.get_all(HOST).iter();
            let host_ok = match (hosts.next(), hosts.next()) {
                (Some(h), None) => target::valid_host(h.as_bytes()),
                // HTTP/2: `:authority` stands for Host (RFC 9113 section 8.3.1; Pingora
                // refused a request with neither).
                (None, _) => req.version < Version::HTTP_11 || req.version == Version::HTTP_2,
                (Some(_), Some(_)) => false,
            };
            // Transfer-Encoding: exactly one `chunked` (Pingora accepts `chunked, chunked`,
            // `,chunked` and repeated lines as chunked), whose `Trailer` announces no framing
            // field; an `Expect` the router cannot meet (not `100-continue`) is refused too.
            let length_ok = match framing::is_chunked_only(&req.headers) {
                Ok(true) => framing::trailer_ok(&req.headers),
                Ok(false) => framing::content_length(&req.headers).is_ok(),
                Err(_) => false,
            } && framing::expect_ok(&req.headers);
            (form, host_ok, length_ok)
        };
        // CONNECT (any target) is refused: the router proxies no tunnels.
        if form.is_err() || !host_ok || !length_ok || session.req_header().method == http::Method::CONNECT {
            return self.refuse(session, ctx).await;
        }
        let Some(snap) = self.store.snapshot() else {
            self.answer_unread(session, ctx, Code::NoConfig).await?;
            return Ok(true);
        };
        ctx.snap = Some(snap.clone());
        let key = match routing::routing_key(&session.req_header().headers) {
            Ok(key) => key,
            Err(code) => {
                self.answer_unread(session, ctx, code).await?;
                return Ok(true);
            }
        };
        let first = routing::route(&snap, &key);
        if self.store.access_log {
            ctx.key = Some(key.into_owned()); // only the access log reads it
        }
        let first = match first {
            Ok(first) => first,
            Err(code) => {
                self.answer_unread(session, ctx, code).await?;
                return Ok(true);
            }
        };
        ctx.has_body = match session.as_downstream().as_http2() {
            // HTTP/2 (RFC 9113 section 8.1): a request has a body unless its HEADERS frame
            // ended the stream or it says `content-length: 0`; a body needs no
            // Content-Length (net/http: `ContentLength` -1, not bodiless). Read from the
            // headers alone, an h2 POST without one was retried and failed over as if
            // bodiless (fallback-chain over h2+tls).
            Some(h2) => !h2.is_body_empty(),
            None => {
                let h = &session.req_header().headers;
                h.contains_key(http::header::TRANSFER_ENCODING)
                    || h
                        .get(http::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
            }
        };
        if let Err(code) = self.choose(ctx, session, &snap, first) {
            self.answer_unread(session, ctx, code).await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let snap = ctx.snap.clone().expect("snapshot chosen in request_filter");
        match std::mem::replace(&mut ctx.next, NextPeer::Chosen) {
            NextPeer::Chosen | NextPeer::SameAgain => {}
            NextPeer::Retry => self.retry(ctx, session, &snap)?,
        }
        // An endpoint whose peer could not be built fails like a connect failure.
        loop {
            let ep = ctx.endpoint_rt().expect("endpoint");
            let why = match &ep.peer {
                Ok(peer) => return Ok(Box::new(peer.clone())),
                Err(why) => why,
            };
            log::warn!("placement {} endpoint {}: {why}", ctx.placement_id().unwrap_or(""), ep.cfg.url);
            self.record_failure(ctx, FailKind::Connect);
            self.retry(ctx, session, &snap)?;
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
        if let (Some(id), Some(ep)) = (ctx.placement_id(), ctx.endpoint_rt()) {
            ep.requests(&self.store.metrics.peer_requests, id).inc();
        }
        // SAFETY: `fd` is the live upstream socket of this request for the duration of
        // this call; we only duplicate it.
        let dup = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned();
        // a new attempt: the previous one's deadline and flag are gone
        ctx.timer = match dup {
            Ok(fd) => HeaderTimer::Connected(fd),
            Err(_) => HeaderTimer::Idle,
        };
        if !ctx.has_body || ctx.body_done {
            self.arm_deadline(ctx);
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
            self.arm_deadline(ctx);
        }
        Ok(())
    }

    async fn upstream_request_filter(&self, session: &mut Session, up: &mut RequestHeader, ctx: &mut Ctx) -> Result<()> {
        let ep = ctx.endpoint_rt().expect("endpoint");
        let client = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        headers::upstream_request(session.req_header(), client, tls, ep, up)?;
        // The target goes up byte for byte as the client sent it (RFC 9110 section 7.7;
        // Pingora's parsed URI drops a `#fragment`), an absolute-form target as its
        // origin-form (RFC 9112 section 3.2.2; Pingora would forward the absolute form with
        // our Host in it).
        let raw = session.as_downstream().as_http1().map(|h1| h1.get_headers_raw_bytes());
        let sent = raw.as_deref().and_then(target::raw_target).unwrap_or(up.raw_path());
        let form = target::classify(&up.method, sent);
        let rewrite = match form.origin_bytes() {
            Some(origin) => Some(origin),
            None if sent != up.raw_path() => Some(sent.to_vec()),
            None => None,
        };
        if let Some(path) = rewrite {
            up.set_raw_path(&path)?;
        }
        // Content-Length as Go's net/http reserialises it (RFC 9110 section 8.6): one line in
        // canonical decimal (`023` as `23`), and a `0` only on POST, PUT and PATCH.
        match framing::request_length_fix(&up.method, &up.headers) {
            framing::LengthFix::Keep => {}
            framing::LengthFix::Set(n) => {
                up.insert_header(CONTENT_LENGTH, n)?;
            }
            framing::LengthFix::Remove => {
                up.remove_header(&CONTENT_LENGTH);
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(&self, session: &mut Session, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        let status = resp.status.as_u16();
        // Framing the router cannot forward, or a status outside 100..=599: 502
        // `upstream_protocol_error` (not retried; a breaker failure of kind protocol).
        let head = session.req_header().method == http::Method::HEAD;
        // A 101 must answer an upgrade request for the protocol it offered (RFC 9110
        // sections 7.8 and 15.2.2; Go's ReverseProxy rule): an unsolicited one is refused the
        // same way. Pingora itself would pass it on and tunnel.
        let switch_ok = status != 101 || framing::switch_ok(&session.req_header().headers, &resp.headers);
        let fix = match framing::response_fix(resp.status, resp.version, &resp.headers, head) {
            Ok(fix) if status <= 599 && switch_ok => fix,
            _ => {
                let mut e = Error::explain(ErrorType::InvalidHTTPHeader, "upstream response framing");
                e.as_up();
                e.set_retry(false);
                return Err(e);
            }
        };
        for name in &fix.remove {
            resp.remove_header(name);
        }
        if let Some(n) = fix.content_length {
            resp.insert_header(CONTENT_LENGTH, n)?;
        }
        // The standard reason phrase, not the upstream's (RFC 9112 section 4).
        resp.set_reason_phrase(framing::reason_phrase(resp.status).as_deref())?;
        if resp.status.is_informational() && status != 101 {
            ctx.interim = true;
            // The router speaks HTTP/1.1 on the client connection, whatever the upstream
            // wrote in the 1xx's status line (RFC 9112 section 2.3; as final responses).
            resp.set_version(Version::HTTP_11);
            headers::interim_response(resp);
            return Ok(());
        }
        ctx.timer.disarm(); // headers arrived: the request_ms deadline no longer applies
        ctx.upstream_status = Some(status);
        headers::downstream_response(resp, ctx.placement.as_deref())
    }

    async fn response_filter(&self, session: &mut Session, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        if ctx.upstream_status.is_some() {
            ctx.committed = true;
        }
        // During the shutdown drain the response ends its connection and says so.
        if self.store.draining() {
            session.set_keepalive(None);
        }
        // RFC 9112 section 6.1: no Transfer-Encoding to an HTTP/1.0 client (Pingora turns a
        // body without length into chunked whatever the client spoke); the body then ends
        // with the close. The status line says HTTP/1.0, as Go's net/http writes it.
        if session.req_header().version < Version::HTTP_11 {
            if resp.remove_header(&TRANSFER_ENCODING).is_some() {
                // close-delimited now: say `Connection: close`, not keep-alive
                session.set_keepalive(None);
            }
            resp.set_version(Version::HTTP_10);
        }
        Ok(())
    }

    fn fail_to_connect(&self, _session: &mut Session, _peer: &HttpPeer, ctx: &mut Ctx, mut e: Box<Error>) -> Box<Error> {
        ctx.timer.disarm();
        self.record_failure(ctx, FailKind::Connect);
        if !ctx.has_body {
            ctx.next = NextPeer::Retry; // the slot is kept while the placement retries
            e.set_retry(true);
        } else {
            ctx.slot = None;
            ctx.error = Some(Code::UpstreamConnectFailed);
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
        let fired = ctx.timer.fired();
        ctx.timer.disarm();
        // A pooled connection the upstream had already closed: Pingora's default retry of
        // idempotent requests on reused connections, to the same placement, before any
        // response byte (as Go's Transport does: pingora-core's `read_response` marks the
        // error retryable only when it had read nothing, vendor/pingora-core.patch).
        // Everything else is final.
        if !fired
            && ctx.upstream_status.is_none()
            && !ctx.interim
            && *e.esource() == ErrorSource::Upstream
            && replayable_method(session.req_header())
            && !session.as_ref().retry_buffer_truncated()
            && !ctx.has_body
        {
            e.retry.decide_reuse(client_reused);
            if e.retry() {
                ctx.next = NextPeer::SameAgain;
            }
        } else {
            e.set_retry(false);
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        ctx.timer.disarm();
        let no_reuse = FailToProxy { error_code: 0, can_reuse_downstream: false };
        // A 1xx forwarded before the failure does not commit the response: the final answer
        // still has to come (RFC 9110 section 15.2), as from the Go router (an upstream that
        // sends a 1xx and closes, or a 1xx then an invalid status line, gets a 502).
        let final_written = session.response_written().is_some_and(|r| r.status.as_u16() == 101 || !r.status.is_informational());
        if ctx.committed || final_written {
            // Headers already went out: abort; never add an error body.
            if *e.esource() != ErrorSource::Downstream && ctx.upstream_status.is_some() {
                ctx.fail = Some(FailKind::Aborted);
            }
            // HTTP/1: the connection ends here, and a request the client pipelined behind
            // this one may sit unread in the socket; closing over it sends RST (RFC 9293
            // section 3.6.1), which can destroy the response bytes the client has not read
            // yet (RFC 9112 section 9.6). End it with FIN and a lingering close instead, as
            // the Go router's listener does, after `logging` (the breaker outcome and the
            // slot are settled before the client sees the end).
            ctx.linger = *e.esource() != ErrorSource::Downstream;
            abort_h2_stream(session);
            return no_reuse;
        }
        let code = if let Some(code) = ctx.error {
            code
        } else if ctx.timer.fired() {
            ctx.fail = Some(FailKind::Timeout);
            Code::UpstreamTimeout
        } else if *e.esource() == ErrorSource::Downstream {
            match e.etype() {
                // the client went away: nothing to answer
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => return no_reuse,
                _ => Code::BadRequest,
            }
        } else {
            if ctx.placement.is_some() && ctx.permit.is_some() {
                ctx.fail = Some(FailKind::Protocol);
            }
            Code::UpstreamProtocolError
        };
        // A request read whole and answered 502/504/503 keeps its connection (a request
        // pipelined behind it is served, as by the Go router; the patched pingora-proxy
        // honours `can_reuse_downstream` here). A body not read whole (the upstream could
        // not take it) or a malformed one ends the connection, and the answer says so.
        let client_error = *e.esource() == ErrorSource::Downstream;
        let reuse = !client_error && (!ctx.has_body || ctx.body_done);
        if !reuse {
            session.set_keepalive(None);
        }
        if self.respond(session, ctx, code).await.is_err() {
            return no_reuse;
        }
        if !reuse {
            // A malformed body, or one the upstream could not take: the rest of it may
            // still be arriving. Lingering close (spec section 5): FIN after the answer,
            // never the RST that closing with unread input sends (seen in fallback-chain,
            // a POST answered 502 upstream_connect_failed: reset in 1 run of 6).
            respond::linger(session).await;
        }
        FailToProxy { error_code: code.status(), can_reuse_downstream: reuse }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _error: &Error) -> bool {
        true
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        ctx.timer.disarm();
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
        let m = &self.store.metrics;
        if let Some(code) = ctx.made {
            m.count_error(code);
        }
        let status = session.response_written().map(|r| r.status.as_u16()).unwrap_or(0);
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
        if self.store.access_log {
            let req = session.req_header();
            accesslog::Entry {
                method: req.method.as_str(),
                path: req.uri.path(),
                key: ctx.key.as_deref(),
                placement: ctx.placement_id(),
                status,
                error: ctx.made,
                duration: dur,
            }
            .write();
        }
        ctx.slot = None;
        if ctx.linger {
            respond::close_after_abort(session).await; // a failed committed response (fail_to_proxy)
        }
    }
}

#[cfg(test)]
mod tests {
    use pingora::http::RequestHeader;
    use pingora::protocols::http::v1::client::HttpSession;
    use pingora::protocols::l4::stream::Stream;
    use pingora::RetryType;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The retry type of pingora-core's `read_response` when the upstream reads the request,
    /// writes `answer` and closes (FIN) or resets (RST) the connection.
    async fn read_response_retry(answer: &'static [u8], reset: bool) -> RetryType {
        let ln = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = ln.local_addr().unwrap();
        let up = tokio::spawn(async move {
            let (mut s, _) = ln.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(answer).await.unwrap();
            if reset {
                s.set_zero_linger().unwrap();
            }
            drop(s);
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut session = HttpSession::new(Box::new(Stream::from(tcp)));
        let req = RequestHeader::build("DELETE", b"/x", None).unwrap();
        session.write_request_header(Box::new(req)).await.unwrap();
        up.await.unwrap();
        let e = session.read_response().await.expect_err("the upstream closed before a whole head");
        e.retry
    }

    /// The methods the Go router's Transport sends again (`Request.isReplayable`).
    #[test]
    fn replayable_methods_are_gos() {
        let req = |m: &str, key: Option<&str>| {
            let mut r = RequestHeader::build(m, b"/", None).unwrap();
            if let Some(k) = key {
                r.insert_header(k.to_string(), "1").unwrap();
            }
            r
        };
        for m in ["GET", "HEAD", "OPTIONS", "TRACE"] {
            assert!(super::replayable_method(&req(m, None)), "{m}");
        }
        for m in ["PUT", "DELETE", "POST", "PATCH"] {
            assert!(!super::replayable_method(&req(m, None)), "{m}");
        }
        assert!(super::replayable_method(&req("POST", Some("Idempotency-Key"))));
        assert!(super::replayable_method(&req("DELETE", Some("X-Idempotency-Key"))));
    }

    /// pingora-core's HTTP/1 client (vendored, patch hunk 8) marks a closed or reset read of
    /// the response head retryable on a reused connection only when not one response byte
    /// came, as Go's Transport retries (`errServerClosedIdle`,
    /// `transportReadFromServerError`): an upstream that began answering has the request,
    /// and a retry sent it a second time (parity fuzz seed 1 case 245: a `DELETE` received
    /// twice by the Pingora router's upstream).
    #[tokio::test]
    async fn a_reused_connection_is_retried_only_before_any_response_byte() {
        assert_eq!(read_response_retry(b"", false).await, RetryType::ReusedOnly, "FIN, nothing read");
        assert_eq!(read_response_retry(b"HTTP/1.1 200 OK\r\nX-A:", false).await, RetryType::Decided(false), "FIN inside the head");
        assert_eq!(read_response_retry(b"", true).await, RetryType::ReusedOnly, "RST, nothing read");
        assert_eq!(read_response_retry(b"HTTP/1.1 2", true).await, RetryType::Decided(false), "RST inside the head");
    }
}
