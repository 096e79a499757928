//! The response-stream generator: proptest strategies for what the fuzz upstream answers
//! (issue 11, generator 2): status lines, field oddities, framing and lengths (including
//! lengths that lie), 1xx before the final response, trailers, an early close or reset at
//! any byte, slow bytes, no answer at all.
//!
//! As in [`crate::fuzz::reqgen`], plain variants come first so shrinking returns to them.
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde::Serialize;

/// How a response body is framed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum RespFraming {
    /// `Content-Length`, declared as the body length plus `delta`.
    Length {
        /// Declared minus actual.
        delta: i8,
        /// Written twice (same value).
        twice: bool,
        /// Written as `n, n`.
        list: bool,
    },
    /// `Transfer-Encoding: chunked`, the body in chunks of `chunk` bytes.
    Chunked {
        /// Chunk size (at least 1).
        chunk: u8,
        /// Trailer fields.
        trailers: Vec<(Vec<u8>, Vec<u8>)>,
        /// The chunk-size line of the first chunk lies by this much.
        lie: i8,
    },
    /// No framing field: the body ends when the connection closes.
    Close,
    /// No framing field and no body (a 204/304, or a lie for a 200).
    Nothing,
    /// Content-Length and chunked together.
    Both,
}

/// How the upstream ends the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum End {
    /// Keep the connection for the next request (closed anyway when the response is not
    /// cleanly framed).
    Keep,
    /// Close after the response.
    Close,
    /// Write only the first `permille`/1000 of the response, then close (FIN).
    CloseAt(u16),
    /// Write only the first `permille`/1000 of the response, then reset (RST).
    ResetAt(u16),
    /// Never answer (the router's `request_ms` fires).
    Hang,
}

/// How the response bytes are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Delivery {
    /// Wait before the first byte, ms.
    pub delay_ms: u8,
    /// Write in pieces of this many bytes with `slow_ms` between them.
    pub slow: Option<(u8, u8)>,
    /// The end.
    pub end: End,
}

/// One generated response (with its interim responses).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RespSpec {
    /// Interim responses before the final one: (status, fields).
    pub interim: Vec<(u16, Vec<(Vec<u8>, Vec<u8>)>)>,
    /// The status line's version bytes.
    pub version: Vec<u8>,
    /// Status code (written as three digits, or as it is when outside 100..=999).
    pub status: u16,
    /// Reason phrase bytes (written after one space; none at all when `None`).
    pub reason: Option<Vec<u8>>,
    /// Fields, in order.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// Framing.
    pub framing: RespFraming,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Delivery.
    pub delivery: Delivery,
}

impl RespSpec {
    /// A plain `200 OK` with `Content-Length: 2` and body `ok`.
    pub fn plain() -> RespSpec {
        RespSpec {
            interim: vec![],
            version: b"HTTP/1.1".to_vec(),
            status: 200,
            reason: Some(b"OK".to_vec()),
            fields: vec![],
            framing: RespFraming::Length { delta: 0, twice: false, list: false },
            body: b"ok".to_vec(),
            delivery: Delivery { delay_ms: 0, slow: None, end: End::Keep },
        }
    }

    /// The response's bytes.
    pub fn render(&self) -> Vec<u8> {
        self.render_parts().0
    }

    /// The response's bytes and the length of its heads (the interim heads and the final
    /// head up to and including its blank line): where a router reading it starts the body.
    pub fn render_parts(&self) -> (Vec<u8>, usize) {
        let mut o = Vec::with_capacity(128 + self.body.len());
        for (st, fs) in &self.interim {
            o.extend_from_slice(format!("HTTP/1.1 {st} Info\r\n").as_bytes());
            for (n, v) in fs {
                field(&mut o, n, v);
            }
            o.extend_from_slice(b"\r\n");
        }
        o.extend_from_slice(&self.version);
        o.extend_from_slice(format!(" {:03}", self.status).as_bytes());
        if let Some(r) = &self.reason {
            o.push(b' ');
            o.extend_from_slice(r);
        }
        o.extend_from_slice(b"\r\n");
        for (n, v) in &self.fields {
            field(&mut o, n, v);
        }
        let n = self.body.len() as i64;
        let mut body = Vec::new();
        match &self.framing {
            RespFraming::Length { delta, twice, list } => {
                let d = (n + *delta as i64).max(0);
                if *list {
                    field(&mut o, b"Content-Length", format!("{d}, {d}").as_bytes());
                } else {
                    field(&mut o, b"Content-Length", d.to_string().as_bytes());
                }
                if *twice {
                    field(&mut o, b"Content-Length", d.to_string().as_bytes());
                }
                body.extend_from_slice(&self.body);
            }
            RespFraming::Chunked { chunk, trailers, lie } => {
                field(&mut o, b"Transfer-Encoding", b"chunked");
                let step = (*chunk).max(1) as usize;
                for (i, c) in self.body.chunks(step).enumerate() {
                    let sz = if i == 0 { (c.len() as i64 + *lie as i64).max(0) } else { c.len() as i64 };
                    body.extend_from_slice(format!("{sz:x}\r\n").as_bytes());
                    body.extend_from_slice(c);
                    body.extend_from_slice(b"\r\n");
                }
                body.extend_from_slice(b"0\r\n");
                for (n, v) in trailers {
                    field(&mut body, n, v);
                }
                body.extend_from_slice(b"\r\n");
            }
            RespFraming::Close => body.extend_from_slice(&self.body),
            RespFraming::Nothing => {}
            RespFraming::Both => {
                if !self.body.is_empty() {
                    body.extend_from_slice(format!("{:x}\r\n", self.body.len()).as_bytes());
                    body.extend_from_slice(&self.body);
                    body.extend_from_slice(b"\r\n");
                }
                body.extend_from_slice(b"0\r\n\r\n");
                field(&mut o, b"Content-Length", body.len().to_string().as_bytes());
                field(&mut o, b"Transfer-Encoding", b"chunked");
            }
        }
        o.extend_from_slice(b"\r\n");
        let head_len = o.len();
        o.extend_from_slice(&body);
        (o, head_len)
    }

    /// Where a router that frames this response ends it, when bytes the response renders
    /// follow that end (stray bytes the next request on the connection would meet): the end
    /// of the heads for a response that ends with its head (to a `HEAD` request,
    /// `head_request`: RFC 9110 §9.3.2; a 1xx other than 101, 204, 304: RFC 9112 §6.3 items
    /// 1-2), the end of a `Content-Length` body shorter than the bytes (RFC 9112 §6.3 item
    /// 6; unless an odd field adds another framing field). None when the response's framing
    /// runs to its last byte. Used by the fuzz upstream to write those bytes with the piece
    /// that ends the response (`fuzz::upstream::pieces`).
    pub fn framed_end(&self, head_request: bool) -> Option<usize> {
        let (bytes, head_len) = self.render_parts();
        let ends_with_head = head_request || (100..200).contains(&self.status) && self.status != 101 || self.status == 204 || self.status == 304;
        let framing_field = self.fields.iter().any(|(n, _)| n.eq_ignore_ascii_case(b"Transfer-Encoding") || n.eq_ignore_ascii_case(b"Content-Length"));
        let end = if ends_with_head {
            head_len
        } else {
            match &self.framing {
                RespFraming::Length { delta, .. } if *delta < 0 && !framing_field => head_len + (self.body.len() as i64 + *delta as i64).max(0) as usize,
                _ => return None,
            }
        };
        (end < bytes.len()).then_some(end)
    }

    /// Whether the upstream must close after this response: asked to, or the response is
    /// not cleanly delimited (a lying length, close-delimited, both framings), so the next
    /// request on the connection would meet leftover bytes. A response without framing
    /// fields and with a status that has content (not 1xx, 204, 304) is close-delimited
    /// even when its body is empty (RFC 9112 §6.3 item 8): kept open, its body never ends
    /// and the `hang` invariant blamed the router for the upstream's stall (seed 1 case
    /// 784, both routers alike). Likewise a framing field among the odd fields
    /// (`Transfer-Encoding: chunked` beside the generated `Content-Length: 0`): the head
    /// then says a framing the body does not follow (chunked overrides the length, RFC 9112
    /// §6.3 item 3, and no chunk ever comes), and kept open the response never ends: both
    /// routers rightly wait for the body, which `request_ms` does not limit (spec §3 step 7),
    /// and `hang` blamed them (seed 1 cases 38355, 46475: `response.hang.*`,
    /// `pipeline.hang.*`).
    pub fn closes(&self) -> bool {
        let no_content = (100..200).contains(&self.status) || self.status == 204 || self.status == 304;
        let framing_field = self.fields.iter().any(|(n, _)| n.eq_ignore_ascii_case(b"Transfer-Encoding") || n.eq_ignore_ascii_case(b"Content-Length"));
        let dirty = framing_field || match &self.framing {
            RespFraming::Length { delta, .. } => *delta != 0,
            RespFraming::Chunked { lie, .. } => *lie != 0,
            RespFraming::Close | RespFraming::Both => true,
            RespFraming::Nothing => !self.body.is_empty() || !no_content,
        };
        dirty || !matches!(self.delivery.end, End::Keep) || self.status == 101 || self.version != b"HTTP/1.1"
    }

    /// Whether the response switches protocols (the upstream then echoes the tunnel).
    pub fn upgrades(&self) -> bool {
        self.status == 101
    }
}

fn field(o: &mut Vec<u8>, n: &[u8], v: &[u8]) {
    o.extend_from_slice(n);
    o.extend_from_slice(b": ");
    o.extend_from_slice(v);
    o.extend_from_slice(b"\r\n");
}

fn bytes_of(s: &[&'static str]) -> impl Strategy<Value = Vec<u8>> {
    select(s.to_vec()).prop_map(|s| s.as_bytes().to_vec())
}

fn fields(odd: bool) -> BoxedStrategy<Vec<(Vec<u8>, Vec<u8>)>> {
    let plain = (bytes_of(&["Content-Type", "X-U", "Cache-Control", "Set-Cookie", "ETag", "Server"]), bytes_of(&["text/plain", "a", "no-store", "id=1", "\"e\"", "up"]));
    if !odd {
        return vec(plain, 0..3).boxed();
    }
    let hop = (
        bytes_of(&["Connection", "Keep-Alive", "Proxy-Connection", "Upgrade", "Trailer", "TE", "X-Hop", "Transfer-Encoding", "Content-Length", "X-Router-Error", "Date", "Location", "Set-Cookie", "x-u", "X-U "]),
        bytes_of(&["close", "keep-alive", "X-Hop", "close, X-Hop", "Upgrade", "timeout=5", "1", "chunked", "gzip", "websocket", "", " padded ", "http://127.0.0.1:1/x", "a\u{e9}b", "bad_request", "5"]),
    );
    vec(prop_oneof![2 => plain, 3 => hop], 0..5).boxed()
}

/// One response. `upgrade`: a 101 is likely (the request asked to upgrade).
pub fn response(odd: bool, upgrade: bool) -> BoxedStrategy<RespSpec> {
    let status = if upgrade {
        prop_oneof![3 => Just(101u16), 2 => Just(200u16), 1 => select(vec![400u16, 426, 204])].boxed()
    } else if odd {
        prop_oneof![
            5 => Just(200u16),
            3 => select(vec![201u16, 204, 206, 301, 304, 400, 404, 500, 502, 503]),
            1 => select(vec![100u16, 101, 103, 199, 600, 999, 99, 1000]),
        ]
        .boxed()
    } else {
        prop_oneof![4 => Just(200u16), 1 => select(vec![201u16, 204, 304, 404, 500, 503])].boxed()
    };
    let version = if odd { prop_oneof![8 => Just(b"HTTP/1.1".to_vec()), 1 => bytes_of(&["HTTP/1.0", "HTTP/2.0", "http/1.1", "HTTP/1.2", "HTTP/1", "ICY"])].boxed() } else { Just(b"HTTP/1.1".to_vec()).boxed() };
    let reason = if odd { prop_oneof![6 => Just(Some(b"OK".to_vec())), 1 => Just(None), 1 => bytes_of(&["", "Fine Thanks", "\u{e9}t\u{e9}", "OK "]).prop_map(Some)].boxed() } else { Just(Some(b"OK".to_vec())).boxed() };
    let interim = if odd {
        prop_oneof![6 => Just(vec![]), 1 => vec((select(vec![100u16, 102, 103]), vec((bytes_of(&["Link", "X-I"]), bytes_of(&["</s>; rel=preload", "1"])), 0..2)), 1..3)].boxed()
    } else {
        Just(vec![]).boxed()
    };
    let framing = if odd {
        prop_oneof![
            5 => Just(RespFraming::Length { delta: 0, twice: false, list: false }),
            3 => (1u8..8, vec((bytes_of(&["X-T", "Content-Length", "Set-Cookie"]), bytes_of(&["1", "v"])), 0..2), prop_oneof![4 => Just(0i8), 1 => -2i8..=2]).prop_map(|(chunk, trailers, lie)| RespFraming::Chunked { chunk, trailers, lie }),
            2 => (-3i8..=3, proptest::bool::weighted(0.3), proptest::bool::weighted(0.2)).prop_map(|(delta, twice, list)| RespFraming::Length { delta, twice, list }),
            1 => Just(RespFraming::Close),
            1 => Just(RespFraming::Nothing),
            1 => Just(RespFraming::Both),
        ]
        .boxed()
    } else {
        prop_oneof![4 => Just(RespFraming::Length { delta: 0, twice: false, list: false }), 1 => (1u8..8).prop_map(|chunk| RespFraming::Chunked { chunk, trailers: vec![], lie: 0 })].boxed()
    };
    let body = vec(select(b"abcdefxyz0123\n".to_vec()), 0..30);
    let end = if odd {
        prop_oneof![
            8 => Just(End::Keep),
            2 => Just(End::Close),
            1 => (0u16..1000).prop_map(End::CloseAt),
            1 => (0u16..1000).prop_map(End::ResetAt),
            1 => Just(End::Hang),
        ]
        .boxed()
    } else {
        Just(End::Keep).boxed()
    };
    let delivery = (prop_oneof![8 => Just(0u8), 1 => 1u8..40], proptest::option::weighted(0.05, (1u8..16, 1u8..10)), end).prop_map(|(delay_ms, slow, end)| Delivery { delay_ms, slow, end });
    (interim, version, status, reason, fields(odd), framing, body, delivery)
        .prop_map(|(interim, version, status, reason, fields, mut framing, mut body, delivery)| {
            // Bodiless statuses get no framing by default (a framing field on them is an
            // oddity the field generator adds).
            if matches!(status, 204 | 304 | 101 | 100..=199) && matches!(framing, RespFraming::Length { delta: 0, twice: false, list: false }) {
                framing = RespFraming::Nothing;
                body.clear();
            }
            RespSpec { interim, version, status, reason, fields, framing, body, delivery }
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unframed_response_with_content_ends_with_a_close() {
        let mut r = RespSpec { framing: RespFraming::Nothing, body: vec![], ..RespSpec::plain() };
        assert!(r.closes(), "a 200 without framing is close-delimited, even empty");
        r.status = 204;
        assert!(!r.closes());
        r.status = 304;
        assert!(!r.closes());
        assert!(!RespSpec::plain().closes());
    }

    #[test]
    fn a_framing_field_among_the_odd_fields_ends_with_a_close() {
        // seed 1 case 38355: `Transfer-Encoding: chunked` beside `Content-Length: 0`, no
        // chunk: kept open, both routers waited for the body and `hang` blamed them.
        let te = (b"Transfer-Encoding".to_vec(), b"chunked".to_vec());
        let r = RespSpec { body: vec![], fields: vec![te], ..RespSpec::plain() };
        assert!(String::from_utf8(r.render()).unwrap().contains("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n"));
        assert!(r.closes());
        let cl = (b"Content-Length".to_vec(), b"1".to_vec());
        assert!(RespSpec { fields: vec![cl], ..RespSpec::plain() }.closes());
        let other = (b"X-U".to_vec(), b"chunked".to_vec());
        assert!(!RespSpec { fields: vec![other], ..RespSpec::plain() }.closes());
    }

    #[test]
    fn renders_plain_and_chunked() {
        assert_eq!(RespSpec::plain().render(), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec());
        let mut r = RespSpec::plain();
        r.body = b"abcde".to_vec();
        r.framing = RespFraming::Chunked { chunk: 2, trailers: vec![(b"X-T".to_vec(), b"1".to_vec())], lie: 0 };
        assert_eq!(String::from_utf8(r.render()).unwrap(), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n2\r\ncd\r\n1\r\ne\r\n0\r\nX-T: 1\r\n\r\n");
        assert!(!r.closes());
        r.framing = RespFraming::Length { delta: 1, twice: false, list: false };
        assert!(r.closes());
    }
}
