//! Verdicts: per implementation pass/fail/error (from the engine), and parity: the
//! normalised traces of the implementations are equal, or the first observation where
//! they differ.

use crate::trace::Obs;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The first observation where two traces differ.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Difference {
    /// Index in the traces.
    pub index: usize,
    /// Step index of the observation (from whichever trace has one).
    pub step: i64,
    /// Observation of each implementation at that index (null: its trace ended).
    pub observations: BTreeMap<String, Value>,
}

/// Compares the traces of every implementation against the first one. `None`: all equal.
pub fn first_difference(traces: &[(String, &[Obs])]) -> Option<Difference> {
    let (base_name, base) = traces.first()?;
    for (name, t) in &traces[1..] {
        let n = base.len().max(t.len());
        for i in 0..n {
            let a = base.get(i);
            let b = t.get(i);
            if a != b {
                let step = a.or(b).map(|o| o.step).unwrap_or(-1);
                let mut observations = BTreeMap::new();
                observations.insert(base_name.clone(), a.map(|o| serde_json::to_value(o).unwrap()).unwrap_or(Value::Null));
                observations.insert(name.clone(), b.map(|o| serde_json::to_value(o).unwrap()).unwrap_or(Value::Null));
                return Some(Difference { index: i, step, observations });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn o(step: i64, v: Value) -> Obs {
        Obs { step, kind: "send".into(), value: v }
    }

    #[test]
    fn equal_traces_have_no_difference() {
        let a = vec![o(0, json!({"status": {"200": 1}})), o(1, json!({"met": true}))];
        let b = a.clone();
        assert_eq!(first_difference(&[("go".into(), &a), ("pingora".into(), &b)]), None);
    }

    #[test]
    fn first_differing_observation_is_reported() {
        let a = vec![o(0, json!(1)), o(1, json!({"status": {"200": 1}})), o(2, json!(3))];
        let b = vec![o(0, json!(1)), o(1, json!({"status": {"502": 1}})), o(2, json!(4))];
        let d = first_difference(&[("go".into(), &a), ("pingora".into(), &b)]).unwrap();
        assert_eq!(d.index, 1);
        assert_eq!(d.step, 1);
        assert_eq!(d.observations["go"]["value"]["status"]["200"], 1);
        assert_eq!(d.observations["pingora"]["value"]["status"]["502"], 1);
    }

    #[test]
    fn shorter_trace_differs_at_its_end() {
        let a = vec![o(0, json!(1)), o(1, json!(2))];
        let b = vec![o(0, json!(1))];
        let d = first_difference(&[("go".into(), &a), ("pingora".into(), &b)]).unwrap();
        assert_eq!(d.index, 1);
        assert_eq!(d.observations["pingora"], Value::Null);
    }

    #[test]
    fn a_different_kind_or_step_is_a_difference_and_each_trace_is_compared_to_the_first() {
        let a = vec![o(0, json!(1))];
        let b = vec![Obs { step: 0, kind: "wait".into(), value: json!(1) }];
        let d = first_difference(&[("go".into(), &a), ("pingora".into(), &b)]).unwrap();
        assert_eq!((d.index, d.step), (0, 0));
        assert_eq!(d.observations["pingora"]["kind"], "wait");
        // With three traces, the third differing from the first is found although the
        // second is equal to it.
        let c = vec![o(1, json!(1))];
        let d = first_difference(&[("go".into(), &a), ("go2".into(), &a), ("pingora".into(), &c)]).unwrap();
        assert_eq!(d.step, 0);
        assert!(d.observations.contains_key("pingora") && d.observations.contains_key("go"));
        // An empty trace against a non-empty one differs at 0, with null for the empty one.
        let d = first_difference(&[("go".into(), &[][..]), ("pingora".into(), &a)]).unwrap();
        assert_eq!(d.observations["go"], Value::Null);
        assert_eq!(first_difference(&[]), None);
    }
}
