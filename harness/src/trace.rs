//! The observation trace of one run: what every step saw ([`Obs`]), normalised so that
//! the traces of two implementations compare equal when they behave the same
//! ([`Normaliser`]), and the failed expectations, recorded as they happen ([`Recorder`]).
//! The [verdict](crate::verdict) compares traces; it depends on this module, not on the
//! engine that fills it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One observation: what a step saw, normalised (no ports, paths or timings).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Obs {
    /// Step index (0-based); -1 for the set-up.
    pub step: i64,
    /// Step kind (`send`, `push`, ...).
    pub kind: String,
    /// What was seen.
    pub value: Value,
}

/// How messages name a step index of the trace: `setup` for -1, else the 1-based step
/// number (`step 1` is `steps[0]` in the scenario file). Traces keep the 0-based index.
pub fn step_label(step: i64) -> String {
    if step < 0 {
        "setup".into()
    } else {
        format!("step {}", step + 1)
    }
}

/// Replaces run-specific text (ports, temp paths) by stable placeholders, in order: the
/// first rule applies first (a path inside another path must come before it).
#[derive(Debug, Clone, Default)]
pub struct Normaliser {
    rules: Vec<(String, String)>,
}

impl Normaliser {
    /// A normaliser applying `rules` (`(run-specific text, placeholder)`) in order;
    /// empty run-specific texts are skipped.
    pub fn new(rules: Vec<(String, String)>) -> Normaliser {
        Normaliser { rules: rules.into_iter().filter(|(from, _)| !from.is_empty()).collect() }
    }

    /// `s` with every rule applied.
    pub fn text(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (from, to) in &self.rules {
            out = out.replace(from, to);
        }
        out
    }

    /// `v` with every rule applied to its JSON text (keys and strings alike); `v`
    /// unchanged when the replaced text is no longer JSON.
    pub fn value(&self, v: Value) -> Value {
        let text = self.text(&v.to_string());
        serde_json::from_str(&text).unwrap_or(v)
    }
}

/// Collects the trace and the failed expectations of one run.
#[derive(Debug, Default)]
pub struct Recorder {
    norm: Normaliser,
    /// The observations, in order.
    pub trace: Vec<Obs>,
    /// The failed expectations, in order, each prefixed with its step label.
    pub failures: Vec<String>,
}

impl Recorder {
    /// An empty recorder normalising with `norm`.
    pub fn new(norm: Normaliser) -> Recorder {
        Recorder { norm, trace: Vec::new(), failures: Vec::new() }
    }

    /// Records what step `step` of kind `kind` saw, normalised.
    pub fn obs(&mut self, step: i64, kind: &str, value: Value) {
        let value = self.norm.value(value);
        self.trace.push(Obs { step, kind: kind.to_string(), value });
    }

    /// Records a failed expectation: `step N: msg`, or `step N (kind): msg` when the
    /// label is not the kind itself.
    pub fn fail(&mut self, step: i64, kind: &str, msg: String) {
        let label = step_label(step);
        if label == kind {
            self.failures.push(format!("{label}: {msg}"));
        } else {
            self.failures.push(format!("{label} ({kind}): {msg}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normaliser_applies_rules_in_order_to_strings_and_keys() {
        let n = Normaliser::new(vec![
            ("/tmp/parity-x/state".into(), "{{state_dir}}".into()),
            ("/tmp/parity-x".into(), "{{tmp}}".into()),
            ("127.0.0.1:4001".into(), "{{up.a.hostport}}".into()),
            ("".into(), "never".into()),
        ]);
        let v = n.value(json!({"127.0.0.1:4001": ["/tmp/parity-x/state/lkg.json", "/tmp/parity-x/ca.pem"]}));
        assert_eq!(v, json!({"{{up.a.hostport}}": ["{{state_dir}}/lkg.json", "{{tmp}}/ca.pem"]}));
        assert_eq!(n.text("plain"), "plain");
    }

    #[test]
    fn failures_name_the_step_and_kind() {
        let mut r = Recorder::default();
        r.fail(-1, "setup", "x".into());
        r.fail(0, "send", "y".into());
        assert_eq!(r.failures, vec!["setup: x".to_string(), "step 1 (send): y".to_string()]);
        r.obs(2, "wait", json!({"met": true}));
        assert_eq!(r.trace, vec![Obs { step: 2, kind: "wait".into(), value: json!({"met": true}) }]);
    }
}
