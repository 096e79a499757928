//! The oracle: what one router did with one case, in the comparable form the parity verdict
//! uses, the differences between the two routers, and the invariants each must keep.
//!
//! Client side: the bytes the client received are parsed into responses (every interim and
//! final response: version, status, fields, body, framing, trailers) with the framing rules
//! of the harness's own client ([`crate::observe::client::framing_of`], RFC 9112 §6.3), and
//! turned into the same JSON as a raw `send` step
//! ([`crate::observe::normalise::Normaliser::exchange`] with `malformed_allowed`). Upstream
//! side: every request the fuzz upstream received for the case, through
//! [`crate::observe::normalise::Normaliser::upstream_request`]. No rule is added here: the
//! fuzzer sees exactly the differences `parity run` would see.
//!
//! A difference gets a *field* label from the first JSON path where the two sides differ
//! (`client-status`, `client-header-content-length`, `upstream-count`, ...); with the case's
//! [`Mode`] it forms the finding's kind, so one bug is one finding however often it recurs.
use crate::fuzz::reqgen::Mode;
use crate::fuzz::upstream::Received;
use crate::observe::body::BodyRecord;
use crate::observe::client::{framing_of, ConnEnd, Exchange, Failure, FailureKind, Framing, Head, Response};
use crate::observe::normalise::{Normaliser, SendKind};
use serde::Serialize;
use serde_json::{json, Value};

/// What the client side of one case observed, before parsing.
#[derive(Debug, Clone, Serialize)]
pub struct ClientRaw {
    /// Every byte received.
    #[serde(skip)]
    pub bytes: Vec<u8>,
    /// How the connection ended.
    pub end: ConnEnd,
}

/// One router's observation of one case.
#[derive(Debug, Clone)]
pub struct Obs {
    /// The client side, parsed.
    pub exchange: Exchange,
    /// What the upstream received for the case, in order.
    pub upstream: Vec<Received>,
    /// The router process was still running after the case.
    pub alive: bool,
    /// Counter deltas of this case alone (careful runs only), by series.
    pub metrics: Option<std::collections::BTreeMap<String, f64>>,
}

/// One difference or broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Field label (`client-status`, `upstream-count`, `crash`, ...).
    pub field: String,
    /// Which router broke an invariant (None: a difference between the two).
    pub imp: Option<String>,
    /// What differs, for the report.
    pub detail: String,
}

impl Diff {
    /// The finding kind of this difference in a case of `mode`:
    /// `<mode>.<field>` or `<mode>.<field>.<impl>` for an invariant.
    pub fn kind(&self, mode: Mode) -> String {
        match &self.imp {
            Some(i) => format!("{}.{}.{}", mode.name(), self.field, i),
            None => format!("{}.{}", mode.name(), self.field),
        }
    }
}

/// Parses the bytes a client received into an [`Exchange`]. `heads[i]`: request `i` was a
/// HEAD (its response has no body).
pub fn parse_client(raw: &ClientRaw, heads: &[bool]) -> Exchange {
    let b = &raw.bytes[..];
    let mut ex = Exchange { end: Some(raw.end), ..Exchange::default() };
    let mut pos = 0usize;
    let mut interim = Vec::new();
    while pos < b.len() {
        let mut hs = vec![httparse::EMPTY_HEADER; 1024];
        let mut r = httparse::Response::new(&mut hs);
        let n = match r.parse(&b[pos..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                ex.failure = Some(Failure { kind: FailureKind::Malformed, detail: "connection ended inside a response head".into() });
                break;
            }
            Err(e) => {
                ex.failure = Some(Failure { kind: FailureKind::Malformed, detail: e.to_string() });
                break;
            }
        };
        let head = Head {
            version: format!("HTTP/1.{}", r.version.unwrap_or(1)),
            status: r.code.unwrap_or(0),
            reason: r.reason.unwrap_or("").to_string(),
            headers: r.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned())).collect(),
        };
        pos += n;
        if (100..200).contains(&head.status) && head.status != 101 {
            interim.push(head);
            continue;
        }
        let is_head = heads.get(ex.responses.len()).copied().unwrap_or(false);
        let framing = framing_of(&head, is_head);
        let rest = &b[pos..];
        let (body, used, complete, trailers) = match &framing {
            Framing::NoBody | Framing::Invalid(_) | Framing::Http2 => (vec![], 0, true, vec![]),
            Framing::Length(n) => {
                let k = (*n as usize).min(rest.len());
                (rest[..k].to_vec(), k, k as u64 == *n, vec![])
            }
            Framing::CloseDelimited => (rest.to_vec(), rest.len(), raw.end == ConnEnd::Fin, vec![]),
            Framing::Tunnel => (rest.to_vec(), rest.len(), true, vec![]),
            Framing::Chunked => dechunk(rest),
        };
        pos += used;
        ex.responses.push(Response { interim: std::mem::take(&mut interim), head, framing, body: BodyRecord::of(&body, 64 * 1024), complete, trailers, chunks: 0, max_gap_ms: 0 });
        if !complete {
            ex.failure = Some(Failure { kind: if raw.end == ConnEnd::Reset { FailureKind::Reset } else { FailureKind::Closed }, detail: "body incomplete".into() });
            break;
        }
    }
    if !interim.is_empty() || ex.responses.is_empty() && raw.end != ConnEnd::KeptAlive {
        ex.failure.get_or_insert(Failure { kind: if raw.end == ConnEnd::Reset { FailureKind::Reset } else { FailureKind::Closed }, detail: "no final response".into() });
    }
    ex
}

/// Decodes a chunked body at the start of `b`: (body, bytes used, complete, trailers).
fn dechunk(b: &[u8]) -> (Vec<u8>, usize, bool, Vec<(String, String)>) {
    let mut body = Vec::new();
    let mut p = 0usize;
    let line = |p: usize| -> Option<(Vec<u8>, usize)> {
        let i = b[p..].iter().position(|x| *x == b'\n')?;
        let mut l = b[p..p + i].to_vec();
        if l.last() == Some(&b'\r') {
            l.pop();
        }
        Some((l, p + i + 1))
    };
    loop {
        let Some((l, np)) = line(p) else { return (body, b.len(), false, vec![]) };
        let hex = String::from_utf8_lossy(&l).split(';').next().unwrap_or("").trim().to_string();
        let Ok(n) = usize::from_str_radix(&hex, 16) else { return (body, b.len(), false, vec![]) };
        p = np;
        if n == 0 {
            let mut trailers = Vec::new();
            loop {
                let Some((t, np)) = line(p) else { return (body, b.len(), false, trailers) };
                p = np;
                if t.is_empty() {
                    return (body, p, true, trailers);
                }
                let t = String::from_utf8_lossy(&t).into_owned();
                if let Some((k, v)) = t.split_once(':') {
                    trailers.push((k.to_string(), v.trim().to_string()));
                }
            }
        }
        if b.len() < p + n + 2 {
            body.extend_from_slice(&b[p..b.len().min(p + n)]);
            return (body, b.len(), false, vec![]);
        }
        body.extend_from_slice(&b[p..p + n]);
        p += n + 2;
    }
}

/// How many final responses in `raw` are complete, and whether the connection must be
/// watched until it closes (the last one is close-delimited or a tunnel, or announced
/// `Connection: close`). Used by the runner to decide when a case is over.
pub fn progress(raw: &ClientRaw, heads: &[bool]) -> (usize, bool) {
    let ex = parse_client(raw, heads);
    let done = ex.responses.iter().filter(|r| r.complete).count();
    let wait_close = ex.responses.last().map(|r| matches!(r.framing, Framing::CloseDelimited | Framing::Tunnel) || r.head.has_token("connection", "close") || (r.head.version == "HTTP/1.0" && !r.head.has_token("connection", "keep-alive"))).unwrap_or(false);
    (done, wait_close)
}

/// The comparable form of one observation: `{client, upstream}`.
pub fn comparable(o: &Obs, n: &Normaliser) -> Value {
    let client = n.exchange(&o.exchange, SendKind { malformed_allowed: true });
    let upstream: Vec<Value> = o
        .upstream
        .iter()
        .map(|r| match &r.req {
            Some(q) => {
                let mut v = n.upstream_request(q);
                v["index"] = json!(r.index);
                v
            }
            None => json!({"garbage": String::from_utf8_lossy(&r.raw)}),
        })
        .collect();
    json!({"client": client, "upstream": upstream, "metrics": o.metrics})
}

/// The first difference between two comparable forms, as a field label and a detail.
pub fn first_difference(a: &Value, b: &Value) -> Option<(String, String)> {
    let ca = &a["client"];
    let cb = &b["client"];
    let ra = ca["responses"].as_array().cloned().unwrap_or_default();
    let rb = cb["responses"].as_array().cloned().unwrap_or_default();
    for (i, (x, y)) in ra.iter().zip(rb.iter()).enumerate() {
        if x != y {
            let (f, d) = object_difference(x, y, "client");
            return Some((f, format!("response {i}: {d}")));
        }
    }
    if ra.len() != rb.len() {
        return Some(("client-count".into(), format!("{} vs {} responses", ra.len(), rb.len())));
    }
    let ua = a["upstream"].as_array().cloned().unwrap_or_default();
    let ub = b["upstream"].as_array().cloned().unwrap_or_default();
    for (i, (x, y)) in ua.iter().zip(ub.iter()).enumerate() {
        if x != y {
            let (f, d) = object_difference(x, y, "upstream");
            return Some((f, format!("upstream request {i}: {d}")));
        }
    }
    if ua.len() != ub.len() {
        return Some(("upstream-count".into(), format!("{} vs {} requests upstream", ua.len(), ub.len())));
    }
    for k in ["end", "failure", "trailing_bytes"] {
        if ca[k] != cb[k] {
            return Some((format!("client-{k}").replace('_', "-"), format!("{} vs {}", ca[k], cb[k])));
        }
    }
    if let (Some(ma), Some(mb)) = (a["metrics"].as_object(), b["metrics"].as_object()) {
        let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            if ma.get(k) != mb.get(k) {
                let name = k.split('{').next().unwrap_or(k);
                // A stack-made refusal (rule stack-made-error) on either side: Pingora's own
                // 400s are not counted (docs/divergences.md), so the class is named.
                let stack = [&ca, &cb].iter().any(|c| c["responses"].as_array().map(|rs| rs.iter().any(|r| r["stack_made_or_431"] == json!(true))).unwrap_or(false));
                let class = if stack { "metrics-stack-made-" } else { "metrics-" };
                return Some((format!("{class}{}", label(name)), format!("{k}: {:?} vs {:?}", ma.get(k), mb.get(k))));
            }
        }
    }
    if a["client"] != b["client"] || a["upstream"] != b["upstream"] {
        return Some(("other".into(), "comparable forms differ".into()));
    }
    None
}

/// The first differing member of two objects (`headers`: the first differing field name).
fn object_difference(x: &Value, y: &Value, side: &str) -> (String, String) {
    let (Some(ox), Some(oy)) = (x.as_object(), y.as_object()) else {
        return (format!("{side}-value"), format!("{x} vs {y}"));
    };
    let mut keys: Vec<&String> = ox.keys().chain(oy.keys()).collect();
    keys.sort_by_key(|k| match k.as_str() {
        "garbage" => 0,
        "status" => 1,
        "version" => 2,
        "method" => 3,
        "target" => 4,
        "stack_made_or_431" => 5,
        "headers" => 6,
        _ => 9,
    });
    keys.dedup();
    for k in keys {
        let (vx, vy) = (ox.get(k), oy.get(k));
        if vx == vy {
            continue;
        }
        if k == "headers" {
            if let (Some(hx), Some(hy)) = (vx, vy) {
                let name = header_difference(hx, hy);
                // The length of a router-made error document whose body was not sent (a HEAD
                // answer): the message text is not compared (rule error-message), so the
                // class is named.
                let err = |v: &Value| pairs(v).into_iter().find(|(k, _)| k == "x-router-error").map(|(_, v)| v);
                if name == "content-length" && err(hx).is_some() && err(hx) == err(hy) && ox.get("framing") == oy.get("framing") && ox.get("body") == oy.get("body") {
                    return (format!("{side}-error-document-length"), format!("{name}: {} vs {}", header_values(hx, &name), header_values(hy, &name)));
                }
                return (format!("{side}-header-{}", label(&name)), format!("{name}: {} vs {}", header_values(hx, &name), header_values(hy, &name)));
            }
        }
        // A body both sides cut (the upstream's or the client's framing broke mid-body):
        // how many bytes got through before the cut is its own class.
        if k == "body" {
            let cut = |o: &serde_json::Map<String, Value>| o.get("complete") == Some(&json!(false)) || o.get("body_complete") == Some(&json!(false));
            if cut(ox) && cut(oy) {
                return (format!("{side}-partial-body"), format!("body cut on both sides: {} vs {} bytes", vx.map(|v| v["len"].clone()).unwrap_or_default(), vy.map(|v| v["len"].clone()).unwrap_or_default()));
            }
        }
        let show = |v: Option<&Value>| v.map(|v| {
            let s = v.to_string();
            if s.len() > 200 { format!("{}...", &s[..200]) } else { s }
        }).unwrap_or_else(|| "absent".into());
        return (format!("{side}-{}", label(k)), format!("{k}: {} vs {}", show(vx), show(vy)));
    }
    (format!("{side}-value"), "differs".into())
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

fn header_difference(x: &Value, y: &Value) -> String {
    let (px, py) = (pairs(x), pairs(y));
    let mut names: Vec<String> = px.iter().chain(py.iter()).map(|(k, _)| k.clone()).collect();
    names.sort();
    names.dedup();
    for n in names {
        let a: Vec<&String> = px.iter().filter(|(k, _)| *k == n).map(|(_, v)| v).collect();
        let b: Vec<&String> = py.iter().filter(|(k, _)| *k == n).map(|(_, v)| v).collect();
        if a != b {
            return n;
        }
    }
    "?".into()
}

fn header_values(v: &Value, name: &str) -> String {
    let vs: Vec<String> = pairs(v).into_iter().filter(|(k, _)| k == name).map(|(_, v)| v).collect();
    if vs.is_empty() {
        "absent".into()
    } else {
        format!("{vs:?}")
    }
}

/// A field name reduced to a label: lower-case, `[a-z0-9-]`, numbered pads folded.
fn label(s: &str) -> String {
    let l: String = s.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    if l.starts_with("x-pad-") {
        return "x-pad-n".into();
    }
    l.trim_matches('-').chars().take(40).collect()
}

/// The invariants one router must keep in every case, whatever the other does:
/// - it is still running (no crash);
/// - the client was not left waiting: the connection did not stay open with a response
///   missing or cut (a hang past the router's timeouts);
/// - a request the upstream received is never answered with a router-made client error
///   (`X-Router-Error` with a 4xx);
/// - the upstream saw no request the client did not send as one (tags `hidden`, `s<i>`: a
///   request hidden in the unambiguously framed body of request `i`; see
///   [`crate::fuzz::reqgen::ReqSpec::hides_request`]).
///
/// `upstream_marked[i]`: the generated response to request `i` carries an `X-Router-Error`
/// field of its own (the response generator writes one among the fields a router must
/// handle), so a 4xx with it is the upstream's, forwarded, not a router-made one (seed 1
/// case 960: both routers forwarded `400` with `X-Router-Error: websocket`).
pub fn invariants(o: &Obs, imp: &str, nreq: usize, hidden: &[String], upstream_marked: &[bool]) -> Vec<Diff> {
    let mut out = Vec::new();
    let d = |field: &str, detail: String| Diff { field: field.into(), imp: Some(imp.into()), detail };
    if !o.alive {
        out.push(d("crash", "the router process exited".into()));
    }
    let ex = &o.exchange;
    // A hang: the router had a whole request (the upstream received it whole) and the
    // client, with the connection still open after the idle limit, has no complete
    // response for it. A client stream that announced more body than it sent keeps the
    // router waiting legitimately, so only forwarded requests count.
    let tunnel = ex.responses.iter().any(|r| r.head.status == 101);
    let whole: Vec<usize> = o
        .upstream
        .iter()
        .filter(|r| r.req.as_ref().map(|q| q.body_complete).unwrap_or(false))
        .filter_map(|r| r.index.as_deref().and_then(|i| i.parse().ok()))
        .collect();
    let answered = ex.responses.iter().filter(|r| r.complete).count();
    if !tunnel && ex.end == Some(ConnEnd::Open) {
        if let Some(i) = whole.iter().find(|i| **i >= answered) {
            out.push(d("hang", format!("request {i} reached the upstream whole; the connection is open with {answered} of {nreq} responses complete after the idle limit")));
        }
    }
    for (i, r) in ex.responses.iter().enumerate() {
        // Only a request the upstream received whole: a body found malformed while it was
        // being forwarded is the client's fault (spec: 400 and close).
        if r.head.header("x-router-error").is_some() && (400..500).contains(&r.head.status) && whole.contains(&i) && !upstream_marked.get(i).copied().unwrap_or(false) {
            out.push(d("forwarded-router-error", format!("request {i} reached the upstream and was answered {} {}", r.head.status, r.head.header("x-router-error").unwrap_or(""))));
        }
    }
    if let Some(r) = o.upstream.iter().find(|r| r.req.is_some() && r.index.as_ref().map(|i| hidden.contains(i)).unwrap_or(false)) {
        let what = r.req.as_ref().map(|q| format!("{} {}", q.method, q.target)).unwrap_or_default();
        out.push(d("smuggled", format!("the upstream received {what} that the client sent inside a body or untagged")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(b: &[u8], end: ConnEnd) -> ClientRaw {
        ClientRaw { bytes: b.to_vec(), end }
    }

    #[test]
    fn parses_pipelined_interim_chunked_and_head() {
        let b = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-T: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n";
        let ex = parse_client(&raw(b, ConnEnd::KeptAlive), &[false, false, true]);
        assert_eq!(ex.responses.len(), 3);
        assert_eq!(ex.responses[0].interim.len(), 1);
        assert_eq!(ex.responses[1].body.kept, b"ab");
        assert_eq!(ex.responses[1].trailers, vec![("X-T".to_string(), "1".to_string())]);
        assert!(ex.responses[2].complete);
        assert!(ex.failure.is_none());
        assert_eq!(progress(&raw(b, ConnEnd::KeptAlive), &[false, false, true]), (3, false));
    }

    #[test]
    fn cut_body_and_close_delimited() {
        let ex = parse_client(&raw(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", ConnEnd::Reset), &[false]);
        assert!(!ex.responses[0].complete);
        assert_eq!(ex.failure.unwrap().kind, FailureKind::Reset);
        let r = raw(b"HTTP/1.1 200 OK\r\n\r\nabc", ConnEnd::Fin);
        assert!(parse_client(&r, &[false]).responses[0].complete);
        assert_eq!(progress(&r, &[false]), (1, true));
    }

    fn obs(b: &[u8], up: Vec<Received>) -> Obs {
        Obs { exchange: parse_client(&raw(b, ConnEnd::KeptAlive), &[false, false]), upstream: up, alive: true, metrics: None }
    }

    #[test]
    fn names_the_first_difference() {
        let n = Normaliser::default();
        let a = comparable(&obs(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok", vec![]), &n);
        let b = comparable(&obs(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: 2\r\n\r\nok", vec![]), &n);
        let (f, d) = first_difference(&a, &b).unwrap();
        assert_eq!(f, "client-header-x-a", "{d}");
        let c = comparable(&obs(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: 1\r\nDate: x\r\n\r\nok", vec![]), &n);
        assert_eq!(first_difference(&a, &c), None, "name case and Date are normalised");
        let d2 = comparable(&obs(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", vec![]), &n);
        assert_eq!(first_difference(&a, &d2).unwrap().0, "client-status");
        // A router error to a HEAD: only the length of the unsent message differs.
        let h = |cl: &str| {
            let b = format!("HTTP/1.1 502 Bad Gateway\r\nX-Router-Error: upstream_protocol_error\r\nContent-Length: {cl}\r\n\r\n");
            Obs { exchange: parse_client(&raw(b.as_bytes(), ConnEnd::KeptAlive), &[true]), upstream: vec![], alive: true, metrics: None }
        };
        assert_eq!(first_difference(&comparable(&h("84"), &n), &comparable(&h("104"), &n)).unwrap().0, "client-error-document-length");
        let e = comparable(&obs(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: 1\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", vec![]), &n);
        assert_eq!(first_difference(&a, &e).unwrap().0, "client-count");
    }

    fn q1() -> crate::observe::upstream::UpstreamRequest {
        crate::observe::upstream::UpstreamRequest {
            upstream: "u".into(),
            conn: 0,
            index: 0,
            method: "GET".into(),
            target: "/".into(),
            version: "HTTP/1.1".into(),
            headers: vec![],
            framing: crate::observe::upstream::ReqFraming::None,
            body: BodyRecord::default(),
            body_complete: true,
        }
    }

    #[test]
    fn invariants_catch_forwarded_errors_and_smuggling() {
        let q = crate::observe::upstream::UpstreamRequest {
            upstream: "u".into(),
            conn: 0,
            index: 0,
            method: "GET".into(),
            target: "/smuggled".into(),
            version: "HTTP/1.1".into(),
            headers: vec![],
            framing: crate::observe::upstream::ReqFraming::None,
            body: BodyRecord::default(),
            body_complete: true,
        };
        let o = obs(b"HTTP/1.1 400 Bad Request\r\nX-Router-Error: bad_request\r\nContent-Length: 0\r\n\r\n", vec![Received { index: Some("0".into()), req: Some(q.clone()), raw: vec![] }, Received { index: Some("s0".into()), req: Some(q), raw: vec![] }]);
        let fields: Vec<String> = invariants(&o, "go", 1, &["s0".to_string()], &[false]).into_iter().map(|d| d.field).collect();
        assert_eq!(fields, vec!["forwarded-router-error", "smuggled"]);
        let q2 = crate::observe::upstream::UpstreamRequest { target: "/a".into(), ..q1() };
        let mut o2 = obs(b"", vec![Received { index: Some("0".into()), req: Some(q2), raw: vec![] }]);
        o2.exchange.end = Some(ConnEnd::Open);
        o2.alive = false;
        let fields: Vec<String> = invariants(&o2, "go", 1, &[], &[]).into_iter().map(|d| d.field).collect();
        assert_eq!(fields, vec!["crash", "hang"]);
        // A request that never reached the upstream whole is no hang (the client owes bytes).
        let mut o3 = obs(b"", vec![]);
        o3.exchange.end = Some(ConnEnd::Open);
        assert!(invariants(&o3, "go", 1, &[], &[]).is_empty());
        // The upstream's own X-Router-Error, forwarded with its 4xx, is not the router's.
        let o4 = obs(b"HTTP/1.1 400 OK\r\nX-Router-Error: websocket\r\nContent-Length: 0\r\n\r\n", vec![Received { index: Some("0".into()), req: Some(q1()), raw: vec![] }]);
        assert!(invariants(&o4, "go", 1, &[], &[true]).is_empty());
        assert_eq!(invariants(&o4, "go", 1, &[], &[false]).into_iter().map(|d| d.field).collect::<Vec<_>>(), vec!["forwarded-router-error"]);
    }
}
