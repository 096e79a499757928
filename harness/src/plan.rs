//! The plan of one run: the scenario's steps with every `{{...}}` template resolved,
//! once, against the environment that is up ([`Bindings`]). Step executors take the
//! planned steps and never resolve a template themselves.
//!
//! Templates (checked at load time by [`crate::scenario::check`]): `up.NAME` (origin
//! `scheme://127.0.0.1:port`), `up.NAME.port`, `up.NAME.hostport`, `up.NAME.ca_file`,
//! `unused_port` (a port nothing listens on), `state_dir` (the router's `--state-dir`).
//! Both spellings `{{t}}` and `{{ t }}` are replaced; an unknown template becomes empty.

use crate::scenario::{templates, Behaviour, Scenario, Send, Step};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What one upstream's templates resolve to.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamBinding {
    /// `scheme://127.0.0.1:port` (`{{up.NAME}}`).
    pub origin: String,
    /// Its port (`{{up.NAME.port}}`, `{{up.NAME.hostport}}`).
    pub port: u16,
    /// The CA file of a TLS upstream (`{{up.NAME.ca_file}}`).
    pub ca_file: Option<PathBuf>,
}

/// The values of every template in one environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bindings {
    /// `{{unused_port}}`.
    pub unused_port: u16,
    /// `{{state_dir}}`.
    pub state_dir: PathBuf,
    /// `{{up.NAME...}}` by upstream name.
    pub upstreams: BTreeMap<String, UpstreamBinding>,
}

impl Bindings {
    /// `s` with every template replaced by its value (unknown templates by nothing);
    /// `{{repeat N "text"}}` first.
    pub fn fill(&self, s: &str) -> String {
        if !s.contains("{{") {
            return s.to_string();
        }
        let mut out = crate::scenario::text::expand_repeats(s);
        for t in templates(s) {
            let val = self.value_of(&t).unwrap_or_default();
            // replace both spellings (with and without inner spaces)
            out = out.replace(&format!("{{{{{t}}}}}"), &val).replace(&format!("{{{{ {t} }}}}"), &val);
        }
        out
    }

    /// The value of one template (without braces), `None` when unknown.
    pub fn value_of(&self, t: &str) -> Option<String> {
        match t {
            "unused_port" => return Some(self.unused_port.to_string()),
            "state_dir" => return Some(self.state_dir.display().to_string()),
            _ => {}
        }
        let parts: Vec<&str> = t.split('.').collect();
        if parts.first() != Some(&"up") {
            return None;
        }
        let up = self.upstreams.get(*parts.get(1)?)?;
        Some(match parts.get(2).copied() {
            None if parts.len() == 2 => up.origin.clone(),
            Some("port") => up.port.to_string(),
            Some("hostport") => format!("127.0.0.1:{}", up.port),
            Some("ca_file") => up.ca_file.as_ref()?.display().to_string(),
            _ => return None,
        })
    }

    /// `v` with templates filled in every string and object key.
    pub fn fill_value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.fill(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.fill_value(x)).collect()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (self.fill(k), self.fill_value(x))).collect()),
            other => other.clone(),
        }
    }
}

/// The concrete steps of one run, in scenario order (same indices as `scenario.steps`).
#[derive(Debug, Clone)]
pub struct Plan {
    /// The steps, templates resolved.
    pub steps: Vec<Step>,
}

impl Plan {
    /// Resolves every template of `sc`'s steps with `b`.
    pub fn new(sc: &Scenario, b: &Bindings) -> Plan {
        Plan { steps: sc.steps.iter().map(|s| resolve_step(s, b)).collect() }
    }
}

/// One step with its templates resolved: request targets, headers and raw bytes of
/// sends and their expected header values, pushed configs, expected admin fields,
/// access-log entries and wait values, checked file paths.
pub fn resolve_step(step: &Step, b: &Bindings) -> Step {
    let mut step = step.clone();
    match &mut step {
        Step::Send(s) => resolve_send(s, b),
        Step::Push(p) => {
            p.config = p.config.as_ref().map(|c| b.fill_value(c));
            p.config_text = p.config_text.as_ref().map(|t| b.fill(t));
        }
        Step::Wait(w) => w.equals = w.equals.as_ref().map(|v| b.fill_value(v)),
        Step::ExpectAdmin(m) => {
            for v in m.values_mut() {
                *v = b.fill_value(v);
            }
        }
        Step::ExpectAccessLog(a) => {
            for entry in &mut a.last {
                for v in entry.values_mut() {
                    *v = b.fill_value(v);
                }
            }
        }
        Step::ExpectFile(f) => f.path = b.fill(&f.path),
        Step::KeySpread(_) => {}
        Step::Upstream(u) => {
            if let Some(Behaviour::Raw(r)) = &mut u.behaviour {
                r.bytes = b.fill(&r.bytes);
            }
        }
        Step::ExpectUpstream(u) => {
            for r in u.received.iter_mut().flatten() {
                r.target = r.target.as_ref().map(|x| b.fill(x));
                r.body = r.body.as_ref().map(|x| b.fill(x));
                for want in r.headers.values_mut() {
                    *want = want.as_ref().map(|w| b.fill(w));
                }
            }
        }
        Step::Tls(_) => {}
        Step::Await(_) | Step::ControlPlane(_) | Step::Router(_) | Step::ExpectMetrics(_) | Step::SnapshotMetrics(_) | Step::ExpectControlPlane(_) | Step::Toxic(_) => {}
    }
    step
}

fn resolve_send(s: &mut Send, b: &Bindings) {
    s.path = b.fill(&s.path);
    for v in s.headers.values_mut() {
        *v = b.fill(v);
    }
    s.raw = s.raw.as_ref().map(|r| b.fill(r));
    for w in s.raw_writes.iter_mut().flatten() {
        w.bytes = b.fill(&w.bytes);
    }
    for r in s.expect.responses.iter_mut().flatten() {
        r.body = r.body.as_ref().map(|x| b.fill(x));
        for want in r.headers.values_mut() {
            *want = want.as_ref().map(|w| b.fill(w));
        }
    }
    for want in s.expect.headers.values_mut().chain(s.expect.echo_headers.values_mut()) {
        *want = want.as_ref().map(|w| b.fill(w));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bindings() -> Bindings {
        let mut upstreams = BTreeMap::new();
        upstreams.insert("primary".into(), UpstreamBinding { origin: "http://127.0.0.1:4001".into(), port: 4001, ca_file: None });
        upstreams.insert("tls".into(), UpstreamBinding { origin: "https://127.0.0.1:4002".into(), port: 4002, ca_file: Some("/tmp/x/ca.pem".into()) });
        Bindings { unused_port: 4999, state_dir: "/tmp/x/state".into(), upstreams }
    }

    #[test]
    fn every_template_form_resolves() {
        let b = bindings();
        assert_eq!(b.fill("{{up.primary}}/a"), "http://127.0.0.1:4001/a");
        assert_eq!(b.fill("{{ up.primary.port }}"), "4001");
        assert_eq!(b.fill("x{{up.tls.hostport}}y{{up.tls.ca_file}}"), "x127.0.0.1:4002y/tmp/x/ca.pem");
        assert_eq!(b.fill("127.0.0.1:{{unused_port}}"), "127.0.0.1:4999");
        assert_eq!(b.fill("{{state_dir}}/last-known-good.json"), "/tmp/x/state/last-known-good.json");
        assert_eq!(b.fill("no templates"), "no templates");
    }

    #[test]
    fn repeats_expand_in_raw_writes_headers_and_upstream_bytes() {
        let b = bindings();
        assert_eq!(b.fill("a{{repeat 3 \"xy\"}}{{up.primary.port}}"), "axyxyxy4001");
        let text = "id: a\ndescription: d\nupstreams:\n  primary: {}\nsteps:\n  - send: {raw_writes: [{bytes: \"{{repeat 2 \\\"ab\\\"}}\"}, {after_ms: 5, bytes: \"{{up.primary.hostport}}\"}]}\n  - send: {headers: {Cookie: \"{{repeat 4 \\\"c\\\"}}\"}}\n  - upstream: {name: primary, behaviour: {raw: {bytes: \"{{repeat 2 \\\"z\\\"}}\"}}}\n  - expect_upstream: {name: primary, received: [{target: \"/{{repeat 3 \\\"t\\\"}}\"}]}\n";
        let sc = crate::scenario::parse(text, std::path::Path::new("t.yaml")).unwrap();
        let p = Plan::new(&sc, &b);
        let Step::Send(s) = &p.steps[0] else { panic!() };
        let w = s.raw_writes.as_ref().unwrap();
        assert_eq!((w[0].bytes.as_str(), w[1].bytes.as_str(), w[1].after_ms), ("abab", "127.0.0.1:4001", 5));
        let Step::Send(s) = &p.steps[1] else { panic!() };
        assert_eq!(s.headers["Cookie"], "cccc");
        let Step::Upstream(u) = &p.steps[2] else { panic!() };
        assert_eq!(u.behaviour, Some(Behaviour::Raw(crate::scenario::RawReply { bytes: "zz".into(), close: false, delay_ms: 0 })));
        let Step::ExpectUpstream(u) = &p.steps[3] else { panic!() };
        assert_eq!(u.received.as_ref().unwrap()[0].target.as_deref(), Some("/ttt"));
    }

    #[test]
    fn unknown_templates_become_empty() {
        let b = bindings();
        assert_eq!(b.fill("[{{up.nope}}]"), "[]");
        assert_eq!(b.fill("[{{up.primary.ca_file}}]"), "[]");
        assert_eq!(b.fill("[{{up.primary.bogus}}]"), "[]");
        assert_eq!(b.fill("[{{other}}]"), "[]");
    }

    #[test]
    fn values_are_filled_in_strings_and_keys_not_numbers() {
        let b = bindings();
        let v = b.fill_value(&json!({"{{up.primary.hostport}}": ["{{up.primary}}", 3, null]}));
        assert_eq!(v, json!({"127.0.0.1:4001": ["http://127.0.0.1:4001", 3, null]}));
    }

    #[test]
    fn the_plan_resolves_send_push_and_expectations() {
        let text = "id: a\ndescription: d\nupstreams:\n  primary: {}\nrouter: {control_plane: true}\nsteps:\n  - send: {path: \"/p/{{up.primary.port}}\", headers: {x-h: \"{{up.primary}}\"}, expect: {headers: {x-b: \"{{up.primary.hostport}}\"}, echo_headers: {x-c: \"{{unused_port}}\"}}}\n  - push: {config_text: '{\"version\": 2, \"u\": \"{{up.primary}}\"}', nack: {code: bad}}\n  - expect_admin: {/a: \"{{up.primary}}\"}\n  - expect_file: {path: \"{{state_dir}}/f\", exists: true}\n";
        let sc = crate::scenario::parse(text, std::path::Path::new("t.yaml")).unwrap();
        let p = Plan::new(&sc, &bindings());
        let Step::Send(s) = &p.steps[0] else { panic!() };
        assert_eq!(s.path, "/p/4001");
        assert_eq!(s.headers["x-h"], "http://127.0.0.1:4001");
        assert_eq!(s.expect.headers["x-b"].as_deref(), Some("127.0.0.1:4001"));
        assert_eq!(s.expect.echo_headers["x-c"].as_deref(), Some("4999"));
        let Step::Push(pu) = &p.steps[1] else { panic!() };
        assert_eq!(pu.config_text.as_deref(), Some("{\"version\": 2, \"u\": \"http://127.0.0.1:4001\"}"));
        let Step::ExpectAdmin(m) = &p.steps[2] else { panic!() };
        assert_eq!(m["/a"], json!("http://127.0.0.1:4001"));
        let Step::ExpectFile(f) = &p.steps[3] else { panic!() };
        assert_eq!(f.path, "/tmp/x/state/f");
    }
}
