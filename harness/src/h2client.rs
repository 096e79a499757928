//! The HTTP/2 client of the `h2+tls` transport and of `h2` steps (RFC 9113): requests
//! as streams on one TLS connection (ALPN `h2`), each recorded as an
//! [`Exchange`](crate::observe::client::Exchange) so that the normalisation and the
//! expectations of HTTP/1.1 sends apply unchanged: status, header fields (HTTP/2 has no
//! connection-specific fields, §8.2.2; any the router sends is recorded as it came), body,
//! and how the stream ended: END_STREAM, `RST_STREAM(code)` or a `GOAWAY(code)` seen on
//! the connection ([`ConnEnd::StreamReset`], [`ConnEnd::GoAway`]).
//!
//! The `h2` crate does the protocol; a tap under it ([`Tap`]) reads the frame headers the
//! server sends, so that `GOAWAY` and `RST_STREAM` and their codes are observed exactly,
//! whatever the crate reports.

use crate::observe::body::BodySink;
use crate::observe::client::{ConnEnd, Exchange, Failure, FailureKind, Framing, Head, HttpRequest, ReqBody, Response};
use bytes::Bytes;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One request as an HTTP/2 stream.
#[derive(Debug, Clone, PartialEq)]
pub struct H2Request {
    /// `:method`.
    pub method: String,
    /// `:path`.
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// Other fields, names lower-cased (HTTP/2 requires it, §8.2.1), in order; `Host`
    /// becomes `:authority`.
    pub headers: Vec<(String, String)>,
    /// The body (sent in DATA frames, END_STREAM on the last).
    pub body: Vec<u8>,
}

impl H2Request {
    /// The stream for a request the HTTP/1.1 client would build: `Host` (or `addr`)
    /// becomes `:authority`, a generated body is made whole.
    pub fn from_http(req: &HttpRequest, addr: SocketAddr) -> H2Request {
        let mut authority = addr.to_string();
        let mut headers = Vec::new();
        for (k, v) in &req.headers {
            if k.eq_ignore_ascii_case("host") {
                authority = v.clone();
            } else {
                headers.push((k.to_ascii_lowercase(), v.clone()));
            }
        }
        let body = match &req.body {
            ReqBody::Empty => vec![],
            ReqBody::Bytes(b) => b.clone(),
            ReqBody::Generated { len } => vec![b'a'; *len as usize],
        };
        H2Request { method: req.method.clone(), path: req.target.clone(), authority, headers, body }
    }

    /// The requests in raw HTTP/1.1 bytes (the scenario's `raw`), parsed with httparse;
    /// bodies by `Content-Length` only. `None` when the bytes are not a sequence of
    /// well-formed requests (such a scenario is HTTP/1.1-only).
    pub fn parse_raw(mut bytes: &[u8], addr: SocketAddr) -> Option<Vec<H2Request>> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let mut hs = [httparse::EMPTY_HEADER; 128];
            let mut r = httparse::Request::new(&mut hs);
            let n = match r.parse(bytes).ok()? {
                httparse::Status::Complete(n) => n,
                httparse::Status::Partial => return None,
            };
            let mut req = HttpRequest { method: r.method?.to_string(), target: r.path?.to_string(), headers: vec![], body: ReqBody::Empty };
            let mut len = 0usize;
            for h in r.headers.iter() {
                let v = std::str::from_utf8(h.value).ok()?.to_string();
                if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    return None;
                }
                if h.name.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().ok()?;
                    continue;
                }
                req.headers.push((h.name.to_string(), v));
            }
            if bytes.len() < n + len {
                return None;
            }
            req.body = ReqBody::Bytes(bytes[n..n + len].to_vec());
            out.push(H2Request::from_http(&req, addr));
            bytes = &bytes[n + len..];
        }
        Some(out)
    }
}

/// What the tap saw the server send.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Frames {
    /// `GOAWAY`: (last stream id, error code), the last one received.
    pub goaway: Option<(u32, u32)>,
    /// `RST_STREAM`: (stream id, error code), in order.
    pub resets: Vec<(u32, u32)>,
    buf: Vec<u8>,
}

impl Frames {
    /// Takes in bytes the server sent (frames, RFC 9113 §4.1: 24-bit length, type, flags,
    /// 31-bit stream id, payload).
    pub fn feed(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
        while self.buf.len() >= 9 {
            let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
            if self.buf.len() < 9 + len {
                return;
            }
            let ty = self.buf[3];
            let sid = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]) & 0x7fff_ffff;
            let p = &self.buf[9..9 + len];
            let word = |i: usize| p.get(i..i + 4).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
            match ty {
                0x3 => {
                    if let Some(code) = word(0) {
                        self.resets.push((sid, code));
                    }
                }
                0x7 => {
                    if let (Some(last), Some(code)) = (word(0), word(4)) {
                        self.goaway = Some((last & 0x7fff_ffff, code));
                    }
                }
                _ => {}
            }
            self.buf.drain(..9 + len);
        }
    }
}

/// An I/O stream that shows every byte read to a [`Frames`] tap.
pub struct Tap<T> {
    inner: T,
    frames: Arc<Mutex<Frames>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tap<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let new = buf.filled()[before..].to_vec();
            self.frames.lock().unwrap().feed(&new);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tap<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, b)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One HTTP/2 connection: streams are opened with [`H2Conn::request`].
pub struct H2Conn {
    send: h2::client::SendRequest<Bytes>,
    /// What the server sent, as seen by the tap.
    pub frames: Arc<Mutex<Frames>>,
    /// The negotiated ALPN protocol.
    pub alpn: Option<String>,
    t0: Instant,
}

/// Connection-level failure before any stream: connect, TLS or HTTP/2 handshake.
pub fn conn_failure(detail: String) -> Exchange {
    Exchange { failure: Some(Failure { kind: FailureKind::Connect, detail }), ..Default::default() }
}

impl H2Conn {
    /// Connects, completes TLS with `cfg` (which should offer `h2`) and the HTTP/2
    /// handshake. Errors are the text of what failed.
    pub async fn open(addr: SocketAddr, cfg: Arc<tokio_rustls::rustls::ClientConfig>) -> Result<H2Conn, String> {
        let t0 = Instant::now();
        let tls = crate::tls::connect(addr, cfg).await.map_err(|e| format!("tls: {}", crate::tls::alert_of(&e)))?;
        let alpn = tls.get_ref().1.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
        let frames = Arc::new(Mutex::new(Frames::default()));
        let io = Tap { inner: tls, frames: frames.clone() };
        let (send, conn) = h2::client::handshake(io).await.map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(H2Conn { send, frames, alpn, t0 })
    }

    /// Whether a `GOAWAY` arrived.
    pub fn goaway(&self) -> Option<(u32, u32)> {
        self.frames.lock().unwrap().goaway
    }

    /// Sends `req` as a new stream and reads its response whole (or until `timeout`),
    /// keeping up to `keep` body bytes; never fails.
    pub async fn request(&self, req: H2Request, timeout: Duration, keep: usize) -> Exchange {
        let mut ex = Exchange::default();
        let res = tokio::time::timeout(timeout, self.stream(req, keep, &mut ex)).await;
        if res.is_err() {
            ex.failure = Some(Failure { kind: FailureKind::Timeout, detail: format!("no complete response within {timeout:?}") });
            ex.end = Some(ConnEnd::Open);
        }
        if ex.end == Some(ConnEnd::KeptAlive) {
            if let Some((_, code)) = self.goaway() {
                ex.end = Some(ConnEnd::GoAway(code));
            }
        }
        ex.latency_us = self.t0.elapsed().as_micros() as u64;
        ex
    }

    async fn stream(&self, req: H2Request, keep: usize, ex: &mut Exchange) {
        let mut b = http::Request::builder().method(req.method.as_str()).uri(format!("https://{}{}", req.authority, req.path));
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let hreq = match b.body(()) {
            Ok(r) => r,
            Err(e) => {
                ex.failure = Some(Failure { kind: FailureKind::Write, detail: format!("request not expressible in HTTP/2: {e}") });
                return;
            }
        };
        let send = self.send.clone();
        let fail = |ex: &mut Exchange, e: h2::Error, frames: &Frames| {
            let (end, kind) = end_of(&e, frames);
            ex.end = Some(end);
            ex.failure = Some(Failure { kind, detail: e.to_string() });
        };
        let sent = async {
            let mut s = send.ready().await?;
            let (resp, mut body_tx) = s.send_request(hreq, req.body.is_empty())?;
            if !req.body.is_empty() {
                body_tx.send_data(Bytes::from(req.body.clone()), true)?;
            }
            resp.await
        }
        .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let fr = self.frames.lock().unwrap().clone();
                fail(ex, e, &fr);
                return;
            }
        };
        let (parts, mut body) = resp.into_parts();
        let head = Head {
            version: "HTTP/2".into(),
            status: parts.status.as_u16(),
            reason: String::new(),
            headers: parts.headers.iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect(),
        };
        ex.responses.push(Response { interim: vec![], head, framing: Framing::Http2, body: Default::default(), complete: false, trailers: vec![], chunks: 0, max_gap_ms: 0 });
        let mut sink = BodySink::new(keep);
        let mut chunks = 0u32;
        let mut complete = false;
        loop {
            match body.data().await {
                None => {
                    complete = true;
                    ex.end = Some(ConnEnd::KeptAlive);
                    break;
                }
                Some(Ok(d)) => {
                    let _ = body.flow_control().release_capacity(d.len());
                    sink.push(&d);
                    chunks += 1;
                }
                Some(Err(e)) => {
                    let fr = self.frames.lock().unwrap().clone();
                    fail(ex, e, &fr);
                    break;
                }
            }
        }
        if complete {
            if let Ok(Some(t)) = body.trailers().await {
                ex.responses[0].trailers = t.iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
            }
        }
        let r = &mut ex.responses[0];
        r.body = sink.finish();
        r.complete = complete;
        r.chunks = chunks;
    }
}

/// How a stream ended on error `e`: the reset or GOAWAY code (from the crate, else from
/// the tap), or the connection's end.
fn end_of(e: &h2::Error, frames: &Frames) -> (ConnEnd, FailureKind) {
    if e.is_reset() {
        let code = e.reason().map(u32::from).unwrap_or(0);
        return (ConnEnd::StreamReset(code), FailureKind::Reset);
    }
    if e.is_go_away() || frames.goaway.is_some() {
        let code = e.reason().map(u32::from).or(frames.goaway.map(|g| g.1)).unwrap_or(0);
        return (ConnEnd::GoAway(code), FailureKind::Closed);
    }
    if e.is_io() {
        return (ConnEnd::Reset, FailureKind::Reset);
    }
    (ConnEnd::Fin, FailureKind::Closed)
}

/// The name of an HTTP/2 error code (RFC 9113 §7), e.g. `INTERNAL_ERROR`.
pub fn code_name(code: u32) -> String {
    format!("{:?}", h2::Reason::from(code))
}

/// One request over its own HTTP/2 connection (the `h2+tls` transport of `send` steps).
pub async fn exchange(addr: SocketAddr, cfg: Arc<tokio_rustls::rustls::ClientConfig>, req: H2Request, timeout: Duration, keep: usize) -> Exchange {
    let t0 = Instant::now();
    match tokio::time::timeout(timeout, H2Conn::open(addr, cfg)).await {
        Ok(Ok(c)) => c.request(req, timeout.saturating_sub(t0.elapsed()), keep).await,
        Ok(Err(e)) => conn_failure(e),
        Err(_) => conn_failure("connect timeout".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.push(ty);
        f.push(0);
        f.extend_from_slice(&sid.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn the_tap_reads_goaway_and_rst_stream_across_reads() {
        let mut all = frame(0x4, 0, &[0, 3, 0, 0, 0, 100]); // SETTINGS
        all.extend(frame(0x1, 1, b"hpack"));
        all.extend(frame(0x3, 1, &2u32.to_be_bytes())); // RST_STREAM INTERNAL_ERROR
        let mut ga = 3u32.to_be_bytes().to_vec();
        ga.extend(0u32.to_be_bytes());
        ga.extend(b"bye");
        all.extend(frame(0x7, 0, &ga)); // GOAWAY last 3 NO_ERROR
        let mut f = Frames::default();
        for piece in all.chunks(5) {
            f.feed(piece);
        }
        assert_eq!(f.resets, vec![(1, 2)]);
        assert_eq!(f.goaway, Some((3, 0)));
        assert!(f.buf.is_empty());
        assert_eq!(code_name(2), "INTERNAL_ERROR");
        assert_eq!(code_name(0), "NO_ERROR");
    }

    #[test]
    fn raw_requests_become_streams_or_stay_h1_only() {
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let rs = H2Request::parse_raw(b"POST /a?b HTTP/1.1\r\nHost: x.test\r\nX-Routing-Key: k\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\n\r\n", a).unwrap();
        assert_eq!(rs.len(), 2);
        assert_eq!((rs[0].method.as_str(), rs[0].path.as_str(), rs[0].authority.as_str()), ("POST", "/a?b", "x.test"));
        assert_eq!(rs[0].headers, vec![("x-routing-key".to_string(), "k".to_string())]);
        assert_eq!(rs[0].body, b"hi");
        assert_eq!(rs[1].authority, "127.0.0.1:8080");
        assert!(H2Request::parse_raw(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", a).is_none());
        assert!(H2Request::parse_raw(b"GET /\x01 HTTP/1.1\r\n\r\n", a).is_none());
        assert!(H2Request::parse_raw(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", a).is_none());
    }

    /// An h2 server (the crate's) behind rustls: stream 1 answers 200 "ok", stream 3 is
    /// reset with INTERNAL_ERROR after its head, then GOAWAY(NO_ERROR).
    #[tokio::test]
    async fn streams_record_end_stream_reset_and_goaway() {
        let d = tempfile::tempdir().unwrap();
        let pki = crate::tls::TestPki::generate(d.path()).unwrap();
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(pki.cert_file()).unwrap().map(|c| c.unwrap()).collect();
        let key = PrivateKeyDer::from_pem_file(pki.key_file()).unwrap();
        let mut sc = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        sc.alpn_protocols = vec![b"h2".to_vec()];
        let acc = tokio_rustls::TlsAcceptor::from(Arc::new(sc));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let t = acc.accept(s).await.unwrap();
            let mut c = h2::server::handshake(t).await.unwrap();
            let mut n = 0;
            while let Some(Ok((req, mut respond))) = c.accept().await {
                n += 1;
                let path = req.uri().path().to_string();
                let resp = http::Response::builder().status(200).header("x-path", path).body(()).unwrap();
                let mut tx = respond.send_response(resp, false).unwrap();
                if n == 1 {
                    tx.send_data(Bytes::from_static(b"ok"), true).unwrap();
                } else {
                    tx.send_data(Bytes::from_static(b"partial"), false).unwrap();
                    tx.send_reset(h2::Reason::INTERNAL_ERROR);
                    c.graceful_shutdown();
                }
            }
        });
        let cfg = pki.client_config(crate::tls::ClientCert::None, &[b"h2".to_vec()], None).unwrap();
        let conn = H2Conn::open(addr, cfg).await.unwrap();
        assert_eq!(conn.alpn.as_deref(), Some("h2"));
        let req = |p: &str| H2Request { method: "GET".into(), path: p.into(), authority: "localhost".into(), headers: vec![], body: vec![] };
        let ok = conn.request(req("/a"), Duration::from_secs(5), 1024).await;
        assert_eq!(ok.end, Some(ConnEnd::KeptAlive), "{ok:?}");
        let r = &ok.responses[0];
        assert_eq!((r.head.status, r.body.kept.as_slice(), r.complete), (200, &b"ok"[..], true));
        assert_eq!(r.head.header("x-path"), Some("/a"));
        let cut = conn.request(req("/b"), Duration::from_secs(5), 1024).await;
        assert_eq!(cut.end, Some(ConnEnd::StreamReset(2)), "{cut:?}");
        // The crate drops a head it had not handed out when the reset follows at once.
        assert!(cut.responses.iter().all(|r| !r.complete));
        let deadline = Instant::now() + Duration::from_secs(5);
        while conn.goaway().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(conn.goaway().map(|g| g.1), Some(0));
        assert_eq!(conn.frames.lock().unwrap().resets, vec![(3, 2)]);
    }
}
