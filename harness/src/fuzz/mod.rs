//! `parity fuzz`: differential fuzzing of the two routers (issue 11, `docs/fuzzing.md`).
//!
//! Each case is a generated client byte stream over one connection ([`reqgen`]) and the
//! generated responses the upstream gives to each of its requests ([`respgen`]). Both
//! routers run once per fuzz run, each in front of its own raw [`upstream`]; the
//! [`runner`] sends every case to both at once, many cases in flight per router. The
//! [`oracle`] compares, per case, what the client and the upstream saw through the
//! verdict's own normalisation, plus each router's invariants and, per batch, its metrics
//! deltas. A divergence is re-run alone to confirm it, matched against the documented
//! divergences ([`catalogue`]), and otherwise shrunk and written as a scenario
//! ([`findings`]).
//!
//! | module | concern |
//! |---|---|
//! | [`reqgen`] | request-stream strategies (proptest) and rendering to timed writes |
//! | [`respgen`] | response strategies and rendering |
//! | [`upstream`] | the raw fuzz upstream: attribution by request tag, scripted answers, records |
//! | [`runner`] | routers, the case client, batches, confirmation, progress, the run loop |
//! | [`oracle`] | parsing what the client got, comparable forms, first difference, invariants |
//! | [`findings`] | shrinking, finding kinds, scenario files, summary.json / summary.md |
//! | [`catalogue`] | `spec/divergences.yaml`: documented divergences by id and matcher |
//!
//! Determinism: case `i` of seed `s` is drawn from its own ChaCha RNG seeded with `(s, i)`
//! ([`case_tree`]), so a case is the same whatever ran before it or beside it.
pub mod catalogue;
pub mod findings;
pub mod oracle;
pub mod reqgen;
pub mod respgen;
pub mod runner;
pub mod upstream;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use reqgen::{ClientCase, Mode};
use respgen::RespSpec;
use serde::Serialize;

/// Responses generated per case (one per request index; later indexes get a plain 200).
pub const RESPONSES: usize = 5;

/// One fuzz case: a client stream and the upstream's responses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Case {
    /// The class of input.
    pub mode: Mode,
    /// What the client writes.
    pub client: ClientCase,
    /// What the upstream answers to request index `i`.
    pub responses: Vec<RespSpec>,
}

fn mode_case(mode: Mode) -> BoxedStrategy<Case> {
    let odd = matches!(mode, Mode::Response | Mode::Http10 | Mode::Pipeline);
    let upgrade = mode == Mode::Upgrade;
    (reqgen::client(mode), vec(respgen::response(odd, upgrade), RESPONSES)).prop_map(move |(client, responses)| Case { mode, client, responses }).boxed()
}

/// The strategy of whole cases: a mode, weighted, then that mode's streams.
pub fn case_strategy() -> BoxedStrategy<Case> {
    prop_oneof![
        2 => mode_case(Mode::Plain),
        3 => mode_case(Mode::Line),
        3 => mode_case(Mode::Fields),
        4 => mode_case(Mode::Framing),
        3 => mode_case(Mode::Pipeline),
        2 => mode_case(Mode::Http10),
        2 => mode_case(Mode::Upgrade),
        1 => mode_case(Mode::Limits),
        4 => mode_case(Mode::Response),
    ]
    .boxed()
}

/// The value tree of case `index` of run `seed`: deterministic, independent of every other
/// case. Its `current()` is the case; `simplify`/`complicate` shrink it.
pub fn case_tree(seed: u64, index: u64) -> Box<dyn ValueTree<Value = Case>> {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..16].copy_from_slice(&index.to_le_bytes());
    s[16..24].copy_from_slice(b"pp-fuzz1");
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &s);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    Box::new(case_strategy().new_tree(&mut runner).expect("case strategies never reject"))
}

/// Case `index` of run `seed`.
pub fn case(seed: u64, index: u64) -> Case {
    case_tree(seed, index).current()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_are_deterministic_per_seed_and_index() {
        for i in 0..50 {
            assert_eq!(case(7, i), case(7, i));
            assert_eq!(case(7, i).client.writes("k"), case(7, i).client.writes("k"));
        }
        let a: Vec<Case> = (0..20).map(|i| case(1, i)).collect();
        let b: Vec<Case> = (0..20).map(|i| case(2, i)).collect();
        assert_ne!(a, b, "another seed gives other cases");
        // every mode shows up within a few hundred cases
        let mut modes: Vec<Mode> = (0..400).map(|i| case(1, i).mode).collect();
        modes.sort();
        modes.dedup();
        assert_eq!(modes.len(), 9, "{modes:?}");
    }

    #[test]
    fn shrinking_is_deterministic_and_simplifies() {
        let run = || {
            let mut t = case_tree(3, 11);
            let mut steps = vec![];
            for _ in 0..30 {
                if !t.simplify() {
                    break;
                }
                steps.push(t.current());
            }
            steps
        };
        let a = run();
        assert_eq!(a, run());
        // Simplified as far as it goes: at most the two requests a pipeline needs.
        let mut t = case_tree(3, 11);
        while t.simplify() {}
        assert!(t.current().client.reqs.len() <= 2);
    }
}
