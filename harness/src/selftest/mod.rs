//! The oracle's self-test (`parity selftest`): the parity verdict must report `diverged`,
//! at the right step and field, when one run of a pair carries exactly one injected
//! difference. Each [`Case`] runs a small scenario twice against the same router, once
//! as it is and once behind the [`inject`] proxy placed in front of the data port, the
//! admin port or one upstream, and checks [`crate::verdict::first_difference`] of the two
//! traces. A clean pair (both runs without injection) must be identical, so that a
//! difference the verdict reports is the injected one.

pub mod inject;

use crate::env::InjectSpec;
use crate::scenario::Scenario;
use crate::verdict::{first_difference, Difference};
use inject::Injection;
use serde_json::json;
use std::path::Path;

/// The self-test's scenarios (embedded), by id.
pub const SCENARIOS: [(&str, &str); 2] = [
    ("selftest-basic", include_str!("scenarios/selftest-basic.yaml")),
    ("selftest-window", include_str!("scenarios/selftest-window.yaml")),
];

/// One injected difference and where the verdict must find it.
#[derive(Debug, Clone)]
pub struct Case {
    /// Short name of the kind of difference.
    pub name: &'static str,
    /// The scenario (an id of [`SCENARIOS`]).
    pub scenario: &'static str,
    /// The difference.
    pub injection: Injection,
    /// For an upstream-side injection, the upstream.
    pub upstream: Option<&'static str>,
    /// The step (0-based, as in the trace) the verdict must name.
    pub step: i64,
    /// A text the reported field must contain.
    pub field: &'static str,
}

/// Every case: at least one per kind of difference the issue lists.
pub fn cases() -> Vec<Case> {
    let c = |name, scenario, injection, upstream, step, field| Case { name, scenario, injection, upstream, step, field };
    vec![
        c("status", "selftest-basic", Injection::Status { from: 200, to: 201 }, None, 0, "responses[0].status"),
        c("extra response header", "selftest-basic", Injection::ExtraResponseHeader { name: "X-Injected".into(), value: "1".into() }, None, 0, "headers[x-injected]"),
        c("response header value", "selftest-basic", Injection::ResponseHeaderValue { name: "X-Upstream-Name".into(), value: "other".into() }, None, 0, "headers[x-upstream-name]"),
        c("one body byte", "selftest-basic", Injection::BodyByte { offset: 3 }, None, 0, "body@3"),
        c("body length", "selftest-basic", Injection::BodyLength, None, 0, "body@"),
        c("framing (length vs chunked)", "selftest-basic", Injection::Chunked, None, 0, "framing"),
        c("keep-alive vs close", "selftest-basic", Injection::CloseAfterResponse, None, 0, "client.end"),
        c("FIN vs reset", "selftest-basic", Injection::ResetInsteadOfFin, None, 1, "client.end"),
        c("metric absent vs 0", "selftest-basic", Injection::MetricAbsent { series: "router_inflight{placement=\"p\"}".into() }, None, 2, "router_inflight"),
        c("admin field", "selftest-basic", Injection::AdminField { field: "config_version".into(), value: json!(2) }, None, 3, "/config_version"),
        c("header the upstream received", "selftest-basic", Injection::UpstreamHeader { name: "X-Injected".into(), value: "1".into() }, Some("primary"), 0, "upstream[0].headers[x-injected]"),
        c("target the upstream received", "selftest-basic", Injection::UpstreamTarget { suffix: "?injected".into() }, Some("primary"), 0, "upstream[0].target"),
        c("requests an upstream received", "selftest-basic", Injection::DuplicateRequest, Some("primary"), 0, "upstream[1]"),
        c("time outside its window", "selftest-window", Injection::Delay { ms: 700 }, None, 1, "in_window"),
    ]
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The case.
    pub case: Case,
    /// The verdict's first difference (None: identical).
    pub difference: Option<Difference>,
    /// Whether the verdict named the expected step and field.
    pub ok: bool,
}

fn scenario(id: &str) -> Scenario {
    let (_, text) = SCENARIOS.iter().find(|(i, _)| *i == id).expect("known self-test scenario");
    crate::scenario::load::parse(text, Path::new(id)).unwrap_or_else(|e| panic!("self-test scenario {id}: {e:?}"))
}

/// Runs the clean pair of every scenario and every case against `imp` (binaries in
/// `bin_dir`, logs under `log_dir`); `on_result` is called as each finishes. Returns the
/// clean pairs' differences (must be None) and the outcomes.
pub async fn run(imp: &str, bin_dir: &Path, log_dir: &Path, only: Option<&str>, mut on_result: impl FnMut(&str, bool, &str)) -> (Vec<(String, Option<Difference>)>, Vec<Outcome>) {
    let mut clean = Vec::new();
    let mut baselines = std::collections::HashMap::new();
    for (id, _) in SCENARIOS {
        let sc = scenario(id);
        let a = crate::engine::run_with(&sc, imp, bin_dir, &log_dir.join(id).join("clean-a"), None).await;
        let b = crate::engine::run_with(&sc, imp, bin_dir, &log_dir.join(id).join("clean-b"), None).await;
        let d = first_difference(&[("clean-a".into(), &a.trace), ("clean-b".into(), &b.trace)]);
        let pass = a.status == "pass" && b.status == "pass";
        on_result(&format!("clean pair {id}"), d.is_none() && pass, &match (&d, pass) {
            (None, true) => "identical, both pass".to_string(),
            (_, false) => format!("a clean run failed: {:?} {:?}", a.failures, b.failures),
            (Some(d), _) => format!("differs at {} field {}", crate::trace::step_label(d.step), d.field.as_deref().unwrap_or("-")),
        });
        clean.push((id.to_string(), d));
        baselines.insert(id, a);
    }
    let mut outcomes = Vec::new();
    for case in cases() {
        if let Some(o) = only {
            if !case.name.contains(o) {
                continue;
            }
        }
        let sc = scenario(case.scenario);
        let spec = InjectSpec { injection: case.injection.clone(), upstream: case.upstream.map(|u| u.to_string()) };
        let dir = log_dir.join(case.scenario).join(case.name.replace(' ', "-"));
        let run = crate::engine::run_with(&sc, imp, bin_dir, &dir, Some(&spec)).await;
        let base = &baselines[case.scenario];
        let d = first_difference(&[(format!("{imp}"), &base.trace), (format!("{imp}+injected"), &run.trace)]);
        let ok = d.as_ref().map(|d| d.step == case.step && d.field.as_deref().map(|f| f.contains(case.field)).unwrap_or(false)).unwrap_or(false);
        let detail = match &d {
            None => "identical: the verdict missed the injected difference".to_string(),
            Some(d) => format!(
                "diverged at {} field {}: {}",
                crate::trace::step_label(d.step),
                d.field.as_deref().unwrap_or("-"),
                d.values.iter().map(|(k, v)| format!("{k}={}", clip(&v.to_string()))).collect::<Vec<_>>().join("  ")
            ),
        };
        on_result(case.name, ok, &detail);
        outcomes.push(Outcome { case, difference: d, ok });
    }
    (clean, outcomes)
}

fn clip(s: &str) -> String {
    if s.len() > 120 {
        format!("{}...", &s[..s.char_indices().nth(120).map(|(i, _)| i).unwrap_or(s.len())])
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourteen_kinds_on_valid_scenarios() {
        let cs = cases();
        assert!(cs.len() >= 14);
        for (id, _) in SCENARIOS {
            let sc = scenario(id);
            assert_eq!(sc.id, id);
        }
        for c in &cs {
            assert!(SCENARIOS.iter().any(|(i, _)| *i == c.scenario));
            assert_eq!(c.upstream.is_some(), c.injection.side() == inject::Side::Upstream, "{}", c.name);
        }
    }
}
