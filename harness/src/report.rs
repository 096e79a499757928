//! Results of a run: `summary.json` (stable schema, [`Summary`]), `report.md`,
//! `report.html` (a scenario × implementation matrix, then details), `junit.xml`
//! (quick-junit, one test case per scenario and implementation), and the terminal lines.

use crate::verdict::Difference;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// `summary.json`. Schema version 1; fields are only ever added.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Always 1 for this layout.
    pub schema_version: u32,
    /// Run id, also the results folder name (`YYYYMMDDTHHMMSSZ-PID`).
    pub run_id: String,
    /// RFC 3339 start time.
    pub started_at: String,
    /// Wall time of the run, milliseconds.
    pub duration_ms: u64,
    /// Implementations run, in order.
    pub impls: Vec<String>,
    /// One entry per scenario, in run order.
    pub scenarios: Vec<ScenarioResult>,
    /// True when a signal stopped the run before every scenario × implementation run was
    /// recorded (added field: absent in older files means false).
    #[serde(default)]
    pub interrupted: bool,
    /// The scenario × implementation runs not recorded because the run was interrupted
    /// (added field: absent means none).
    #[serde(default)]
    pub not_run: Vec<NotRun>,
    /// The slice of the suite this run is, for `parity run --shard i/n` (added field:
    /// absent means the whole selection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::shard::Shard>,
    /// For a run merged by `parity report A B ...`: the run ids merged, in the order given
    /// (added field: absent means not merged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    /// For a merged run of slices: the slices that were not given (added field). A run
    /// with a missing slice is incomplete (exit code 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_shards: Vec<crate::shard::Shard>,
}

/// One scenario × implementation run that an interrupted run did not record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NotRun {
    /// Scenario id.
    pub id: String,
    /// Implementation.
    #[serde(rename = "impl")]
    pub imp: String,
}

/// One scenario's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// Scenario id.
    pub id: String,
    /// Source file.
    pub file: String,
    /// Description.
    pub description: String,
    /// Tags.
    pub tags: Vec<String>,
    /// The client transport the scenario ran over (`h1`, `h1+tls`, `h2+tls`).
    #[serde(default)]
    pub transport: crate::tls::Transport,
    /// Per implementation.
    pub impls: BTreeMap<String, ImplResult>,
    /// `identical`, `diverged`, or `n/a` when fewer than two implementations ran.
    pub parity: String,
    /// The first differing observation when `diverged`.
    pub first_difference: Option<Difference>,
}

/// One implementation's result on one scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImplResult {
    /// `pass`, `fail` or `error`.
    pub status: String,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
    /// Latency percentiles of the requests the scenario sent, microseconds.
    pub latency_us: Latency,
    /// Requests sent.
    pub requests: u64,
    /// Peak router RSS (VmHWM), bytes.
    pub rss_peak_bytes: u64,
    /// Failed expectations.
    pub failures: Vec<String>,
    /// Harness error text (status `error`).
    pub error: Option<String>,
    /// Path of the trace and router logs, relative to the run folder.
    pub logs: String,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
}

impl Summary {
    /// Process exit code: 3 when the run was interrupted, a merged run lacks a slice or an
    /// implementation errored, 1
    /// when one failed or the implementations diverged, else 0.
    pub fn exit_code(&self) -> i32 {
        let any = |st: &str| self.scenarios.iter().any(|s| s.impls.values().any(|i| i.status == st));
        if self.interrupted || !self.missing_shards.is_empty() || any("error") {
            3
        } else if any("fail") || self.scenarios.iter().any(|s| s.parity == "diverged") {
            1
        } else {
            0
        }
    }

    /// Counts: (scenarios, passed everywhere and identical).
    pub fn counts(&self) -> (usize, usize) {
        let ok = self
            .scenarios
            .iter()
            .filter(|s| s.impls.values().all(|i| i.status == "pass") && s.parity != "diverged")
            .count();
        (self.scenarios.len(), ok)
    }
}

/// The one-sentence verdict of a run (report.md/html headline and the last terminal
/// line): says when the run was interrupted and how many runs were done, and claims
/// identical traces only when more than one implementation ran.
pub fn headline(s: &Summary) -> String {
    let (n, ok) = s.counts();
    let verdict = if s.impls.len() > 1 {
        format!("{ok}/{n} scenarios pass on every implementation with identical traces")
    } else {
        format!("{ok}/{n} scenarios pass on {}", s.impls.join(","))
    };
    let verdict = match (&s.shard, s.missing_shards.is_empty()) {
        (Some(sh), _) => format!("shard {sh}: {verdict}"),
        (None, false) => {
            let miss: Vec<String> = s.missing_shards.iter().map(|m| m.to_string()).collect();
            format!("INCOMPLETE: shard {} not given. Of the merged ones, {verdict}", miss.join(", "))
        }
        (None, true) => verdict,
    };
    if s.interrupted {
        let done = s.scenarios.iter().map(|sc| sc.impls.len()).sum::<usize>();
        format!("INTERRUPTED: only {done} of {} scenario×impl runs were done; {} not run. Of the recorded ones, {verdict}", done + s.not_run.len(), s.not_run.len())
    } else {
        verdict
    }
}

/// The run's closing line in the plain form CI runners read, `parity: N passed, M failed`:
/// a scenario passes when it passed on every implementation that ran (and, with two, their
/// traces were identical); every other selected scenario, not-run ones included, failed.
pub fn tally(s: &Summary) -> String {
    let not_run: std::collections::BTreeSet<&str> = s.not_run.iter().map(|r| r.id.as_str()).collect();
    let passed = s
        .scenarios
        .iter()
        .filter(|sc| !not_run.contains(sc.id.as_str()))
        .filter(|sc| sc.impls.values().all(|i| i.status == "pass") && sc.parity != "diverged")
        .count();
    let mut all: std::collections::BTreeSet<&str> = s.scenarios.iter().map(|sc| sc.id.as_str()).collect();
    all.extend(not_run);
    format!("parity: {passed} passed, {} failed", all.len() - passed)
}

use crate::trace::step_label;

/// A run's wall time for people: milliseconds under 10 s, else seconds.
pub fn human_duration(ms: u64) -> String {
    if ms < 10_000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// The one terminal line of a scenario.
pub fn line(s: &ScenarioResult, impls: &[String]) -> String {
    let mut out = format!("{:<28}", s.id);
    if s.transport != crate::tls::Transport::H1 {
        let _ = write!(out, " [{}]", s.transport);
    }
    for imp in impls {
        let st = s.impls.get(imp).map(|i| i.status.as_str()).unwrap_or("-");
        let ms = s.impls.get(imp).map(|i| i.duration_ms).unwrap_or(0);
        let _ = write!(out, " {imp}={:<5} ({:>5} ms)", st.to_uppercase(), ms);
    }
    let _ = write!(out, "  parity={}", s.parity);
    out
}

/// Short failure details for the terminal.
pub fn details(s: &ScenarioResult) -> Vec<String> {
    let mut v = Vec::new();
    for (imp, r) in &s.impls {
        if let Some(e) = &r.error {
            v.push(format!("    {imp}: error: {e}"));
        }
        for f in r.failures.iter().take(4) {
            v.push(format!("    {imp}: {f}"));
        }
        if r.failures.len() > 4 {
            v.push(format!("    {imp}: ... {} more", r.failures.len() - 4));
        }
    }
    if let Some(d) = &s.first_difference {
        match &d.field {
            Some(f) => {
                v.push(format!("    first difference: {} ({}), field {f}:", step_label(d.step), kind_of(d)));
                for (imp, o) in &d.values {
                    v.push(format!("      {imp}: {}", clip(&o.to_string(), 400)));
                }
            }
            None => {
                v.push(format!("    first difference at observation {} ({}):", d.index, step_label(d.step)));
                for (imp, o) in &d.observations {
                    v.push(format!("      {imp}: {}", clip(&o.to_string(), 400)));
                }
            }
        }
    }
    v
}

/// Writes summary.json, report.md, report.html and junit.xml into `dir`; `junit` is an
/// extra place for the JUnit file.
pub fn write_all(dir: &Path, s: &Summary, junit: Option<&Path>) -> Result<()> {
    use anyhow::Context as _;
    let write = |p: &Path, data: &[u8]| std::fs::write(p, data).with_context(|| format!("writing {}", p.display()));
    write(&dir.join("summary.json"), serde_json::to_string_pretty(s)?.as_bytes())?;
    write(&dir.join("report.md"), markdown(s).as_bytes())?;
    write(&dir.join("report.html"), html(s).as_bytes())?;
    let j = junit_xml(s)?;
    write(&dir.join("junit.xml"), j.as_bytes())?;
    if let Some(p) = junit {
        write(p, j.as_bytes())?;
    }
    Ok(())
}

fn cell(r: Option<&ImplResult>) -> String {
    match r {
        None => "–".into(),
        Some(r) => match r.status.as_str() {
            "pass" => "✅ pass".into(),
            "fail" => "❌ fail".into(),
            other => format!("⚠️ {other}"),
        },
    }
}

/// `report.md`.
pub fn markdown(s: &Summary) -> String {
    let mut m = format!("# Parity run {}\n\nStarted {}, {} ms. {}.\n\n", s.run_id, s.started_at, s.duration_ms, headline(s));
    m.push_str("| scenario |");
    for i in &s.impls {
        let _ = write!(m, " {i} |");
    }
    m.push_str(" parity |\n|---|");
    for _ in &s.impls {
        m.push_str("---|");
    }
    m.push_str("---|\n");
    for sc in &s.scenarios {
        let _ = write!(m, "| [{}](#{}) |", sc.id, sc.id);
        for i in &s.impls {
            let _ = write!(m, " {} |", cell(sc.impls.get(i)));
        }
        let _ = writeln!(m, " {} |", sc.parity);
    }
    m.push_str("\n## Details\n");
    for sc in &s.scenarios {
        let _ = write!(m, "\n### {}\n\n{}\n\nFile `{}`; tags: {}.\n\n", sc.id, sc.description.trim(), sc.file, sc.tags.join(", "));
        m.push_str("| impl | status | duration ms | requests | p50 µs | p99 µs | peak RSS MiB |\n|---|---|---|---|---|---|---|\n");
        for (imp, r) in &sc.impls {
            let _ = writeln!(
                m,
                "| {imp} | {} | {} | {} | {} | {} | {:.1} |",
                r.status,
                r.duration_ms,
                r.requests,
                r.latency_us.p50,
                r.latency_us.p99,
                r.rss_peak_bytes as f64 / 1048576.0
            );
        }
        for (imp, r) in &sc.impls {
            if let Some(e) = &r.error {
                let _ = writeln!(m, "\n{imp} error: `{e}`");
            }
            if !r.failures.is_empty() {
                let _ = writeln!(m, "\n{imp} failures:\n");
                for f in &r.failures {
                    let _ = writeln!(m, "- `{}`", f.replace('`', "'"));
                }
            }
            let _ = writeln!(m, "\n{imp} logs and trace: `{}`", r.logs);
        }
        if let Some(d) = &sc.first_difference {
            let _ = writeln!(m, "\nFirst difference, observation {} ({}, {}), field `{}`:\n", d.index, step_label(d.step), kind_of(d), d.field.as_deref().unwrap_or("-"));
            for (imp, o) in &d.values {
                let _ = writeln!(m, "- {imp}: `{}`", o.to_string().replace('`', "'"));
            }
            for (imp, o) in &d.observations {
                let _ = writeln!(m, "- {imp} (whole observation): `{}`", clip(&o.to_string(), 2000).replace('`', "'"));
            }
        }
    }
    m
}

/// The step kind of a difference's observations (`send`, `wait`, ...).
fn kind_of(d: &Difference) -> String {
    d.observations.values().find_map(|o| o.get("kind").and_then(|k| k.as_str()).map(|k| k.to_string())).unwrap_or_else(|| "-".into())
}

/// `s` cut to `n` characters with `...` appended when longer.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(n).collect::<String>())
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `report.html`: the same content as the Markdown, self-contained.
pub fn html(s: &Summary) -> String {
    let mut h = String::from("<!doctype html><html><head><meta charset=\"utf-8\"><title>parity report</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}.pass{background:#dfd}.fail{background:#fdd}.error{background:#ffd}.diverged{background:#fdd}.identical{background:#dfd}code{white-space:pre-wrap}</style></head><body>");
    let _ = write!(h, "<h1>Parity run {}</h1><p>Started {}, {} ms. {}.</p>", esc(&s.run_id), esc(&s.started_at), s.duration_ms, esc(&headline(s)));
    h.push_str("<table><tr><th>scenario</th>");
    for i in &s.impls {
        let _ = write!(h, "<th>{}</th>", esc(i));
    }
    h.push_str("<th>parity</th></tr>");
    for sc in &s.scenarios {
        let _ = write!(h, "<tr><td><a href=\"#{0}\">{0}</a></td>", esc(&sc.id));
        for i in &s.impls {
            let st = sc.impls.get(i).map(|r| r.status.clone()).unwrap_or_default();
            let _ = write!(h, "<td class=\"{0}\">{0}</td>", esc(&st));
        }
        let _ = write!(h, "<td class=\"{0}\">{0}</td></tr>", esc(&sc.parity));
    }
    h.push_str("</table>");
    for sc in &s.scenarios {
        let _ = write!(h, "<h2 id=\"{0}\">{0}</h2><p>{1}</p><p>File <code>{2}</code>; tags: {3}</p>", esc(&sc.id), esc(sc.description.trim()), esc(&sc.file), esc(&sc.tags.join(", ")));
        h.push_str("<table><tr><th>impl</th><th>status</th><th>duration ms</th><th>requests</th><th>p50 µs</th><th>p99 µs</th><th>peak RSS MiB</th><th>logs</th></tr>");
        for (imp, r) in &sc.impls {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"{1}\">{1}</td><td>{2}</td><td>{3}</td><td>{4}</td><td>{5}</td><td>{6:.1}</td><td><a href=\"{7}\">{7}</a></td></tr>",
                esc(imp),
                esc(&r.status),
                r.duration_ms,
                r.requests,
                r.latency_us.p50,
                r.latency_us.p99,
                r.rss_peak_bytes as f64 / 1048576.0,
                esc(&r.logs)
            );
        }
        h.push_str("</table>");
        for (imp, r) in &sc.impls {
            if r.error.is_some() || !r.failures.is_empty() {
                let _ = write!(h, "<p>{} :</p><ul>", esc(imp));
                if let Some(e) = &r.error {
                    let _ = write!(h, "<li><code>error: {}</code></li>", esc(e));
                }
                for f in &r.failures {
                    let _ = write!(h, "<li><code>{}</code></li>", esc(f));
                }
                h.push_str("</ul>");
            }
        }
        if let Some(d) = &sc.first_difference {
            let _ = write!(h, "<p>First difference, observation {} ({}, {}), field <code>{}</code>:</p><ul>", d.index, step_label(d.step), esc(&kind_of(d)), esc(d.field.as_deref().unwrap_or("-")));
            for (imp, o) in &d.values {
                let _ = write!(h, "<li>{}: <code>{}</code></li>", esc(imp), esc(&o.to_string()));
            }
            h.push_str("</ul><details><summary>whole observations</summary><ul>");
            for (imp, o) in &d.observations {
                let _ = write!(h, "<li>{}: <code>{}</code></li>", esc(imp), esc(&o.to_string()));
            }
            h.push_str("</ul></details>");
        }
    }
    h.push_str("</body></html>\n");
    h
}

/// `junit.xml`: one suite per implementation, one case per scenario; divergence is a
/// failure of a separate `parity` suite.
pub fn junit_xml(s: &Summary) -> Result<String> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut rep = Report::new("parity");
    rep.set_time(std::time::Duration::from_millis(s.duration_ms));
    for imp in &s.impls {
        let mut suite = TestSuite::new(format!("parity.{imp}"));
        for sc in &s.scenarios {
            let Some(r) = sc.impls.get(imp) else { continue };
            let status = match r.status.as_str() {
                "pass" => TestCaseStatus::success(),
                "fail" => {
                    let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    st.set_message(r.failures.first().cloned().unwrap_or_default());
                    st.set_description(r.failures.join("\n"));
                    st
                }
                _ => {
                    let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
                    st.set_message(r.error.clone().unwrap_or_default());
                    st
                }
            };
            let mut tc = TestCase::new(format!("{}[{imp}]", sc.id), status);
            tc.set_classname(format!("parity.{imp}"));
            tc.set_time(std::time::Duration::from_millis(r.duration_ms));
            suite.add_test_case(tc);
        }
        // An interrupted run must never look green to CI: every run it did not do is an error.
        for nr in s.not_run.iter().filter(|nr| &nr.imp == imp) {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
            st.set_message("not run: the parity run was interrupted");
            let mut tc = TestCase::new(format!("{}[{imp}]", nr.id), st);
            tc.set_classname(format!("parity.{imp}"));
            suite.add_test_case(tc);
        }
        rep.add_test_suite(suite);
    }
    if s.impls.len() > 1 {
        let mut suite = TestSuite::new("parity.diff");
        for sc in &s.scenarios {
            let status = if sc.parity == "diverged" {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                st.set_message(sc.first_difference.as_ref().map(|d| serde_json::to_string(d).unwrap_or_default()).unwrap_or_default());
                st
            } else {
                TestCaseStatus::success()
            };
            let mut tc = TestCase::new(format!("{}[parity]", sc.id), status);
            tc.set_classname("parity.diff");
            suite.add_test_case(tc);
        }
        rep.add_test_suite(suite);
    }
    Ok(rep.to_string()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Summary {
        let mut impls = BTreeMap::new();
        for (imp, st) in [("go", "pass"), ("pingora", "fail")] {
            impls.insert(
                imp.to_string(),
                ImplResult {
                    status: st.into(),
                    duration_ms: 10,
                    latency_us: Latency { p50: 100, p99: 900 },
                    requests: 3,
                    rss_peak_bytes: 1 << 20,
                    failures: if st == "fail" { vec!["step 0 (send): status 502, expected 200".into()] } else { vec![] },
                    error: None,
                    logs: format!("logs/x/{imp}"),
                },
            );
        }
        Summary {
            schema_version: 1,
            run_id: "r".into(),
            started_at: "t".into(),
            duration_ms: 20,
            impls: vec!["go".into(), "pingora".into()],
            scenarios: vec![ScenarioResult {
                id: "x".into(),
                file: "x.yaml".into(),
                description: "d".into(),
                tags: vec![],
                transport: Default::default(),
                impls,
                parity: "diverged".into(),
                first_difference: None,
            }],
            interrupted: false,
            not_run: vec![],
            shard: None,
            merged_from: vec![],
            missing_shards: vec![],
        }
    }

    #[test]
    fn interrupted_runs_are_never_green() {
        let mut s = sample();
        for r in s.scenarios[0].impls.values_mut() {
            r.status = "pass".into();
        }
        s.scenarios[0].parity = "identical".into();
        s.interrupted = true;
        s.not_run = vec![NotRun { id: "y".into(), imp: "go".into() }, NotRun { id: "y".into(), imp: "pingora".into() }];
        assert_eq!(s.exit_code(), 3);
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(v["interrupted"], true);
        assert_eq!(v["not_run"][0]["impl"], "go");
        assert!(markdown(&s).contains("INTERRUPTED: only 2 of 4 scenario×impl runs were done"), "{}", markdown(&s));
        assert!(html(&s).contains("INTERRUPTED"));
        let j = junit_xml(&s).unwrap();
        assert!(j.contains("y[go]") && j.contains("y[pingora]") && j.contains("errors=\"2\""), "{j}");
        // Older summary.json files (no marker) still load as complete runs.
        let mut old = serde_json::to_value(sample()).unwrap();
        old.as_object_mut().unwrap().remove("interrupted");
        old.as_object_mut().unwrap().remove("not_run");
        let back: Summary = serde_json::from_value(old).unwrap();
        assert!(!back.interrupted && back.not_run.is_empty());
    }

    #[test]
    fn tally_is_the_plain_closing_line() {
        let mut s = sample(); // pingora failed, traces diverged
        assert_eq!(tally(&s), "parity: 0 passed, 1 failed");
        s.scenarios[0].impls.get_mut("pingora").unwrap().status = "pass".into();
        assert_eq!(tally(&s), "parity: 0 passed, 1 failed", "diverged traces fail");
        s.scenarios[0].parity = "identical".into();
        assert_eq!(tally(&s), "parity: 1 passed, 0 failed");
    }

    #[test]
    fn headline_claims_parity_only_with_two_impls() {
        let mut s = sample();
        assert!(headline(&s).contains("identical traces"));
        s.impls = vec!["go".into()];
        s.scenarios[0].impls.remove("pingora");
        s.scenarios[0].parity = "n/a".into();
        assert_eq!(headline(&s), "1/1 scenarios pass on go");
    }

    #[test]
    fn summary_json_has_the_documented_shape() {
        let s = sample();
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        let sc = &v["scenarios"][0];
        assert_eq!(sc["id"], "x");
        assert_eq!(sc["impls"]["go"]["status"], "pass");
        assert!(sc["impls"]["go"]["duration_ms"].is_u64());
        assert_eq!(sc["impls"]["pingora"]["latency_us"]["p50"], 100);
        assert_eq!(sc["impls"]["pingora"]["latency_us"]["p99"], 900);
        assert!(sc["impls"]["go"]["rss_peak_bytes"].is_u64());
        assert_eq!(sc["parity"], "diverged");
        assert!(sc.get("first_difference").is_some());
        // round trip (parity report reads it back)
        let back: Summary = serde_json::from_value(v).unwrap();
        assert_eq!(back.exit_code(), 1);
    }

    #[test]
    fn exit_codes() {
        let mut s = sample();
        assert_eq!(s.exit_code(), 1);
        for r in s.scenarios[0].impls.values_mut() {
            r.status = "pass".into();
        }
        s.scenarios[0].parity = "identical".into();
        assert_eq!(s.exit_code(), 0);
        s.scenarios[0].impls.get_mut("go").unwrap().status = "error".into();
        assert_eq!(s.exit_code(), 3);
    }

    #[test]
    fn write_errors_name_the_path() {
        let d = tempfile::tempdir().unwrap();
        let e = write_all(d.path(), &sample(), Some(&d.path().join("nodir/j.xml"))).unwrap_err();
        assert!(format!("{e:#}").contains("nodir/j.xml"), "{e:#}");
    }

    #[test]
    fn steps_and_durations_read_as_people_count() {
        assert_eq!(step_label(-1), "setup");
        assert_eq!(step_label(0), "step 1");
        assert_eq!(human_duration(42), "42 ms");
        assert_eq!(human_duration(12_345), "12.3 s");
    }

    #[test]
    fn reports_render() {
        let s = sample();
        let j = junit_xml(&s).unwrap();
        assert!(j.contains("x[pingora]") && j.contains("<failure"));
        assert!(markdown(&s).contains("| x |") || markdown(&s).contains("[x](#x)"));
        assert!(html(&s).contains("<td class=\"fail\">fail</td>"));
    }
}
