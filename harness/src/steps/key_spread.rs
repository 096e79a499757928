//! `key_spread`: one request per key (each sent `repeat` times), to check consistent
//! hashing (docs/spec.md section 3, "Endpoint selection"): every key is answered 200 by one
//! upstream each time (sticky); compared with a spread saved by an earlier step (the same
//! keys), at most `max_moved_percent` of the keys land elsewhere, and only keys that were
//! on a `moved_from` upstream. The trace records these verdicts, not the key -> upstream
//! map itself: the Ketama ring hashes the upstreams' ports, which each run picks afresh, so
//! the map differs between two runs of the same router.
use super::Ctx;
use crate::client::{outgoing, Resp};
use crate::observe::client::Options;
use crate::scenario::Send;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The `key_spread` step.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeySpread {
    /// `X-Routing-Key` of every request.
    pub key: String,
    /// The request header carrying the hashed key; absent: the key is the path (`/<key>`).
    #[serde(default)]
    pub header: Option<String>,
    /// Number of keys: `<prefix>0` ..= `<prefix>N-1`.
    pub keys: u32,
    /// Prefix of the keys (default `key-`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Requests per key, one after the other (default 2).
    #[serde(default = "two")]
    pub repeat: u32,
    /// Keep this spread (key -> upstream) under a name for a later `compare`.
    #[serde(default)]
    pub save: Option<String>,
    /// Compare with the spread an earlier step saved under this name.
    #[serde(default)]
    pub compare: Option<String>,
    /// With `compare`: the most keys that may land on another upstream, in percent of
    /// the keys.
    #[serde(default)]
    pub max_moved_percent: Option<f64>,
    /// With `compare`: the upstreams (in the saved spread) that moved keys may come from.
    #[serde(default)]
    pub moved_from: Option<Vec<String>>,
    /// Upstreams that must answer no key.
    #[serde(default)]
    pub never: Vec<String>,
}

fn default_prefix() -> String {
    "key-".into()
}

fn two() -> u32 {
    2
}

/// Sends the keys, checks the spread, records the verdicts and saves the spread.
pub async fn run(ctx: &mut Ctx<'_>, i: i64, k: &KeySpread) {
    let addr = ctx.env.data_addr();
    let mut spread: BTreeMap<String, String> = BTreeMap::new();
    let (mut all_ok, mut sticky) = (true, true);
    let mut failures = Vec::new();
    for n in 0..k.keys {
        let value = format!("{}{n}", k.prefix);
        let mut req = json!({"key": k.key});
        match &k.header {
            Some(h) => req["headers"] = json!({ h.as_str(): value }),
            None => req["path"] = json!(format!("/{value}")),
        }
        let send: Send = match serde_json::from_value(req) {
            Ok(s) => s,
            Err(e) => {
                ctx.fail(i, "key_spread", format!("building the request: {e}"));
                return;
            }
        };
        // One request at a time on a fresh connection, as `send` does, but without
        // watching the connection's end after the response (not compared here).
        let opts = Options { timeout: Duration::from_millis(send.timeout_ms), linger: Duration::from_millis(1), ..Default::default() };
        let conn = match ctx.env.conn_for(None) {
            Ok(c) => c,
            Err(e) => {
                ctx.fail(i, "key_spread", format!("client TLS configuration: {e:#}"));
                return;
            }
        };
        let mut rs = Vec::new();
        for r in 0..k.repeat {
            let tag = format!("{i}.{n}.{r}");
            rs.push(Resp::of(crate::client::exchange_over(addr, outgoing(&send, &tag), &opts, &conn).await, Some(tag)));
        }
        ctx.latencies.extend(rs.iter().map(|r| r.latency_us));
        let mut seen = BTreeSet::new();
        for r in &rs {
            if r.status != Some(200) {
                all_ok = false;
                failures.push(format!("{value}: status {:?}", r.status));
            }
            let up = r.headers.iter().find(|(h, _)| h == "x-upstream-name").map(|(_, v)| v.clone()).unwrap_or_default();
            seen.insert(up);
        }
        if seen.len() != 1 {
            sticky = false;
            failures.push(format!("{value}: answered by {seen:?}"));
        }
        spread.insert(value, seen.into_iter().next().unwrap_or_default());
    }
    let mut obs = json!({"keys": k.keys, "all_200": all_ok, "sticky": sticky});
    let never: Vec<&String> = spread.values().filter(|u| k.never.contains(u)).collect();
    if !k.never.is_empty() {
        obs["never_used"] = json!(never.is_empty());
        if !never.is_empty() {
            failures.push(format!("{} keys answered by an upstream in `never` {:?}", never.len(), k.never));
        }
    }
    if let Some(name) = &k.compare {
        match ctx.spreads.get(name) {
            None => failures.push(format!("no spread saved as {name:?}")),
            Some(before) => {
                let moved: Vec<(&String, &String, &String)> = spread
                    .iter()
                    .filter_map(|(key, now)| before.get(key).filter(|was| *was != now).map(|was| (key, was, now)))
                    .collect();
                let percent = 100.0 * moved.len() as f64 / f64::from(k.keys.max(1));
                if let Some(max) = k.max_moved_percent {
                    obs["moved_within_max"] = json!(percent <= max);
                    if percent > max {
                        failures.push(format!("{} of {} keys moved ({percent:.1}% > {max}%)", moved.len(), k.keys));
                    }
                }
                if let Some(from) = &k.moved_from {
                    let bad: Vec<String> = moved.iter().filter(|(_, was, _)| !from.contains(was)).map(|(key, was, now)| format!("{key}: {was} -> {now}")).collect();
                    obs["moved_only_from"] = json!(bad.is_empty());
                    if !bad.is_empty() {
                        failures.push(format!("keys moved from upstreams outside {from:?}: {}", bad.join(", ")));
                    }
                }
            }
        }
    }
    for f in failures.into_iter().take(10) {
        ctx.fail(i, "key_spread", f);
    }
    ctx.obs(i, "key_spread", obs);
    if let Some(name) = &k.save {
        ctx.spreads.insert(name.clone(), spread);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_defaults() {
        let k: KeySpread = serde_yaml_ng::from_str("{key: t, header: x-user, keys: 10}").unwrap();
        assert_eq!((k.prefix.as_str(), k.repeat, k.save, k.never.len()), ("key-", 2, None, 0));
        assert!(serde_yaml_ng::from_str::<KeySpread>("{key: t, keys: 10, bogus: 1}").is_err());
    }
}
