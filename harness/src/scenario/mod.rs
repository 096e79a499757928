//! The scenario model: one YAML file per scenario, parsed with `serde_yaml_ng` into the
//! typed model below, then checked for the rules serde cannot express (references between
//! parts, one-of fields). Every error names the file, the line and the field path
//! (`steps[3].send.expect.upstream`). The format is documented in `docs/scenarios.md`;
//! `parity schema` prints the JSON Schema derived from these types.
//!
//! [`model`] holds the types, [`load`] the YAML parsing with its line map, [`check`]
//! the cross-checks, [`text`] the byte strings (Latin-1, `{{repeat N "text"}}`).
pub mod check;
pub mod load;
pub mod model;
pub mod text;

pub use check::config_schema_errors;
pub use load::{files_in, load_all, parse, LineMap, Loaded, ScenarioError};
pub use model::*;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn p(text: &str) -> Result<Scenario, Vec<ScenarioError>> {
        parse(text, Path::new("t.yaml"))
    }

    const OK: &str = "id: a\ndescription: d\nupstreams:\n  primary: {}\nconfig:\n  version: 1\n  routes: {k: p}\n  placements:\n    p: {endpoint: \"{{up.primary}}\", max_concurrency: 4, timeouts: {connect_ms: 100, request_ms: 1000}}\nsteps:\n  - send: {key: k, expect: {status: 200, upstream: primary}}\n  - upstream: {name: primary, behaviour: hang}\n  - upstream: {name: primary, behaviour: {drip: {chunks: 3, interval_ms: 10}}}\n";

    #[test]
    fn parses_a_good_scenario() {
        let s = p(OK).unwrap();
        assert_eq!(s.id, "a");
        assert_eq!(s.steps.len(), 3);
        match &s.steps[1] {
            Step::Upstream(u) => assert_eq!(u.behaviour, Some(Behaviour::Hang)),
            _ => panic!(),
        }
        match &s.steps[2] {
            Step::Upstream(u) => {
                assert_eq!(u.behaviour, Some(Behaviour::Drip { chunks: 3, interval_ms: 10, sse: false }))
            }
            _ => panic!(),
        }
    }

    #[test]
    fn wait_windows_name_an_earlier_step_and_metrics_may_expect_absence() {
        let w = |win: &str| format!("{OK}  - wait: {{admin: /x, equals: 1, window: {win}}}\n  - expect_metrics: {{'a{{b=\"c\"}}': null, d: 0}}\n");
        let s = p(&w("{after_step: 1, min_ms: 10, max_ms: 20}")).unwrap();
        match &s.steps[3] {
            Step::Wait(x) => assert_eq!(x.window, Some(Window { after_step: 1, min_ms: 10, max_ms: 20 })),
            _ => panic!(),
        }
        match &s.steps[4] {
            Step::ExpectMetrics(m) => assert_eq!((m["a{b=\"c\"}"], m["d"]), (None, Some(0.0))),
            _ => panic!(),
        }
        let e = p(&w("{after_step: 4, min_ms: 10, max_ms: 20}")).unwrap_err();
        assert_eq!(e[0].field, "steps[3].wait.window.after_step", "{}", e[0]);
        let e = p(&w("{after_step: 1, min_ms: 30, max_ms: 20}")).unwrap_err();
        assert_eq!(e[0].field, "steps[3].wait.window", "{}", e[0]);
    }

    #[test]
    fn unknown_field_has_line_and_path() {
        let t = OK.replace("  - send: {key: k,", "  - send: {kee: k,");
        let e = p(&t).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, 11, "{}", e[0]);
        assert!(e[0].field.starts_with("steps[0].send"), "{}", e[0]);
        assert!(e[0].message.contains("unknown field `kee`"), "{}", e[0]);
    }

    #[test]
    fn wrong_type_has_line_and_path() {
        let t = OK.replace("status: 200", "status: lots");
        let e = p(&t).unwrap_err();
        assert_eq!(e[0].line, 11, "{}", e[0]);
        assert_eq!(e[0].field, "steps[0].send.expect.status", "{}", e[0]);
    }

    #[test]
    fn unknown_upstream_reference_has_line_and_path() {
        let t = OK.replace("upstream: primary}", "upstream: nobody}");
        let e = p(&t).unwrap_err();
        assert_eq!(e[0].field, "steps[0].send.expect.upstream");
        assert_eq!(e[0].line, 11, "{}", e[0]);
        let t = OK.replace("{{up.primary}}", "{{up.secondary}}");
        let e = p(&t).unwrap_err();
        assert_eq!(e[0].field, "config.placements.p.endpoint");
        assert_eq!(e[0].line, 9, "{}", e[0]);
        assert!(e[0].message.contains("secondary"));
    }

    #[test]
    fn embedded_config_is_checked_against_the_config_schema() {
        // A typo in an initial config is a validation error with line and field.
        let t = OK.replace("connect_ms: 100", "conect_ms: 100");
        let e = p(&t).unwrap_err();
        assert!(e.iter().all(|e| e.field == "config.placements.p.timeouts" && e.line == 9), "{e:?}");
        assert!(e.iter().any(|e| e.message.contains("'conect_ms' was unexpected")), "{e:?}");
        // A push expected to be acked is checked; one expected to be nacked is not.
        let push = |expect: &str| format!("{OK}  - push:\n      config: {{version: 2, routes: {{}}, placements: {{}}, extra: 1}}\n      {expect}\n");
        let e = p(&push("ack: 2")).unwrap_err();
        assert_eq!(e[0].field, "steps[3].push.config", "{}", e[0]);
        assert!(p(&push("nack: {code: unknown_field, path: /extra}")).is_ok());
    }

    #[test]
    fn missing_required_field_is_reported() {
        let t = OK.replace("description: d\n", "");
        let e = p(&t).unwrap_err();
        assert!(e[0].message.contains("missing field `description`"), "{}", e[0]);
    }

    #[test]
    fn await_needs_earlier_background() {
        let t = format!("{OK}  - await: {{name: slow}}\n");
        let e = p(&t).unwrap_err();
        assert_eq!(e[0].field, "steps[3].await.name");
        assert_eq!(e[0].line, 14);
    }

    #[test]
    fn line_map_nested() {
        let m = LineMap::build("a:\n  b:\n    - x\n    - {c: 1}\n");
        assert_eq!(m.line("a"), 1);
        assert_eq!(m.line("a.b"), 2);
        assert_eq!(m.line("a.b[1].c"), 4);
        assert_eq!(m.line("a.b[0]"), 3);
    }

    #[test]
    fn echo_is_a_name_or_a_map_and_raw_replies_parse() {
        let t = OK.replace("  - upstream: {name: primary, behaviour: hang}\n", "  - upstream: {name: primary, behaviour: echo}\n  - upstream: {name: primary, behaviour: {echo: {delay_ms: 300}}}\n  - upstream: {name: primary, behaviour: {raw: {bytes: \"HTTP/1.1 204 \\xe9\\r\\n\\r\\n\", close: true}}}\n");
        let s = p(&t).unwrap();
        let b: Vec<&Behaviour> = s.steps.iter().filter_map(|x| if let Step::Upstream(u) = x { u.behaviour.as_ref() } else { None }).collect();
        assert_eq!(b[0], &Behaviour::Echo(EchoSpec { delay_ms: 0 }));
        assert_eq!(b[1], &Behaviour::Echo(EchoSpec { delay_ms: 300 }));
        assert_eq!(b[2], &Behaviour::Raw(RawReply { bytes: "HTTP/1.1 204 \u{e9}\r\n\r\n".into(), close: true, delay_ms: 0 }));
        // Unknown members of a behaviour's map and unknown names keep their line and path.
        let e = p(&OK.replace("behaviour: hang}", "behaviour: {echo: {delay: 3}}}")).unwrap_err();
        assert_eq!(e[0].line, 12, "{}", e[0]);
        assert!(e[0].message.contains("unknown field `delay`"), "{}", e[0]);
        assert!(e[0].field.starts_with("steps[1].upstream.behaviour"), "{}", e[0]);
        let e = p(&OK.replace("behaviour: hang}", "behaviour: sleepy}")).unwrap_err();
        assert!(e[0].message.contains("unknown variant `sleepy`"), "{}", e[0]);
        assert_eq!(e[0].line, 12, "{}", e[0]);
    }

    #[test]
    fn byte_strings_are_latin1_with_the_line_of_the_offender() {
        let t = format!("{OK}  - send:\n      raw_writes:\n        - {{after_ms: 0, bytes: \"GET / HTTP/1.1\\r\\n\"}}\n        - {{after_ms: 50, bytes: \"X: \\u20ac\\r\\n\"}}\n");
        let e = p(&t).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field, "steps[3].send.raw_writes[1].bytes");
        assert_eq!(e[0].line, 17, "{}", e[0]);
        assert!(e[0].message.contains("U+20AC"), "{}", e[0]);
        let t = format!("{OK}  - send: {{raw: \"{{{{repeat 2000000 \\\"a\\\"}}}}\"}}\n");
        let e = p(&t).unwrap_err();
        assert_eq!((e[0].field.as_str(), e[0].line), ("steps[3].send.raw", 14), "{}", e[0]);
        assert!(e[0].message.contains("above 1000000"), "{}", e[0]);
        let t = OK.replace("  primary: {}", "  primary: {behaviour: {raw: {bytes: \"\\u0100\"}}}");
        let e = p(&t).unwrap_err();
        assert_eq!((e[0].field.as_str(), e[0].line), ("upstreams.primary.behaviour.raw.bytes", 4), "{}", e[0]);
    }

    #[test]
    fn raw_sends_exclude_built_fields_and_expect_every_response() {
        let t = format!("{OK}  - send: {{raw: \"x\", raw_writes: [{{bytes: y}}], key: k}}\n");
        let e = p(&t).unwrap_err();
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["steps[3].send", "steps[3].send.key"], "{e:?}");
        let t = format!("{OK}  - send:\n      raw: \"x\"\n      read_delay_ms: 100\n      expect: {{responses: [{{status: 200, upstream: primary, headers: {{a: null}}, header_values: {{b: [\"1\", \"2\"]}}, interim: [{{status: 103}}]}}, {{status: 400, error: bad_request}}], connection: eof}}\n");
        let s = p(&t).unwrap();
        let Step::Send(x) = &s.steps[3] else { panic!() };
        assert_eq!(x.read_delay_ms, 100);
        assert_eq!(x.expect.connection, Some(ConnExpect::Eof));
        let r = x.expect.responses.as_ref().unwrap();
        assert_eq!((r[0].status, r[0].upstream.clone(), r[0].headers["a"].clone()), (200, Some(Some("primary".into())), None));
        assert_eq!(r[0].header_values["b"], ["1", "2"]);
        assert_eq!(r[1].error, Some(Some("bad_request".into())));
        let e = p(&t.replace("upstream: primary,", "upstream: nobody,")).unwrap_err();
        assert_eq!(e[0].field, "steps[3].send.expect.responses[0].upstream");
        let e = p(&t.replace("connection: eof", "connection: closed")).unwrap_err();
        assert!(e[0].message.contains("unknown variant `closed`"), "{}", e[0]);
    }

    #[test]
    fn expect_upstream_received_parses() {
        let t = format!("{OK}  - expect_upstream: {{name: primary, received: [{{target: /a, headers: {{upgrade: null}}}}, {{body: \"\\xff\"}}]}}\n");
        let s = p(&t).unwrap();
        let Step::ExpectUpstream(u) = &s.steps[3] else { panic!() };
        let r = u.received.as_ref().unwrap();
        assert_eq!((r[0].target.as_deref(), r[0].headers["upgrade"].clone(), r[1].body.as_deref()), (Some("/a"), None, Some("\u{ff}")));
        let e = p(&t.replace("target: /a", "path: /a")).unwrap_err();
        assert!(e[0].message.contains("unknown field `path`"), "{}", e[0]);
    }

    #[test]
    fn template_scan() {
        assert_eq!(templates("x{{up.a}}y{{ up.b.port }}"), vec!["up.a", "up.b.port"]);
    }
}
