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
        let req_is_head = req.method == "HEAD";
        record(&slot, Received { index: known_index, req: Some(req), raw: keep(&raw) });
        last = slot;
        if !complete {
            return;
        }
        if !play(&mut c, &resp, req_is_head).await {
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

/// The most time a slow response's heads may take, from the request to the final head's
/// last byte, ms: half the placement's `request_ms`, so whether the head arrives before the
/// routers' timer is never a matter of scheduling (seed 1 case 12876: a 98-byte head in
/// 2-byte pieces every 9 ms, about 440-490 ms against `request_ms` 500: 504 vs 502 by
/// which router had the whole head first).
pub const SLOW_HEAD_BUDGET_MS: u64 = crate::fuzz::runner::REQUEST_MS / 2;

/// The pieces a slow delivery writes, as byte ranges of the rendered response (`len`
/// bytes, its heads `head_len` bytes), `piece` bytes each with `ms` between them after a
/// `delay_ms` wait. Two timings no router can win are not produced:
/// - the heads' pieces grow (never shrink) so that the final head is complete within
///   [`SLOW_HEAD_BUDGET_MS`] of the request (`delay_ms` included);
/// - when the response's framing ends before its last byte (`framed_end`, from
///   [`RespSpec::framed_end`]: a response that ends with its head, a short
///   `Content-Length`), the piece holding that end carries every byte behind it, so a
///   router's reuse check sees them before it writes the next request on the connection
///   (bytes arriving after that write are a race no check can see: spec §4 "Pool
///   identity", RFC 9110 §9.2.2).
pub fn pieces(len: usize, head_len: usize, framed_end: Option<usize>, piece: u8, ms: u8, delay_ms: u8) -> Vec<std::ops::Range<usize>> {
    let piece = piece.max(1) as usize;
    let ms = (ms.max(1)) as u64;
    let budget = SLOW_HEAD_BUDGET_MS.saturating_sub(delay_ms as u64);
    // k pieces cover the heads after (k - 1) pauses; k * ms <= budget leaves a margin.
    let max_head_pieces = ((budget / ms) as usize).max(1);
    let head_piece = piece.max(head_len.div_ceil(max_head_pieces));
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < len {
        let size = if pos < head_len { head_piece } else { piece };
        let mut end = (pos + size).min(len);
        if let Some(f) = framed_end {
            if pos < f && end >= f {
                end = len;
            }
        }
        out.push(pos..end);
        pos = end;
    }
    out
}

/// Writes the response as its delivery says (`head_request`: it answers a `HEAD`); false
/// when the connection must end now.
async fn play(c: &mut Conn, resp: &RespSpec, head_request: bool) -> bool {
    let d = resp.delivery;
    if d.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(d.delay_ms as u64)).await;
    }
    let (mut bytes, head_len) = resp.render_parts();
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
    // A response the upstream closes behind: its FIN goes out with its last bytes
    // (upstreams::cork, set before the last piece), so both routers' reuse checks see the
    // close; a FIN a scheduling delay (or a slow pause) later is a race no router can win
    // for a request with a body (RFC 9110 section 9.2.2), which differed at random between
    // the two (seed 1 case 20917: a slow chunked 200, its FIN 3 ms behind).
    let fin_behind = !resp.upgrades() && (matches!(d.end, End::CloseAt(_)) || resp.closes() && !matches!(d.end, End::ResetAt(_)));
    let ok = match d.slow {
        Some((piece, ms)) => {
            let plan = pieces(bytes.len(), head_len, resp.framed_end(head_request), piece, ms, d.delay_ms);
            let mut ok = true;
            for (i, r) in plan.iter().enumerate() {
                let last = i + 1 == plan.len();
                if last && fin_behind {
                    crate::upstreams::cork(std::os::fd::AsRawFd::as_raw_fd(&c.s));
                }
                if c.s.write_all(&bytes[r.clone()]).await.is_err() {
                    ok = false;
                    break;
                }
                // No pause after the last piece: the next thing is the close or the next
                // request, which a pause would only put behind the router's next write.
                if !last {
                    tokio::time::sleep(Duration::from_millis(ms as u64)).await;
                }
            }
            ok
        }
        None => {
            if fin_behind {
                crate::upstreams::cork(std::os::fd::AsRawFd::as_raw_fd(&c.s));
            }
            c.s.write_all(&bytes).await.is_ok()
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::respgen::{Delivery, RespFraming};
    use std::time::Instant;

    /// Sends one tagged request for a case whose only response is `resp`.
    async fn ask(up: &FuzzUpstream, key: &str, method: &str, resp: RespSpec) -> TcpStream {
        up.register(key, vec![resp]);
        let mut s = TcpStream::connect(("127.0.0.1", up.port)).await.unwrap();
        let req = format!("{method} / HTTP/1.1\r\nHost: h\r\n{}: {key}.0\r\n\r\n", crate::fuzz::reqgen::TAG);
        s.write_all(req.as_bytes()).await.unwrap();
        s
    }

    /// Reads until `done(buf)` holds (deadline 5 s); returns the bytes read.
    async fn read_until(s: &mut TcpStream, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), async {
            let mut tmp = [0u8; 16384];
            while !done(&buf) {
                let n = s.read(&mut tmp).await.unwrap();
                assert!(n > 0, "EOF before the expected bytes: {:?}", String::from_utf8_lossy(&buf));
                buf.extend_from_slice(&tmp[..n]);
            }
        })
        .await
        .expect("the bytes within 5 s");
        buf
    }

    fn slow(resp: RespSpec, piece: u8, ms: u8, end: End) -> RespSpec {
        RespSpec { delivery: Delivery { delay_ms: 0, slow: Some((piece, ms)), end }, ..resp }
    }

    fn has_head(b: &[u8]) -> bool {
        b.windows(4).any(|w| w == b"\r\n\r\n")
    }

    /// The length of a response's head (no interim heads).
    fn head_end(b: &[u8]) -> usize {
        b.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4
    }

    #[tokio::test]
    async fn a_slow_response_closed_behind_has_its_fin_with_its_last_bytes() {
        // seed 1 case 20917: a chunked 200 in 8-byte pieces every 3 ms, closed behind; the
        // FIN came a pause after the last piece, and the router that wrote the pipelined
        // request first lost it (502, never upstream).
        let up = FuzzUpstream::start().await.unwrap();
        let body = RespSpec { body: b"efaeb\n1byzya\nxe1".to_vec(), framing: RespFraming::Chunked { chunk: 6, trailers: vec![], lie: 0 }, ..RespSpec::plain() };
        for (key, end) in [("close", End::Close), ("keep-dirty", End::Keep)] {
            let mut resp = slow(body.clone(), 8, 9, end);
            if end == End::Keep {
                resp.framing = RespFraming::Close; // close-delimited: the upstream closes
            }
            assert!(resp.closes());
            let total = resp.render().len();
            let mut s = ask(&up, key, "GET", resp).await;
            let got = read_until(&mut s, |b| b.len() >= total).await;
            assert_eq!(got.len(), total);
            let mut tmp = [0u8; 64];
            // The FIN arrived with the last bytes: the read sees EOF at once, no waiting.
            assert!(matches!(s.try_read(&mut tmp), Ok(0)), "{key}: the FIN trails the last bytes");
        }
    }

    #[tokio::test]
    async fn bytes_behind_a_response_that_ends_with_its_head_come_with_the_head_end() {
        // seed 1 case 105380: a HEAD answered with a chunked body in 10-byte pieces every
        // 1 ms; the body bytes came after the head's last piece, and the router that had
        // already written the next request read them as its response (502).
        let up = FuzzUpstream::start().await.unwrap();
        let chunked = RespSpec { body: b"z21d21cxz2d0ad\n".to_vec(), framing: RespFraming::Chunked { chunk: 5, trailers: vec![], lie: 0 }, ..RespSpec::plain() };
        let no_content = RespSpec { status: 204, framing: RespFraming::Length { delta: 0, twice: false, list: true }, body: b"0x".to_vec(), ..RespSpec::plain() };
        let short = RespSpec { framing: RespFraming::Length { delta: -2, twice: false, list: false }, body: b"0x".to_vec(), ..RespSpec::plain() };
        for (key, method, resp) in [("head", "HEAD", chunked), ("204", "GET", no_content), ("short", "GET", short)] {
            // Pieces as long as the head: it ends on a piece boundary, the bytes behind it
            // would come a pause later.
            let head = head_end(&resp.render()) as u8;
            let resp = slow(resp, head, 9, End::Keep);
            let total = resp.render().len();
            let mut s = ask(&up, key, method, resp).await;
            let got = read_until(&mut s, has_head).await;
            assert_eq!(got.len(), total, "{key}: every byte behind the head with its last piece");
        }
    }

    #[tokio::test]
    async fn a_slow_head_is_complete_well_within_request_ms() {
        // seed 1 case 12876: a 98-byte head in 2-byte pieces every 9 ms took ~440-490 ms
        // against request_ms 500: which router had the whole head first decided 504 vs 502.
        let up = FuzzUpstream::start().await.unwrap();
        let fields = vec![(b"Server".to_vec(), b"text/plain".to_vec()), (b"Location".to_vec(), b"5".to_vec()), (b"Transfer-Encoding".to_vec(), b"X-Hop".to_vec())];
        let resp = slow(RespSpec { fields, body: b"f302y3b21ed\nabe".to_vec(), ..RespSpec::plain() }, 2, 9, End::Keep);
        assert_eq!(head_end(&resp.render()), 98);
        let t = Instant::now();
        let mut s = ask(&up, "slowhead", "GET", resp).await;
        read_until(&mut s, has_head).await;
        let took = t.elapsed().as_millis() as u64;
        assert!(took < crate::fuzz::runner::REQUEST_MS * 3 / 4, "the head took {took} ms");
    }

    #[test]
    fn the_slow_plan_bounds_the_heads_and_joins_what_follows_the_framed_end() {
        for (len, head, piece, ms, delay) in [(113, 98, 2u8, 9u8, 0u8), (400, 380, 1, 9, 39), (50, 40, 15, 1, 0), (10, 98, 2, 9, 0)] {
            let plan = pieces(len, head, None, piece, ms, delay);
            assert_eq!(plan.first().unwrap().start, 0);
            assert_eq!(plan.last().unwrap().end, len);
            assert!(plan.windows(2).all(|w| w[0].end == w[1].start));
            let head_pieces = plan.iter().take_while(|r| r.start < head).count() as u64;
            assert!(delay as u64 + (head_pieces - 1) * ms as u64 <= SLOW_HEAD_BUDGET_MS, "{len} {head} {piece} {ms}: {head_pieces} pieces");
            // The body keeps its slow pieces.
            assert!(plan.iter().filter(|r| r.start >= head).all(|r| r.len() <= piece as usize));
        }
        // Unhurried heads keep their pieces (a piece may straddle the head's end).
        assert_eq!(pieces(25, 12, None, 5, 3, 0), vec![0..5, 5..10, 10..15, 15..20, 20..25]);
        // The piece holding the framed end carries every byte behind it.
        assert_eq!(pieces(25, 12, Some(12), 5, 3, 0), vec![0..5, 5..10, 10..25]);
        assert_eq!(pieces(25, 10, Some(10), 5, 3, 0), vec![0..5, 5..25]);
    }

    #[test]
    fn framed_end_is_where_the_router_stops_reading() {
        let chunked = RespSpec { body: b"abc".to_vec(), framing: RespFraming::Chunked { chunk: 2, trailers: vec![], lie: 0 }, ..RespSpec::plain() };
        let (bytes, head) = chunked.render_parts();
        assert_eq!(&bytes[head - 4..head], b"\r\n\r\n");
        assert_eq!(chunked.framed_end(false), None);
        assert_eq!(chunked.framed_end(true), Some(head));
        assert_eq!(RespSpec::plain().framed_end(true), Some(RespSpec::plain().render_parts().1));
        let nothing = RespSpec { status: 204, framing: RespFraming::Nothing, body: vec![], ..RespSpec::plain() };
        assert_eq!(nothing.framed_end(false), None, "no bytes behind the head");
        let short = RespSpec { framing: RespFraming::Length { delta: -1, twice: false, list: false }, ..RespSpec::plain() };
        assert_eq!(short.framed_end(false), Some(short.render().len() - 1));
    }
}
