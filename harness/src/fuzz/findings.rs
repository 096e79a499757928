//! Findings: grouped by kind, each with its seed and case index, its shrunk case written as
//! a scenario file `parity run` accepts (`docs/fuzzing.md`, syntax of raw sends and raw
//! upstreams), and the run's summary (`summary.json`, `summary.md`).
//!
//! Layout of a run folder:
//!
//! ```text
//! results/<run>/summary.json, summary.md
//! results/<run>/findings/<kind>/fuzz-<kind>.yaml   the shrunk case as a scenario
//! results/<run>/findings/<kind>/case.json          seed, index, original and shrunk case, both observations
//! results/<run>/routers/<impl>/                    the routers' output
//! ```
use crate::fuzz::oracle::Diff;
use crate::fuzz::respgen::End;
use crate::fuzz::Case;
use anyhow::Result;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One kind of finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `<mode>.<field>[.<impl>]`.
    pub kind: String,
    /// The differing field or broken invariant.
    pub field: String,
    /// The router that broke an invariant (None: the routers differ).
    pub imp: Option<String>,
    /// Cases of this kind: the first confirmed alone, the later ones seen in fast runs.
    pub count: u64,
    /// The run's seed.
    pub seed: u64,
    /// The index of the first case of this kind (`case_tree(seed, index)`).
    pub index: u64,
    /// The first case as generated.
    pub original: Case,
    /// The shrunk case.
    pub shrunk: Case,
    /// Shrink steps run.
    pub shrink_steps: u32,
    /// What differs in the shrunk case.
    pub detail: String,
    /// Each router's comparable observation of the shrunk case.
    pub observed: Vec<(String, Value)>,
    /// The scenario file written, once written.
    pub file: Option<PathBuf>,
}

impl Finding {
    /// A new finding (count 1).
    #[allow(clippy::too_many_arguments)]
    pub fn new(kind: &str, d: &Diff, index: u64, seed: u64, original: Case, shrunk: Case, shrink_steps: u32, detail: String, observed: Vec<(String, Value)>) -> Finding {
        Finding { kind: kind.into(), field: d.field.clone(), imp: d.imp.clone(), count: 1, seed, index, original, shrunk, shrink_steps, detail, observed, file: None }
    }
}

/// Everything a run found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Store {
    /// The seed.
    pub seed: u64,
    /// Findings by kind.
    pub findings: BTreeMap<String, Finding>,
    /// Documented divergences seen, by catalogue id.
    pub documented: BTreeMap<String, u64>,
    /// Differences seen in a fast run that did not recur when the case ran alone, by kind.
    pub unconfirmed: BTreeMap<String, u64>,
    /// Batch-level events (a crash or unhealthy router after a batch): field, impl, cases.
    pub events: Vec<Value>,
}

impl Store {
    /// An empty store for `seed`.
    pub fn new(seed: u64) -> Store {
        Store { seed, ..Store::default() }
    }

    /// Counts a documented divergence.
    pub fn documented(&mut self, id: &str) {
        *self.documented.entry(id.into()).or_default() += 1;
    }

    /// Counts an unconfirmed difference.
    pub fn unconfirmed(&mut self, kind: &str) {
        *self.unconfirmed.entry(kind.into()).or_default() += 1;
    }

    /// Whether `kind` already has a finding.
    pub fn seen(&self, kind: &str) -> bool {
        self.findings.contains_key(kind)
    }

    /// Counts one more case of a known kind.
    pub fn count(&mut self, kind: &str) {
        if let Some(f) = self.findings.get_mut(kind) {
            f.count += 1;
        }
    }

    /// Adds a new kind.
    pub fn add(&mut self, f: Finding) {
        self.findings.insert(f.kind.clone(), f);
    }

    /// Records a router that crashed or stopped answering `/healthz` during the batch of
    /// cases `first..first+n`.
    pub fn batch_event(&mut self, field: &str, imp: &str, first: u64, n: u64) {
        self.events.push(json!({"field": field, "impl": imp, "seed": self.seed, "cases": [first, first + n]}));
        let kind = format!("batch.{field}.{imp}");
        *self.unconfirmed.entry(kind).or_default() += 0;
    }

    /// Undocumented findings (kinds) plus batch events.
    pub fn undocumented(&self) -> usize {
        self.findings.len() + self.events.len()
    }

    /// `kind=count ...` for the progress line.
    pub fn short(&self) -> String {
        let f: Vec<String> = self.findings.values().map(|f| format!("{}={}", f.kind, f.count)).collect();
        let doc: u64 = self.documented.values().sum();
        let unc: u64 = self.unconfirmed.values().sum();
        format!("findings {} [{}] documented {doc} unconfirmed {unc}", self.findings.len(), f.join(" "))
    }
}

/// A byte string as a YAML double-quoted scalar that the scenario loader reads back as the
/// same bytes (Latin-1: `\xHH` for every byte outside printable ASCII).
pub fn yaml_bytes(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() + 2);
    s.push('"');
    for &c in b {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(c as char),
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    s.push('"');
    s
}

/// Bytes written with `{{repeat N "c"}}` for long runs of one byte (heads near the limits).
fn yaml_bytes_compact(b: &[u8]) -> String {
    // Runs of 64+ identical printable bytes become a template (only outside `{`/`}`).
    let mut parts = String::from("\"");
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let mut j = i;
        while j < b.len() && b[j] == c {
            j += 1;
        }
        if j - i >= 64 && c.is_ascii_alphanumeric() {
            let _ = write!(parts, "{{{{repeat {} \\\"{}\\\"}}}}", j - i, c as char);
        } else {
            let q = yaml_bytes(&b[i..j]);
            parts.push_str(&q[1..q.len() - 1]);
        }
        i = j;
    }
    parts.push('"');
    parts
}

/// The scenario file of a finding: the shrunk case's client writes as `raw_writes`, its
/// first response as the upstream's `raw` behaviour. Approximations (the scenario's raw
/// upstream answers every request with the same bytes; slow delivery, a reset and a
/// tunnel echo are not expressible) are named in the file.
pub fn scenario_yaml(f: &Finding) -> String {
    let id = format!("fuzz-{}", slug(&f.kind));
    let c = &f.shrunk;
    let writes = c.client.writes("fuzz");
    let r = c.responses.first().cloned().unwrap_or_else(crate::fuzz::respgen::RespSpec::plain);
    let mut bytes = r.render();
    let mut notes = Vec::new();
    let mut close = r.closes();
    let mut delay = r.delivery.delay_ms as u64;
    match r.delivery.end {
        End::CloseAt(p) => bytes.truncate(bytes.len() * p as usize / 1000),
        End::ResetAt(p) => {
            bytes.truncate(bytes.len() * p as usize / 1000);
            notes.push("the fuzz upstream reset the connection here; the scenario closes it");
        }
        End::Hang => {
            delay = crate::fuzz::runner::REQUEST_MS + 500;
            close = true;
            notes.push("the fuzz upstream never answered; the scenario answers after request_ms");
        }
        _ => {}
    }
    if r.delivery.slow.is_some() {
        notes.push("the fuzz upstream wrote the response slowly");
    }
    if r.upgrades() {
        notes.push("the fuzz upstream echoed the tunnel");
    }
    if c.client.reqs.len() > 1 && c.responses.iter().take(c.client.reqs.len()).any(|x| x.render() != c.responses[0].render()) {
        notes.push("the fuzz upstream answered later requests differently");
    }
    let mut y = String::new();
    let _ = writeln!(y, "# Written by `parity fuzz` (docs/fuzzing.md). Kind {}: {} confirmed case(s).", f.kind, f.count);
    let _ = writeln!(y, "# Reproduce the original: parity fuzz --seed {} --from {} --cases 1; shrunk in {} steps.", f.seed, f.index, f.shrink_steps);
    for n in &notes {
        let _ = writeln!(y, "# Approximation: {n}.");
    }
    for (imp, v) in &f.observed {
        let s = v["client"]["responses"].as_array().map(|rs| rs.iter().map(|r| format!("{}", r["status"])).collect::<Vec<_>>().join(",")).unwrap_or_default();
        let _ = writeln!(y, "# {imp}: responses [{s}] end {} upstream requests {}", v["client"]["end"], v["upstream"].as_array().map(|a| a.len()).unwrap_or(0));
    }
    let _ = writeln!(y, "id: {id}");
    let _ = writeln!(y, "description: {}", yaml_bytes(format!("fuzz finding kind={} seed={} case={} (shrunk): {}", f.kind, f.seed, f.index, f.detail).as_bytes()));
    let _ = writeln!(y, "tags: [fuzz, regression]");
    let _ = writeln!(y, "upstreams:");
    let _ = writeln!(y, "  u: {{behaviour: {{raw: {{bytes: {}, close: {close}, delay_ms: {delay}}}}}}}", yaml_bytes(&bytes));
    let _ = writeln!(y, "config:\n  version: 1\n  routes: {{k: p1}}\n  placements:\n    p1: {{endpoint: \"{{{{up.u}}}}\", max_concurrency: 100, timeouts: {{connect_ms: 300, request_ms: {}}}}}", crate::fuzz::runner::REQUEST_MS);
    let _ = writeln!(y, "steps:\n  - send:\n      timeout_ms: 5000\n      raw_writes:");
    for w in &writes {
        let _ = writeln!(y, "        - {{after_ms: {}, bytes: {}}}", w.after_ms, yaml_bytes_compact(&w.bytes));
    }
    y
}

/// A kind as a file-name part: `[a-z0-9-]`, dots become dashes.
pub fn slug(kind: &str) -> String {
    kind.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

/// Writes every finding's folder under `dir/findings/`; returns the files written.
pub fn write_findings(dir: &Path, store: &mut Store) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for f in store.findings.values_mut() {
        let d = dir.join("findings").join(slug(&f.kind));
        std::fs::create_dir_all(&d)?;
        let file = d.join(format!("fuzz-{}.yaml", slug(&f.kind)));
        std::fs::write(&file, scenario_yaml(f))?;
        let case = json!({
            "kind": f.kind, "field": f.field, "impl": f.imp, "count": f.count, "seed": f.seed, "index": f.index,
            "detail": f.detail, "shrink_steps": f.shrink_steps,
            "original": f.original, "shrunk": f.shrunk,
            "shrunk_writes": f.shrunk.client.writes("fuzz").iter().map(|w| json!({"after_ms": w.after_ms, "bytes": String::from_utf8_lossy(&w.bytes)})).collect::<Vec<_>>(),
            "shrunk_responses": f.shrunk.responses.iter().map(|r| String::from_utf8_lossy(&r.render()).into_owned()).collect::<Vec<_>>(),
            "observed": f.observed.iter().map(|(i, v)| json!({"impl": i, "observation": v})).collect::<Vec<_>>(),
        });
        std::fs::write(d.join("case.json"), serde_json::to_string_pretty(&case)?)?;
        f.file = Some(file.clone());
        out.push(file);
    }
    Ok(out)
}

/// The run's figures for the summary.
#[derive(Debug, Clone, Serialize)]
pub struct RunFigures {
    /// Seed.
    pub seed: u64,
    /// Implementations.
    pub impls: Vec<String>,
    /// Cases run on every router.
    pub cases: u64,
    /// Wall time, s.
    pub wall_s: f64,
    /// Time in fuzz batches (without confirmation and shrinking), s.
    pub fuzz_s: f64,
    /// Cases per second per router over the wall time.
    pub rate: f64,
    /// Cases per second per router while fuzzing.
    pub fuzz_rate: f64,
    /// Load average at the start and at the end.
    pub load: (String, String),
    /// Restarts after crashes, per router.
    pub restarts: BTreeMap<String, u64>,
    /// Stopped by an interrupt.
    pub interrupted: bool,
}

/// Writes `summary.json` and `summary.md`.
pub fn write_summary(dir: &Path, store: &Store, fig: &RunFigures) -> Result<()> {
    let findings: Vec<Value> = store
        .findings
        .values()
        .map(|f| json!({"kind": f.kind, "field": f.field, "impl": f.imp, "count": f.count, "seed": f.seed, "index": f.index, "detail": f.detail, "scenario": f.file}))
        .collect();
    let j = json!({"figures": fig, "findings": findings, "documented": store.documented, "unconfirmed": store.unconfirmed, "events": store.events, "undocumented": store.undocumented()});
    std::fs::write(dir.join("summary.json"), serde_json::to_string_pretty(&j)?)?;
    let mut m = String::new();
    let _ = writeln!(m, "# parity fuzz: seed {}\n", fig.seed);
    let _ = writeln!(
        m,
        "{} cases per router ({}) in {:.0} s: {:.0} cases/s per router ({:.0}/s while fuzzing); load {} -> {}; restarts {:?}{}\n",
        fig.cases,
        fig.impls.join(", "),
        fig.wall_s,
        fig.rate,
        fig.fuzz_rate,
        fig.load.0,
        fig.load.1,
        fig.restarts,
        if fig.interrupted { " (interrupted)" } else { "" }
    );
    let _ = writeln!(m, "## Undocumented findings: {}\n", store.undocumented());
    if !store.findings.is_empty() {
        let _ = writeln!(m, "| kind | cases | first (seed/case) | shrunk scenario | what differs |\n|---|---|---|---|---|");
        for f in store.findings.values() {
            let _ = writeln!(m, "| {} | {} | {}/{} | {} | {} |", f.kind, f.count, f.seed, f.index, f.file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(), f.detail.replace('|', "\\|"));
        }
    }
    for e in &store.events {
        let _ = writeln!(m, "- batch event: {e}");
    }
    let _ = writeln!(m, "\n## Documented divergences seen (spec/divergences.yaml)\n");
    for (id, n) in &store.documented {
        let _ = writeln!(m, "- {id}: {n}");
    }
    let _ = writeln!(m, "\n## Unconfirmed (did not recur when run alone)\n");
    for (k, n) in &store.unconfirmed {
        let _ = writeln!(m, "- {k}: {n}");
    }
    std::fs::write(dir.join("summary.md"), m)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_bytes_round_trip_as_latin1() {
        let b: Vec<u8> = (0u8..=255).collect();
        let y = yaml_bytes(&b);
        let s: String = serde_yaml_ng::from_str(&y).unwrap();
        let back: Vec<u8> = s.chars().map(|c| c as u32 as u8).collect();
        assert_eq!(back, b);
    }

    #[test]
    fn a_finding_is_a_scenario_with_the_shrunk_writes() {
        let case = crate::fuzz::case(1, 5);
        let d = Diff { field: "client-status".into(), imp: None, detail: "200 vs 400".into() };
        let f = Finding::new("plain.client-status", &d, 5, 1, case.clone(), case.clone(), 0, "x".into(), vec![]);
        let y = scenario_yaml(&f);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&y).unwrap();
        assert_eq!(v["id"].as_str(), Some("fuzz-plain-client-status"));
        let ws = v["steps"][0]["send"]["raw_writes"].as_sequence().unwrap();
        assert_eq!(ws.len(), case.client.writes("fuzz").len());
        assert!(v["upstreams"]["u"]["behaviour"]["raw"]["bytes"].as_str().unwrap().starts_with("HTTP/"));
    }
}
