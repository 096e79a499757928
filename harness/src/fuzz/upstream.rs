//! The fuzz upstream: one raw TCP server per router, answering each request with the
//! generated response of the case it belongs to, and recording what it received.
//!
//! Requests are attributed to cases by the request tag ([`crate::fuzz::reqgen::TAG`],
//! `<case key>.<index>`) the generator writes into every request head. A case registers a
//! [`Slot`] (its responses) before its client stream is sent and takes the slot's records
//! once the stream is over, so many cases can run on one router at once. A request without
//! a known tag (smuggled, or stale) is recorded against the last case seen on its
//! connection and answered with a plain `200`. Bytes the upstream cannot parse as a request
//! are recorded the same way (as `garbage`) and end the connection.
//!
//! The upstream's parser is deliberately plain (RFC 9112 as written: `Transfer-Encoding`
//! ending in `chunked` wins, else `Content-Length`): it sees what a typical origin behind
//! the router would see, so a request the router frames one way and forwards in a way an
//! origin reads another way shows up as an extra request.
use crate::fuzz::respgen::{End, RespSpec};
use crate::observe::body::BodyRecord;
use crate::observe::upstream::{ReqFraming, UpstreamRequest};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Most bytes of a request head the upstream buffers before giving up on it.
const MAX_HEAD: usize = 2 << 20;

/// One received request (or unparseable bytes).
#[derive(Debug, Clone)]
pub struct Received {
    /// The tag's request index (`0`, `1`, ... or `s`), None without a tag of this case.
    pub index: Option<String>,
    /// The parsed request; None for garbage.
    pub req: Option<UpstreamRequest>,
    /// The raw bytes of the request (head and body as received), at most 4 KiB kept.
    pub raw: Vec<u8>,
}

/// A case's registration: its responses and what arrived for it.
#[derive(Debug, Default)]
pub struct Slot {
    /// Response per request index (index beyond the list, or `s`: a plain 200).
    pub responses: Vec<RespSpec>,
    /// What arrived, in order.
    pub received: Mutex<Vec<Received>>,
}

type Slots = Arc<Mutex<HashMap<String, Arc<Slot>>>>;

/// A running fuzz upstream.
pub struct FuzzUpstream {
    /// Its loopback port.
    pub port: u16,
    slots: Slots,
    task: tokio::task::JoinHandle<()>,
}

impl FuzzUpstream {
    /// Binds a fresh loopback port and starts serving.
    pub async fn start() -> std::io::Result<FuzzUpstream> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let port = l.local_addr()?.port();
        let slots: Slots = Arc::default();
        let s2 = slots.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((c, _)) = l.accept().await else { continue };
                let _ = c.set_nodelay(true);
                tokio::spawn(serve(c, s2.clone()));
            }
        });
        Ok(FuzzUpstream { port, slots, task })
    }

    /// Registers case `key` with its responses; returns the slot to read records from.
    pub fn register(&self, key: &str, responses: Vec<RespSpec>) -> Arc<Slot> {
        let s = Arc::new(Slot { responses, received: Mutex::new(Vec::new()) });
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_string(), s.clone());
        s
    }

    /// Forgets case `key` (later requests carrying its tag are answered plainly).
    pub fn unregister(&self, key: &str) {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

impl Drop for FuzzUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn split_tag(v: &str) -> Option<(&str, &str)> {
    v.rsplit_once('.')
}

enum Parsed {
    Req { head_len: usize, req: UpstreamRequest, body: BodyPlan },
    Partial,
    Bad,
}

enum BodyPlan {
    None,
    Length(u64),
    Chunked,
}

fn parse_head(buf: &[u8]) -> Parsed {
    let mut hs = vec![httparse::EMPTY_HEADER; 8192];
    let mut r = httparse::Request::new(&mut hs);
    match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            let headers: Vec<(String, String)> = r.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned())).collect();
            let te_chunked = headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"))
                .flat_map(|(_, v)| v.split(','))
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .last()
                .map(|t| t == "chunked");
            let cl = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.trim().parse::<u64>());
            let (framing, body) = match (te_chunked, cl) {
                (Some(true), _) => (ReqFraming::Chunked, BodyPlan::Chunked),
                (Some(false), _) => return Parsed::Bad,
                (None, Some(Ok(n))) => (ReqFraming::Length(n), BodyPlan::Length(n)),
                (None, Some(Err(_))) => return Parsed::Bad,
                (None, None) => (ReqFraming::None, BodyPlan::None),
            };
            let req = UpstreamRequest {
                upstream: "u".into(),
                conn: 0,
                index: 0,
                method: r.method.unwrap_or("").to_string(),
                target: r.path.unwrap_or("").to_string(),
                version: format!("HTTP/1.{}", r.version.unwrap_or(1)),
                headers,
                framing,
                body: BodyRecord::default(),
                body_complete: false,
            };
            Parsed::Req { head_len: n, req, body }
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(_) => Parsed::Bad,
    }
}

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn more(&mut self) -> std::io::Result<usize> {
        let mut tmp = [0u8; 16384];
        let n = self.s.read(&mut tmp).await?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Takes a line (without its line end); None at EOF.
    async fn line(&mut self, raw: &mut Vec<u8>) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let l: Vec<u8> = self.buf.drain(..=i).collect();
                raw.extend_from_slice(&l);
                let mut l = l;
                l.pop();
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                return Some(l);
            }
            if !matches!(self.more().await, Ok(n) if n > 0) {
                return None;
            }
        }
    }

    /// Reads a body; returns (body, complete, trailers).
    async fn body(&mut self, plan: &BodyPlan, raw: &mut Vec<u8>) -> (Vec<u8>, bool, Vec<(String, String)>) {
        match plan {
            BodyPlan::None => (vec![], true, vec![]),
            BodyPlan::Length(n) => {
                let n = *n as usize;
                while self.buf.len() < n {
                    if !matches!(self.more().await, Ok(k) if k > 0) {
                        let b = std::mem::take(&mut self.buf);
                        raw.extend_from_slice(&b);
                        return (b, false, vec![]);
                    }
                }
                let b: Vec<u8> = self.buf.drain(..n).collect();
                raw.extend_from_slice(&b);
                (b, true, vec![])
            }
            BodyPlan::Chunked => {
                let mut body = Vec::new();
                loop {
                    let Some(l) = self.line(raw).await else { return (body, false, vec![]) };
                    let hex: String = String::from_utf8_lossy(&l).split(';').next().unwrap_or("").trim().to_string();
                    let Ok(n) = usize::from_str_radix(&hex, 16) else { return (body, false, vec![]) };
                    if n == 0 {
                        let mut trailers = Vec::new();
                        loop {
                            let Some(t) = self.line(raw).await else { return (body, false, trailers) };
                            if t.is_empty() {
                                return (body, true, trailers);
                            }
                            let t = String::from_utf8_lossy(&t).into_owned();
                            if let Some((k, v)) = t.split_once(':') {
                                trailers.push((k.to_string(), v.trim().to_string()));
                            }
                        }
                    }
                    if n > 1 << 24 {
                        return (body, false, vec![]);
                    }
                    while self.buf.len() < n + 2 {
                        if !matches!(self.more().await, Ok(k) if k > 0) {
                            let b = std::mem::take(&mut self.buf);
                            raw.extend_from_slice(&b);
                            body.extend_from_slice(&b[..b.len().min(n)]);
                            return (body, false, vec![]);
                        }
                    }
                    let c: Vec<u8> = self.buf.drain(..n).collect();
                    raw.extend_from_slice(&c);
                    body.extend_from_slice(&c);
                    let crlf: Vec<u8> = self.buf.drain(..2).collect();
                    raw.extend_from_slice(&crlf);
                    if crlf != b"\r\n" {
                        return (body, false, vec![]);
                    }
                }
            }
        }
    }
}

fn record(slot: &Option<Arc<Slot>>, r: Received) {
    if let Some(s) = slot {
        s.received.lock().unwrap_or_else(|p| p.into_inner()).push(r);
    }
}

fn keep(raw: &[u8]) -> Vec<u8> {
    raw[..raw.len().min(4096)].to_vec()
}

async fn serve(s: TcpStream, slots: Slots) {
    let mut c = Conn { s, buf: Vec::new() };
    let mut last: Option<Arc<Slot>> = None;
    let mut nreq = 0u32;
    loop {
        // A request head.
        let (head_len, mut req, plan) = loop {
            if !c.buf.is_empty() {
                match parse_head(&c.buf) {
                    Parsed::Req { head_len, req, body } => break (head_len, req, body),
                    Parsed::Bad => {
                        record(&last, Received { index: None, req: None, raw: keep(&c.buf) });
                        return;
                    }
                    Parsed::Partial if c.buf.len() > MAX_HEAD => {
                        record(&last, Received { index: None, req: None, raw: keep(&c.buf) });
                        return;
                    }
                    Parsed::Partial => {}
                }
            }
            match c.more().await {
                Ok(n) if n > 0 => {}
                _ => {
                    if !c.buf.is_empty() {
                        record(&last, Received { index: None, req: None, raw: keep(&c.buf) });
                    }
                    return;
                }
            }
        };
        let mut raw: Vec<u8> = c.buf.drain(..head_len).collect();
        let tag = req.tag().map(String::from);
        let (slot, index) = match tag.as_deref().and_then(split_tag) {
            Some((key, idx)) => match slots.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned() {
                Some(s) => (Some(s), Some(idx.to_string())),
                None => (None, None),
            },
            None => (None, None),
        };
        let slot = slot.or_else(|| last.clone());
        let known_index = if tag.is_some() { index.clone() } else { None };
        let (body, complete, trailers) = c.body(&plan, &mut raw).await;
        req.body = BodyRecord::of(&body, 64 * 1024);
        req.body_complete = complete;
        req.index = nreq;
        nreq += 1;
        for (k, v) in trailers {
            req.headers.push((format!("trailer:{k}"), v));
        }
        let resp = match (&slot, &known_index) {
            (Some(s), Some(i)) => i.parse::<usize>().ok().and_then(|i| s.responses.get(i).cloned()).unwrap_or_else(RespSpec::plain),
            _ => RespSpec::plain(),
        };
        record(&slot, Received { index: known_index, req: Some(req), raw: keep(&raw) });
        last = slot;
        if !complete {
            return;
        }
        if !play(&mut c, &resp).await {
            return;
        }
        if resp.upgrades() {
            // Tunnel: echo until the router closes.
            let mut tmp = [0u8; 4096];
            if !c.buf.is_empty() {
                let b = std::mem::take(&mut c.buf);
                if c.s.write_all(&b).await.is_err() {
                    return;
                }
            }
            while let Ok(n) = c.s.read(&mut tmp).await {
                if n == 0 || c.s.write_all(&tmp[..n]).await.is_err() {
                    return;
                }
            }
            return;
        }
        if resp.closes() {
            let _ = c.s.shutdown().await;
            return;
        }
    }
}

/// Writes the response as its delivery says; false when the connection must end now.
async fn play(c: &mut Conn, resp: &RespSpec) -> bool {
    let d = resp.delivery;
    if d.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(d.delay_ms as u64)).await;
    }
    let mut bytes = resp.render();
    let cut = match d.end {
        End::Hang => {
            // Hold the connection without answering until the router gives up.
            let mut tmp = [0u8; 1024];
            while let Ok(n) = c.s.read(&mut tmp).await {
                if n == 0 {
                    break;
                }
            }
            return false;
        }
        End::CloseAt(p) | End::ResetAt(p) => Some((bytes.len() * p as usize) / 1000),
        _ => None,
    };
    if let Some(n) = cut {
        bytes.truncate(n);
    }
    if d.slow.is_none() && !resp.upgrades() && (matches!(d.end, End::CloseAt(_)) || resp.closes() && !matches!(d.end, End::ResetAt(_))) {
        // A response the upstream closes behind: its FIN goes out with its last bytes
        // (upstreams::cork), so both routers' reuse checks see the close; a FIN a
        // scheduling delay later is a race no router can win for a request with a body
        // (RFC 9110 section 9.2.2), which differed at random between the two.
        crate::upstreams::cork(std::os::fd::AsRawFd::as_raw_fd(&c.s));
    }
    let ok = match d.slow {
        Some((piece, ms)) => {
            let mut ok = true;
            for p in bytes.chunks(piece.max(1) as usize) {
                if c.s.write_all(p).await.is_err() {
                    ok = false;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(ms as u64)).await;
            }
            ok
        }
        None => c.s.write_all(&bytes).await.is_ok(),
    };
    match d.end {
        End::ResetAt(_) => {
            let _ = c.s.set_zero_linger();
            false
        }
        End::CloseAt(_) => {
            let _ = c.s.shutdown().await;
            false
        }
        _ => ok,
    }
}
