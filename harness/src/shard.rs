//! Splitting the suite across CI machines and merging the pieces back.
//!
//! `parity run --shard i/n` runs the `i`-th of `n` slices of the selected scenarios
//! (scenario k of the selection, in its file-name order, belongs to slice `k mod n + 1`,
//! so slices differ in size by at most one scenario and every machine that sees the same
//! scenario files cuts them the same way). Each slice is an ordinary run folder whose
//! `summary.json` records its [`Shard`]. `parity report A B C ...` then [`merge`]s the
//! folders into one run: the scenarios of every slice, their logs copied next to the
//! merged reports, and the slices that are missing named (a merge with a missing slice
//! exits 3 like an interrupted run: not everything was run).
//!
//! The CI system's own job matrix is the engine that runs the slices at once (see
//! docs/scenarios.md, "Running the suite on several machines").
use crate::report::{NotRun, Summary};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// One slice of a suite run: the `index`-th (1-based) of `count` slices.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shard {
    /// 1-based slice number, `1..=count`.
    pub index: usize,
    /// Number of slices, at least 1.
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    /// Parses `i/n` (`1 <= i <= n`), e.g. `2/4`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("--shard {s:?}: expected i/n with 1 <= i <= n, e.g. 2/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// True when the scenario at `position` (0-based, in selection order) is in this slice.
    pub fn keeps(&self, position: usize) -> bool {
        position % self.count == self.index - 1
    }

    /// The items of `list` in this slice, order kept.
    pub fn take<T>(&self, list: Vec<T>) -> Vec<T> {
        list.into_iter().enumerate().filter(|(k, _)| self.keeps(*k)).map(|(_, x)| x).collect()
    }
}

/// Why run folders cannot be merged. Each is a usage error (exit 2).
#[derive(Debug, PartialEq, Eq)]
pub enum MergeError {
    /// Two folders ran different implementation sets (run id, its impls, the first's).
    Impls(String, Vec<String>, Vec<String>),
    /// A scenario id appears in two folders (id, first run id, second run id).
    Duplicate(String, String, String),
    /// The folders were cut into different numbers of slices (run id, its count, the first's).
    Counts(String, usize, usize),
    /// The same slice was given twice (slice, first run id, second run id).
    SameShard(Shard, String, String),
}

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MergeError::Impls(r, a, b) => write!(f, "run {r} ran {} but the first run ran {}: merge runs of the same implementations", a.join(","), b.join(",")),
            MergeError::Duplicate(id, a, b) => write!(f, "scenario {id} is in run {a} and in run {b}: merge slices of one suite, not repeated runs"),
            MergeError::Counts(r, a, b) => write!(f, "run {r} is a slice of {a} but the first run is a slice of {b}"),
            MergeError::SameShard(s, a, b) => write!(f, "slice {s} is given twice (runs {a} and {b})"),
        }
    }
}

/// Merges the summaries of several run folders into one (`run_id` and `started_at` given
/// by the caller). Scenarios are sorted by id; `duration_ms` is the longest slice's (the
/// slices ran side by side); `interrupted` and `not_run` are the union. When the inputs are
/// slices of one `n`, the merged summary's `missing_shards` lists the slices not given.
///
/// Errors: [`MergeError`] when the runs do not fit together.
pub fn merge(runs: &[Summary], run_id: String, started_at: String) -> Result<Summary, MergeError> {
    let first = &runs[0];
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut shards: BTreeMap<Shard, String> = BTreeMap::new();
    let mut count = None;
    let mut out = Summary {
        schema_version: 1,
        run_id,
        started_at,
        duration_ms: 0,
        impls: first.impls.clone(),
        scenarios: Vec::new(),
        interrupted: false,
        not_run: Vec::new(),
        shard: None,
        merged_from: Vec::new(),
        missing_shards: Vec::new(),
    };
    for r in runs {
        let mut a = r.impls.clone();
        let mut b = first.impls.clone();
        a.sort();
        b.sort();
        if a != b {
            return Err(MergeError::Impls(r.run_id.clone(), r.impls.clone(), first.impls.clone()));
        }
        if let Some(s) = r.shard {
            match count {
                None => count = Some(s.count),
                Some(c) if c != s.count => return Err(MergeError::Counts(r.run_id.clone(), s.count, c)),
                _ => {}
            }
            if let Some(prev) = shards.insert(s, r.run_id.clone()) {
                return Err(MergeError::SameShard(s, prev, r.run_id.clone()));
            }
        }
        for sc in &r.scenarios {
            if let Some(prev) = seen.insert(sc.id.clone(), r.run_id.clone()) {
                return Err(MergeError::Duplicate(sc.id.clone(), prev, r.run_id.clone()));
            }
            out.scenarios.push(sc.clone());
        }
        out.duration_ms = out.duration_ms.max(r.duration_ms);
        out.interrupted |= r.interrupted;
        out.not_run.extend(r.not_run.iter().cloned());
        out.merged_from.push(r.run_id.clone());
    }
    out.scenarios.sort_by(|x, y| x.id.cmp(&y.id));
    out.not_run.sort_by(|x: &NotRun, y: &NotRun| (&x.id, &x.imp).cmp(&(&y.id, &y.imp)));
    if let Some(n) = count {
        let given: BTreeSet<usize> = shards.keys().map(|s| s.index).collect();
        out.missing_shards = (1..=n).filter(|i| !given.contains(i)).map(|index| Shard { index, count: n }).collect();
    }
    Ok(out)
}

/// Copies `src` (a folder) into `dst` recursively; files already there are replaced.
///
/// Errors: the first I/O error, with the path.
pub fn copy_tree(src: &Path, dst: &Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    std::fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    for e in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let e = e?;
        let to: PathBuf = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), &to).with_context(|| format!("copying {} to {}", e.path().display(), to.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ScenarioResult;

    fn summary(run: &str, ids: &[&str], shard: Option<&str>) -> Summary {
        Summary {
            schema_version: 1,
            run_id: run.into(),
            started_at: "t".into(),
            duration_ms: 10 * ids.len() as u64,
            impls: vec!["go".into(), "pingora".into()],
            scenarios: ids
                .iter()
                .map(|id| ScenarioResult {
                    id: id.to_string(),
                    file: format!("{id}.yaml"),
                    description: String::new(),
                    tags: vec![],
                    transport: Default::default(),
                    impls: BTreeMap::new(),
                    parity: "identical".into(),
                    first_difference: None,
                })
                .collect(),
            interrupted: false,
            not_run: vec![],
            shard: shard.map(|s| s.parse().unwrap()),
            merged_from: vec![],
            missing_shards: vec![],
        }
    }

    #[test]
    fn shard_syntax() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        assert_eq!("1/1".parse::<Shard>(), Ok(Shard { index: 1, count: 1 }));
        for bad in ["0/4", "5/4", "1/0", "2", "a/b", "", "1/2/3", "-1/2"] {
            assert!(bad.parse::<Shard>().unwrap_err().contains("i/n"), "{bad}");
        }
        assert_eq!(Shard { index: 3, count: 7 }.to_string(), "3/7");
    }

    #[test]
    fn slices_partition_the_selection_evenly() {
        for n in 1..=7 {
            let mut all: Vec<usize> = Vec::new();
            let mut sizes = Vec::new();
            for i in 1..=n {
                let part = Shard { index: i, count: n }.take((0..59).collect::<Vec<usize>>());
                sizes.push(part.len());
                all.extend(part);
            }
            all.sort_unstable();
            assert_eq!(all, (0..59).collect::<Vec<_>>(), "n={n}: every scenario exactly once");
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "n={n}: {sizes:?}");
        }
    }

    #[test]
    fn merge_sorts_and_names_missing_slices() {
        let a = summary("a", &["c", "a"], Some("1/3"));
        let b = summary("b", &["b"], Some("3/3"));
        let m = merge(&[a, b], "m".into(), "t".into()).unwrap();
        assert_eq!(m.scenarios.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(m.merged_from, ["a", "b"]);
        assert_eq!(m.missing_shards, [Shard { index: 2, count: 3 }]);
        assert_eq!(m.duration_ms, 20);
        assert_eq!(m.exit_code(), 3, "a missing slice is not a complete run");
        let full = merge(&[summary("a", &["a"], Some("1/2")), summary("b", &["b"], Some("2/2"))], "m".into(), "t".into()).unwrap();
        assert!(full.missing_shards.is_empty());
        assert_eq!(full.exit_code(), 0);
    }

    #[test]
    fn merge_refuses_what_does_not_fit() {
        let dup = merge(&[summary("a", &["x"], Some("1/2")), summary("b", &["x"], Some("2/2"))], "m".into(), "t".into());
        assert_eq!(dup.unwrap_err(), MergeError::Duplicate("x".into(), "a".into(), "b".into()));
        let same = merge(&[summary("a", &["x"], Some("1/2")), summary("b", &["y"], Some("1/2"))], "m".into(), "t".into());
        assert!(matches!(same.unwrap_err(), MergeError::SameShard(..)));
        let counts = merge(&[summary("a", &["x"], Some("1/2")), summary("b", &["y"], Some("2/3"))], "m".into(), "t".into());
        assert_eq!(counts.unwrap_err(), MergeError::Counts("b".into(), 3, 2));
        let mut go_only = summary("b", &["y"], None);
        go_only.impls = vec!["go".into()];
        assert!(matches!(merge(&[summary("a", &["x"], None), go_only], "m".into(), "t".into()).unwrap_err(), MergeError::Impls(..)));
    }
}
