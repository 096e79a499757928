//! Normalisation: the rules that turn a raw observation (an [`Exchange`] a client saw, an
//! [`UpstreamRequest`] an upstream received) into the value the parity verdict compares
//! between the routers. Every rule is a [`Rule`] with a name, what it does and why it is
//! safe; nothing else is removed or rewritten. `docs/scenarios.md` lists the same rules.
//!
//! A rule never hides a router that is simply wrong: rules only remove what differs
//! between two runs of the *same* router (ports, clocks, scheduling), what the HTTP
//! semantics say is not significant (RFC 9110 §5.1 name case, §5.3 field order), or a
//! difference listed in `docs/divergences.md` as forced by a platform.

use crate::observe::body::{sha256_hex, BodyRecord};
use crate::observe::client::{Exchange, Head, Response};
use crate::observe::upstream::{UpstreamRequest, REQUEST_TAG};
use serde_json::{json, Value};

/// One normalisation rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Loopback `127.0.0.1:PORT` of a process of this run (router data and admin port, each
    /// mock upstream, the unused port) is replaced by its role (`{{router}}`, `{{admin}}`,
    /// `{{up.NAME.hostport}}`, `{{unused}}`) in header values, targets, kept bodies, admin
    /// and metric values. Why safe: ports are picked afresh for every run; the same role
    /// gets the same placeholder on both sides, so a router that sends a request to the
    /// wrong upstream still differs.
    Ports,
    /// The run's temp and state directories are replaced by `{{tmp}}`/`{{state_dir}}`.
    /// Why safe: each run has its own temp dir.
    TempPaths,
    /// Latencies, chunk gaps, the number of reads a body took and upload byte counts of an
    /// unfinished upload are not compared (scenario expectations such as
    /// `max_chunk_gap_ms` still check them). Why safe: they follow the scheduler and socket
    /// buffer sizes, not the router's logic; for HTTP chunked bodies the chunk count is
    /// still compared through the body bytes.
    Timing,
    /// Header names are compared lower-cased. Why safe: field names are case-insensitive
    /// (RFC 9110 §5.1); net/http canonicalises names and Pingora keeps them as received
    /// (docs/divergences.md, "Header name case" and "Header names").
    HeaderNameCase,
    /// Header fields are compared sorted by (lower-cased) name; fields with the same name
    /// keep their relative order. Why safe: the order of fields with different names is
    /// not significant (RFC 9110 §5.3); net/http writes header fields sorted by name,
    /// Pingora in insertion order. The order of same-named fields is significant and kept.
    HeaderOrder,
    /// The `Date` response header is dropped. Why safe: its value is the clock; net/http
    /// adds one to router-made responses and Pingora does not (docs/divergences.md,
    /// "Implicit headers"); upstream responses carry the upstream's own.
    DateHeader,
    /// The harness's own request tag header ([`REQUEST_TAG`]) is removed from what upstreams
    /// received. Why safe: the harness adds it to every request it builds, on both sides
    /// equally, to attach upstream records to the client request that caused them.
    RequestTag,
    /// Which upstream connection carried a request (connection number, index on it) is
    /// reduced to whether the connection was new. Why safe: connection numbers depend on
    /// the pool policy (docs/divergences.md, "Upstream keep-alive pool") and on health
    /// probes sharing the accept counter; reuse itself is still compared.
    UpstreamConnections,
    /// The responses of a step sending more than one request concurrently are compared as
    /// a sorted list. Why safe: the requests are identical; which of them the scheduler
    /// lets through first is not the router's decision.
    ConcurrentOrder,
    /// Failure details (OS and parser error text) are dropped; the failure kind stays.
    /// Why safe: the text is the harness's own wording of the same event.
    FailureDetail,
    /// A 400/413/414/431/501/505 response to a `raw` or oversized-header send (a request
    /// the HTTP stack may answer itself) is compared by status-line version, status and
    /// how the connection ended (FIN, reset, kept alive); its header fields and body are
    /// not. Why safe: docs/divergences.md, "Malformed requests answered by Pingora's HTTP/1
    /// parser" (empty body, `Server: Pingora`, no hook runs before that parser): for those
    /// heads the Pingora router cannot answer with the contract's document, the Go router
    /// does.
    StackMadeError,
    /// The `message` member of a router-made error document (`X-Router-Error` set, JSON
    /// body) is replaced by `<text>`, and so the body's length (`Content-Length`, framing
    /// length) is not compared. Why safe: docs/spec.md, "Router-made responses": the body
    /// is `{"error":"<code>","message":"<human text>"}`, and human text "is not compared";
    /// the code, status and headers still are.
    ErrorMessage,
    /// In the JSON document an `echo` upstream answers, the list of headers it received is
    /// compared sorted by name (same-named fields keep their order). Why safe: the same as
    /// `header-order` (RFC 9110 §5.3); the echo document is the harness's rendering of
    /// what the upstream received, compared in full in the upstream records.
    EchoHeaderOrder,
    /// A `send` step that names its traced dimensions (`trace: [...]`) is compared by those
    /// tallies only, without per-request observations. Why safe: the scenario author
    /// states that the rest depends on timing for that step (e.g. which upstream answers
    /// while a config is swapped under load); every such step is visible in its YAML.
    NarrowedTrace,
    /// A `wait` on `background_chunks` or `upstream_requests` records whether its
    /// condition held, not the count read. Why safe: those counters measure load the
    /// harness itself runs concurrently (a background send), so the count at the moment
    /// the condition held is scheduling; a `wait` on a metric or an admin field records
    /// the value it read.
    BackgroundProgress,
}

impl Rule {
    /// Every rule, in documentation order.
    pub const ALL: [Rule; 15] = [
        Rule::Ports,
        Rule::TempPaths,
        Rule::Timing,
        Rule::HeaderNameCase,
        Rule::HeaderOrder,
        Rule::DateHeader,
        Rule::RequestTag,
        Rule::UpstreamConnections,
        Rule::ConcurrentOrder,
        Rule::FailureDetail,
        Rule::StackMadeError,
        Rule::ErrorMessage,
        Rule::EchoHeaderOrder,
        Rule::NarrowedTrace,
        Rule::BackgroundProgress,
    ];

    /// The rule's name as docs/scenarios.md lists it.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Ports => "ports",
            Rule::TempPaths => "temp-paths",
            Rule::Timing => "timing",
            Rule::HeaderNameCase => "header-name-case",
            Rule::HeaderOrder => "header-order",
            Rule::DateHeader => "date-header",
            Rule::RequestTag => "request-tag",
            Rule::UpstreamConnections => "upstream-connections",
            Rule::ConcurrentOrder => "concurrent-order",
            Rule::FailureDetail => "failure-detail",
            Rule::StackMadeError => "stack-made-error",
            Rule::ErrorMessage => "error-message",
            Rule::EchoHeaderOrder => "echo-header-order",
            Rule::NarrowedTrace => "narrowed-trace",
            Rule::BackgroundProgress => "background-progress",
        }
    }
}

/// Context of one exchange that some rules need.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendKind {
    /// The request was written as raw bytes or had an oversized header section (the HTTP
    /// stack may answer it itself).
    pub malformed_allowed: bool,
}

/// Applies the rules for one scenario run: holds the run's substitutions.
#[derive(Debug, Clone, Default)]
pub struct Normaliser {
    /// `(from, to)` text substitutions (rules [`Rule::Ports`] and [`Rule::TempPaths`]),
    /// applied in order; longer `from` first is the caller's job.
    pub substitutions: Vec<(String, String)>,
}

impl Normaliser {
    /// A normaliser with these substitutions.
    pub fn new(substitutions: Vec<(String, String)>) -> Normaliser {
        Normaliser { substitutions }
    }

    /// Rules [`Rule::Ports`] and [`Rule::TempPaths`] on a text.
    pub fn text(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (from, to) in &self.substitutions {
            if !from.is_empty() && out.contains(from.as_str()) {
                out = out.replace(from.as_str(), to);
            }
        }
        out
    }

    /// Rules [`Rule::Ports`]/[`Rule::TempPaths`] on every string inside a JSON value.
    pub fn value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.value(x)).collect()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (self.text(k), self.value(x))).collect()),
            _ => v.clone(),
        }
    }

    /// A body with the substitutions applied when it is kept whole (length and hash are
    /// recomputed); a body over the cap is left as it is.
    pub fn body(&self, b: &BodyRecord) -> Value {
        let b = if b.whole() {
            match std::str::from_utf8(&b.kept) {
                Ok(t) => {
                    let n = self.text(t);
                    if n != t {
                        BodyRecord { len: n.len() as u64, sha256: sha256_hex(n.as_bytes()), kept: n.into_bytes() }
                    } else {
                        b.clone()
                    }
                }
                Err(_) => b.clone(),
            }
        } else {
            b.clone()
        };
        serde_json::to_value(b).unwrap_or(Value::Null)
    }

    /// Header fields under [`Rule::HeaderNameCase`], [`Rule::HeaderOrder`],
    /// [`Rule::Ports`], dropping the names in `drop` (lower-case).
    pub fn headers(&self, hs: &[(String, String)], drop: &[&str]) -> Value {
        let mut v: Vec<(String, String)> = hs
            .iter()
            .map(|(k, x)| (k.to_ascii_lowercase(), self.text(x)))
            .filter(|(k, _)| !drop.contains(&k.as_str()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0)); // stable: same-named fields keep their order
        json!(v)
    }

    fn head(&self, h: &Head, drop: &[&str]) -> Value {
        json!({"version": h.version, "status": h.status, "reason": h.reason, "headers": self.headers(&h.headers, drop)})
    }

    /// The comparable form of one response.
    pub fn response(&self, r: &Response, kind: SendKind) -> Value {
        let router_error = r.head.header("x-router-error").is_some();
        if stack_made(r, kind) {
            // Rule::StackMadeError
            return json!({"version": r.head.version, "status": r.head.status, "stack_made_or_431": true});
        }
        let mut drop: Vec<&str> = vec!["date"]; // Rule::DateHeader
        let error_doc = router_error && error_document(&r.body).is_some();
        if error_doc {
            drop.push("content-length"); // Rule::ErrorMessage
        }
        let mut v = self.head(&r.head, &drop);
        let o = v.as_object_mut().expect("object");
        o.insert("interim".into(), Value::Array(r.interim.iter().map(|h| self.head(h, &["date"])).collect()));
        let body = if let (true, Some(doc)) = (error_doc, error_document(&r.body)) {
            o.insert("framing".into(), json!({"length": "<router error document>"}));
            self.body(&BodyRecord::of(doc.as_bytes(), usize::MAX))
        } else if let Some(doc) = echo_document(&r.body) {
            o.insert("framing".into(), serde_json::to_value(&r.framing).unwrap_or(Value::Null));
            self.body(&BodyRecord::of(doc.as_bytes(), usize::MAX))
        } else {
            o.insert("framing".into(), serde_json::to_value(&r.framing).unwrap_or(Value::Null));
            self.body(&r.body)
        };
        o.insert("body".into(), body);
        o.insert("complete".into(), json!(r.complete));
        o.insert("trailers".into(), self.headers(&r.trailers, &[]));
        v
    }

    /// The comparable form of one exchange (without the upstream side).
    pub fn exchange(&self, ex: &Exchange, kind: SendKind) -> Value {
        let end = match ex.end {
            e => serde_json::to_value(e).unwrap_or(Value::Null),
        };
        json!({
            "responses": ex.responses.iter().map(|r| self.response(r, kind)).collect::<Vec<_>>(),
            "end": end,
            // Rule::FailureDetail
            "failure": ex.failure.as_ref().map(|f| serde_json::to_value(f.kind).unwrap_or(Value::Null)),
            // Rule::Timing: whether the upload finished, not how far it got.
            "upload_complete": ex.upload.map(|u| u.complete),
            "trailing_bytes": ex.trailing_bytes,
        })
    }

    /// The comparable form of what an upstream received.
    pub fn upstream_request(&self, r: &UpstreamRequest) -> Value {
        json!({
            "upstream": r.upstream,
            "method": r.method,
            "target": self.text(&r.target),
            "version": r.version,
            "headers": self.headers(&r.headers, &[REQUEST_TAG]), // Rule::RequestTag
            "framing": serde_json::to_value(r.framing).unwrap_or(Value::Null),
            "body": self.body(&r.body),
            "body_complete": r.body_complete,
        })
    }
}

/// Rule [`Rule::StackMadeError`]: whether `r` is an answer the HTTP stack may have made.
fn stack_made(r: &Response, kind: SendKind) -> bool {
    kind.malformed_allowed && matches!(r.head.status, 400 | 413 | 414 | 431 | 501 | 505)
}

/// Rule [`Rule::ErrorMessage`]: a whole JSON body `{"error": .., "message": ..}` with
/// the message replaced by `<text>` (as compact JSON), else None.
fn error_document(b: &BodyRecord) -> Option<String> {
    if !b.whole() {
        return None;
    }
    let mut v: Value = serde_json::from_slice(&b.kept).ok()?;
    let o = v.as_object_mut()?;
    if !o.contains_key("error") || !o.get("message").map(|m| m.is_string()).unwrap_or(false) {
        return None;
    }
    o.insert("message".into(), json!("<text>"));
    serde_json::to_string(&v).ok()
}

/// Rule [`Rule::EchoHeaderOrder`]: an echo upstream's JSON document with its `headers`
/// sorted by name (stable), else None.
fn echo_document(b: &BodyRecord) -> Option<String> {
    if !b.whole() {
        return None;
    }
    let mut v: Value = serde_json::from_slice(&b.kept).ok()?;
    let o = v.as_object_mut()?;
    if !(o.contains_key("method") && o.contains_key("target") && o.contains_key("body_bytes")) {
        return None;
    }
    let mut hs: Vec<(String, String)> = serde_json::from_value(o.get("headers")?.clone()).ok()?;
    hs.sort_by(|a, b| a.0.cmp(&b.0));
    o.insert("headers".into(), json!(hs));
    serde_json::to_string(&v).ok()
}

/// Rule [`Rule::ConcurrentOrder`]: sorts per-request observations of a concurrent step by
/// their JSON text.
pub fn sort_concurrent(v: &mut [Value]) {
    v.sort_by_cached_key(|x| x.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::client::{ConnEnd, Failure, FailureKind, Framing};

    fn head(st: u16, hs: &[(&str, &str)]) -> Head {
        Head { version: "HTTP/1.1".into(), status: st, reason: "R".into(), headers: hs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect() }
    }

    fn resp(st: u16, hs: &[(&str, &str)], body: &[u8]) -> Response {
        Response { interim: vec![], head: head(st, hs), framing: Framing::Length(body.len() as u64), body: BodyRecord::of(body, 1024), complete: true, trailers: vec![], chunks: 3, max_gap_ms: 7 }
    }

    fn ex(r: Response, end: ConnEnd) -> Exchange {
        Exchange { responses: vec![r], end: Some(end), failure: None, upload: None, trailing_bytes: 0, latency_us: 99 }
    }

    fn n() -> Normaliser {
        Normaliser::new(vec![("127.0.0.1:4711".into(), "{{up.a.hostport}}".into()), ("127.0.0.1:5000".into(), "{{router}}".into())])
    }

    #[test]
    fn names_case_order_date_and_timing_do_not_count() {
        let a = ex(resp(200, &[("Date", "Mon"), ("X-B", "1"), ("x-a", "2"), ("Via", "1"), ("via", "2")], b"hi"), ConnEnd::KeptAlive);
        let mut b = ex(resp(200, &[("x-a", "2"), ("via", "1"), ("x-b", "1"), ("Via", "2")], b"hi"), ConnEnd::KeptAlive);
        b.latency_us = 1;
        b.responses[0].chunks = 1;
        b.responses[0].max_gap_ms = 0;
        assert_eq!(n().exchange(&a, SendKind::default()), n().exchange(&b, SendKind::default()));
        // same-named fields keep their order
        let mut c = b.clone();
        c.responses[0].head.headers = vec![("via".into(), "2".into()), ("via".into(), "1".into()), ("x-a".into(), "2".into()), ("x-b".into(), "1".into())];
        assert_ne!(n().exchange(&a, SendKind::default()), n().exchange(&c, SendKind::default()));
    }

    #[test]
    fn values_bodies_and_ends_still_count() {
        let a = ex(resp(200, &[("X", "1")], b"hi"), ConnEnd::KeptAlive);
        for b in [
            ex(resp(200, &[("X", "2")], b"hi"), ConnEnd::KeptAlive),
            ex(resp(200, &[("X", "1")], b"ho"), ConnEnd::KeptAlive),
            ex(resp(200, &[("X", "1")], b"hi"), ConnEnd::Fin),
            ex(resp(201, &[("X", "1")], b"hi"), ConnEnd::KeptAlive),
            ex(resp(200, &[("X", "1"), ("Y", "")], b"hi"), ConnEnd::KeptAlive),
        ] {
            assert_ne!(n().exchange(&a, SendKind::default()), n().exchange(&b, SendKind::default()));
        }
    }

    #[test]
    fn ports_in_bodies_and_headers() {
        let a = ex(resp(200, &[("Location", "http://127.0.0.1:4711/x")], b"{\"host\":\"127.0.0.1:4711\"}"), ConnEnd::KeptAlive);
        let v = n().exchange(&a, SendKind::default());
        assert_eq!(v["responses"][0]["headers"][0][1], "http://{{up.a.hostport}}/x");
        assert_eq!(v["responses"][0]["body"]["kept"], "{\"host\":\"{{up.a.hostport}}\"}");
        assert_eq!(v["responses"][0]["body"]["len"], "{\"host\":\"{{up.a.hostport}}\"}".len());
    }

    #[test]
    fn documented_divergences_only_where_documented() {
        // Router-made 502: Connection: close and FIN vs keep-alive count, and so does a reset.
        let a = ex(resp(502, &[("X-Router-Error", "upstream_protocol_error"), ("Connection", "close")], b"{}"), ConnEnd::Fin);
        let b = ex(resp(502, &[("X-Router-Error", "upstream_protocol_error")], b"{}"), ConnEnd::KeptAlive);
        assert_ne!(n().exchange(&a, SendKind::default()), n().exchange(&b, SendKind::default()));
        let c = ex(resp(502, &[("X-Router-Error", "upstream_protocol_error"), ("Connection", "close")], b"{}"), ConnEnd::Reset);
        assert_ne!(n().exchange(&a, SendKind::default()), n().exchange(&c, SendKind::default()));
        // Stack-made 400 to a raw send: status, version and the connection's end; not for a
        // built request.
        let raw = SendKind { malformed_allowed: true };
        let go = ex(resp(400, &[("Content-Type", "text/plain")], b"400 Bad Request"), ConnEnd::Fin);
        let pg = ex(resp(400, &[("Server", "Pingora")], b""), ConnEnd::Fin);
        assert_eq!(n().exchange(&go, raw), n().exchange(&pg, raw));
        assert_ne!(n().exchange(&go, SendKind::default()), n().exchange(&pg, SendKind::default()));
        // ... a reset instead of a FIN after it still counts ...
        let reset = ex(resp(400, &[("Server", "Pingora")], b""), ConnEnd::Reset);
        assert_ne!(n().exchange(&go, raw), n().exchange(&reset, raw));
        // ... whichever stack made it (one side may answer with the contract's document).
        let contract = ex(resp(400, &[("X-Router-Error", "bad_request")], b"{}"), ConnEnd::Fin);
        assert_eq!(n().exchange(&go, raw), n().exchange(&contract, raw));
        let kept = ex(resp(400, &[("X-Router-Error", "bad_request")], b"{}"), ConnEnd::KeptAlive);
        assert_ne!(n().exchange(&go, raw), n().exchange(&kept, raw));
    }

    #[test]
    fn error_message_text_and_echo_order_do_not_count() {
        let a = ex(resp(502, &[("X-Router-Error", "upstream_timeout"), ("Content-Length", "40")], b"{\"error\":\"upstream_timeout\",\"message\":\"a\"}"), ConnEnd::KeptAlive);
        let b = ex(resp(502, &[("X-Router-Error", "upstream_timeout"), ("Content-Length", "41")], b"{\"error\":\"upstream_timeout\",\"message\":\"bb\"}"), ConnEnd::KeptAlive);
        assert_eq!(n().exchange(&a, SendKind::default()), n().exchange(&b, SendKind::default()));
        let c = ex(resp(502, &[("X-Router-Error", "upstream_timeout")], b"{\"error\":\"other\",\"message\":\"a\"}"), ConnEnd::KeptAlive);
        assert_ne!(n().exchange(&a, SendKind::default()), n().exchange(&c, SendKind::default()));
        let e1 = ex(resp(200, &[], br#"{"method":"GET","target":"/","body_bytes":0,"headers":[["b","1"],["a","2"]]}"#), ConnEnd::KeptAlive);
        let e2 = ex(resp(200, &[], br#"{"method":"GET","target":"/","body_bytes":0,"headers":[["a","2"],["b","1"]]}"#), ConnEnd::KeptAlive);
        assert_eq!(n().exchange(&e1, SendKind::default()), n().exchange(&e2, SendKind::default()));
    }

    #[test]
    fn failures_compare_by_kind() {
        let mut a = Exchange::default();
        a.failure = Some(Failure { kind: FailureKind::Timeout, detail: "after 300ms".into() });
        let mut b = a.clone();
        b.failure.as_mut().unwrap().detail = "after 301ms".into();
        assert_eq!(n().exchange(&a, SendKind::default()), n().exchange(&b, SendKind::default()));
        b.failure.as_mut().unwrap().kind = FailureKind::Reset;
        assert_ne!(n().exchange(&a, SendKind::default()), n().exchange(&b, SendKind::default()));
    }

    #[test]
    fn every_response_of_a_raw_exchange_and_its_end_count() {
        let raw = SendKind { malformed_allowed: true };
        let two = |second: Response, end: ConnEnd| Exchange { responses: vec![resp(200, &[("X", "1")], b"a"), second], end: Some(end), failure: None, upload: None, trailing_bytes: 0, latency_us: 1 };
        let base = two(resp(200, &[("X", "2")], b"b"), ConnEnd::KeptAlive);
        assert_eq!(n().exchange(&base, raw), n().exchange(&two(resp(200, &[("x", "2")], b"b"), ConnEnd::KeptAlive), raw));
        for other in [
            two(resp(204, &[("X", "2")], b"b"), ConnEnd::KeptAlive),
            two(resp(200, &[("X", "3")], b"b"), ConnEnd::KeptAlive),
            two(resp(200, &[("X", "2")], b"c"), ConnEnd::KeptAlive),
            two(resp(200, &[("X", "2")], b"b"), ConnEnd::Fin),
            two(resp(200, &[("X", "2")], b"b"), ConnEnd::Reset),
        ] {
            assert_ne!(n().exchange(&base, raw), n().exchange(&other, raw));
        }
        // A missing or an extra response differs.
        let mut one = base.clone();
        one.responses.pop();
        assert_ne!(n().exchange(&base, raw), n().exchange(&one, raw));
        let mut three = base.clone();
        three.responses.push(resp(200, &[], b""));
        assert_ne!(n().exchange(&base, raw), n().exchange(&three, raw));
        // A stack-made 400 behind a valid response still counts by status, version and end.
        let s400 = |end| two(resp(400, &[("Server", "Pingora")], b""), end);
        assert_eq!(n().exchange(&s400(ConnEnd::Fin), raw), n().exchange(&two(resp(400, &[("X-Router-Error", "bad_request")], b"{}"), ConnEnd::Fin), raw));
        assert_ne!(n().exchange(&s400(ConnEnd::Fin), raw), n().exchange(&s400(ConnEnd::Reset), raw));
        // The interim responses before a final one count too.
        let mut hints = base.clone();
        hints.responses[1].interim.push(head(103, &[("Link", "</a>")]));
        assert_ne!(n().exchange(&base, raw), n().exchange(&hints, raw));
    }

    #[test]
    fn rule_names_are_unique_and_documented_here() {
        let mut names: Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Rule::ALL.len());
    }
}
