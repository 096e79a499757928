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
    /// The first differing field inside the observations, e.g.
    /// `requests[0].client.responses[0].headers[x-upstream-name]` (headers by name),
    /// `requests[0].client.responses[0].body@5` (a body, by the first differing byte
    /// offset) or `value.met`; None when one trace ended.
    #[serde(default)]
    pub field: Option<String>,
    /// The value of [`Difference::field`] on each side (`"<absent>"` where it is missing).
    #[serde(default)]
    pub values: BTreeMap<String, Value>,
}

/// The first field where `a` and `b` differ, depth first in key order: `(path, a's value,
/// b's value)`. Header lists (`[[name, value], ...]`) are compared by name; bodies
/// (`{len, sha256, kept}`) by the first differing byte offset.
pub fn first_field(a: &Value, b: &Value, path: &str) -> Option<(String, Value, Value)> {
    let absent = || Value::String("<absent>".into());
    let join = |p: &str, k: &str| if p.is_empty() { k.to_string() } else { format!("{p}.{k}") };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            if let (Some(kx), Some(ky)) = (x.get("kept"), y.get("kept")) {
                if x.contains_key("sha256") && y.contains_key("sha256") {
                    if a == b {
                        return None;
                    }
                    let bx = crate::observe::body::BodyRecord { len: x["len"].as_u64().unwrap_or(0), sha256: x["sha256"].as_str().unwrap_or("").into(), kept: body_bytes(kx) };
                    let by = crate::observe::body::BodyRecord { len: y["len"].as_u64().unwrap_or(0), sha256: y["sha256"].as_str().unwrap_or("").into(), kept: body_bytes(ky) };
                    let off = bx.first_difference(&by).unwrap_or(0) as usize;
                    let around = |r: &crate::observe::body::BodyRecord| {
                        let lo = off.saturating_sub(16).min(r.kept.len());
                        let hi = (off + 32).min(r.kept.len());
                        serde_json::json!({"len": r.len, "at": String::from_utf8_lossy(&r.kept[lo..hi])})
                    };
                    return Some((format!("{path}@{off}"), around(&bx), around(&by)));
                }
            }
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => {
                        if let Some(d) = first_field(p, q, &join(path, k)) {
                            return Some(d);
                        }
                    }
                    (p, q) => return Some((join(path, k), p.cloned().unwrap_or_else(absent), q.cloned().unwrap_or_else(absent))),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) => {
            let pairs = |v: &Vec<Value>| v.iter().all(|e| e.as_array().map(|p| p.len() == 2 && p[0].is_string()).unwrap_or(false));
            if !x.is_empty() && !y.is_empty() && pairs(x) && pairs(y) {
                // Header fields: by name.
                let group = |v: &Vec<Value>| {
                    let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
                    for e in v {
                        m.entry(e[0].as_str().unwrap_or("").to_string()).or_default().push(e[1].clone());
                    }
                    m
                };
                let (gx, gy) = (group(x), group(y));
                let mut names: Vec<&String> = gx.keys().chain(gy.keys()).collect();
                names.sort();
                names.dedup();
                for n in names {
                    let (p, q) = (gx.get(n), gy.get(n));
                    if p != q {
                        let v = |o: Option<&Vec<Value>>| o.map(|v| if v.len() == 1 { v[0].clone() } else { Value::Array(v.clone()) }).unwrap_or_else(absent);
                        return Some((format!("{path}[{n}]"), v(p), v(q)));
                    }
                }
                return if a == b { None } else { Some((path.to_string(), a.clone(), b.clone())) };
            }
            for (i, (p, q)) in x.iter().zip(y.iter()).enumerate() {
                if let Some(d) = first_field(p, q, &format!("{path}[{i}]")) {
                    return Some(d);
                }
            }
            if x.len() != y.len() {
                let i = x.len().min(y.len());
                return Some((format!("{path}[{i}]"), x.get(i).cloned().unwrap_or_else(absent), y.get(i).cloned().unwrap_or_else(absent)));
            }
            None
        }
        _ => {
            if crate::expect::json_eq(a, b) {
                None
            } else {
                Some((path.to_string(), a.clone(), b.clone()))
            }
        }
    }
}

fn body_bytes(v: &Value) -> Vec<u8> {
    serde_json::from_value::<crate::observe::body::BodyRecord>(serde_json::json!({"len": 0, "sha256": "", "kept": v})).map(|b| b.kept).unwrap_or_default()
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
                let av = a.map(|o| serde_json::to_value(o).unwrap()).unwrap_or(Value::Null);
                let bv = b.map(|o| serde_json::to_value(o).unwrap()).unwrap_or(Value::Null);
                let mut values = BTreeMap::new();
                let field = match (a, b) {
                    (Some(_), Some(_)) => first_field(&av, &bv, "").map(|(f, x, y)| {
                        values.insert(base_name.clone(), x);
                        values.insert(name.clone(), y);
                        f
                    }),
                    _ => None,
                };
                observations.insert(base_name.clone(), av);
                observations.insert(name.clone(), bv);
                return Some(Difference { index: i, step, observations, field, values });
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
        assert_eq!(d.field.as_deref(), Some("value.status.200"));
    }

    #[test]
    fn headers_by_name_and_bodies_by_offset() {
        let body = |t: &str| serde_json::to_value(crate::observe::body::BodyRecord::of(t.as_bytes(), 100)).unwrap();
        let a = json!({"headers": [["a", "1"], ["b", "2"]], "body": body("hello world")});
        let b = json!({"headers": [["a", "1"], ["b", "3"]], "body": body("hello world")});
        let (f, x, y) = first_field(&a, &b, "").unwrap();
        assert_eq!((f.as_str(), x, y), ("headers[b]", json!("2"), json!("3")));
        let c = json!({"headers": [["a", "1"], ["b", "2"]], "body": body("hello World")});
        let (f, x, y) = first_field(&a, &c, "").unwrap();
        assert_eq!(f, "body@6");
        assert_eq!(x["at"], "hello world");
        assert_eq!(y["at"], "hello World");
        let d = json!({"headers": [["a", "1"]], "body": body("hello world")});
        let (f, x, y) = first_field(&a, &d, "").unwrap();
        assert_eq!((f.as_str(), x, y), ("headers[b]", json!("2"), json!("<absent>")));
        assert_eq!(first_field(&a, &a.clone(), ""), None);
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
