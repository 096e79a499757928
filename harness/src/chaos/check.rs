//! The oracle of `parity chaos`, per implementation: the checks the model attached to
//! each probe and load step ([`StepCheck`]) held against the run's observation trace,
//! plus every expectation the scenario itself failed (push answers, settle waits with
//! their deadlines, the last-known-good file, the final convergence). Parity between the
//! implementations is the verdict's ([`crate::verdict::first_difference`]) over the
//! traces without the load steps ([`comparable`]).
use super::model::{Outcome, Rendered, StepCheck};
use super::schedule::LOAD_UPSTREAM;
use crate::trace::Obs;
use serde::Serialize;
use serde_json::Value;

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// 0-based step index (`-1`: set-up).
    pub step: i64,
    /// The schedule event the step belongs to (`None`: set-up or convergence).
    pub event: Option<usize>,
    /// The invariant: `answer` (not allowed for the state), `lost` (no answer where the
    /// state allows none), `answered_twice`, `expectation` (a scenario expectation: push
    /// answer, settle wait, LKG file, final state), `metrics` (a counter's delta against
    /// what the clients and the control plane saw, [`super::metrics_check`]), `harness`.
    pub kind: String,
    /// What was seen against what was allowed.
    pub detail: String,
}

/// The value of header `name` (lower-case) in a normalised response.
fn header<'a>(resp: &'a Value, name: &str) -> Option<&'a str> {
    resp.get("headers")?.as_array()?.iter().find_map(|h| {
        let pair = h.as_array()?;
        (pair.first()?.as_str()? == name).then(|| pair.get(1).and_then(Value::as_str)).flatten()
    })
}

/// The answer a normalised response gives, in the model's terms.
pub fn seen(resp: &Value) -> Outcome {
    Outcome {
        status: resp.get("status").and_then(Value::as_u64).unwrap_or(0) as u16,
        error: header(resp, "x-router-error").map(str::to_string),
        upstream: header(resp, "x-upstream-name").map(str::to_string),
        placement: header(resp, "x-router-placement").map(str::to_string),
    }
}

fn allowed_by(o: &Outcome, allowed: &[Outcome]) -> bool {
    allowed.iter().any(|a| a.status == o.status && a.error == o.error && a.upstream == o.upstream && (a.placement.is_none() || a.placement == o.placement))
}

/// The requests of the `send` observation at `step`: each `{client, upstream}`.
fn requests(trace: &[Obs], step: usize) -> Option<&Vec<Value>> {
    trace.iter().find(|o| o.step == step as i64 && o.kind == "send")?.value.get("requests")?.as_array()
}

/// Every broken invariant of one implementation's run of `r`: its trace, its failed
/// expectations (`failures`, as the engine words them) and its harness error.
pub fn check(r: &Rendered, trace: &[Obs], failures: &[String], error: Option<&str>) -> Vec<Violation> {
    let mut out = Vec::new();
    if let Some(e) = error {
        out.push(Violation { step: -1, event: None, kind: "harness".into(), detail: e.to_string() });
    }
    for f in failures {
        let step = f.strip_prefix("step ").and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next()).and_then(|n| n.parse::<i64>().ok()).map(|n| n - 1).unwrap_or(-1);
        let event = usize::try_from(step).ok().and_then(|s| r.event_of.get(s).copied().flatten());
        out.push(Violation { step, event, kind: "expectation".into(), detail: f.clone() });
    }
    for (&step, c) in &r.checks {
        let event = r.event_of.get(step).copied().flatten();
        let mut v = |kind: &str, detail: String| out.push(Violation { step: step as i64, event, kind: kind.into(), detail });
        let Some(reqs) = requests(trace, step) else {
            v("lost", "no observation of the step's requests".into());
            continue;
        };
        match c {
            StepCheck::Probe { key, allowed } => {
                let want: Vec<String> = allowed.iter().map(Outcome::short).collect();
                for q in reqs {
                    let resps = q["client"]["responses"].as_array().cloned().unwrap_or_default();
                    match resps.as_slice() {
                        [] => v("lost", format!("key {key}: no answer ({}), allowed {want:?}", q["client"]["failure"])),
                        [one] => {
                            let o = seen(one);
                            if !allowed_by(&o, allowed) {
                                v("answer", format!("key {key}: {}, allowed {want:?}", o.short()));
                            } else if one.get("complete") == Some(&Value::Bool(false)) {
                                v("answer", format!("key {key}: {} with an incomplete body", o.short()));
                            }
                        }
                        more => v("answered_twice", format!("key {key}: {} responses on one request", more.len())),
                    }
                }
            }
            StepCheck::Load { restart } => {
                let mut lost = 0;
                for q in reqs {
                    let resps = q["client"]["responses"].as_array().cloned().unwrap_or_default();
                    match resps.as_slice() {
                        [] => {
                            let kind = q["client"]["failure"].as_str().unwrap_or("none");
                            let allowed = *restart && matches!(kind, "connect" | "reset" | "closed");
                            if !allowed {
                                lost += 1;
                                if lost <= 3 {
                                    v("lost", format!("load request without an answer ({kind})"));
                                }
                            }
                        }
                        [one] => {
                            let o = seen(one);
                            let ok = (o.status == 200 && o.upstream.as_deref() == Some(LOAD_UPSTREAM)) || (o.status == 503 && o.error.as_deref() == Some("concurrency_limit"));
                            if !ok {
                                v("answer", format!("load request: {}, allowed 200 {LOAD_UPSTREAM} or 503 concurrency_limit", o.short()));
                            } else if one.get("complete") == Some(&Value::Bool(false)) {
                                v("answer", format!("load request: {} with an incomplete body", o.short()));
                            }
                        }
                        more => v("answered_twice", format!("load request: {} responses on one request", more.len())),
                    }
                }
                if lost > 3 {
                    v("lost", format!("... {lost} load requests without an answer in all"));
                }
            }
        }
    }
    out.extend(super::metrics_check::check(r, trace));
    out
}

/// The trace without the load steps and the metrics snapshots, whose values depend on
/// timing: what the parity verdict compares.
pub fn comparable(r: &Rendered, trace: &[Obs]) -> Vec<Obs> {
    let timed = |s: usize| r.load_steps.contains(&s) || r.snapshots.iter().any(|(i, _)| *i == s);
    trace.iter().filter(|o| o.step < 0 || !timed(o.step as usize)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::model::render;
    use crate::chaos::schedule::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn resp(status: u16, hs: &[(&str, &str)]) -> Value {
        json!({"status": status, "headers": hs.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(), "complete": true})
    }
    fn obs(step: usize, resps: Vec<Value>, failure: Option<&str>) -> Obs {
        Obs { step: step as i64, kind: "send".into(), value: json!({"requests": [{"client": {"responses": resps, "failure": failure}, "upstream": []}]}) }
    }

    /// A schedule whose first probe (k0) must be 200 from u0 through p0.
    fn fixture() -> (Rendered, usize, usize) {
        let mut placements = BTreeMap::new();
        placements.insert("p0".into(), PlacementSpec { endpoints: vec![(0, 1)], pool: false, health_check: false, breaker: None, fallback: None, max_concurrency: 8 });
        let routes = [("k0".to_string(), "p0".to_string())].into_iter().collect();
        let s = Schedule { seed: 1, index: 0, initial: ConfigSpec { routes, placements, load_max_concurrency: 8 }, events: vec![Event::Restart] };
        let r = render(&s, false);
        let probe = *r.checks.iter().find(|(_, c)| matches!(c, StepCheck::Probe { key, .. } if key == "k0")).unwrap().0;
        let load = *r.checks.iter().find(|(_, c)| matches!(c, StepCheck::Load { .. })).unwrap().0;
        (r, probe, load)
    }

    fn kinds(v: &[Violation]) -> Vec<&str> {
        v.iter().map(|x| x.kind.as_str()).collect()
    }

    #[test]
    fn an_allowed_answer_passes_and_each_broken_invariant_is_caught() {
        let (r, probe, _) = fixture();
        let good = resp(200, &[("x-upstream-name", "u0"), ("x-router-placement", "p0")]);
        // only the checked steps that are present are judged; restrict to the probe
        let only = |trace: Vec<Obs>| {
            let mut rr = r.clone();
            rr.checks.retain(|k, _| *k == probe);
            check(&rr, &trace, &[], None)
        };
        assert!(only(vec![obs(probe, vec![good.clone()], None)]).is_empty());
        // an answer the state does not allow (a 404 for a routed key, another upstream)
        assert_eq!(kinds(&only(vec![obs(probe, vec![resp(404, &[("x-router-error", "unknown_routing_key")])], None)])), ["answer"]);
        assert_eq!(kinds(&only(vec![obs(probe, vec![resp(200, &[("x-upstream-name", "u1"), ("x-router-placement", "p0")])], None)])), ["answer"]);
        // no answer at all
        assert_eq!(kinds(&only(vec![obs(probe, vec![], Some("reset"))])), ["lost"]);
        // answered twice
        assert_eq!(kinds(&only(vec![obs(probe, vec![good.clone(), good.clone()], None)])), ["answered_twice"]);
        // the step never observed
        assert_eq!(kinds(&only(vec![])), ["lost"]);
    }

    #[test]
    fn load_may_lose_connections_only_across_a_restart() {
        let (r, _, load) = fixture();
        let mut rr = r.clone();
        rr.checks.retain(|k, _| *k == load);
        let ok = resp(200, &[("x-upstream-name", LOAD_UPSTREAM)]);
        let limited = resp(503, &[("x-router-error", "concurrency_limit")]);
        assert!(check(&rr, &[obs(load, vec![ok.clone()], None)], &[], None).is_empty());
        assert!(check(&rr, &[obs(load, vec![limited], None)], &[], None).is_empty());
        assert!(check(&rr, &[obs(load, vec![], Some("connect"))], &[], None).is_empty(), "refused during the restart");
        assert_eq!(kinds(&check(&rr, &[obs(load, vec![], Some("timeout"))], &[], None)), ["lost"]);
        rr.checks.insert(load, StepCheck::Load { restart: false });
        assert_eq!(kinds(&check(&rr, &[obs(load, vec![], Some("connect"))], &[], None)), ["lost"], "no restart: a refused connect is a lost request");
        let cut = json!({"status": 200, "headers": [["x-upstream-name", LOAD_UPSTREAM]], "complete": false});
        assert_eq!(kinds(&check(&rr, &[obs(load, vec![cut], None)], &[], None)), ["answer"]);
        assert_eq!(kinds(&check(&rr, &[obs(load, vec![resp(502, &[("x-router-error", "upstream_connect_failed")])], None)], &[], None)), ["answer"]);
    }

    #[test]
    fn failed_expectations_and_harness_errors_are_violations_of_their_step() {
        let (r, _, _) = fixture();
        let mut rr = r.clone();
        rr.checks.clear();
        let v = check(&rr, &[], &["step 3 (push): nack code \"stale_version\", expected ack".into(), "setup: initial config not answered".into()], Some("toxiproxy-server not found"));
        assert_eq!(kinds(&v), ["harness", "expectation", "expectation"]);
        assert_eq!(v[1].step, 2);
        assert_eq!(v[2].step, -1);
    }

    #[test]
    fn load_steps_are_left_out_of_the_parity_comparison() {
        let (r, probe, load) = fixture();
        let t = vec![obs(probe, vec![], None), obs(load, vec![], None), Obs { step: -1, kind: "setup".into(), value: json!({}) }];
        let c = comparable(&r, &t);
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|o| o.step != load as i64));
    }
}
