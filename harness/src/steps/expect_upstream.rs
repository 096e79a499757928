//! `expect_upstream`: what a mock upstream received (requests, body bytes).
use super::Ctx;
use crate::scenario::UpstreamExpect;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// Reads the upstream's counters once and checks them.
pub fn run(ctx: &mut Ctx<'_>, i: i64, u: &UpstreamExpect) {
    let sh = ctx.env.upstreams[&u.name].shared().clone();
    let mut seen = serde_json::Map::new();
    if let Some(n) = u.requests {
        let got = sh.requests.load(Ordering::SeqCst);
        seen.insert("requests".into(), json!(got));
        if got != n {
            ctx.fail(i, "expect_upstream", format!("upstream {} received {got} requests, expected {n}", u.name));
        }
    }
    if let Some(n) = u.body_bytes {
        let got = sh.body_bytes.load(Ordering::SeqCst);
        seen.insert("body_bytes".into(), json!(got));
        if got != n {
            ctx.fail(i, "expect_upstream", format!("upstream {} received {got} body bytes, expected {n}", u.name));
        }
    }
    ctx.obs(i, "expect_upstream", Value::Object(seen));
}
