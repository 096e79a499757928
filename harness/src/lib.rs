//! `parity`: the scenario engine and benchmark driver of pingora-parity.
//!
//! # Layout
//!
//! A scenario run is one pipeline; every arrow points forward, no module calls back
//! into an earlier stage:
//!
//! ```text
//! scenario files ──► scenario ──► env ──► plan ──► steps ──► trace ──► verdict ──► report
//!                   model, load,  router,  templates  one file   Obs,     pass/fail,   terminal,
//!                   cross-checks  ports,   resolved   per step   normal-  parity,     summary.json,
//!                                 mocks    once       kind       isation  first diff  md/html/junit
//! ```
//!
//! | module | concern |
//! |---|---|
//! | [`commands`] | the CLI: one file per command (`run`, `list`, `validate`, `report`, `schema`, `bench`, `fuzz`), dispatched from [`commands::Cmd`] |
//! | [`scenario`] | the scenario file model ([`scenario::model`]), loading with a YAML line map ([`scenario::load`]), cross-checks ([`scenario::check`]) |
//! | [`suite`] | the suite scheduler: scenario × implementation runs, `--jobs` at a time, results in scenario order, partial results on an interrupt |
//! | [`env`] | the isolated environment of one run: temp dir, ports, mock [`upstreams`], [`control_plane`], the router process |
//! | [`plan`] | a scenario with every `{{...}}` template resolved against a live environment |
//! | [`engine`] | runs one planned scenario against one implementation: set-up, steps, teardown |
//! | [`steps`] | one executor per step kind, dispatched from [`scenario::Step`] |
//! | [`client`] | the HTTP/raw-TCP client of `send` steps, over the run's [`tls::Transport`] |
//! | [`tls`] | TLS on the router's listener: the run's test PKI (rcgen), client transports `h1`/`h1+tls`/`h2+tls`, the handshake probe of `tls` steps |
//! | [`h2client`] | the HTTP/2 client (`h2` crate) of the `h2+tls` transport and `h2` steps: streams recorded as exchanges, RST_STREAM/GOAWAY seen by a frame tap |
//! | [`expect`] | expectation checks of `send` steps (per response, counts) and JSON comparison |
//! | [`trace`] | the observation trace ([`trace::Obs`]) and its normalisation |
//! | [`verdict`] | pass/fail per implementation and parity (first difference of the traces) |
//! | [`report`] | terminal lines, summary.json, report.md, report.html, junit.xml |
//! | [`metrics`] | Prometheus text exposition parsing for `expect_metrics` and `wait` |
//! | [`observe`] | full observation records: the harness's own HTTP/1.1 client, bodies, what each upstream received, named normalisation rules (being wired into the steps) |
//! | [`selftest`] | the verdict's self-test: a proxy that injects exactly one difference in front of a router |
//! | [`bench`] | `parity bench`: targets, load generator, measurement phases, its report |
//! | [`fuzz`] | `parity fuzz`: request/response stream generators (proptest), the raw fuzz upstream, the differential oracle, shrinking, findings as scenarios, the documented-divergence catalogue |
//! | [`shard`] | `parity run --shard i/n` slices and `parity report A B ...` merging them |
//! | [`chaos`] | `parity chaos`: random fault schedules (config pushes, upstream faults, toxics, control-plane loss, restarts) under load, the state model, invariants, shrinking to scenarios |
//! | [`util`] | shared by suite and bench: process-group registry, free ports, statistics, output |
//!
//! Start at [`commands::dispatch`] for the CLI, [`suite::run`] for a scenario run and
//! [`engine::run`] for one scenario against one implementation.
pub mod bench;
pub mod chaos;
pub mod client;
pub mod commands;
pub mod control_plane;
pub mod engine;
pub mod env;
pub mod expect;
pub mod fuzz;
pub mod h2client;
pub mod metrics;
pub mod observe;
pub mod plan;
pub mod report;
pub mod scenario;
pub mod selftest;
pub mod shard;
pub mod soak;
pub mod steps;
pub mod suite;
pub mod tls;
pub mod trace;
pub mod toxiproxy;
pub mod upstreams;
pub mod util;
pub mod verdict;
