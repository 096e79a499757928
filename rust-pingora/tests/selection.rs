//! Shared endpoint-selection vectors (spec/vectors/selection.json, issue 13).
//!
//! The expected answers are computed here by the router's own selection,
//! [`rust_pingora::balance::Balancer`], i.e. Pingora's `LoadBalancer::select_with` over
//! `RoundRobin`, `Random` and `KetamaHashing`. The test
//!
//! 1. recomputes every case and fails when spec/vectors/selection.json differs (run with
//!    `UPDATE_SELECTION_VECTORS=1` to rewrite the file after a deliberate change);
//! 2. checks the answers against an independent re-implementation of the algorithm as
//!    docs/spec.md §3 "Endpoint selection" states it (address order, weighted list,
//!    round-robin counter, Ketama points by CRC-32 of `ip\0port` + previous point), so the
//!    document the Go router follows is the algorithm Pingora runs;
//! 3. checks the Ketama claims of the issue: a key always lands on the same endpoint, and
//!    removing one of N endpoints moves only the keys that lived on it;
//! 4. where nginx is installed, asks nginx's `hash $http_x_key consistent` (the third
//!    opinion) for 300 keys over six weighted servers and expects Pingora's answers.
//!
//! File format: `cases[]` of `{name, selection, endpoints: [{url, weight}], phases: [{down,
//! refuse, requests | keys, expect}]}`. A case is one built selection (one config load);
//! its phases run in order on it (a round-robin counter carries over). Each request is
//! selected with the endpoints in `down` unavailable; an endpoint in `refuse` is available
//! but its connect fails, so the request retries within the placement (each endpoint at
//! most once). `expect[i]` lists the endpoints request i tried, in order: empty when none
//! was available; its last entry served the request unless it is in `refuse` (then the
//! chain moves on). `requests` (a count) is used for round_robin and random, whose key is
//! ignored; `keys` (strings, hashed as their UTF-8 bytes) for consistent_hash.

use rust_pingora::balance::{Balancer, SelectionKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Endpoint {
    url: String,
    weight: usize,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Phase {
    down: Vec<String>,
    refuse: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requests: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<Vec<String>>,
    expect: Vec<Vec<String>>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Case {
    name: String,
    description: String,
    selection: String,
    endpoints: Vec<Endpoint>,
    phases: Vec<Phase>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct File {
    description: String,
    cases: Vec<Case>,
}

fn addr_of(url: &str) -> SocketAddr {
    let ep = rust_pingora::config::parse_endpoint(url).expect("vector urls follow the grammar");
    SocketAddr::new(ep.host.parse::<IpAddr>().expect("vector hosts are IP literals"), ep.port)
}

/// A case before its answers are computed.
struct Spec {
    name: &'static str,
    description: &'static str,
    selection: SelectionKind,
    endpoints: Vec<(String, usize)>,
    /// (down, refuse, requests or keys)
    phases: Vec<(Vec<String>, Vec<String>, Input)>,
}

#[derive(Clone)]
enum Input {
    Requests(usize),
    Keys(Vec<String>),
}

fn ep(port: u16, weight: usize) -> (String, usize) {
    (format!("http://127.0.0.1:{port}"), weight)
}
fn u(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}
fn keys(n: usize) -> Input {
    Input::Keys((0..n).map(|i| format!("key-{i}")).collect())
}

fn specs() -> Vec<Spec> {
    use Input::*;
    use SelectionKind::*;
    let w121 = vec![ep(9001, 1), ep(9002, 2), ep(9003, 1)];
    let three = vec![ep(9001, 1), ep(9002, 1), ep(9003, 1)];
    let sixteen: Vec<_> = (0..16).map(|i| ep(9100 + i, 1)).collect();
    let none = Vec::new;
    vec![
        Spec {
            name: "rr-single",
            description: "one endpoint: always it",
            selection: RoundRobin,
            endpoints: vec![ep(9001, 1)],
            phases: vec![(none(), none(), Requests(3))],
        },
        Spec {
            name: "rr-equal-3",
            description: "three endpoints of weight 1: address order, one each",
            selection: RoundRobin,
            endpoints: three.clone(),
            phases: vec![(none(), none(), Requests(7))],
        },
        Spec {
            name: "rr-weights-1-2-1",
            description: "weights 1:2:1: the weighted list [a, b, b, c] in turn",
            selection: RoundRobin,
            endpoints: w121.clone(),
            phases: vec![(none(), none(), Requests(9))],
        },
        Spec {
            name: "rr-address-order",
            description: "endpoints are ordered by address (IPv4 before IPv6, IP numerically, then port), not by config order",
            selection: RoundRobin,
            endpoints: vec![
                ("http://127.0.0.10:80".into(), 1),
                ("http://127.0.0.9:80".into(), 1),
                ("http://[::1]:80".into(), 1),
                ("http://10.0.0.1:8080".into(), 2),
                ("http://127.0.0.9:1000".into(), 1),
                ("http://127.0.0.9:999".into(), 1),
            ],
            phases: vec![(none(), none(), Requests(8))],
        },
        Spec {
            name: "rr-weights-1-2-1-middle-down",
            description: "1:2:1 with the weight-2 endpoint down: a refused first pick falls back to the plain (unweighted) list at the next counter value",
            selection: RoundRobin,
            endpoints: w121.clone(),
            phases: vec![(vec![u(9002)], none(), Requests(8))],
        },
        Spec {
            name: "rr-weights-1-2-1-down-then-up",
            description: "the counter carries over while an endpoint goes down and comes back",
            selection: RoundRobin,
            endpoints: w121.clone(),
            phases: vec![
                (none(), none(), Requests(3)),
                (vec![u(9001)], none(), Requests(5)),
                (none(), none(), Requests(5)),
            ],
        },
        Spec {
            name: "rr-all-down",
            description: "no endpoint available: nothing tried; the counter still advances (1 + one per further step until every endpoint was offered)",
            selection: RoundRobin,
            endpoints: w121.clone(),
            phases: vec![
                (none(), none(), Requests(1)),
                (vec![u(9001), u(9002), u(9003)], none(), Requests(2)),
                (none(), none(), Requests(5)),
            ],
        },
        Spec {
            name: "rr-two-down-of-three",
            description: "only one endpoint available: always it",
            selection: RoundRobin,
            endpoints: three.clone(),
            phases: vec![(vec![u(9001), u(9003)], none(), Requests(5))],
        },
        Spec {
            name: "rr-refuse-retry",
            description: "one endpoint refuses connections: requests that pick it retry on the next endpoint the selection yields",
            selection: RoundRobin,
            endpoints: w121.clone(),
            phases: vec![(none(), vec![u(9002)], Requests(8))],
        },
        Spec {
            name: "rr-refuse-all",
            description: "every endpoint refuses: each request tries each endpoint once, then the chain moves on",
            selection: RoundRobin,
            endpoints: three.clone(),
            phases: vec![(none(), vec![u(9001), u(9002), u(9003)], Requests(3))],
        },
        Spec {
            name: "rr-after-removal",
            description: "1:2:1 after the weight-2 endpoint was removed from the config (new selection, counter from 0)",
            selection: RoundRobin,
            endpoints: vec![ep(9001, 1), ep(9003, 1)],
            phases: vec![(none(), none(), Requests(4))],
        },
        Spec {
            name: "rr-weights-5-1-2-1",
            description: "uneven weights with one endpoint down",
            selection: RoundRobin,
            endpoints: vec![ep(9004, 1), ep(9001, 5), ep(9003, 2), ep(9002, 1)],
            phases: vec![(none(), none(), Requests(10)), (vec![u(9001)], none(), Requests(10))],
        },
        Spec {
            name: "random-one-available",
            description: "random: with one endpoint available the answer is determined",
            selection: Random,
            endpoints: w121.clone(),
            phases: vec![(vec![u(9001), u(9003)], none(), Requests(5))],
        },
        Spec {
            name: "random-all-down",
            description: "random: none available",
            selection: Random,
            endpoints: w121.clone(),
            phases: vec![(vec![u(9001), u(9002), u(9003)], none(), Requests(2))],
        },
        Spec {
            name: "random-single",
            description: "random: one endpoint",
            selection: Random,
            endpoints: vec![ep(9001, 3)],
            phases: vec![(none(), none(), Requests(3)), (none(), vec![u(9001)], Requests(1))],
        },
        Spec {
            name: "ch-nginx-sample",
            description: "pingora-ketama's nginx sample (nginx `hash $uri consistent` with these two servers gives the same answers)",
            selection: ConsistentHash,
            endpoints: vec![ep(7777, 1), ep(7778, 1)],
            phases: vec![(
                none(),
                none(),
                Keys(
                    [
                        "/some/path",
                        "/some/longer/path",
                        "/sad/zaidoon",
                        "/g",
                        "/pingora/team/is/cool/and/this/is/a/long/uri",
                        "/i/am/not/confident/in/this/code",
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
            )],
        },
        Spec {
            name: "ch-3",
            description: "consistent hash over three endpoints; the same key twice gives the same endpoint",
            selection: ConsistentHash,
            endpoints: three.clone(),
            phases: vec![
                (none(), none(), keys(24)),
                (none(), none(), Keys(vec!["".into(), "eu".into(), "eu".into(), "/a/b".into(), "key-3".into()])),
            ],
        },
        Spec {
            name: "ch-3-remove-one",
            description: "ch-3 with 127.0.0.1:9002 removed: only the keys that lived on it move",
            selection: ConsistentHash,
            endpoints: vec![ep(9001, 1), ep(9003, 1)],
            phases: vec![(none(), none(), keys(24))],
        },
        Spec {
            name: "ch-3-one-down",
            description: "ch-3 with 127.0.0.1:9002 down: its keys go to the next endpoint clockwise on the ring",
            selection: ConsistentHash,
            endpoints: three.clone(),
            phases: vec![(vec![u(9002)], none(), keys(24))],
        },
        Spec {
            name: "ch-3-refuse",
            description: "ch-3 with 127.0.0.1:9002 refusing: its keys try it, then the next endpoint clockwise",
            selection: ConsistentHash,
            endpoints: three.clone(),
            phases: vec![(none(), vec![u(9002)], keys(24))],
        },
        Spec {
            name: "ch-all-down",
            description: "consistent hash, none available",
            selection: ConsistentHash,
            endpoints: three.clone(),
            phases: vec![(vec![u(9001), u(9002), u(9003)], none(), keys(3))],
        },
        Spec {
            name: "ch-weights-1-2-1",
            description: "weights multiply an endpoint's ring points (160 per unit)",
            selection: ConsistentHash,
            endpoints: w121.clone(),
            phases: vec![(none(), none(), keys(24))],
        },
        Spec {
            name: "ch-16",
            description: "sixteen endpoints",
            selection: ConsistentHash,
            endpoints: sixteen.clone(),
            phases: vec![(none(), none(), keys(64))],
        },
        Spec {
            name: "ch-16-remove-one",
            description: "ch-16 without 127.0.0.1:9107",
            selection: ConsistentHash,
            endpoints: sixteen.iter().filter(|(u, _)| !u.ends_with(":9107")).cloned().collect(),
            phases: vec![(none(), none(), keys(64))],
        },
        Spec {
            name: "ch-16-one-down-weights",
            description: "sixteen endpoints, mixed weights, two down",
            selection: ConsistentHash,
            endpoints: (0..16).map(|i| ep(9100 + i, 1 + (i as usize % 4) * 3)).collect(),
            phases: vec![(vec![u(9100), u(9105)], none(), keys(64))],
        },
    ]
}

/// Run one request through `b`: the attempts it makes.
fn attempts(b: &Balancer, urls: &[String], key: &[u8], down: &BTreeSet<&str>, refuse: &BTreeSet<&str>) -> Vec<String> {
    let mut tried: Vec<usize> = Vec::new();
    loop {
        let pick = b.select(key, |i| !down.contains(urls[i].as_str()) && !tried.contains(&i));
        match pick {
            None => break,
            Some(i) => {
                tried.push(i);
                if !refuse.contains(urls[i].as_str()) {
                    break;
                }
            }
        }
    }
    tried.into_iter().map(|i| urls[i].clone()).collect()
}

fn compute(s: &Spec) -> Case {
    let urls: Vec<String> = s.endpoints.iter().map(|e| e.0.clone()).collect();
    let b = Balancer::new(s.selection, &s.endpoints.iter().map(|(u, w)| (addr_of(u), *w)).collect::<Vec<_>>());
    let mut phases = Vec::new();
    for (down, refuse, input) in &s.phases {
        let d: BTreeSet<&str> = down.iter().map(String::as_str).collect();
        let r: BTreeSet<&str> = refuse.iter().map(String::as_str).collect();
        let (requests, ks, expect) = match input {
            Input::Requests(n) => (Some(*n), None, (0..*n).map(|_| attempts(&b, &urls, b"", &d, &r)).collect()),
            Input::Keys(k) => (None, Some(k.clone()), k.iter().map(|k| attempts(&b, &urls, k.as_bytes(), &d, &r)).collect()),
        };
        phases.push(Phase { down: down.clone(), refuse: refuse.clone(), requests, keys: ks, expect });
    }
    Case {
        name: s.name.into(),
        description: s.description.into(),
        selection: s.selection.as_str().into(),
        endpoints: s.endpoints.iter().map(|(url, weight)| Endpoint { url: url.clone(), weight: *weight }).collect(),
        phases,
    }
}

fn generate() -> File {
    File {
        description: "Endpoint selection vectors (issue 13), computed by rust-pingora/tests/selection.rs with \
                      Pingora 0.9.1's LoadBalancer::select_with; algorithm in docs/spec.md §3 'Endpoint selection'. \
                      Format: see the header of rust-pingora/tests/selection.rs."
            .into(),
        cases: specs().iter().map(compute).collect(),
    }
}

fn vectors_path() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../spec/vectors/selection.json")
}

/// The file is what Pingora computes today (or is rewritten on request).
#[test]
fn selection_vectors_are_current() {
    let want = generate();
    let text = serde_json::to_string_pretty(&want).unwrap() + "\n";
    let path = vectors_path();
    if std::env::var_os("UPDATE_SELECTION_VECTORS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SELECTION_VECTORS=1)", path.display()));
    let have: File = serde_json::from_str(&have).unwrap();
    for (h, w) in have.cases.iter().zip(&want.cases) {
        assert_eq!(h, w, "case {} differs from what Pingora computes (UPDATE_SELECTION_VECTORS=1 rewrites)", w.name);
    }
    assert_eq!(have.cases.len(), want.cases.len(), "case count");
}

// ---- the documented algorithm, written again without Pingora ----

/// Sort key of the spec: IPv4 before IPv6; the address's bytes; the port; the weight.
fn order_key(a: &SocketAddr, w: usize) -> (u8, Vec<u8>, u16, usize) {
    match a.ip() {
        IpAddr::V4(v4) => (0, v4.octets().to_vec(), a.port(), w),
        IpAddr::V6(v6) => (1, v6.octets().to_vec(), a.port(), w),
    }
}

struct Reference {
    /// indices into the case's endpoints, in selection order
    order: Vec<usize>,
    weights: Vec<usize>,
    counter: u64,
    /// (hash, position in `order`) sorted by hash
    ring: Vec<(u32, usize)>,
    kind: SelectionKind,
}

impl Reference {
    fn new(kind: SelectionKind, eps: &[(SocketAddr, usize)]) -> Reference {
        let mut order: Vec<usize> = (0..eps.len()).collect();
        order.sort_by_key(|&i| order_key(&eps[i].0, eps[i].1));
        let weights = order.iter().map(|&i| eps[i].1).collect();
        let mut ring = Vec::new();
        for (pos, &i) in order.iter().enumerate() {
            let (a, w) = eps[i];
            let base = format!("{}\0{}", a.ip(), a.port());
            let mut prev: u32 = 0;
            for _ in 0..w * 160 {
                let mut input = base.as_bytes().to_vec();
                input.extend_from_slice(&prev.to_le_bytes());
                prev = crc32fast::hash(&input);
                ring.push((prev, pos));
            }
        }
        ring.sort_by_key(|p| p.0);
        let before = ring.len();
        ring.dedup_by_key(|p| p.0);
        assert_eq!(before, ring.len(), "a vector case has colliding ring points: the tie rule would be untested");
        Reference { order, weights, counter: 0, ring, kind }
    }

    /// One select: the walk of the spec (iterator, unique filter, stop rules).
    fn select(&mut self, key: &[u8], accept: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.order.len();
        let total: usize = self.weights.iter().sum();
        let max_steps = 160 * total;
        let mut seen: Vec<usize> = Vec::new();
        let mut steps = 0;
        let mut rr_first = true;
        let mut ring_idx = if self.kind == SelectionKind::ConsistentHash {
            let h = crc32fast::hash(key);
            self.ring.iter().position(|p| p.0 >= h).unwrap_or(0)
        } else {
            0
        };
        let rr_start = if self.kind == SelectionKind::RoundRobin {
            let c = self.counter;
            self.counter += 1;
            c
        } else {
            0
        };
        loop {
            // the iterator's next item
            let pos = match self.kind {
                SelectionKind::RoundRobin => {
                    if rr_first {
                        rr_first = false;
                        let mut weighted = Vec::new();
                        for (p, w) in self.weights.iter().enumerate() {
                            weighted.extend(std::iter::repeat_n(p, *w));
                        }
                        weighted[rr_start as usize % weighted.len()]
                    } else {
                        let c = self.counter;
                        self.counter += 1;
                        c as usize % n
                    }
                }
                SelectionKind::ConsistentHash => {
                    let p = self.ring[ring_idx].1;
                    ring_idx = (ring_idx + 1) % self.ring.len();
                    p
                }
                SelectionKind::Random => unreachable!("random has no reference"),
            };
            if steps >= max_steps {
                return None;
            }
            steps += 1;
            if seen.contains(&pos) {
                continue;
            }
            seen.push(pos);
            if accept(self.order[pos]) {
                return Some(self.order[pos]);
            }
            if seen.len() == n {
                return None;
            }
        }
    }
}

/// The documented algorithm gives the answers Pingora gives.
#[test]
fn documented_algorithm_matches_pingora() {
    for (s, case) in specs().iter().zip(generate().cases) {
        let urls: Vec<String> = s.endpoints.iter().map(|e| e.0.clone()).collect();
        let eps: Vec<_> = s.endpoints.iter().map(|(u, w)| (addr_of(u), *w)).collect();
        if s.selection == SelectionKind::Random {
            // determined cases only: at most one endpoint available
            for ph in &case.phases {
                let avail: Vec<_> = urls.iter().filter(|u| !ph.down.contains(u)).collect();
                assert!(avail.len() <= 1, "{}: random case not determined", s.name);
                for e in &ph.expect {
                    let want: Vec<String> = avail.iter().map(|u| u.to_string()).collect();
                    assert_eq!(e, &want, "{}", s.name);
                }
            }
            continue;
        }
        let mut r = Reference::new(s.selection, &eps);
        for ((down, refuse, input), ph) in s.phases.iter().zip(&case.phases) {
            let ks: Vec<Vec<u8>> = match input {
                Input::Requests(n) => vec![Vec::new(); *n],
                Input::Keys(k) => k.iter().map(|k| k.as_bytes().to_vec()).collect(),
            };
            for (k, want) in ks.iter().zip(&ph.expect) {
                let mut tried: Vec<usize> = Vec::new();
                loop {
                    match r.select(k, |i| !down.contains(&urls[i]) && !tried.contains(&i)) {
                        None => break,
                        Some(i) => {
                            tried.push(i);
                            if !refuse.contains(&urls[i]) {
                                break;
                            }
                        }
                    }
                }
                let got: Vec<String> = tried.iter().map(|&i| urls[i].clone()).collect();
                assert_eq!(&got, want, "{}: key {:?}", s.name, String::from_utf8_lossy(k));
            }
        }
    }
}

/// Ketama: removing one of N endpoints moves only the keys that lived on it, and a down
/// endpoint's keys go elsewhere while every other key stays.
#[test]
fn ketama_moves_only_the_removed_endpoints_keys() {
    let cases: HashMap<String, Case> = generate().cases.into_iter().map(|c| (c.name.clone(), c)).collect();
    for (full, reduced, gone) in [
        ("ch-3", "ch-3-remove-one", u(9002)),
        ("ch-16", "ch-16-remove-one", u(9107)),
        ("ch-3", "ch-3-one-down", u(9002)),
    ] {
        let before = &cases[full].phases[0].expect;
        let after = &cases[reduced].phases[0].expect;
        let mut moved = 0;
        for (b, a) in before.iter().zip(after) {
            if b[0] == gone {
                moved += 1;
                assert_ne!(a[0], gone);
            } else {
                assert_eq!(a, b, "{reduced}: a key that did not live on {gone} moved");
            }
        }
        assert!(moved > 0, "{reduced}: the removed endpoint owned no key; pick other keys");
    }
}

/// Larger-scale check of the measure: removing one of N endpoints moves at most
/// 1/N + 5 % of 10 000 keys.
#[test]
fn ketama_removal_moves_at_most_one_nth_plus_five_percent() {
    for n in [3u16, 8, 16] {
        let all: Vec<_> = (0..n).map(|i| (addr_of(&u(9200 + i)), 1)).collect();
        let b_all = Balancer::new(SelectionKind::ConsistentHash, &all);
        let b_less = Balancer::new(SelectionKind::ConsistentHash, &all[1..]);
        let keys: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
        let mut moved = 0;
        for k in &keys {
            let a = b_all.select(k.as_bytes(), |_| true).unwrap();
            let b = b_less.select(k.as_bytes(), |_| true).unwrap() + 1;
            if a != b {
                moved += 1;
                assert_eq!(a, 0, "n={n}: key {k} moved but did not live on the removed endpoint");
            }
        }
        let frac = moved as f64 / keys.len() as f64;
        assert!(frac <= 1.0 / n as f64 + 0.05, "n={n}: {frac} of keys moved");
    }
}

/// The third opinion of issue 13: nginx's `hash $http_x_key consistent` over the same
/// servers and weights picks what Pingora's Ketama picks, key for key. Runs when an `nginx`
/// binary is installed (PATH or /usr/sbin), otherwise says so and passes.
#[test]
fn ketama_matches_nginx_hash_consistent() {
    use std::io::{Read, Write};
    let Some(nginx) = ["nginx", "/usr/sbin/nginx"].into_iter().find(|p| {
        std::process::Command::new(p).arg("-v").output().is_ok_and(|o| o.status.success())
    }) else {
        eprintln!("nginx not installed: skipped");
        return;
    };
    let dir = std::env::temp_dir().join(format!("mlb-nginx-ketama-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 6 servers with weights 1, 2, 1, 3, 1, 1 and 300 keys
    let weights = [1usize, 2, 1, 3, 1, 1];
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let d = dir.display();
    // The ports are picked free and then handed to nginx, so a parallel test may bind one
    // first: nginx then exits reporting "Address already in use", and it is started again
    // on new ports. nginx writes its pid file once every listener is bound, so a port that
    // answers after that is nginx's own.
    let mut attempt = 0;
    let (ports, proxy, _guard) = loop {
        attempt += 1;
        let held: Vec<std::net::TcpListener> = (0..=weights.len()).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let mut ports: Vec<u16> = held.iter().map(|l| l.local_addr().unwrap().port()).collect();
        drop(held);
        let proxy = ports.pop().unwrap();
        let servers: String = ports.iter().zip(weights).map(|(p, w)| format!("server 127.0.0.1:{p} weight={w};\n")).collect();
        let backs: String = ports.iter().map(|p| format!("server {{ listen 127.0.0.1:{p}; location / {{ return 200 \"{p}\"; }} }}\n")).collect();
        let conf = format!(
            "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;\n\
             events {{ worker_connections 256; }}\n\
             http {{ access_log off; client_body_temp_path {d}/cb; proxy_temp_path {d}/pt; fastcgi_temp_path {d}/ft;\n\
             uwsgi_temp_path {d}/ut; scgi_temp_path {d}/st;\n\
             upstream u {{ hash $http_x_key consistent; {servers} }}\n\
             server {{ listen 127.0.0.1:{proxy}; location / {{ proxy_pass http://u; }} }}\n{backs} }}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let _ = std::fs::remove_file(dir.join("nginx.pid"));
        let _ = std::fs::remove_file(dir.join("error.log"));
        let mut child = std::process::Command::new(nginx)
            .args(["-p", &d.to_string(), "-c", &dir.join("nginx.conf").display().to_string()])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let up = loop {
            if let Ok(Some(st)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                assert!(log.contains("Address already in use") && attempt < 5, "nginx exited {st} (start {attempt}): {log}");
                break false;
            }
            let pid = std::fs::read_to_string(dir.join("nginx.pid")).unwrap_or_default();
            if pid.trim() == child.id().to_string() && std::net::TcpStream::connect(("127.0.0.1", proxy)).is_ok() {
                break true;
            }
            assert!(std::time::Instant::now() < deadline, "nginx did not listen");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        if up {
            break (ports, proxy, Kill(child));
        }
        eprintln!("nginx start {attempt}: a port was taken meanwhile, retrying on new ports");
    };
    let eps: Vec<(SocketAddr, usize)> = ports.iter().zip(weights).map(|(p, w)| (SocketAddr::from(([127, 0, 0, 1], *p)), w)).collect();
    let b = Balancer::new(SelectionKind::ConsistentHash, &eps);
    let mut seen = BTreeSet::new();
    for i in 0..300 {
        let key = format!("user-{i}");
        let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy)).unwrap();
        write!(s, "GET / HTTP/1.0\r\nX-Key: {key}\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let nginx_port = resp.rsplit("\r\n\r\n").next().unwrap().trim().to_string();
        let ours = ports[b.select(key.as_bytes(), |_| true).unwrap()].to_string();
        assert_eq!(nginx_port, ours, "key {key}: nginx {nginx_port}, Pingora {ours}");
        seen.insert(ours);
    }
    assert_eq!(seen.len(), ports.len(), "300 keys reach every server");
    let _ = std::fs::remove_dir_all(&dir);
}
