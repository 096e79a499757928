//! Message framing rules the router applies on top of Pingora's HTTP/1 code (RFC 9112
//! sections 6-7, RFC 9110 sections 6.4.1, 8.6 and 15; docs/spec.md section 3, *Upstream
//! responses*; docs/conformance.md 28-45).

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, StatusCode};

/// Why a message's framing is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// A `Content-Length` that is not one `1*DIGIT` value (lists, signs, differing lines).
    ContentLength,
    /// A `Transfer-Encoding` other than exactly one `chunked` coding.
    TransferEncoding,
}

/// The `Content-Length` of a message: `Ok(None)` when absent, `Ok(Some(n))` when every line
/// holds the same `1*DIGIT` value (identical duplicate lines are one value, RFC 9110 section
/// 8.6), `Err` for anything else (a comma list such as `2, 2`, a sign, `0x`, an empty value,
/// differing lines, a value above `u64`).
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, FramingError> {
    let mut found: Option<u64> = None;
    for v in headers.get_all(CONTENT_LENGTH) {
        let b = v.as_bytes();
        if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
            return Err(FramingError::ContentLength);
        }
        let n: u64 = std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).ok_or(FramingError::ContentLength)?;
        match found {
            Some(m) if m != n => return Err(FramingError::ContentLength),
            _ => found = Some(n),
        }
    }
    Ok(found)
}

/// Whether the message says `Transfer-Encoding: chunked` and nothing else (one field line,
/// one coding, any case). `Ok(false)` when there is no `Transfer-Encoding`.
pub fn is_chunked_only(headers: &HeaderMap) -> Result<bool, FramingError> {
    let mut values = headers.get_all(TRANSFER_ENCODING).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(false),
        (Some(v), None) if v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked") => Ok(true),
        _ => Err(FramingError::TransferEncoding),
    }
}

/// Whether a request's expectations are ones the router meets: the first `Expect` field
/// is absent, empty, or names `100-continue` (any case, as one comma- or space-separated
/// element). Anything else is refused with 400 `bad_request`, as the Go router does (RFC
/// 9110 section 10.1.1 lets a server refuse an expectation it cannot meet; net/http's
/// `expectsContinue` reads only the first field the same way).
pub fn expect_ok(headers: &HeaderMap) -> bool {
    match headers.get(http::header::EXPECT) {
        None => true,
        Some(v) => {
            let v = v.as_bytes();
            v.is_empty() || has_token(v, b"100-continue")
        }
    }
}

/// Whether a chunked request's `Trailer` fields announce none of `Transfer-Encoding`,
/// `Trailer` or `Content-Length` (RFC 9110 section 6.6.2: a sender must not generate
/// trailer fields that frame the message; both routers refuse such a request with 400).
pub fn trailer_ok(headers: &HeaderMap) -> bool {
    headers.get_all(http::header::TRAILER).iter().all(|v| {
        v.as_bytes().split(|b| *b == b',').map(<[u8]>::trim_ascii).all(|el| {
            !(el.eq_ignore_ascii_case(b"transfer-encoding")
                || el.eq_ignore_ascii_case(b"trailer")
                || el.eq_ignore_ascii_case(b"content-length"))
        })
    })
}

/// Whether `token` stands in `v` as an element bounded by the start or end of `v`, a
/// space, a comma or a tab, ignoring ASCII case (net/http's `hasToken`).
fn has_token(v: &[u8], token: &[u8]) -> bool {
    let boundary = |b: u8| b == b' ' || b == b',' || b == b'\t';
    if v.len() < token.len() {
        return false;
    }
    (0..=v.len() - token.len()).any(|sp| {
        let end = sp + token.len();
        (sp == 0 || boundary(v[sp - 1]))
            && (end == v.len() || boundary(v[end]))
            && v[sp..end].eq_ignore_ascii_case(token)
    })
}

/// What the router changes in an upstream response head before it goes to the client
/// ([`response_fix`]); applied with Pingora's header API so its case map stays in step.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResponseFix {
    /// Fields to remove.
    pub remove: Vec<HeaderName>,
    /// Replace every `Content-Length` line by this one value (identical duplicates).
    pub content_length: Option<u64>,
}

/// Check an upstream response head and say how to clean it:
/// - 1xx (except 101) and 204: `Content-Length` and `Transfer-Encoding` go (RFC 9110
///   section 8.6: a server must not send them), whatever their values; 304: also
///   `Content-Type` (net/http's rule, so both routers send the same 304);
/// - a `Transfer-Encoding` in an HTTP/1.0 response (`version`): `Err`, faulty framing (RFC
///   9112 section 6.1; net/http would ignore the field and read the body to the close,
///   Pingora would decode the chunks);
/// - a `Transfer-Encoding` other than `chunked`, or (without `Transfer-Encoding`) a
///   `Content-Length` that [`content_length`] refuses: `Err`, the router answers 502
///   `upstream_protocol_error` (RFC 9112 section 6.3);
/// - with `Transfer-Encoding`, any `Content-Length` goes (RFC 9112 section 6.3, item 3);
///   in a response to `HEAD` (`request_was_head`) the `Transfer-Encoding` goes too: it only
///   describes the body a GET would get (RFC 9112 section 6.1: a server MAY send it), and
///   net/http never writes it on a HEAD response, so both routers send the same head;
/// - identical duplicate `Content-Length` lines become one;
/// - a `101` whose framing fields pass the checks above loses them: a server must not send
///   `Content-Length` or `Transfer-Encoding` in a 1xx (RFC 9110 section 8.6, RFC 9112
///   section 6.1), the connection is a tunnel after its head, and net/http's transport and
///   `ReverseProxy` drop them (parity fuzz, upgrade mode).
pub fn response_fix(status: StatusCode, version: http::Version, headers: &HeaderMap, request_was_head: bool) -> Result<ResponseFix, FramingError> {
    let mut fix = framing_fix(status, version, headers, request_was_head)?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        fix.content_length = None;
        for name in [CONTENT_LENGTH, TRANSFER_ENCODING] {
            if headers.contains_key(&name) && !fix.remove.contains(&name) {
                fix.remove.push(name);
            }
        }
    }
    Ok(fix)
}

/// [`response_fix`] without its `101` rule.
fn framing_fix(status: StatusCode, version: http::Version, headers: &HeaderMap, request_was_head: bool) -> Result<ResponseFix, FramingError> {
    let mut fix = ResponseFix::default();
    let no_body = (status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS)
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if no_body {
        for name in [CONTENT_LENGTH, TRANSFER_ENCODING] {
            if headers.contains_key(&name) {
                fix.remove.push(name);
            }
        }
        if status == StatusCode::NOT_MODIFIED && headers.contains_key(CONTENT_TYPE) {
            fix.remove.push(CONTENT_TYPE);
        }
        return Ok(fix);
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        if version == http::Version::HTTP_10 {
            return Err(FramingError::TransferEncoding);
        }
        is_chunked_only(headers)?;
        if headers.contains_key(CONTENT_LENGTH) {
            fix.remove.push(CONTENT_LENGTH);
        }
        if request_was_head {
            fix.remove.push(TRANSFER_ENCODING);
        }
        return Ok(fix);
    }
    fix.content_length = duplicate_content_length(headers)?;
    Ok(fix)
}

/// `Some(n)` when the message has several `Content-Length` lines, all `n` (to be made one
/// line); `None` when it has at most one. `Err` for anything [`content_length`] refuses.
pub fn duplicate_content_length(headers: &HeaderMap) -> Result<Option<u64>, FramingError> {
    let n = content_length(headers)?;
    Ok(n.filter(|_| headers.get_all(CONTENT_LENGTH).iter().nth(1).is_some()))
}

/// What the router does to a valid request `Content-Length` before forwarding it
/// ([`request_length_fix`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthFix {
    /// Forward it as received (absent, or one line in canonical decimal).
    Keep,
    /// Forward it as the one line `n` in canonical decimal.
    Set(u64),
    /// Remove it (a `0` on a method that expects no content).
    Remove,
}

/// How a request's `Content-Length` goes upstream, by the rule Go's net/http applies when
/// it reserialises the length it parsed (`transferWriter.shouldSendContentLength`), so the
/// upstream sees the same bytes from both routers:
/// - a value above 0 goes up as one line in canonical decimal: several identical lines as
///   one, `023` as `23` (RFC 9110 section 8.6: `1*DIGIT`, so both mean 23);
/// - `0` goes up (as `0`) only on POST, PUT and PATCH, and is removed on every other method
///   (RFC 9110 section 8.6: a user agent should not send `Content-Length` when there is no
///   content and the method does not anticipate any). Both forms frame an empty body.
///
/// `Keep` when absent, already in that form, or invalid (refused before forwarding).
pub fn request_length_fix(method: &http::Method, headers: &HeaderMap) -> LengthFix {
    let Ok(Some(n)) = content_length(headers) else { return LengthFix::Keep };
    if n == 0 && !matches!(*method, http::Method::POST | http::Method::PUT | http::Method::PATCH) {
        return LengthFix::Remove;
    }
    let mut lines = headers.get_all(CONTENT_LENGTH).iter();
    let canonical = match (lines.next(), lines.next()) {
        (Some(v), None) => v.as_bytes().len() == 1 || v.as_bytes()[0] != b'0',
        _ => false,
    };
    if canonical {
        LengthFix::Keep
    } else {
        LengthFix::Set(n)
    }
}

/// Whether a `101 Switching Protocols` answers the request it came for, by Go's
/// `httputil.ReverseProxy` rule (`handleUpgradeResponse`), which both routers apply: the
/// request asked for an upgrade (RFC 9110 section 7.8: `Upgrade` with the `upgrade`
/// connection option, on HTTP/1.1; the router has already removed any other `Upgrade`),
/// and the response names the same protocol (its first `Upgrade` value, ASCII case
/// ignored) with the `upgrade` connection option (RFC 9110 section 15.2.2: the server
/// names the protocol it switches to, and switches only to one the client offered).
/// Anything else, such as a 101 to a request that asked for no upgrade, is answered 502
/// `upstream_protocol_error`.
pub fn switch_ok(request: &HeaderMap, response: &HeaderMap) -> bool {
    fn offered(h: &HeaderMap) -> Option<&[u8]> {
        let conn = super::headers::connection_has(h, "upgrade");
        conn.then(|| h.get(http::header::UPGRADE).map(|v| v.as_bytes())).flatten().filter(|v| !v.is_empty())
    }
    match (offered(request), offered(response)) {
        (Some(asked), Some(got)) => asked.eq_ignore_ascii_case(got) && got.iter().all(|b| (0x20..0x7f).contains(b)),
        _ => false,
    }
}

/// The reason phrase the router writes for `status`: the standard one, or `status code N`
/// when the status has none (Go's net/http text), never the upstream's (RFC 9112 section 4:
/// the reason phrase is advisory).
pub fn reason_phrase(status: StatusCode) -> Option<String> {
    match status.canonical_reason() {
        Some(_) => None,
        None => Some(format!("status code {}", status.as_u16())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use http::HeaderValue;

    const V10: http::Version = http::Version::HTTP_10;
    const V11: http::Version = http::Version::HTTP_11;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn content_length_values() {
        assert_eq!(content_length(&h(&[])), Ok(None));
        assert_eq!(content_length(&h(&[("content-length", "2"), ("content-length", "2")])), Ok(Some(2)));
        for bad in [&[("content-length", "2, 2")][..], &[("content-length", "+2")], &[("content-length", "0x2")],
            &[("content-length", "")], &[("content-length", "-1")], &[("content-length", "2"), ("content-length", "3")],
            &[("content-length", "99999999999999999999999")]] {
            assert_eq!(content_length(&h(bad)), Err(FramingError::ContentLength), "{bad:?}");
        }
    }

    #[test]
    fn response_fixes() {
        let f = response_fix(StatusCode::OK, V11, &h(&[("content-length", "2"), ("content-length", "2")]), false).unwrap();
        assert_eq!(f, ResponseFix { remove: vec![], content_length: Some(2) });
        assert_eq!(response_fix(StatusCode::OK, V11, &h(&[("content-length", "2")]), false).unwrap(), ResponseFix::default());
        assert!(response_fix(StatusCode::OK, V11, &h(&[("content-length", "2, 2")]), false).is_err());
        assert_eq!(
            response_fix(StatusCode::OK, V11, &h(&[("transfer-encoding", "gzip, chunked")]), false),
            Err(FramingError::TransferEncoding)
        );
        assert!(response_fix(StatusCode::OK, V11, &h(&[("transfer-encoding", "identity")]), false).is_err());
        assert!(response_fix(StatusCode::OK, V11, &h(&[("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")]), false).is_err());
        let f = response_fix(StatusCode::OK, V11, &h(&[("transfer-encoding", "Chunked"), ("content-length", "9")]), false).unwrap();
        assert_eq!(f.remove, vec![CONTENT_LENGTH]);
        let f = response_fix(StatusCode::NO_CONTENT, V11, &h(&[("content-length", "abc"), ("content-type", "text/plain")]), false).unwrap();
        assert_eq!(f.remove, vec![CONTENT_LENGTH]);
        let f = response_fix(StatusCode::NOT_MODIFIED, V11, &h(&[("content-length", "5"), ("content-type", "t"), ("etag", "x")]), false).unwrap();
        assert_eq!(f.remove, vec![CONTENT_LENGTH, CONTENT_TYPE]);
        let f = response_fix(StatusCode::from_u16(102).unwrap(), V11, &h(&[("content-length", "5"), ("transfer-encoding", "chunked")]), false).unwrap();
        assert_eq!(f.remove, vec![CONTENT_LENGTH, TRANSFER_ENCODING]);
        assert_eq!(response_fix(StatusCode::SWITCHING_PROTOCOLS, V11, &h(&[]), false).unwrap(), ResponseFix::default());
    }

    /// A `101` goes out without `Content-Length` or `Transfer-Encoding` when they are valid
    /// (RFC 9110 section 8.6, RFC 9112 section 6.1: none in a 1xx; Go's transport drops
    /// them), and is refused with them when they are not, as the Go router refuses it.
    #[test]
    fn switching_protocols_loses_framing_fields() {
        let s = StatusCode::SWITCHING_PROTOCOLS;
        assert_eq!(response_fix(s, V11, &h(&[("transfer-encoding", "chunked")]), false).unwrap().remove, vec![TRANSFER_ENCODING]);
        assert_eq!(response_fix(s, V11, &h(&[("content-length", "5")]), false).unwrap().remove, vec![CONTENT_LENGTH]);
        let f = response_fix(s, V11, &h(&[("content-length", "5"), ("content-length", "5")]), false).unwrap();
        assert_eq!(f, ResponseFix { remove: vec![CONTENT_LENGTH], content_length: None });
        let f = response_fix(s, V11, &h(&[("transfer-encoding", "chunked"), ("content-length", "5")]), false).unwrap();
        assert_eq!(f.remove, vec![CONTENT_LENGTH, TRANSFER_ENCODING]);
        for bad in [("transfer-encoding", "gzip"), ("content-length", "x"), ("content-length", "5, 5")] {
            assert!(response_fix(s, V11, &h(&[bad]), false).is_err(), "{bad:?}");
        }
    }

    /// An HTTP/1.0 response with Transfer-Encoding has faulty framing (RFC 9112 section 6.1):
    /// refused, with or without Content-Length, to HEAD too (parity fuzz seed 7,
    /// response.client-body: Go forwarded the chunks raw, Pingora decoded them); one
    /// without content ends with its head as over HTTP/1.1.
    #[test]
    fn http10_transfer_encoding_is_faulty() {
        for head in [false, true] {
            for pairs in [&[("transfer-encoding", "chunked")][..], &[("transfer-encoding", "chunked"), ("content-length", "5")], &[("transfer-encoding", "gzip")]] {
                assert_eq!(response_fix(StatusCode::OK, V10, &h(pairs), head), Err(FramingError::TransferEncoding), "{pairs:?}");
            }
        }
        assert_eq!(response_fix(StatusCode::OK, V10, &h(&[("content-length", "5")]), false).unwrap(), ResponseFix::default());
        let f = response_fix(StatusCode::NOT_MODIFIED, V10, &h(&[("transfer-encoding", "chunked")]), false).unwrap();
        assert_eq!(f.remove, vec![TRANSFER_ENCODING]);
    }

    #[test]
    fn expectations() {
        assert!(expect_ok(&h(&[])));
        assert!(expect_ok(&h(&[("expect", "100-continue")])));
        assert!(expect_ok(&h(&[("expect", "100-Continue")])));
        assert!(expect_ok(&h(&[("expect", "foo, 100-continue")])));
        assert!(!expect_ok(&h(&[("expect", "foo")])));
        assert!(!expect_ok(&h(&[("expect", "100-continuex")])));
        assert!(!expect_ok(&h(&[("expect", "x100-continue")])));
        assert!(!expect_ok(&h(&[("expect", "foo"), ("expect", "100-continue")])));
    }

    #[test]
    fn trailers() {
        assert!(trailer_ok(&h(&[])));
        assert!(trailer_ok(&h(&[("trailer", "x-checksum, expires")])));
        assert!(!trailer_ok(&h(&[("trailer", "x-a, Content-Length")])));
        assert!(!trailer_ok(&h(&[("trailer", "x-a"), ("trailer", "transfer-encoding")])));
        assert!(!trailer_ok(&h(&[("trailer", "Trailer")])));
    }

    #[test]
    fn request_lengths() {
        use http::Method;
        let fix = |m: &Method, pairs: &[(&str, &str)]| request_length_fix(m, &h(pairs));
        assert_eq!(fix(&Method::POST, &[]), LengthFix::Keep);
        assert_eq!(fix(&Method::POST, &[("content-length", "23")]), LengthFix::Keep);
        assert_eq!(fix(&Method::POST, &[("content-length", "023")]), LengthFix::Set(23));
        assert_eq!(fix(&Method::GET, &[("content-length", "023")]), LengthFix::Set(23));
        assert_eq!(fix(&Method::POST, &[("content-length", "2"), ("content-length", "2")]), LengthFix::Set(2));
        assert_eq!(fix(&Method::POST, &[("content-length", "2"), ("content-length", "02")]), LengthFix::Set(2));
        assert_eq!(fix(&Method::POST, &[("content-length", "0")]), LengthFix::Keep);
        assert_eq!(fix(&Method::PATCH, &[("content-length", "00")]), LengthFix::Set(0));
        for m in [Method::GET, Method::HEAD, Method::DELETE, Method::OPTIONS] {
            assert_eq!(fix(&m, &[("content-length", "0")]), LengthFix::Remove, "{m}");
            assert_eq!(fix(&m, &[("content-length", "00")]), LengthFix::Remove, "{m}");
        }
        assert_eq!(fix(&Method::POST, &[("content-length", "2, 2")]), LengthFix::Keep);
    }

    #[test]
    fn switching_protocols() {
        let ws = h(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(switch_ok(&ws, &h(&[("connection", "upgrade"), ("upgrade", "WebSocket")])));
        assert!(switch_ok(&ws, &h(&[("connection", "keep-alive, Upgrade"), ("upgrade", "websocket")])));
        // no upgrade asked for (the router removed a lone `Upgrade: foo`)
        assert!(!switch_ok(&h(&[]), &h(&[("connection", "upgrade"), ("upgrade", "foo")])));
        assert!(!switch_ok(&h(&[]), &h(&[])));
        // another protocol, or no protocol named
        assert!(!switch_ok(&ws, &h(&[("connection", "upgrade"), ("upgrade", "h2c")])));
        assert!(!switch_ok(&ws, &h(&[("upgrade", "websocket")])));
        assert!(!switch_ok(&ws, &h(&[("connection", "upgrade")])));
    }

    #[test]
    fn reasons() {
        assert_eq!(reason_phrase(StatusCode::OK), None);
        assert_eq!(reason_phrase(StatusCode::from_u16(999).unwrap()).as_deref(), Some("status code 999"));
    }
}
