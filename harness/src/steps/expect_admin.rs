//! `expect_admin`: fields of `GET /admin/state` by JSON Pointer.
use super::{poll_until, Ctx, SETTLE};
use crate::expect::json_eq;
use serde_json::Value;
use std::collections::BTreeMap;

/// Reads the admin state until every field matches or [`SETTLE`] passes; a field that
/// is not there is `"<absent>"`, a failed read fails the step.
pub async fn run(ctx: &mut Ctx<'_>, i: i64, m: &BTreeMap<String, Value>) {
    let env = &*ctx.env;
    // A router may record an outcome just after the response reached the client: read
    // again until everything matches or SETTLE passes.
    let ((seen, fails), _) = poll_until(SETTLE, move || async move {
        let mut seen = serde_json::Map::new();
        let mut fails = vec![];
        // A failed read fails the step; it never reads as absent fields.
        let st = match env.admin_state().await {
            Ok(st) => st,
            Err(e) => {
                seen.insert("read".into(), Value::String("failed".into()));
                fails.push(format!("GET /admin/state failed: {e:#}"));
                return ((seen, fails), false);
            }
        };
        for (ptr, want) in m {
            let got = st.pointer(ptr).cloned().unwrap_or(Value::String("<absent>".into()));
            seen.insert(ptr.clone(), got.clone());
            if !json_eq(&got, want) {
                fails.push(format!("admin {ptr} = {got}, expected {want}"));
            }
        }
        let ok = fails.is_empty();
        ((seen, fails), ok)
    })
    .await;
    for f in fails {
        ctx.fail(i, "expect_admin", f);
    }
    ctx.obs(i, "expect_admin", Value::Object(seen));
}
