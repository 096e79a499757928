//! `expect_file`: a file the router keeps (existence, JSON `version`).
use super::Ctx;
use crate::scenario::FileExpect;
use serde_json::{json, Value};

/// Reads the file once and checks it.
pub fn run(ctx: &mut Ctx<'_>, i: i64, f: &FileExpect) {
    let path = &f.path;
    let text = std::fs::read_to_string(path).ok();
    let mut seen = serde_json::Map::new();
    if let Some(want) = f.exists {
        seen.insert("exists".into(), json!(text.is_some()));
        if text.is_some() != want {
            ctx.fail(i, "expect_file", format!("{path} exists = {}, expected {want}", text.is_some()));
        }
    }
    if let Some(want) = f.json_version {
        let got = text.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok()).and_then(|v| v.get("version").and_then(|x| x.as_u64()));
        seen.insert("json_version".into(), json!(got));
        if got != Some(want) {
            ctx.fail(i, "expect_file", format!("{path} version {got:?}, expected {want}"));
        }
    }
    ctx.obs(i, "expect_file", Value::Object(seen));
}
