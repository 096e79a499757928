//! Cross-checks: the rules of a scenario that its types cannot express (references
//! between parts, one-of fields, known templates), and embedded router configs checked
//! against spec/config.schema.json. Every violation is reported with its field path.

use super::load::{LineMap, ScenarioError};
use super::model::*;
use serde_json::Value;
use std::path::Path;

/// Rules the types cannot express. Returns every violation found.
pub(super) fn check(sc: &Scenario, map: &LineMap, file: &Path) -> Vec<ScenarioError> {
    let mut errs = Vec::new();
    let mut err = |field: String, message: String| {
        let line = map.line(&field);
        errs.push(ScenarioError { file: file.to_path_buf(), line, field, message });
    };
    let id_ok = !sc.id.is_empty()
        && sc.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !sc.id.starts_with('-');
    if !id_ok {
        err("id".into(), format!("{:?} does not match ^[a-z0-9][a-z0-9-]*$", sc.id));
    }
    for name in sc.upstreams.keys() {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            err(format!("upstreams.{name}"), format!("upstream name {name:?} must be [A-Za-z0-9_-]+"));
        }
    }
    let known = |n: &str| sc.upstreams.contains_key(n);
    for (name, u) in &sc.upstreams {
        if let Behaviour::Raw(r) = &u.behaviour {
            check_bytes(&r.bytes, format!("upstreams.{name}.behaviour.raw.bytes"), &mut err);
        }
    }
    // Templates anywhere in config documents and strings.
    let check_templates = |v: &Value, path: String, err: &mut dyn FnMut(String, String)| {
        let mut stack = vec![(v, path)];
        while let Some((v, p)) = stack.pop() {
            match v {
                Value::String(s) => {
                    for t in templates(s) {
                        if let Err(m) = check_template(&t, &known) {
                            err(p.clone(), m);
                        }
                    }
                }
                Value::Array(a) => {
                    for (i, x) in a.iter().enumerate() {
                        stack.push((x, format!("{p}[{i}]")));
                    }
                }
                Value::Object(o) => {
                    for (k, x) in o {
                        stack.push((x, format!("{p}.{k}")));
                    }
                }
                _ => {}
            }
        }
    };
    if let Some(c) = &sc.config {
        check_templates(c, "config".into(), &mut err);
        // The initial config must be accepted (acked, or served as the LKG file).
        for (field, message) in config_schema_errors(c, "config") {
            err(field, message);
        }
    }
    if sc.router.lkg_text.is_some() && sc.config.is_some() && !sc.router.control_plane {
        err("router.lkg_text".into(), "without a control plane `config` is the LKG file already; give one of them".into());
    }
    let mut backgrounds: Vec<String> = Vec::new();
    for (i, step) in sc.steps.iter().enumerate() {
        let base = format!("steps[{i}]");
        match step {
            Step::Send(s) => {
                let b = format!("{base}.send");
                if s.count == 0 {
                    err(format!("{b}.count"), "must be at least 1".into());
                }
                if s.concurrency == 0 {
                    err(format!("{b}.concurrency"), "must be at least 1".into());
                }
                let bodies = [s.body.is_some(), s.body_bytes.is_some(), s.raw.is_some(), s.raw_writes.is_some()];
                if bodies.iter().filter(|x| **x).count() > 1 {
                    err(b.clone(), "at most one of body, body_bytes, raw, raw_writes".into());
                }
                if let Some(r) = &s.raw {
                    check_bytes(r, format!("{b}.raw"), &mut err);
                }
                if let Some(ws) = &s.raw_writes {
                    if ws.is_empty() {
                        err(format!("{b}.raw_writes"), "needs at least one write".into());
                    }
                    for (k, w) in ws.iter().enumerate() {
                        check_bytes(&w.bytes, format!("{b}.raw_writes[{k}].bytes"), &mut err);
                    }
                }
                if s.raw.is_some() || s.raw_writes.is_some() {
                    // A raw send writes its bytes exactly: the built request's fields mean nothing.
                    let built = [
                        ("key", s.key.is_some()),
                        ("path", s.path != "/"),
                        ("method", s.method != "GET"),
                        ("headers", !s.headers.is_empty()),
                        ("pad_header_bytes", s.pad_header_bytes.is_some()),
                    ];
                    for (name, set) in built {
                        if set {
                            err(format!("{b}.{name}"), "not with raw or raw_writes (the bytes are written as they are)".into());
                        }
                    }
                }
                if s.raw_writes.is_some() && s.tunnel_write.is_some() {
                    err(format!("{b}.tunnel_write"), "needs raw, not raw_writes".into());
                }
                if s.raw_writes.is_some() && s.read_chunks.is_some() {
                    err(format!("{b}.read_chunks"), "not with raw_writes".into());
                }
                for (k, v) in s.headers.iter().chain(std::iter::once((&String::new(), &s.path))) {
                    for t in templates(v) {
                        if let Some(Err(m)) = super::text::parse_repeat(&t) {
                            err(if k.is_empty() { format!("{b}.path") } else { format!("{b}.headers.{k}") }, m);
                        }
                    }
                }
                if let Some(rs) = &s.expect.responses {
                    for (k, r) in rs.iter().enumerate() {
                        if let Some(Some(u)) = &r.upstream {
                            if !known(u) {
                                err(format!("{b}.expect.responses[{k}].upstream"), format!("unknown upstream {u:?}"));
                            }
                        }
                        if let Some(body) = &r.body {
                            check_bytes(body, format!("{b}.expect.responses[{k}].body"), &mut err);
                        }
                    }
                    if s.read_chunks.is_some() {
                        err(format!("{b}.expect.responses"), "not with read_chunks".into());
                    }
                }
                if let Some(t) = &s.trace {
                    for (k, d) in t.iter().enumerate() {
                        if !["status", "error", "upstream", "placement", "complete"].contains(&d.as_str()) {
                            err(format!("{b}.trace[{k}]"), format!("{d:?} is not one of status, error, upstream, placement, complete"));
                        }
                    }
                }
                if s.tunnel_write.is_some() && s.raw.is_none() && s.raw_writes.is_none() {
                    err(format!("{b}.tunnel_write"), "needs raw".into());
                }
                if s.raw.is_some() && s.read_chunks.is_some() {
                    err(format!("{b}.read_chunks"), "not with raw".into());
                }
                if let Some(Some(u)) = &s.expect.upstream {
                    if !known(u) {
                        err(format!("{b}.expect.upstream"), format!("unknown upstream {u:?}"));
                    }
                }
                for u in s.expect.upstream_counts.keys() {
                    if u != "-" && !known(u) {
                        err(format!("{b}.expect.upstream_counts.{u}"), format!("unknown upstream {u:?}"));
                    }
                }
                for k in s.expect.status_counts.keys() {
                    if k.parse::<u16>().is_err() && k != "none" {
                        err(format!("{b}.expect.status_counts.{k}"), "key must be a status code or `none`".into());
                    }
                }
                if (s.expect.chunks_at_least.is_some() || s.expect.max_chunk_gap_ms.is_some())
                    && s.read_chunks.is_none()
                {
                    err(format!("{b}.expect"), "chunk expectations need read_chunks".into());
                }
                for (k, v) in &s.expect.headers {
                    if let Some(v) = v {
                        check_templates(&Value::String(v.clone()), format!("{b}.expect.headers.{k}"), &mut err);
                    }
                }
                for (k, v) in &s.expect.echo_headers {
                    if let Some(v) = v {
                        check_templates(&Value::String(v.clone()), format!("{b}.expect.echo_headers.{k}"), &mut err);
                    }
                }
                if let Some(n) = &s.background {
                    if backgrounds.contains(n) {
                        err(format!("{b}.background"), format!("background name {n:?} used twice"));
                    }
                    backgrounds.push(n.clone());
                }
            }
            Step::Await(a) => {
                if !backgrounds.contains(&a.name) {
                    err(format!("{base}.await.name"), format!("no earlier background send named {:?}", a.name));
                }
            }
            Step::Push(p) => {
                let b = format!("{base}.push");
                let n = [p.config.is_some(), p.config_text.is_some(), p.frame.is_some()]
                    .iter()
                    .filter(|x| **x)
                    .count();
                if n != 1 {
                    err(b.clone(), "exactly one of config, config_text, frame".into());
                }
                if p.ack.is_some() == p.nack.is_some() {
                    err(b.clone(), "exactly one of ack, nack".into());
                }
                // Only a push expected to be acked must match the config schema; pushes
                // expecting a nack are invalid on purpose.
                if let (Some(c), Some(_)) = (&p.config, p.ack) {
                    for (field, message) in config_schema_errors(c, &format!("{b}.config")) {
                        err(field, message);
                    }
                }
                if !sc.router.control_plane {
                    err(b.clone(), "push needs router.control_plane: true".into());
                }
                if let Some(c) = &p.config {
                    check_templates(c, format!("{b}.config"), &mut err);
                }
            }
            Step::Upstream(u) => {
                if !known(&u.name) {
                    err(format!("{base}.upstream.name"), format!("unknown upstream {:?}", u.name));
                }
                if let Some(Behaviour::Raw(r)) = &u.behaviour {
                    check_bytes(&r.bytes, format!("{base}.upstream.behaviour.raw.bytes"), &mut err);
                }
            }
            Step::Wait(w) => {
                let n = [
                    w.admin.is_some(),
                    w.metric.is_some(),
                    w.hellos.is_some(),
                    w.cp_connections.is_some(),
                    w.cp_closed.is_some(),
                    w.upstream_requests.is_some(),
                    w.data_port_refused.is_some(),
                    w.background_chunks.is_some(),
                ]
                .iter()
                .filter(|x| **x)
                .count();
                if n != 1 {
                    err(format!("{base}.wait"), "exactly one of admin, metric, hellos, cp_connections, cp_closed, upstream_requests, data_port_refused, background_chunks".into());
                }
                if (w.admin.is_some() || w.metric.is_some()) && w.equals.is_none() && w.at_least.is_none() {
                    err(format!("{base}.wait"), "admin and metric need equals or at_least".into());
                }
                if let Some(n) = &w.background_chunks {
                    if !backgrounds.contains(n) {
                        err(format!("{base}.wait.background_chunks"), format!("no earlier background send named {n:?}"));
                    }
                }
                if let Some(win) = &w.window {
                    if win.after_step == 0 || win.after_step > i {
                        err(format!("{base}.wait.window.after_step"), format!("must name an earlier step (1..={i}), not {}", win.after_step));
                    }
                    if win.min_ms > win.max_ms {
                        err(format!("{base}.wait.window"), format!("min_ms {} is above max_ms {}", win.min_ms, win.max_ms));
                    }
                }
                if w.upstream_requests.is_some() && w.at_least.is_none() {
                    err(format!("{base}.wait"), "upstream_requests needs at_least".into());
                }
                if let Some(u) = &w.upstream_requests {
                    if !known(u) {
                        err(format!("{base}.wait.upstream_requests"), format!("unknown upstream {u:?}"));
                    }
                }
                if let Some(m) = &w.metric {
                    if let Err(e) = crate::metrics::SeriesKey::parse(m) {
                        err(format!("{base}.wait.metric"), e);
                    }
                }
                if let Some(a) = &w.admin {
                    if !(a.is_empty() || a.starts_with('/')) {
                        err(format!("{base}.wait.admin"), "a JSON Pointer starts with /".into());
                    }
                }
            }
            Step::ExpectAdmin(m) => {
                for k in m.keys() {
                    if !(k.is_empty() || k.starts_with('/')) {
                        err(format!("{base}.expect_admin.{k}"), "a JSON Pointer starts with /".into());
                    }
                }
            }
            Step::ExpectMetrics(m) => {
                for k in m.keys() {
                    if let Err(e) = crate::metrics::SeriesKey::parse(k) {
                        err(format!("{base}.expect_metrics.{k}"), e);
                    }
                }
            }
            Step::ExpectUpstream(u) => {
                if !known(&u.name) {
                    err(format!("{base}.expect_upstream.name"), format!("unknown upstream {:?}", u.name));
                }
                for (k, r) in u.received.iter().flatten().enumerate() {
                    if let Some(body) = &r.body {
                        check_bytes(body, format!("{base}.expect_upstream.received[{k}].body"), &mut err);
                    }
                }
            }
            Step::KeySpread(k) => {
                for name in k.moved_from.iter().flatten().chain(&k.never) {
                    if !sc.upstreams.contains_key(name) {
                        err(format!("{base}.key_spread"), format!("no upstream {name:?}"));
                    }
                }
                if k.compare.is_none() && (k.max_moved_percent.is_some() || k.moved_from.is_some()) {
                    err(format!("{base}.key_spread"), "max_moved_percent and moved_from need compare".into());
                }
            }
            Step::ExpectAccessLog(_) => {
                if !sc.router.access_log {
                    err(base.clone(), "needs router.access_log: true".into());
                }
            }
            Step::ExpectFile(f) => {
                check_templates(&Value::String(f.path.clone()), format!("{base}.expect_file.path"), &mut err);
            }
            Step::Tls(t) => {
                if sc.router.tls.is_none() {
                    err(base.clone(), "needs router.tls".into());
                }
                if t.connections == 0 {
                    err(format!("{base}.tls.connections"), "must be at least 1".into());
                }
                if t.expect.resumed.as_ref().is_some_and(|r| r.len() != t.connections as usize) {
                    err(format!("{base}.tls.expect.resumed"), "needs one entry per connection".into());
                }
            }
            Step::ControlPlane(_) | Step::ExpectControlPlane(_) => {
                if !sc.router.control_plane {
                    err(base.clone(), "needs router.control_plane: true".into());
                }
            }
            Step::Router(_) | Step::Toxic(_) | Step::SnapshotMetrics(_) => {}
        }
    }
    // The toxiproxy block and toxic steps (crate::toxiproxy).
    let toxics: Vec<(usize, &crate::toxiproxy::ToxicStep)> =
        sc.steps.iter().enumerate().filter_map(|(i, s)| if let Step::Toxic(t) = s { Some((i, t)) } else { None }).collect();
    let names: Vec<String> = sc.upstreams.keys().cloned().collect();
    for (field, message) in crate::toxiproxy::check(sc.toxiproxy.as_ref(), &toxics, &names, sc.router.control_plane) {
        err(field, message);
    }
    errs
}

/// spec/config.schema.json, embedded so that validation works from any folder.
const CONFIG_SCHEMA: &str = include_str!("../../../spec/config.schema.json");

/// Structural errors of a config document that the scenario expects the router to accept,
/// checked against spec/config.schema.json after filling templates with placeholder
/// values (`up.NAME` → `http://127.0.0.1:1`, ports → `1`). Each error is (field, message)
/// with the field spelled as scenario fields are (`config.placements.pa.timeouts`).
/// Cross-field rules (references, cycles, stale versions) are the routers' own checks.
pub fn config_schema_errors(config: &Value, field: &str) -> Vec<(String, String)> {
    static VALIDATOR: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let v = VALIDATOR.get_or_init(|| {
        let schema: Value = serde_json::from_str(CONFIG_SCHEMA).expect("spec/config.schema.json is JSON");
        jsonschema::validator_for(&schema).expect("spec/config.schema.json is a valid JSON Schema")
    });
    let filled = fill_placeholders(config);
    v.iter_errors(&filled)
        .map(|e| {
            let ptr = e.instance_path().to_string();
            let sub: String = ptr.split('/').filter(|s| !s.is_empty()).map(|s| format!(".{}", s.replace("~1", "/").replace("~0", "~"))).collect();
            (format!("{field}{sub}"), format!("config schema (spec/config.schema.json): {e}"))
        })
        .collect()
}

/// Fills every template of a config document with a placeholder of the right shape.
fn fill_placeholders(v: &Value) -> Value {
    let fill = |s: &str| {
        let mut out = s.to_string();
        for t in templates(s) {
            let val = match t.rsplit('.').next() {
                _ if t == "unused_port" => "1",
                _ if t == "state_dir" => "/tmp",
                Some("port") if t.starts_with("up.") && t.split('.').count() == 3 => "1",
                Some("hostport") if t.split('.').count() == 3 => "127.0.0.1:1",
                Some("ca_file") if t.split('.').count() == 3 => "/tmp/ca.pem",
                _ => "http://127.0.0.1:1",
            };
            out = out.replace(&format!("{{{{{t}}}}}"), val).replace(&format!("{{{{ {t} }}}}"), val);
        }
        out
    };
    match v {
        Value::String(s) => Value::String(fill(s)),
        Value::Array(a) => Value::Array(a.iter().map(fill_placeholders).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (fill(k), fill_placeholders(x))).collect()),
        other => other.clone(),
    }
}

/// Known templates: `up.NAME` (origin `scheme://127.0.0.1:port`), `up.NAME.port`,
/// `up.NAME.hostport`, `up.NAME.ca_file`, `unused_port` (a port nothing listens on),
/// `state_dir`, `repeat N "text"` ([`super::text::parse_repeat`]).
fn check_template(t: &str, known: &dyn Fn(&str) -> bool) -> Result<(), String> {
    if t == "unused_port" || t == "state_dir" {
        return Ok(());
    }
    if let Some(r) = super::text::parse_repeat(t) {
        return r.map(|_| ());
    }
    let parts: Vec<&str> = t.split('.').collect();
    match parts.as_slice() {
        ["up", name] | ["up", name, "port" | "hostport" | "ca_file"] => {
            if known(name) {
                Ok(())
            } else {
                Err(format!("template {{{{{t}}}}} names unknown upstream {name:?}"))
            }
        }
        _ => Err(format!("unknown template {{{{{t}}}}}")),
    }
}


/// A byte string (`raw`, `raw_writes[].bytes`, upstream `raw.bytes`, expected bodies):
/// every character must be Latin-1 (one byte each, [`super::text::latin1`]) and every
/// template in it must be known (only `repeat` and the environment's templates are).
fn check_bytes(s: &str, field: String, err: &mut dyn FnMut(String, String)) {
    if let Err((i, c)) = super::text::latin1(s) {
        err(field.clone(), format!("character {c:?} (U+{:04X}) at offset {i} is above U+00FF: byte strings are Latin-1, one byte per character; write bytes as \\xHH escapes", u32::from(c)));
    }
    for t in templates(s) {
        if let Some(Err(m)) = super::text::parse_repeat(&t) {
            err(field.clone(), m);
        }
    }
}
