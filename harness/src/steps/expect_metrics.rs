//! `expect_metrics`: values of metric series (`name{label="v"}`) in `GET /metrics`.
use super::{poll_until, Ctx, SETTLE};
use crate::metrics::SeriesKey;
use anyhow::Result;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Scrapes until every series has its value or [`SETTLE`] passes; `Err` on a series
/// name that does not parse (validated away).
pub async fn run(ctx: &mut Ctx<'_>, i: i64, m: &BTreeMap<String, Option<f64>>) -> Result<()> {
    let keys: Vec<(&String, SeriesKey, Option<f64>)> = m.iter().map(|(k, want)| SeriesKey::parse(k).map(|key| (k, key, *want))).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?;
    let env = &*ctx.env;
    let keys = &keys;
    let ((seen, fails), _) = poll_until(SETTLE, move || async move {
        let mut seen = serde_json::Map::new();
        let mut fails = vec![];
        let scrape = match env.metrics().await {
            Ok(s) => s,
            Err(e) => {
                // A failed scrape fails the step; it never reads as zeros.
                seen.insert("scrape".into(), json!("failed"));
                fails.push(format!("GET /metrics failed: {e:#}"));
                return ((seen, fails), false);
            }
        };
        for (k, key, want) in keys {
            let got = scrape.value(key);
            seen.insert((*k).clone(), got.map(|g| json!(g)).unwrap_or_else(|| json!("<absent>")));
            match (got, want) {
                (Some(g), Some(w)) if g == *w => {}
                (None, None) => {}
                (Some(g), Some(w)) => fails.push(format!("{k} = {g}, expected {w}")),
                (Some(g), None) => fails.push(format!("{k} = {g}, expected the series to be absent")),
                (None, Some(w)) => fails.push(format!("{k} is absent, expected {w}")),
            }
        }
        let ok = fails.is_empty();
        ((seen, fails), ok)
    })
    .await;
    for f in fails {
        ctx.fail(i, "expect_metrics", f);
    }
    ctx.obs(i, "expect_metrics", Value::Object(seen));
    Ok(())
}
