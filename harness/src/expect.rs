//! Expectation checks: the responses of a `send` step against its expectations
//! (per response, then counts over all of them), and the JSON comparison used by every
//! step that compares values.

use crate::client::Resp;
use crate::scenario::Send;
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
    let default_dims: Vec<String> = if s.raw.is_some() || s.pad_header_bytes.is_some() {
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

