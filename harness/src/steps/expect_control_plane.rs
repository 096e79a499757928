//! `expect_control_plane`: what the mock control plane saw (hellos and their fields).
use super::Ctx;
use crate::control_plane::CpEvent;
use crate::scenario::CpExpect;
use serde_json::{json, Value};

/// Checks the control plane's events once.
pub fn run(ctx: &mut Ctx<'_>, i: i64, e: &CpExpect) {
    let cp = ctx.env.cp.as_ref().expect("validated");
    let hellos: Vec<(String, Option<u64>)> = cp
        .events()
        .into_iter()
        .filter_map(|e| match e {
            CpEvent::Hello { imp, version } => Some((imp, version)),
            _ => None,
        })
        .collect();
    let mut seen = serde_json::Map::new();
    let mut fails = vec![];
    if let Some(n) = e.hellos {
        seen.insert("hellos".into(), json!(hellos.len()));
        if hellos.len() != n as usize {
            fails.push(format!("{} hellos, expected {n}", hellos.len()));
        }
    }
    if let Some(v) = e.last_hello_version {
        let got = hellos.last().and_then(|h| h.1);
        seen.insert("last_hello_version".into(), json!(got));
        if got != v {
            fails.push(format!("last hello config_version {got:?}, expected {v:?}"));
        }
    }
    if e.hello_impl_matches == Some(true) {
        let ok = !hellos.is_empty() && hellos.iter().all(|h| h.0 == ctx.env.router.imp);
        seen.insert("hello_impl_matches".into(), json!(ok));
        if !ok {
            fails.push(format!("hello impl fields {:?}, expected {:?}", hellos.iter().map(|h| &h.0).collect::<Vec<_>>(), ctx.env.router.imp));
        }
    }
    for f in fails {
        ctx.fail(i, "expect_control_plane", f);
    }
    ctx.obs(i, "expect_control_plane", Value::Object(seen));
}
