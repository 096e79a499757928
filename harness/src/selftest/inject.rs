//! A small HTTP/1.1 proxy of the harness's own that injects exactly one kind of difference
//! into what one side of a router pair shows. It sits
//!
//! - in front of a router's data port (client side: the harness's client connects to it),
//! - between a router and a mock upstream (upstream side: the router's config points at it),
//! - or in front of a router's admin port (admin side: `/admin/state`, `/metrics`).
//!
//! Everything not concerned by the injection passes through byte for byte: request and
//! response heads are parsed only to find message boundaries (RFC 9112 §6.3) and
//! re-serialised only when the injection changes them; a connection the proxy cannot parse
//! (malformed requests, tunnels after `101`) is copied raw in both directions. A closed or
//! reset side is mirrored on the other side, so connection ends pass through too.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Where the proxy sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// In front of the router's data port.
    Client,
    /// Between the router and one mock upstream.
    Upstream,
    /// In front of the router's admin port.
    Admin,
}

/// The one difference a proxy injects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Injection {
    /// Response status `from` becomes `to` (reason phrase kept).
    Status {
        /// Status to change.
        from: u16,
        /// Status sent instead.
        to: u16,
    },
    /// An extra response header field.
    ExtraResponseHeader {
        /// Field name.
        name: String,
        /// Field value.
        value: String,
    },
    /// The value of an existing response header (by case-insensitive name).
    ResponseHeaderValue {
        /// Field name.
        name: String,
        /// New value.
        value: String,
    },
    /// One body byte (at `offset`, of a `Content-Length` body) is changed.
    BodyByte {
        /// Offset in the body.
        offset: usize,
    },
    /// One byte is appended to a `Content-Length` body (and the length adjusted).
    BodyLength,
    /// A `Content-Length` body is re-sent chunked (same bytes).
    Chunked,
    /// After a complete response that keeps the connection alive, the proxy closes the
    /// client connection (FIN).
    CloseAfterResponse,
    /// Where the router closes the connection (FIN), the proxy resets it (RST).
    ResetInsteadOfFin,
    /// A `/metrics` series line whose value is 0 is removed (absent instead of 0). The
    /// series is named by its exposition prefix, e.g. `router_errors_total{code="no_config"}`.
    MetricAbsent {
        /// Series as written in the exposition, up to the value.
        series: String,
    },
    /// A top-level member of `/admin/state`'s JSON gets another value.
    AdminField {
        /// Member name.
        field: String,
        /// Value sent instead.
        value: serde_json::Value,
    },
    /// An extra request header field the upstream receives.
    UpstreamHeader {
        /// Field name.
        name: String,
        /// Field value.
        value: String,
    },
    /// The request target the upstream receives gets `suffix` appended.
    UpstreamTarget {
        /// Appended to the target.
        suffix: String,
    },
    /// Every request is sent to the upstream twice (the second answer is discarded).
    DuplicateRequest,
    /// Every response is delayed by `ms` milliseconds.
    Delay {
        /// Delay, ms.
        ms: u64,
    },
}

impl Injection {
    /// The side the injection belongs to.
    pub fn side(&self) -> Side {
        match self {
            Injection::UpstreamHeader { .. } | Injection::UpstreamTarget { .. } | Injection::DuplicateRequest => Side::Upstream,
            Injection::MetricAbsent { .. } | Injection::AdminField { .. } => Side::Admin,
            Injection::Delay { .. } => Side::Admin,
            _ => Side::Client,
        }
    }

    fn touches_requests(&self) -> bool {
        matches!(self, Injection::UpstreamHeader { .. } | Injection::UpstreamTarget { .. } | Injection::DuplicateRequest)
    }
}

/// A running proxy; dropping it stops accepting (open connections end with their tasks).
pub struct Proxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Responses or requests changed so far.
    pub applied: Arc<AtomicU32>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Listens on a fresh loopback port and forwards every connection to `target`,
    /// injecting `inj`. Health-check requests (`/healthz*`) are never changed.
    pub async fn start(target: SocketAddr, inj: Injection) -> std::io::Result<Proxy> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let port = l.local_addr()?.port();
        let applied = Arc::new(AtomicU32::new(0));
        let a2 = applied.clone();
        let inj = Arc::new(inj);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    acc = l.accept() => {
                        let Ok((c, _)) = acc else { continue };
                        let inj = inj.clone();
                        let applied = a2.clone();
                        conns.spawn(async move {
                            let Ok(u) = TcpStream::connect(target).await else {
                                reset_on_close(&c);
                                return;
                            };
                            let _ = c.set_nodelay(true);
                            let _ = u.set_nodelay(true);
                            serve(c, u, &inj, &applied).await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(Proxy { port, applied, task })
    }

    /// How many messages the injection changed.
    pub fn applied(&self) -> u32 {
        self.applied.load(Ordering::SeqCst)
    }
}

/// One HTTP message head as parsed.
#[derive(Debug, Clone)]
struct Msg {
    /// Start line parts: request (method, target, version) or response (version, code, reason).
    line: [String; 3],
    headers: Vec<(String, Vec<u8>)>,
    raw: Vec<u8>,
}

impl Msg {
    fn get(&self, n: &str) -> Option<String> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
    fn has_token(&self, n: &str, t: &str) -> bool {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(n)).any(|(_, v)| String::from_utf8_lossy(v).split(',').any(|x| x.trim().eq_ignore_ascii_case(t)))
    }
    fn serialise(&self) -> Vec<u8> {
        let mut out = format!("{} {} {}\r\n", self.line[0], self.line[1], self.line[2]).into_bytes();
        for (k, v) in &self.headers {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
    fn set(&mut self, n: &str, v: &str) {
        match self.headers.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(n)) {
            Some(h) => h.1 = v.as_bytes().to_vec(),
            None => self.headers.push((n.to_string(), v.as_bytes().to_vec())),
        }
    }
    fn remove(&mut self, n: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(n));
    }
}

struct Buf<R> {
    r: R,
    buf: Vec<u8>,
}

enum Got {
    Msg(Msg),
    Eof(std::io::Result<()>),
    /// Not HTTP: the bytes read so far.
    Garbage,
}

impl<R: AsyncRead + Unpin> Buf<R> {
    async fn more(&mut self) -> std::io::Result<usize> {
        let mut tmp = [0u8; 16384];
        let n = self.r.read(&mut tmp).await?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    async fn head(&mut self, request: bool) -> Got {
        loop {
            if !self.buf.is_empty() {
                let mut hs = vec![httparse::EMPTY_HEADER; 256];
                let parsed = if request {
                    let mut r = httparse::Request::new(&mut hs);
                    match r.parse(&self.buf) {
                        Ok(httparse::Status::Complete(n)) => Some(Ok((n, [r.method.unwrap_or("").to_string(), r.path.unwrap_or("").to_string(), format!("HTTP/1.{}", r.version.unwrap_or(1))], r.headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect::<Vec<_>>()))),
                        Ok(httparse::Status::Partial) => None,
                        Err(_) => Some(Err(())),
                    }
                } else {
                    let mut r = httparse::Response::new(&mut hs);
                    match r.parse(&self.buf) {
                        Ok(httparse::Status::Complete(n)) => Some(Ok((n, [format!("HTTP/1.{}", r.version.unwrap_or(1)), r.code.unwrap_or(0).to_string(), r.reason.unwrap_or("").to_string()], r.headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect::<Vec<_>>()))),
                        Ok(httparse::Status::Partial) => None,
                        Err(_) => Some(Err(())),
                    }
                };
                match parsed {
                    Some(Ok((n, line, headers))) => {
                        let raw: Vec<u8> = self.buf.drain(..n).collect();
                        return Got::Msg(Msg { line, headers, raw });
                    }
                    Some(Err(())) => return Got::Garbage,
                    None => {}
                }
            }
            match self.more().await {
                Ok(0) if self.buf.is_empty() => return Got::Eof(Ok(())),
                Ok(0) => return Got::Garbage,
                Ok(_) => {}
                Err(e) if self.buf.is_empty() => return Got::Eof(Err(e)),
                Err(_) => return Got::Garbage,
            }
        }
    }

    /// Exactly `n` bytes (fewer at EOF).
    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            match self.more().await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let k = n.min(self.buf.len());
        self.buf.drain(..k).collect()
    }

    async fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                return Some(self.buf.drain(..=i).collect());
            }
            match self.more().await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum BodyKind {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

fn body_kind(m: &Msg, request: bool, req_method: Option<&str>) -> BodyKind {
    if !request {
        let code: u16 = m.line[1].parse().unwrap_or(0);
        if req_method == Some("HEAD") || (100..200).contains(&code) || code == 204 || code == 304 {
            return BodyKind::None;
        }
    }
    if let Some(te) = m.get("transfer-encoding") {
        if te.split(',').last().map(|t| t.trim().eq_ignore_ascii_case("chunked")) == Some(true) {
            return BodyKind::Chunked;
        }
        return if request { BodyKind::None } else { BodyKind::UntilClose };
    }
    match m.get("content-length").and_then(|v| v.split(',').next().and_then(|x| x.trim().parse().ok())) {
        Some(n) => BodyKind::Length(n),
        None if request => BodyKind::None,
        None => BodyKind::UntilClose,
    }
}

/// Reads a body, forwarding it as it arrives to `w` unless `keep`; returns the framed
/// bytes when kept (decoded body for `Length`), and whether it ended properly.
async fn pass_body<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(b: &mut Buf<R>, w: &mut W, kind: BodyKind, keep: bool) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let out = |bytes: Vec<u8>, kept: &mut Vec<u8>| {
        if keep {
            kept.extend_from_slice(&bytes);
            None
        } else {
            Some(bytes)
        }
    };
    match kind {
        BodyKind::None => (kept, true),
        BodyKind::Length(n) => {
            let mut left = n;
            while left > 0 {
                if b.buf.is_empty() && !matches!(b.more().await, Ok(k) if k > 0) {
                    return (kept, false);
                }
                let k = left.min(b.buf.len());
                let chunk: Vec<u8> = b.buf.drain(..k).collect();
                left -= k;
                if let Some(c) = out(chunk, &mut kept) {
                    if w.write_all(&c).await.is_err() {
                        return (kept, false);
                    }
                }
            }
            (kept, true)
        }
        BodyKind::Chunked => loop {
            let Some(l) = b.line().await else { return (kept, false) };
            let size = usize::from_str_radix(String::from_utf8_lossy(&l).split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
            let mut piece = l;
            if size == 0 {
                loop {
                    let Some(t) = b.line().await else { return (kept, false) };
                    let end = t == b"\r\n" || t == b"\n";
                    piece.extend_from_slice(&t);
                    if end {
                        break;
                    }
                }
                if let Some(c) = out(piece, &mut kept) {
                    let _ = w.write_all(&c).await;
                }
                return (kept, true);
            }
            piece.extend_from_slice(&b.take(size + 2).await);
            if let Some(c) = out(piece, &mut kept) {
                if w.write_all(&c).await.is_err() {
                    return (kept, false);
                }
                let _ = w.flush().await;
            }
        },
        BodyKind::UntilClose => loop {
            if !b.buf.is_empty() {
                let chunk = std::mem::take(&mut b.buf);
                if let Some(c) = out(chunk, &mut kept) {
                    if w.write_all(&c).await.is_err() {
                        return (kept, false);
                    }
                }
            }
            match b.more().await {
                Ok(0) => return (kept, true),
                Ok(_) => {}
                Err(_) => return (kept, false),
            }
        },
    }
}

fn is_health(target: &str) -> bool {
    target.starts_with("/healthz")
}

async fn serve(mut c: TcpStream, mut u: TcpStream, inj: &Injection, applied: &AtomicU32) {
    // Borrowed halves: dropping them does not shut the socket down, so a reset stays a
    // reset (an owned write half sends FIN on drop).
    let (cr, mut cw) = c.split();
    let (ur, mut uw) = u.split();
    let mut creq = Buf { r: cr, buf: Vec::new() };
    let mut uresp = Buf { r: ur, buf: Vec::new() };
    // Method of each request forwarded, for the response framing (HEAD).
    let (mtx, mut mrx) = tokio::sync::mpsc::unbounded_channel::<(String, String, u32)>();
    let dup = matches!(inj, Injection::DuplicateRequest);

    let requests = async {
        loop {
            let m = match creq.head(true).await {
                Got::Msg(m) => m,
                Got::Eof(_) => {
                    let _ = uw.shutdown().await;
                    return;
                }
                Got::Garbage => {
                    // Not HTTP: forward what is there and copy raw from now on.
                    let _ = uw.write_all(&creq.buf).await;
                    creq.buf.clear();
                    let _ = mtx.send((String::new(), String::new(), u32::MAX));
                    let _ = tokio::io::copy(&mut creq.r, &mut uw).await;
                    let _ = uw.shutdown().await;
                    return;
                }
            };
            let method = m.line[0].clone();
            let target = m.line[1].clone();
            let kind = body_kind(&m, true, None);
            let change = inj.touches_requests() && !is_health(&target);
            let mut out = m.clone();
            match inj {
                Injection::UpstreamHeader { name, value } if change => out.headers.push((name.clone(), value.as_bytes().to_vec())),
                Injection::UpstreamTarget { suffix } if change => out.line[1] = format!("{}{}", out.line[1], suffix),
                _ => {}
            }
            let head = if change && !dup { applied.fetch_add(1, Ordering::SeqCst); out.serialise() } else { m.raw.clone() };
            let copies = if dup && change { 2 } else { 1 };
            let upgrade = m.has_token("connection", "upgrade");
            let _ = mtx.send((method, target, copies));
            if copies == 2 {
                applied.fetch_add(1, Ordering::SeqCst);
                let (body, _) = pass_body(&mut creq, &mut uw, kind, true).await;
                for _ in 0..2 {
                    let _ = uw.write_all(&head).await;
                    let _ = uw.write_all(&body).await;
                }
                let _ = uw.flush().await;
                continue;
            }
            if uw.write_all(&head).await.is_err() {
                return;
            }
            let (_, ok) = pass_body(&mut creq, &mut uw, kind, false).await;
            let _ = uw.flush().await;
            if !ok {
                let _ = uw.shutdown().await;
                return;
            }
            if upgrade {
                // Possibly a tunnel: copy raw from now on.
                let _ = uw.write_all(&creq.buf).await;
                creq.buf.clear();
                let _ = tokio::io::copy(&mut creq.r, &mut uw).await;
                let _ = uw.shutdown().await;
                return;
            }
        }
    };

    let responses = async {
        loop {
            let m = match uresp.head(false).await {
                Got::Msg(m) => m,
                Got::Eof(r) => {
                    end_client(&mut cw, r.is_err() || matches!(inj, Injection::ResetInsteadOfFin), applied, inj).await;
                    return;
                }
                Got::Garbage => {
                    let _ = cw.write_all(&uresp.buf).await;
                    uresp.buf.clear();
                    let r = tokio::io::copy(&mut uresp.r, &mut cw).await;
                    end_client(&mut cw, r.is_err() || matches!(inj, Injection::ResetInsteadOfFin), applied, inj).await;
                    return;
                }
            };
            let code: u16 = m.line[1].parse().unwrap_or(0);
            let interim = (100..200).contains(&code) && code != 101;
            let (method, target, copies) = if interim { (String::new(), String::new(), 1) } else { mrx.recv().await.unwrap_or_default() };
            if copies == u32::MAX {
                // The request side went raw.
                let _ = cw.write_all(&m.raw).await;
                let _ = cw.write_all(&uresp.buf).await;
                uresp.buf.clear();
                let r = tokio::io::copy(&mut uresp.r, &mut cw).await;
                end_client(&mut cw, r.is_err(), applied, inj).await;
                return;
            }
            let kind = body_kind(&m, false, Some(&method));
            let health = is_health(&target);
            if let Injection::Delay { ms } = inj {
                if !health && !interim {
                    applied.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(*ms)).await;
                }
            }
            if copies == 2 {
                // The duplicate's answer is read and dropped after the first is forwarded.
                let _ = cw.write_all(&m.raw).await;
                let _ = pass_body(&mut uresp, &mut cw, kind, false).await;
                let _ = cw.flush().await;
                if let Got::Msg(m2) = uresp.head(false).await {
                    let k2 = body_kind(&m2, false, Some(&method));
                    let _ = pass_body(&mut uresp, &mut tokio::io::sink(), k2, false).await;
                }
                continue;
            }
            let needs_body = !health
                && !interim
                && (matches!(kind, BodyKind::Length(_)) || (kind == BodyKind::Chunked && matches!(inj, Injection::MetricAbsent { .. } | Injection::AdminField { .. })))
                && matches!(inj, Injection::BodyByte { .. } | Injection::BodyLength | Injection::Chunked | Injection::MetricAbsent { .. } | Injection::AdminField { .. });
            let mut out = m.clone();
            let mut changed = false;
            if !health && !interim {
                match inj {
                    Injection::Status { from, to } if code == *from => {
                        out.line[1] = to.to_string();
                        changed = true;
                    }
                    Injection::ExtraResponseHeader { name, value } => {
                        out.headers.push((name.clone(), value.as_bytes().to_vec()));
                        changed = true;
                    }
                    Injection::ResponseHeaderValue { name, value } if m.get(name).is_some() => {
                        out.set(name, value);
                        changed = true;
                    }
                    _ => {}
                }
            }
            if needs_body {
                let (mut body, ok) = pass_body(&mut uresp, &mut tokio::io::sink(), kind, true).await;
                let mut reframed = false;
                if kind == BodyKind::Chunked {
                    // Re-sent with Content-Length (the proxy changes this body anyway).
                    body = dechunk(&body);
                    out.remove("transfer-encoding");
                    out.set("Content-Length", &body.len().to_string());
                    reframed = true;
                }
                let mut changed_body = false;
                match inj {
                    Injection::BodyByte { offset } if *offset < body.len() => {
                        body[*offset] ^= 0x01;
                        changed_body = true;
                    }
                    Injection::BodyLength => {
                        body.push(b'!');
                        changed_body = true;
                    }
                    Injection::Chunked => {
                        out.remove("content-length");
                        out.set("Transfer-Encoding", "chunked");
                        let mut c = format!("{:x}\r\n", body.len()).into_bytes();
                        c.extend_from_slice(&body);
                        c.extend_from_slice(b"\r\n0\r\n\r\n");
                        if body.is_empty() {
                            c = b"0\r\n\r\n".to_vec();
                        }
                        let _ = cw.write_all(&out.serialise()).await;
                        let _ = cw.write_all(&c).await;
                        let _ = cw.flush().await;
                        applied.fetch_add(1, Ordering::SeqCst);
                        if !ok {
                            end_client(&mut cw, true, applied, inj).await;
                            return;
                        }
                        continue;
                    }
                    Injection::MetricAbsent { series } if target.starts_with("/metrics") => {
                        let text = String::from_utf8_lossy(&body).into_owned();
                        let want = crate::metrics::SeriesKey::parse(series).ok();
                        let is_zero_series = |l: &str| {
                            let l = l.trim();
                            if l.starts_with('#') {
                                return false;
                            }
                            let cut = l.rfind('}').map(|i| i + 1).unwrap_or_else(|| l.find(' ').unwrap_or(l.len()));
                            let (k, v) = l.split_at(cut);
                            let v: f64 = v.split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or(f64::NAN);
                            v == 0.0 && crate::metrics::SeriesKey::parse(k).ok() == want
                        };
                        let kept: Vec<&str> = text.lines().filter(|l| !is_zero_series(l)).collect();
                        if kept.len() != text.lines().count() {
                            body = (kept.join("\n") + "\n").into_bytes();
                            changed_body = true;
                        }
                    }
                    Injection::AdminField { field, value } if target.starts_with("/admin/state") => {
                        if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&body) {
                            if let Some(o) = v.as_object_mut() {
                                o.insert(field.clone(), value.clone());
                                body = serde_json::to_vec(&v).unwrap_or(body);
                                changed_body = true;
                            }
                        }
                    }
                    _ => {}
                }
                if changed_body {
                    out.set("Content-Length", &body.len().to_string());
                    changed = true;
                }
                let head = if changed || reframed { out.serialise() } else { m.raw.clone() };
                if changed {
                    applied.fetch_add(1, Ordering::SeqCst);
                }
                let _ = cw.write_all(&head).await;
                let _ = cw.write_all(&body).await;
                let _ = cw.flush().await;
                if !ok {
                    end_client(&mut cw, true, applied, inj).await;
                    return;
                }
            } else {
                let head = if changed { out.serialise() } else { m.raw.clone() };
                if changed {
                    applied.fetch_add(1, Ordering::SeqCst);
                }
                if cw.write_all(&head).await.is_err() {
                    return;
                }
                let _ = cw.flush().await;
                let (_, ok) = pass_body(&mut uresp, &mut cw, kind, false).await;
                let _ = cw.flush().await;
                if !ok || kind == BodyKind::UntilClose {
                    end_client(&mut cw, !ok || matches!(inj, Injection::ResetInsteadOfFin), applied, inj).await;
                    return;
                }
            }
            if code == 101 {
                let _ = cw.write_all(&uresp.buf).await;
                uresp.buf.clear();
                let r = tokio::io::copy(&mut uresp.r, &mut cw).await;
                end_client(&mut cw, r.is_err(), applied, inj).await;
                return;
            }
            if matches!(inj, Injection::CloseAfterResponse) && !interim && !health && !m.has_token("connection", "close") {
                applied.fetch_add(1, Ordering::SeqCst);
                let _ = cw.shutdown().await;
                return;
            }
        }
    };
    // The response side decides when the client connection ends; the request side may
    // end first (client FIN) while responses are still coming.
    tokio::pin!(requests);
    tokio::pin!(responses);
    let mut req_done = false;
    loop {
        tokio::select! {
            _ = &mut requests, if !req_done => req_done = true,
            _ = &mut responses => break,
        }
    }
}

/// Ends the client connection: FIN, or RST when `reset` (the router reset, or the
/// injection turns FINs into resets): SO_LINGER 0, and the socket is closed when the
/// connection's task returns.
async fn end_client(cw: &mut tokio::net::tcp::WriteHalf<'_>, reset: bool, applied: &AtomicU32, inj: &Injection) {
    let _ = cw.flush().await;
    if reset {
        if matches!(inj, Injection::ResetInsteadOfFin) {
            applied.fetch_add(1, Ordering::SeqCst);
        }
        reset_on_close(cw.as_ref());
    } else {
        let _ = cw.shutdown().await;
    }
}

/// The data of a chunked body (framed bytes as received, trailers dropped).
fn dechunk(framed: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(nl) = framed[i..].iter().position(|b| *b == b'\n') {
        let line = String::from_utf8_lossy(&framed[i..i + nl]).into_owned();
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        i += nl + 1;
        if size == 0 || i + size > framed.len() {
            break;
        }
        out.extend_from_slice(&framed[i..i + size]);
        i += size + 2;
    }
    out
}

/// Makes the socket send RST instead of FIN when it is closed (SO_LINGER with timeout 0,
/// which never blocks).
pub fn reset_on_close<S: std::os::fd::AsFd>(s: &S) {
    use nix::sys::socket::{setsockopt, sockopt::Linger};
    let _ = setsockopt(s, Linger, &nix::libc::linger { l_onoff: 1, l_linger: 0 });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::client::{exchange, ConnEnd, HttpRequest, Options, Outgoing, ReqBody};
    use crate::observe::normalise::{Normaliser, SendKind};

    /// A keep-alive HTTP server answering every request with `reply(target)`; it closes
    /// after a response carrying `Connection: close`. Records request heads.
    async fn origin(reply: fn(&str) -> Vec<u8>) -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let mut b = Buf { r: s, buf: Vec::new() };
                    loop {
                        let Got::Msg(m) = b.head(true).await else { return };
                        let kind = body_kind(&m, true, None);
                        let _ = pass_body(&mut b, &mut tokio::io::sink(), kind, true).await;
                        seen.lock().unwrap().push(String::from_utf8_lossy(&m.raw).into_owned());
                        let r = reply(&m.line[1]);
                        b.r.write_all(&r).await.unwrap();
                        if String::from_utf8_lossy(&r).to_ascii_lowercase().contains("connection: close") {
                            let _ = b.r.shutdown().await;
                            return;
                        }
                    }
                });
            }
        });
        (a, seen)
    }

    fn ok(target: &str) -> Vec<u8> {
        if target == "/close" {
            return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_vec();
        }
        if target == "/metrics" {
            return b"HTTP/1.1 200 OK\r\nContent-Length: 33\r\n\r\na_total 1\nb_total{x=\"y\"} 0\nc 0.5\n".to_vec();
        }
        if target == "/admin/state" {
            return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"config_version\":1}".to_vec();
        }
        b"HTTP/1.1 200 OK\r\nX-Upstream-Name: a\r\nContent-Length: 11\r\n\r\nhello world".to_vec()
    }

    fn get(target: &str) -> Outgoing {
        Outgoing::Http(HttpRequest { method: "GET".into(), target: target.into(), headers: vec![], body: ReqBody::Empty })
    }

    async fn both(inj: Injection, target: &str) -> (serde_json::Value, serde_json::Value, u32) {
        let (a, _) = origin(ok).await;
        let p = Proxy::start(a, inj).await.unwrap();
        let o = Options { linger: Duration::from_millis(50), ..Default::default() };
        let n = Normaliser::default();
        let direct = exchange(a, get(target), &o).await;
        let via = exchange(SocketAddr::from(([127, 0, 0, 1], p.port)), get(target), &o).await;
        (n.exchange(&direct, SendKind::default()), n.exchange(&via, SendKind::default()), p.applied())
    }

    #[tokio::test]
    async fn without_a_matching_injection_the_proxy_is_transparent() {
        for (inj, target) in [
            (Injection::Status { from: 404, to: 500 }, "/"),
            (Injection::ResponseHeaderValue { name: "X-Absent".into(), value: "v".into() }, "/"),
            (Injection::ResetInsteadOfFin, "/"),
            (Injection::CloseAfterResponse, "/close"),
            (Injection::UpstreamHeader { name: "X-I".into(), value: "1".into() }, "/healthz"),
        ] {
            let (d, v, _) = both(inj.clone(), target).await;
            assert_eq!(d, v, "{inj:?}");
        }
    }

    #[tokio::test]
    async fn each_response_side_injection_makes_one_difference() {
        let cases = [
            (Injection::Status { from: 200, to: 201 }, "/", "status"),
            (Injection::ExtraResponseHeader { name: "X-Injected".into(), value: "1".into() }, "/", "headers"),
            (Injection::ResponseHeaderValue { name: "x-upstream-name".into(), value: "b".into() }, "/", "headers"),
            (Injection::BodyByte { offset: 4 }, "/", "body"),
            (Injection::BodyLength, "/", "body"),
            (Injection::Chunked, "/", "framing"),
            (Injection::MetricAbsent { series: "b_total{x=\"y\"}".into() }, "/metrics", "body"),
            (Injection::AdminField { field: "config_version".into(), value: serde_json::json!(2) }, "/admin/state", "body"),
        ];
        for (inj, target, field) in cases {
            let (d, v, applied) = both(inj.clone(), target).await;
            assert_eq!(applied, 1, "{inj:?}");
            assert_ne!(d["responses"][0][field], v["responses"][0][field], "{inj:?}: {d} vs {v}");
            assert_eq!(v["end"], "kept_alive", "{inj:?}");
        }
    }

    #[tokio::test]
    async fn connection_end_injections() {
        let (d, v, _) = both(Injection::CloseAfterResponse, "/").await;
        assert_eq!((d["end"].as_str(), v["end"].as_str()), (Some("kept_alive"), Some("fin")));
        assert_eq!(d["responses"], v["responses"]);
        let (d, v, _) = both(Injection::ResetInsteadOfFin, "/close").await;
        assert_eq!((d["end"].as_str(), v["end"].as_str()), (Some("fin"), Some("reset")));
        assert_eq!(d["responses"], v["responses"]);
    }

    #[tokio::test]
    async fn request_side_injections_reach_the_upstream() {
        for (inj, want) in [
            (Injection::UpstreamHeader { name: "X-Injected".into(), value: "1".into() }, "X-Injected: 1"),
            (Injection::UpstreamTarget { suffix: "?injected".into() }, "GET /x?injected HTTP/1.1"),
        ] {
            let (a, seen) = origin(ok).await;
            let p = Proxy::start(a, inj.clone()).await.unwrap();
            let ex = exchange(SocketAddr::from(([127, 0, 0, 1], p.port)), get("/x"), &Options::default()).await;
            assert_eq!(ex.last().unwrap().head.status, 200);
            let s = seen.lock().unwrap().clone();
            assert_eq!(s.len(), 1);
            assert!(s[0].contains(want), "{inj:?}: {s:?}");
        }
        let (a, seen) = origin(ok).await;
        let p = Proxy::start(a, Injection::DuplicateRequest).await.unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], p.port));
        let post = Outgoing::Http(HttpRequest { method: "POST".into(), target: "/p".into(), headers: vec![], body: ReqBody::Bytes(b"body".to_vec()) });
        let ex = exchange(addr, post, &Options { linger: Duration::from_millis(50), ..Default::default() }).await;
        assert_eq!(ex.last().unwrap().body.kept, b"hello world");
        assert_eq!(ex.end, Some(ConnEnd::KeptAlive));
        assert_eq!(seen.lock().unwrap().len(), 2);
        // health checks are left alone
        let _ = exchange(addr, get("/healthz"), &Options::default()).await;
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn delay_and_raw_pass_through() {
        let (a, _) = origin(ok).await;
        let p = Proxy::start(a, Injection::Delay { ms: 300 }).await.unwrap();
        let t = std::time::Instant::now();
        let ex = exchange(SocketAddr::from(([127, 0, 0, 1], p.port)), get("/"), &Options::default()).await;
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert_eq!(ex.last().unwrap().head.status, 200);
        // Not HTTP: copied raw (the origin here drops the connection).
        let ex = exchange(SocketAddr::from(([127, 0, 0, 1], p.port)), Outgoing::Raw { bytes: b"NOT HTTP\r\n\r\n".to_vec(), tunnel_write: None }, &Options::default()).await;
        assert!(ex.responses.is_empty());
    }
}

