//! What each mock upstream received, one record per request, pushed by the upstream's
//! server into a [`Recorder`] that the scenario run owns (one per upstream, surviving
//! down/up cycles). Health-check requests (`GET /healthz*`) are not recorded: their number
//! and timing follow the probe clock, not the scenario.

use crate::observe::body::BodyRecord;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The header the harness's client adds to every request it builds, so that each upstream
/// record can be attached to the client request that caused it: `<step>.<n>` (0-based step
/// index, 0-based request number within the step). It is removed from the records before
/// comparison (rule [`crate::observe::normalise::Rule::RequestTag`]).
pub const REQUEST_TAG: &str = "x-parity-request";

/// How a request body was delimited (RFC 9112 §6.1–6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReqFraming {
    /// No body (no Content-Length, no Transfer-Encoding).
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

/// One request as a mock upstream received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamRequest {
    /// The upstream's name in the scenario.
    pub upstream: String,
    /// Connection number on this upstream, 1-based in accept order.
    pub conn: u64,
    /// Index of the request on its connection, 0-based.
    pub index: u32,
    /// Method token.
    pub method: String,
    /// Request target as received (lossy UTF-8).
    pub target: String,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: String,
    /// Header fields in arrival order, names as received.
    pub headers: Vec<(String, String)>,
    /// How the body was delimited.
    pub framing: ReqFraming,
    /// The body (whole up to the cap, hashed in full).
    pub body: BodyRecord,
    /// The body ended as its framing said (false: the connection ended first).
    pub body_complete: bool,
}

impl UpstreamRequest {
    /// The value of [`REQUEST_TAG`], if the request carries it.
    pub fn tag(&self) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(REQUEST_TAG)).map(|(_, v)| v.as_str())
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The records of one upstream, shared between its server tasks and the scenario run.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    inner: Arc<Mutex<Vec<UpstreamRequest>>>,
    conns: Arc<AtomicU64>,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// A number for a newly accepted connection (1, 2, ...).
    pub fn next_conn(&self) -> u64 {
        self.conns.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Appends a record.
    pub fn push(&self, r: UpstreamRequest) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).push(r);
    }

    /// Records so far.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// A copy of every record so far, in arrival order.
    pub fn snapshot(&self) -> Vec<UpstreamRequest> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records from index `from` on (arrival order).
    pub fn since(&self, from: usize) -> Vec<UpstreamRequest> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.get(from..).map(|s| s.to_vec()).unwrap_or_default()
    }

    /// Records carrying request tag `tag`, in arrival order.
    pub fn tagged(&self, tag: &str) -> Vec<UpstreamRequest> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|r| r.tag() == Some(tag)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(tag: Option<&str>) -> UpstreamRequest {
        let mut headers = vec![("Host".to_string(), "x".to_string())];
        if let Some(t) = tag {
            headers.push(("X-Parity-Request".into(), t.into()));
        }
        UpstreamRequest {
            upstream: "a".into(),
            conn: 1,
            index: 0,
            method: "GET".into(),
            target: "/".into(),
            version: "HTTP/1.1".into(),
            headers,
            framing: ReqFraming::None,
            body: BodyRecord::of(b"", 10),
            body_complete: true,
        }
    }

    #[test]
    fn records_and_finds_by_tag() {
        let r = Recorder::new();
        assert_eq!(r.next_conn(), 1);
        assert_eq!(r.next_conn(), 2);
        let r2 = r.clone();
        r2.push(rec(Some("3.0")));
        r2.push(rec(None));
        r2.push(rec(Some("3.1")));
        assert_eq!(r.len(), 3);
        assert_eq!(r.tagged("3.1").len(), 1);
        assert_eq!(r.since(1).len(), 2);
        assert_eq!(r.snapshot()[0].tag(), Some("3.0"));
        assert_eq!(r.snapshot()[0].header("host"), Some("x"));
    }
}
