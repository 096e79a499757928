//! Expectation checks: the responses of a `send` step against its expectations
//! (per response, then counts over all of them), and the JSON comparison used by every
//! step that compares values.

use crate::client::Resp;
use crate::observe::client::{ConnEnd, Exchange};
use crate::scenario::{ConnExpect, ResponseExpect, Send};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Compares JSON values; numbers compare by value (1 == 1.0).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// The outcome of [`check_send`].
#[derive(Debug, Clone, PartialEq)]
pub struct SendCheck {
    /// Failed expectations, in order (at most five and a `... and N more`).
    pub failures: Vec<String>,
    /// What goes into the trace: per traced dimension, the number of responses per value.
    pub observed: Value,
}

fn opt(s: Option<&str>) -> String {
    s.unwrap_or("-").to_string()
}

/// Checks the responses of one `send` step against its expectations: every failed
/// expectation (at most five, then `... and N more`) and the observation for the trace
/// (the tallies of the traced dimensions, see [`Send::trace`]).
pub fn check_send(s: &Send, rs: &[Resp]) -> SendCheck {
    let e = &s.expect;
    let n = rs.len();
    let mut tally: BTreeMap<&str, BTreeMap<String, u32>> = BTreeMap::new();
    let mut fails: Vec<String> = Vec::new();
    let mut extra = serde_json::Map::new();
    for (k, r) in rs.iter().enumerate() {
        let st = r.status.map(|s| s.to_string()).unwrap_or_else(|| "none".into());
        let err = opt(r.header("x-router-error"));
        let up = opt(r.header("x-upstream-name"));
        let pl = opt(r.header("x-router-placement"));
        *tally.entry("status").or_default().entry(st.clone()).or_default() += 1;
        *tally.entry("error").or_default().entry(err.clone()).or_default() += 1;
        *tally.entry("upstream").or_default().entry(up.clone()).or_default() += 1;
        *tally.entry("placement").or_default().entry(pl.clone()).or_default() += 1;
        if r.status.is_some() {
            *tally.entry("complete").or_default().entry(r.complete.to_string()).or_default() += 1;
        }
        let who = if n > 1 { format!("response {}/{n}: ", k + 1) } else { String::new() };
        let detail = || match &r.failure {
            Some(f) => format!(" ({f})"),
            None => String::new(),
        };
        if let Some(want) = e.status {
            if r.status != Some(want) {
                fails.push(format!("{who}status {st}, expected {want}{}", detail()));
            }
        }
        if let Some(want) = &e.error {
            if r.header("x-router-error") != want.as_deref() {
                fails.push(format!("{who}X-Router-Error {err}, expected {}", opt(want.as_deref())));
            }
        }
        if let Some(want) = &e.upstream {
            if r.header("x-upstream-name") != want.as_deref() {
                fails.push(format!("{who}X-Upstream-Name {up}, expected {}", opt(want.as_deref())));
            }
        }
        if let Some(want) = &e.placement {
            if r.header("x-router-placement") != want.as_deref() {
                fails.push(format!("{who}X-Router-Placement {pl}, expected {}", opt(want.as_deref())));
            }
        }
        if let Some(want) = &e.body {
            if r.body != want.as_bytes() {
                fails.push(format!("{who}body {:?}, expected {want:?}", String::from_utf8_lossy(&r.body)));
            }
        }
        if let Some(true) = e.error_body {
            let v: Option<Value> = serde_json::from_slice(&r.body).ok();
            let ok = v.as_ref().map(|v| {
                v.get("error").and_then(|x| x.as_str()).is_some()
                    && v.get("error").and_then(|x| x.as_str()) == r.header("x-router-error")
                    && v.get("message").and_then(|x| x.as_str()).is_some()
            }) == Some(true)
                && r.header("content-type").map(|c| c.starts_with("application/json")) == Some(true);
            *tally.entry("error_body").or_default().entry(ok.to_string()).or_default() += 1;
            if !ok {
                fails.push(format!("{who}not a router error document: {:?} (content-type {:?})", String::from_utf8_lossy(&r.body), r.header("content-type")));
            }
        }
        for (h, want) in &e.headers {
            let want = want.clone();
            let got = r.header(&h.to_ascii_lowercase()).map(|s| s.to_string());
            *tally.entry("headers").or_default().entry(format!("{h}={}", opt(got.as_deref()))).or_default() += 1;
            if got != want {
                fails.push(format!("{who}header {h} = {:?}, expected {:?}", got, want));
            }
        }
        if !e.echo_headers.is_empty() {
            let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            let hs: Vec<(String, String)> = serde_json::from_value(v.get("headers").cloned().unwrap_or(Value::Null)).unwrap_or_default();
            for (h, want) in &e.echo_headers {
                let want = want.clone();
                let got: Vec<&str> = hs.iter().filter(|(k, _)| *k == h.to_ascii_lowercase()).map(|(_, v)| v.as_str()).collect();
                let got = if got.is_empty() { None } else { Some(got.join(", ")) };
                *tally.entry("echo_headers").or_default().entry(format!("{h}={}", opt(got.as_deref()))).or_default() += 1;
                if got != want {
                    fails.push(format!("{who}upstream received {h} = {:?}, expected {:?}", got, want));
                }
            }
        }
        if let Some(want) = e.complete {
            if r.complete != want {
                fails.push(format!("{who}body complete = {}, expected {want}{}", r.complete, detail()));
            }
        }
        if let Some(want) = e.no_response {
            if r.status.is_none() != want {
                fails.push(format!("{who}no_response = {}, expected {want}{}", r.status.is_none(), detail()));
            }
        }
        if let Some(min) = e.chunks_at_least {
            let ok = r.chunks >= min;
            *tally.entry("chunks_at_least").or_default().entry(ok.to_string()).or_default() += 1;
            if !ok {
                fails.push(format!("{who}{} chunks, expected at least {min}{}", r.chunks, detail()));
            }
        }
        if let Some(want) = &e.responses {
            check_responses(&r.exchange, want, &who, &mut fails);
        }
        if let Some(want) = e.connection {
            let got = connection_of(&r.exchange);
            *tally.entry("connection").or_default().entry(got.clone()).or_default() += 1;
            if got != connection_name(want) {
                fails.push(format!("{who}connection {got} after the last response, expected {}{}", connection_name(want), detail()));
            }
        }
        if let Some(max) = e.max_chunk_gap_ms {
            let ok = r.max_gap_ms <= max;
            *tally.entry("chunk_gap_ok").or_default().entry(ok.to_string()).or_default() += 1;
            if !ok {
                fails.push(format!("{who}a chunk came {} ms after the previous one, expected at most {max}", r.max_gap_ms));
            }
        }
    }
    let counts = |name: &str, want: &BTreeMap<String, u32>, fails: &mut Vec<String>| {
        let got = tally.get(name).cloned().unwrap_or_default();
        let mut g2 = got.clone();
        for (k, w) in want {
            let g = g2.remove(k).unwrap_or(0);
            if g != *w {
                fails.push(format!("{name} {k}: {g} responses, expected {w} (all: {got:?})"));
            }
        }
    };
    counts("status", &e.status_counts, &mut fails);
    counts("error", &e.error_counts, &mut fails);
    counts("upstream", &e.upstream_counts, &mut fails);
    // Only the first few failures of a step, to keep reports readable.
    let total = fails.len();
    fails.truncate(5);
    if total > 5 {
        fails.push(format!("... and {} more", total - 5));
    }
    let default_dims: Vec<String> = if crate::client::is_raw(s) || s.pad_header_bytes.is_some() {
        vec!["status".into()]
    } else {
        ["status", "error", "upstream", "placement", "complete"].iter().map(|x| x.to_string()).collect()
    };
    let dims = s.trace.clone().unwrap_or(default_dims);
    for (k, v) in tally {
        let core = ["status", "error", "upstream", "placement", "complete"].contains(&k);
        if !core || dims.iter().any(|d| d == k) {
            extra.insert(k.to_string(), json!(v));
        }
    }
    SendCheck { failures: fails, observed: Value::Object(extra) }
}

/// The name of an expected connection end.
fn connection_name(c: ConnExpect) -> &'static str {
    match c {
        ConnExpect::Eof => "eof",
        ConnExpect::Reset => "reset",
        ConnExpect::Open => "open",
        ConnExpect::StreamReset => "stream_reset",
        ConnExpect::Goaway => "goaway",
    }
}

/// How the connection of `ex` was after its last response, in the words of
/// `expect.connection`: `eof`, `reset`, `open` (kept alive, or still open when the client
/// stopped watching), `client-closed` (the client closed it: enough chunks, a tunnel, a
/// response it could not parse) or `none` (no connection).
pub fn connection_of(ex: &Exchange) -> String {
    match ex.end {
        Some(ConnEnd::Fin) => "eof",
        Some(ConnEnd::Reset) => "reset",
        Some(ConnEnd::KeptAlive) | Some(ConnEnd::Open) => "open",
        Some(ConnEnd::ClientClosed) => "client-closed",
        Some(ConnEnd::StreamReset(_)) => "stream_reset",
        Some(ConnEnd::GoAway(_)) => "goaway",
        None => "none",
    }
    .to_string()
}

/// The lines of field `name` (case-insensitive) in order.
fn field_lines<'a>(hs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    hs.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
}

/// A field's lines joined with `, ` (RFC 9110 §5.3), `None` when absent.
fn field_value(hs: &[(String, String)], name: &str) -> Option<String> {
    let l = field_lines(hs, name);
    if l.is_empty() {
        None
    } else {
        Some(l.join(", "))
    }
}

/// Checks `headers: {name: value|null}` against header fields; failures are prefixed with
/// `who`.
fn check_headers(hs: &[(String, String)], want: &BTreeMap<String, Option<String>>, who: &str, fails: &mut Vec<String>) {
    for (h, w) in want {
        let got = field_value(hs, h);
        if got != *w {
            fails.push(format!("{who}header {h} = {got:?}, expected {w:?}"));
        }
    }
}

/// Checks every final response of one exchange against `expect.responses`: the count, then
/// each response's members in order.
pub fn check_responses(ex: &Exchange, want: &[ResponseExpect], who: &str, fails: &mut Vec<String>) {
    let got = &ex.responses;
    if got.len() != want.len() {
        let sts: Vec<u16> = got.iter().map(|r| r.head.status).collect();
        let why = ex.failure.as_ref().map(|f| format!("; {:?}: {}", f.kind, f.detail).to_lowercase()).unwrap_or_default();
        fails.push(format!("{who}{} responses {sts:?}, expected {}{why}", got.len(), want.len()));
    }
    for (k, (r, w)) in got.iter().zip(want).enumerate() {
        let who = format!("{who}responses[{k}]: ");
        let hs = &r.head.headers;
        if r.head.status != w.status {
            fails.push(format!("{who}status {}, expected {}", r.head.status, w.status));
        }
        if let Some(want) = &w.reason {
            if r.head.reason != *want {
                fails.push(format!("{who}reason {:?}, expected {want:?}", r.head.reason));
            }
        }
        for (name, label, want) in [("x-router-error", "X-Router-Error", &w.error), ("x-upstream-name", "X-Upstream-Name", &w.upstream)] {
            if let Some(want) = want {
                let got = field_value(hs, name);
                if got != *want {
                    fails.push(format!("{who}{label} {}, expected {}", opt(got.as_deref()), opt(want.as_deref())));
                }
            }
        }
        check_headers(hs, &w.headers, &who, fails);
        for (h, want) in &w.header_values {
            let got = field_lines(hs, h);
            if got != *want {
                fails.push(format!("{who}header {h} lines {got:?}, expected {want:?}"));
            }
        }
        if let Some(want) = &w.body {
            let want = crate::client::bytes_of(want);
            if r.body.kept != want || !r.body.whole() {
                fails.push(format!("{who}body {:?} ({} bytes), expected {:?}", crate::scenario::text::latin1_text(&r.body.kept[..r.body.kept.len().min(200)]), r.body.len, crate::scenario::text::latin1_text(&want[..want.len().min(200)])));
            }
        }
        if let Some(want) = &w.interim {
            let sts: Vec<u16> = r.interim.iter().map(|h| h.status).collect();
            if sts != want.iter().map(|i| i.status).collect::<Vec<u16>>() {
                fails.push(format!("{who}interim responses {sts:?}, expected {:?}", want.iter().map(|i| i.status).collect::<Vec<u16>>()));
            } else {
                for (j, (h, i)) in r.interim.iter().zip(want).enumerate() {
                    check_headers(&h.headers, &i.headers, &format!("{who}interim[{j}]: "), fails);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(yaml: &str) -> Send {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> Resp {
        Resp {
            status: Some(status),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
            complete: true,
            ..Default::default()
        }
    }

    #[test]
    fn json_numbers_compare_by_value_everything_else_exactly() {
        assert!(json_eq(&json!(1), &json!(1.0)));
        assert!(!json_eq(&json!(1), &json!(2)));
        assert!(!json_eq(&json!("1"), &json!(1)));
        assert!(json_eq(&json!({"a": [1, "x"]}), &json!({"a": [1, "x"]})));
        // Inside containers numbers compare as serde_json does (1 != 1.0).
        assert!(!json_eq(&json!([1]), &json!([1.0])));
        assert!(!json_eq(&Value::Null, &json!("<absent>")));
    }

    #[test]
    fn matching_responses_pass_and_are_tallied() {
        let s = send("{key: k, expect: {status: 200, upstream: primary, error: null}}");
        let rs = [resp(200, &[("x-upstream-name", "primary")], "ok")];
        let c = check_send(&s, &rs);
        assert_eq!(c.failures, Vec::<String>::new());
        assert_eq!(c.observed["status"], json!({"200": 1}));
        assert_eq!(c.observed["upstream"], json!({"primary": 1}));
        assert_eq!(c.observed["error"], json!({"-": 1}));
        assert_eq!(c.observed["complete"], json!({"true": 1}));
    }

    #[test]
    fn each_scalar_expectation_can_fail() {
        let s = send("{expect: {status: 200, error: null, upstream: primary, body: hello, complete: true}}");
        let mut r = resp(502, &[("x-router-error", "upstream_unavailable")], "bye");
        r.complete = false;
        r.failure = Some("reset".into());
        let c = check_send(&s, &[r]);
        assert_eq!(
            c.failures,
            vec![
                "status 502, expected 200 (reset)",
                "X-Router-Error upstream_unavailable, expected -",
                "X-Upstream-Name -, expected primary",
                "body \"bye\", expected \"hello\"",
                "body complete = false, expected true (reset)",
            ]
        );
    }

    #[test]
    fn placement_absent_is_a_dash() {
        let s = send("{expect: {placement: pa}}");
        let c = check_send(&s, &[resp(200, &[], "")]);
        assert_eq!(c.failures, vec!["X-Router-Placement -, expected pa"]);
        assert_eq!(c.observed["placement"], json!({"-": 1}));
    }

    #[test]
    fn no_response_counts_as_status_none() {
        let s = send("{expect: {no_response: true, status_counts: {none: 1}}}");
        let c = check_send(&s, &[Resp { failure: Some("refused".into()), ..Default::default() }]);
        assert!(c.failures.is_empty(), "{:?}", c.failures);
        assert_eq!(c.observed["status"], json!({"none": 1}));
        // A missing response has no `complete` tally.
        assert!(c.observed.get("complete").is_none());
        let c = check_send(&send("{expect: {no_response: true}}"), &[resp(200, &[], "")]);
        assert_eq!(c.failures, vec!["no_response = false, expected true"]);
    }

    #[test]
    fn counts_compare_per_value_and_name_the_tally() {
        let s = send("{count: 3, expect: {status_counts: {'200': 2, '502': 1}, upstream_counts: {a: 3}}}");
        let rs = [resp(200, &[("x-upstream-name", "a")], ""), resp(200, &[("x-upstream-name", "b")], ""), resp(503, &[], "")];
        let c = check_send(&s, &rs);
        assert_eq!(
            c.failures,
            vec![
                "status 502: 0 responses, expected 1 (all: {\"200\": 2, \"503\": 1})",
                "upstream a: 1 responses, expected 3 (all: {\"-\": 1, \"a\": 1, \"b\": 1})",
            ]
        );
    }

    #[test]
    fn per_response_failures_are_numbered_and_capped_at_five() {
        let s = send("{count: 7, expect: {status: 200}}");
        let rs: Vec<Resp> = (0..7).map(|_| resp(500, &[], "")).collect();
        let c = check_send(&s, &rs);
        assert_eq!(c.failures.len(), 6);
        assert_eq!(c.failures[0], "response 1/7: status 500, expected 200");
        assert_eq!(c.failures[4], "response 5/7: status 500, expected 200");
        assert_eq!(c.failures[5], "... and 2 more");
    }

    #[test]
    fn error_documents_headers_and_echoed_headers() {
        let s = send("{expect: {error_body: true, headers: {X-A: '1', X-Gone: null}, echo_headers: {x-forwarded-for: 127.0.0.1}}}");
        let good = resp(
            502,
            &[("x-router-error", "upstream_unavailable"), ("content-type", "application/json"), ("x-a", "1")],
            r#"{"error":"upstream_unavailable","message":"m","headers":[["x-forwarded-for","127.0.0.1"]]}"#,
        );
        let c = check_send(&s, &[good]);
        assert!(c.failures.is_empty(), "{:?}", c.failures);
        assert_eq!(c.observed["error_body"], json!({"true": 1}));
        assert_eq!(c.observed["headers"], json!({"X-A=1": 1, "X-Gone=-": 1}));
        // The error code in the body must be the one in X-Router-Error.
        let bad = resp(502, &[("x-router-error", "other"), ("content-type", "application/json"), ("x-gone", "here")], r#"{"error":"upstream_unavailable","message":"m"}"#);
        let c = check_send(&s, &[bad]);
        assert_eq!(c.failures.len(), 4, "{:?}", c.failures);
        assert!(c.failures[0].starts_with("not a router error document"));
        assert_eq!(c.failures[1], "header X-A = None, expected Some(\"1\")");
        assert_eq!(c.failures[2], "header X-Gone = Some(\"here\"), expected None");
        assert_eq!(c.failures[3], "upstream received x-forwarded-for = None, expected Some(\"127.0.0.1\")");
    }

    #[test]
    fn traced_dimensions_default_to_status_only_for_raw_sends() {
        let s = send("{raw: \"GET / HTTP/1.1\\r\\n\\r\\n\"}");
        let c = check_send(&s, &[resp(400, &[], "")]);
        assert_eq!(c.observed, json!({"status": {"400": 1}}));
        let s = send("{trace: [upstream]}");
        let c = check_send(&s, &[resp(200, &[("x-upstream-name", "a")], "")]);
        assert_eq!(c.observed, json!({"upstream": {"a": 1}}));
    }

    fn exchange_of(resps: &[(u16, &[(&str, &str)], &str)], end: ConnEnd) -> Exchange {
        use crate::observe::client::{Framing, Head, Response};
        Exchange {
            responses: resps
                .iter()
                .map(|(st, hs, body)| Response {
                    interim: vec![Head { version: "HTTP/1.1".into(), status: 103, reason: "Early Hints".into(), headers: vec![("Link".into(), "</a>".into())] }],
                    head: Head { version: "HTTP/1.1".into(), status: *st, reason: "OK".into(), headers: hs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() },
                    framing: Framing::Length(body.len() as u64),
                    body: crate::observe::body::BodyRecord::of(body.as_bytes(), 1024),
                    complete: true,
                    trailers: vec![],
                    chunks: 1,
                    max_gap_ms: 0,
                })
                .collect(),
            end: Some(end),
            ..Default::default()
        }
    }

    #[test]
    fn every_response_and_the_connection_end_are_checked() {
        let s = send("{raw: x, expect: {responses: [{status: 200, reason: OK, upstream: u, headers: {via: 'a, b', x-gone: null}, header_values: {Via: [a, b]}, body: hi, interim: [{status: 103, headers: {link: </a>}}]}, {status: 400, error: bad_request}], connection: eof}}");
        let good = exchange_of(&[(200, &[("X-Upstream-Name", "u"), ("Via", "a"), ("via", "b")], "hi"), (400, &[("X-Router-Error", "bad_request")], "")], ConnEnd::Fin);
        let c = check_send(&s, &[Resp::of(good, None)]);
        assert_eq!(c.failures, Vec::<String>::new());
        assert_eq!(c.observed["connection"], json!({"eof": 1}));
        // One response too few, a wrong member in the first, kept open.
        let bad = exchange_of(&[(200, &[("X-Upstream-Name", "v"), ("Via", "a, b"), ("X-Gone", "1")], "ho")], ConnEnd::KeptAlive);
        let c = check_send(&s, &[Resp::of(bad, None)]);
        assert_eq!(
            c.failures,
            vec![
                "1 responses [200], expected 2",
                "responses[0]: X-Upstream-Name v, expected u",
                "responses[0]: header x-gone = Some(\"1\"), expected None",
                "responses[0]: header Via lines [\"a, b\"], expected [\"a\", \"b\"]",
                "responses[0]: body \"ho\" (2 bytes), expected \"hi\"",
                "... and 1 more",
            ]
        );
        // The connection after the last response.
        let s = send("{expect: {connection: open}}");
        for (end, name) in [(ConnEnd::Fin, "eof"), (ConnEnd::Reset, "reset"), (ConnEnd::ClientClosed, "client-closed")] {
            let c = check_send(&s, &[Resp::of(exchange_of(&[(200, &[], "")], end), None)]);
            assert_eq!(c.failures, vec![format!("connection {name} after the last response, expected open")]);
        }
        for end in [ConnEnd::KeptAlive, ConnEnd::Open] {
            assert!(check_send(&s, &[Resp::of(exchange_of(&[(200, &[], "")], end), None)]).failures.is_empty());
        }
    }

    #[test]
    fn interim_responses_are_counted_and_compared() {
        let s = send("{expect: {responses: [{status: 200, interim: [{status: 100}]}]}}");
        let c = check_send(&s, &[Resp::of(exchange_of(&[(200, &[], "")], ConnEnd::KeptAlive), None)]);
        assert_eq!(c.failures, vec!["responses[0]: interim responses [103], expected [100]"]);
        let s = send("{expect: {responses: [{status: 200, interim: [{status: 103, headers: {link: </b>}}]}]}}");
        let c = check_send(&s, &[Resp::of(exchange_of(&[(200, &[], "")], ConnEnd::KeptAlive), None)]);
        assert_eq!(c.failures, vec!["responses[0]: interim[0]: header link = Some(\"</a>\"), expected Some(\"</b>\")"]);
    }

    #[test]
    fn chunk_expectations() {
        let s = send("{read_chunks: 3, expect: {chunks_at_least: 3, max_chunk_gap_ms: 100}}");
        let mut r = resp(200, &[], "");
        r.chunks = 2;
        r.max_gap_ms = 250;
        let c = check_send(&s, &[r]);
        assert_eq!(c.failures, vec!["2 chunks, expected at least 3", "a chunk came 250 ms after the previous one, expected at most 100"]);
        assert_eq!(c.observed["chunks_at_least"], json!({"false": 1}));
        assert_eq!(c.observed["chunk_gap_ok"], json!({"false": 1}));
    }
}
