//! `expect_access_log`: the router's access log (JSON lines with a `ts` member on the
//! current process's stderr): the line count and the last lines, in any order.
use super::{poll_until, Ctx, SETTLE};
use crate::expect::json_eq;
use crate::scenario::AccessLogExpect;
use serde_json::{json, Value};

/// Reads the log until everything matches or [`SETTLE`] passes.
pub async fn run(ctx: &mut Ctx<'_>, i: i64, a: &AccessLogExpect) {
    let env = &*ctx.env;
    let ((seen, fails), _) = poll_until(SETTLE, move || async move {
        let lines = env.router.access_log();
        let mut fails = vec![];
        let mut seen = serde_json::Map::new();
        if let Some(n) = a.count {
            seen.insert("count".into(), json!(lines.len()));
            if lines.len() != n {
                fails.push(format!("{} access-log lines, expected {n}", lines.len()));
            }
        }
        // The last lines in any order: a router may log a request just after
        // the client got its response, so sequential requests can log out of
        // order. Each expected entry must match a distinct line.
        let tail: Vec<&Value> = lines.iter().rev().take(a.last.len()).rev().collect();
        let mut shown = vec![];
        let mut normed: Vec<Value> = Vec::new();
        for got in &tail {
            let mut norm = (*got).clone();
            if let Some(o) = norm.as_object_mut() {
                let ts_ok = o.get("ts").and_then(|t| t.as_str()).map(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()) == Some(true);
                let d_ok = o.get("duration_ms").map(|d| d.is_number()) == Some(true);
                o.insert("ts".into(), json!(ts_ok));
                o.insert("duration_ms".into(), json!(d_ok));
                if !ts_ok || !d_ok {
                    fails.push(format!("access-log line: ts must be RFC 3339 and duration_ms a number: {got}"));
                }
            }
            normed.push(norm);
        }
        if tail.len() < a.last.len() {
            fails.push(format!("{} access-log lines, expected at least {}", tail.len(), a.last.len()));
        }
        let mut used = vec![false; normed.len()];
        for want in &a.last {
                    let hit = normed.iter().enumerate().position(|(j, g)| {
                !used[j] && want.iter().all(|(f, v)| json_eq(&g.get(f).cloned().unwrap_or(Value::Null), v) && g.get(f).is_some())
            });
            match hit {
                Some(j) => used[j] = true,
                None => fails.push(format!("no access-log line matches {}", serde_json::to_string(&want).unwrap_or_default())),
            }
        }
        normed.sort_by_key(|v| v.to_string());
        shown.extend(normed);
        seen.insert("last".into(), Value::Array(shown));
        let ok = fails.is_empty();
        ((seen, fails), ok)
    })
    .await;
    for f in fails {
        ctx.fail(i, "expect_access_log", f);
    }
    ctx.obs(i, "expect_access_log", Value::Object(seen));
}
