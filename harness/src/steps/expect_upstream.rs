//! `expect_upstream`: what a mock upstream received (request count, body bytes, and with
//! `received` every request since the previous such step, in order).
use super::{poll_until, Ctx, SETTLE};
use crate::observe::upstream::UpstreamRequest;
use crate::scenario::{ReceivedExpect, UpstreamExpect};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// Reads the upstream's counters and records once (the records of `received` are waited
/// for up to [`SETTLE`] to reach the expected count) and checks them. With `received`, the
/// records compared go into the trace (normalised), so the parity verdict compares them.
pub async fn run(ctx: &mut Ctx<'_>, i: i64, u: &UpstreamExpect) {
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
    if let Some(want) = &u.received {
        let from = ctx.received_seen.get(&u.name).copied().unwrap_or(0);
        let recorder = ctx.env.received.clone();
        let name = u.name.clone();
        let (recs, _) = poll_until(SETTLE, || {
            let recs: Vec<UpstreamRequest> = recorder.snapshot().into_iter().filter(|r| r.upstream == name).skip(from).collect();
            let ok = recs.len() >= want.len();
            async move { (recs, ok) }
        })
        .await;
        ctx.received_seen.insert(u.name.clone(), from + recs.len());
        let norm = ctx.env.full_normaliser();
        seen.insert("received".into(), Value::Array(recs.iter().map(|r| norm.upstream_request(r)).collect()));
        for f in check_received(&recs, want) {
            ctx.fail(i, "expect_upstream", format!("upstream {}: {f}", u.name));
        }
    }
    ctx.obs(i, "expect_upstream", Value::Object(seen));
}

/// Compares records with `received` expectations: the count, then each member given.
pub fn check_received(recs: &[UpstreamRequest], want: &[ReceivedExpect]) -> Vec<String> {
    let mut fails = Vec::new();
    if recs.len() != want.len() {
        let got: Vec<String> = recs.iter().map(|r| format!("{} {}", r.method, r.target)).collect();
        fails.push(format!("received {} requests {got:?}, expected {}", recs.len(), want.len()));
    }
    for (k, (r, w)) in recs.iter().zip(want).enumerate() {
        let who = format!("received[{k}] ({} {}): ", r.method, r.target);
        for (label, got, want) in [("method", &r.method, &w.method), ("target", &r.target, &w.target), ("version", &r.version, &w.version)] {
            if let Some(want) = want {
                if got != want {
                    fails.push(format!("{who}{label} {got:?}, expected {want:?}"));
                }
            }
        }
        for (h, want) in &w.headers {
            let lines: Vec<&str> = r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(h)).map(|(_, v)| v.as_str()).collect();
            let got = if lines.is_empty() { None } else { Some(lines.join(", ")) };
            if got != *want {
                fails.push(format!("{who}header {h} = {got:?}, expected {want:?}"));
            }
        }
        if let Some(want) = &w.body {
            let want = crate::client::bytes_of(want);
            if r.body.kept != want || !r.body.whole() {
                fails.push(format!("{who}body of {} bytes {:?}, expected {:?}", r.body.len, crate::scenario::text::latin1_text(&r.body.kept[..r.body.kept.len().min(200)]), crate::scenario::text::latin1_text(&want[..want.len().min(200)])));
            }
        }
    }
    fails
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::body::BodyRecord;
    use crate::observe::upstream::ReqFraming;

    fn rec(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> UpstreamRequest {
        UpstreamRequest {
            upstream: "u".into(),
            conn: 1,
            index: 0,
            method: method.into(),
            target: target.into(),
            version: "HTTP/1.1".into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            framing: ReqFraming::None,
            body: BodyRecord::of(body, 1024),
            body_complete: true,
        }
    }

    fn want(yaml: &str) -> Vec<ReceivedExpect> {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn matching_records_pass_and_every_member_can_fail() {
        let recs = [rec("GET", "/a?x=%7e", &[("Host", "h"), ("Via", "1"), ("via", "2")], b""), rec("POST", "/b", &[], b"hi\xe9")];
        let ok = want("[{method: GET, target: '/a?x=%7e', version: HTTP/1.1, headers: {VIA: '1, 2', upgrade: null}}, {body: \"hi\\xe9\"}]");
        assert_eq!(check_received(&recs, &ok), Vec::<String>::new());
        let bad = want("[{method: HEAD, target: '/a?x=~', headers: {host: null, x: '1'}}, {version: HTTP/1.0, body: hi}]");
        let f = check_received(&recs, &bad);
        assert_eq!(f.len(), 6, "{f:?}");
        assert!(f[0].contains("method \"GET\", expected \"HEAD\""), "{f:?}");
        assert!(f[1].contains("target \"/a?x=%7e\", expected \"/a?x=~\""), "{f:?}");
        assert!(f[2].contains("header host = Some(\"h\"), expected None"), "{f:?}");
        assert!(f[3].contains("header x = None"), "{f:?}");
        assert!(f[4].contains("version"), "{f:?}");
        assert!(f[5].contains("body of 3 bytes"), "{f:?}");
    }

    #[test]
    fn the_count_must_match() {
        let recs = [rec("GET", "/a", &[], b"")];
        let f = check_received(&recs, &want("[{}, {}]"));
        assert_eq!(f, vec!["received 1 requests [\"GET /a\"], expected 2".to_string()]);
        assert_eq!(check_received(&[], &[]), Vec::<String>::new());
        assert_eq!(check_received(&recs, &[]).len(), 1);
    }
}
