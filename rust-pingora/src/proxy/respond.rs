//! Router-made responses (docs/spec.md section 3, "Router-made responses"): the code's
//! status, `X-Router-Error: <code>`, `Content-Type: application/json`, `Content-Length`,
//! the body `{"error":"<code>","message":"<human text>"}`, and `X-Router-Placement` when a
//! placement had been chosen; the unread request body discarded before an answer given
//! without reading it ([`discard_body`]); and the lingering close after an answer that ends
//! the connection ([`linger`]) or a committed response that failed ([`close_after_abort`]).

use crate::errcode::Code;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;
use pingora::Result;
use std::io::Read;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

/// Longest a lingering close waits for the client ([`linger`]): docs/spec.md section 3,
/// *Limits* (the Go router's `DefaultLingerTime`).
pub const LINGER_TIME: Duration = Duration::from_secs(2);
/// Most bytes a lingering close reads and discards ([`linger`]): docs/spec.md section 3,
/// *Limits* (the Go router's `DefaultLingerBytes`).
pub const LINGER_BYTES: usize = 16 << 20;

/// Most request-body bytes [`discard_body`] reads and discards to keep the connection:
/// net/http's `maxPostHandlerReadBytes` (256 KiB, `net/http/server.go`).
pub const DISCARD_BYTES: u64 = 256 << 10;
/// Longest [`discard_body`] waits for the rest of the body.
pub const DISCARD_TIME: Duration = Duration::from_secs(1);

/// Before a router-made answer given without reading the request body (404, 400
/// `missing_routing_key`, 503 …): read and discard the body, as Go's net/http does when a
/// handler returns without reading it, so the connection can carry the next request.
/// Returns whether the body was read whole (or there was none): `true` keeps the
/// connection; on `false` the caller must answer with keep-alive off and close.
///
/// The rule of `net/http/server.go` (`chunkWriter.writeHeader`, at the `maxPostHandlerReadBytes`
/// check; Go 1.26), for a request with a body:
/// - `Expect: 100-continue` on HTTP/1.1 and no `100 Continue` sent (the router never asks
///   for the body here): close without reading (`closeAfterReply`);
/// - a `Content-Length` whose unread rest is at least [`DISCARD_BYTES`]: close without
///   reading (`tooBig`, the response says `Connection: close`);
/// - otherwise read up to [`DISCARD_BYTES`]` + 1` bytes: the body ended within them → keep
///   the connection; more bytes, or a read error (a bad chunk, the client gone) → close.
///
/// A chunked body counts its decoded bytes, as net/http does. The read also stops after
/// [`DISCARD_TIME`] (net/http waits for its server's `ReadTimeout`); the body is then
/// left unread and the caller closes.
pub async fn discard_body(session: &mut Session) -> bool {
    if session.is_body_done() || session.is_body_empty() {
        return true;
    }
    let req = session.req_header();
    let expects_continue = req.version >= http::Version::HTTP_11
        && req.headers.get(http::header::EXPECT).is_some_and(|v| {
            v.as_bytes().split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"100-continue"))
        });
    let too_big = crate::proxy::framing::content_length(&req.headers)
        .ok()
        .flatten()
        .is_some_and(|n| n >= DISCARD_BYTES);
    if expects_continue || too_big {
        return false;
    }
    let read = async {
        let mut total: u64 = 0;
        loop {
            match session.read_request_body().await {
                Ok(None) => return true,
                Ok(Some(b)) => {
                    total += b.len() as u64;
                    if total > DISCARD_BYTES {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
    };
    tokio::time::timeout(DISCARD_TIME, read).await.unwrap_or(false)
}

/// The response header and body for `code`, naming `placement` if given.
pub fn error_response(code: Code, placement: Option<&str>) -> (ResponseHeader, Bytes) {
    let body = serde_json::json!({"error": code.as_str(), "message": code.message()}).to_string();
    let mut resp = ResponseHeader::build(code.status(), Some(5)).expect("status");
    resp.insert_header("Content-Type", "application/json").unwrap();
    resp.insert_header("X-Router-Error", code.as_str()).unwrap();
    resp.insert_header("Content-Length", body.len().to_string()).unwrap();
    if let Some(p) = placement {
        resp.insert_header("X-Router-Placement", p).unwrap();
    }
    (resp, Bytes::from(body))
}

/// Write the router-made response for `code` on `session` (header, then the whole body).
/// An HTTP/1.0 client gets an `HTTP/1.0` status line, as for forwarded responses.
pub async fn respond(session: &mut Session, code: Code, placement: Option<&str>) -> Result<()> {
    let (mut resp, body) = error_response(code, placement);
    if session.req_header().version < http::Version::HTTP_11 {
        resp.set_version(http::Version::HTTP_10);
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

/// Lingering close (RFC 9112 section 9.6) after a router-made answer that ends the
/// connection while request bytes may still be arriving (a refused head, a bad chunk), and
/// after a committed response that failed (a request may be pipelined behind it): stop
/// writing (the client sees the end of the answer), then read and discard what the client
/// still sends until it closes, for at most [`LINGER_TIME`] and [`LINGER_BYTES`]. Closing
/// with unread bytes would make the kernel reset the connection, and the reset can destroy
/// the answer before the client has read it. Works on a duplicate of the socket, so
/// Pingora's own stream is untouched; does nothing for a connection without a socket.
pub async fn linger(session: &Session) {
    let Some(fd) = session.as_downstream().stream().map(|s| s.id()) else { return };
    // SAFETY: `fd` is this session's live client socket; it is only duplicated here.
    let Ok(dup) = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned() else { return };
    let mut sock = std::net::TcpStream::from(dup);
    if sock.shutdown(std::net::Shutdown::Write).is_err() || sock.set_nonblocking(true).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut buf = [0u8; 16 * 1024];
    let mut read = 0;
    while read < LINGER_BYTES && Instant::now() < deadline {
        match sock.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => read += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(_) => return,
        }
    }
}

/// End an HTTP/1 connection whose response failed after it was committed (spec §3 step 8)
/// with FIN, never RST: Pingora's own [`ServerSession`] shutdown first writes out what it
/// still buffers of the response (a body with a `Content-Length` is flushed only when
/// complete, otherwise only when the session drops) and half-closes, for at most
/// [`LINGER_TIME`]; then [`linger`] discards what the client still sends (a request
/// pipelined behind the failed one). Nothing happens on HTTP/2 (the stream is reset instead).
pub async fn close_after_abort(session: &mut Session) {
    if let ServerSession::H1(h1) = session.as_downstream_mut() {
        if tokio::time::timeout(LINGER_TIME, h1.shutdown()).await.is_err() {
            return; // the client reads nothing: closing is all that is left
        }
        linger(session).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_status_header_and_json_body() {
        for code in Code::ALL {
            let (resp, body) = error_response(code, Some("eu-1"));
            assert_eq!(resp.status.as_u16(), code.status());
            assert_eq!(resp.headers["x-router-error"], code.as_str());
            assert_eq!(resp.headers["content-type"], "application/json");
            assert_eq!(resp.headers["x-router-placement"], "eu-1");
            assert_eq!(resp.headers["content-length"], body.len().to_string().as_str());
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v, serde_json::json!({"error": code.as_str(), "message": code.message()}));
        }
        let (resp, _) = error_response(Code::NoConfig, None);
        assert!(resp.headers.get("x-router-placement").is_none());
    }
}
