//! The model of the router's state along a schedule, and the renderer that turns a
//! [`Schedule`] into a scenario (`docs/scenarios.md`) plus, per probe and load step, the
//! answers the contract (`docs/spec.md`) allows at that moment ([`StepCheck`]).
//!
//! What the model tracks: the config applied and its version (only acks change it), each
//! upstream's behaviour and the toxic on its proxy, each breaker's consecutive-failure
//! count and whether it is open (keyed by placement, endpoint and `circuit_breaker` block,
//! spec §4 identity; fresh after a restart), and the hellos the control plane should have
//! seen. Health is not tracked step by step: after every event the renderer waits (admin
//! API, with a deadline) until each health-checked endpoint shows the health its
//! upstream's condition implies, so the probes that follow see a settled state. Breakers
//! opened by a probe are waited for the same way (a router records an outcome just after
//! the client has its answer).
//!
//! Where the contract leaves a choice (which member of a pool answers), the model allows
//! every candidate; the parity verdict then holds both routers to the same one.
use super::schedule::*;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Health-check block of the generated configs.
pub fn health_check_json() -> Value {
    json!({"path": "/healthz", "interval_ms": 50, "timeout_ms": 200, "unhealthy_threshold": 2, "healthy_threshold": 1})
}

/// The config document of `c` at version `v` (endpoints as `{{up.NAME}}` templates).
pub fn config_json(c: &ConfigSpec, v: u64) -> Value {
    let mut placements = serde_json::Map::new();
    for (id, p) in &c.placements {
        let mut o = serde_json::Map::new();
        if p.pool {
            o.insert("endpoints".into(), Value::Array(p.endpoints.iter().map(|(u, w)| json!({"url": format!("{{{{up.{}}}}}", UPSTREAMS[*u]), "weight": w})).collect()));
            o.insert("selection".into(), json!("round_robin"));
        } else {
            o.insert("endpoint".into(), json!(format!("{{{{up.{}}}}}", UPSTREAMS[p.endpoints[0].0])));
        }
        if let Some(f) = &p.fallback {
            o.insert("fallback".into(), json!(f));
        }
        o.insert("max_concurrency".into(), json!(p.max_concurrency));
        o.insert("timeouts".into(), json!({"connect_ms": CONNECT_MS, "request_ms": REQUEST_MS}));
        if p.health_check {
            o.insert("health_check".into(), health_check_json());
        }
        if let Some(t) = p.breaker {
            o.insert("circuit_breaker".into(), json!({"failure_threshold": t, "open_ms": OPEN_MS, "half_open_max_requests": 1, "success_threshold": 1}));
        }
        placements.insert(id.clone(), Value::Object(o));
    }
    placements.insert(
        LOAD_PLACEMENT.into(),
        json!({"endpoint": format!("{{{{up.{LOAD_UPSTREAM}}}}}"), "max_concurrency": c.load_max_concurrency, "timeouts": {"connect_ms": 300, "request_ms": 3000}}),
    );
    let mut routes: serde_json::Map<String, Value> = c.routes.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    routes.insert(LOAD_KEY.into(), json!(LOAD_PLACEMENT));
    json!({"version": v, "routes": routes, "placements": placements})
}

/// One answer the contract allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, PartialOrd, Ord)]
pub struct Outcome {
    /// Status code.
    pub status: u16,
    /// `X-Router-Error` (`None`: absent).
    pub error: Option<String>,
    /// `X-Upstream-Name` (`None`: absent).
    pub upstream: Option<String>,
    /// `X-Router-Placement` when the answer came through a placement's endpoint (`None`:
    /// not checked, as for router-made answers).
    pub placement: Option<String>,
}

impl Outcome {
    fn router(status: u16, code: &str) -> Outcome {
        Outcome { status, error: Some(code.into()), upstream: None, placement: None }
    }
    fn upstream(status: u16, up: usize, pl: &str) -> Outcome {
        Outcome { status, error: None, upstream: Some(UPSTREAMS[up].into()), placement: Some(pl.into()) }
    }
    /// `status error/upstream@placement`, for messages.
    pub fn short(&self) -> String {
        format!("{} {}{}", self.status, self.error.clone().or(self.upstream.clone()).unwrap_or("-".into()), self.placement.as_ref().map(|p| format!("@{p}")).unwrap_or_default())
    }
}

/// What the checker holds a step's observation to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum StepCheck {
    /// One request with routing key `key`: exactly one answer, one of `allowed`.
    Probe {
        /// The routing key.
        key: String,
        /// The answers allowed for the state at that moment.
        allowed: Vec<Outcome>,
    },
    /// The background load awaited at this step: every request answered once with 200
    /// from the load upstream or 503 `concurrency_limit`; with `restart`, a request may
    /// also fail to connect or be closed before any byte of an answer (the router was
    /// restarting: SIGTERM stops accepting, the start listens again).
    Load {
        /// The event restarted the router.
        restart: bool,
    },
}

/// A rendered schedule.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The scenario document (JSON form of the YAML file).
    pub scenario: Value,
    /// Checks by 0-based step index.
    pub checks: BTreeMap<usize, StepCheck>,
    /// The schedule event each step belongs to (`None`: set-up or the final convergence).
    pub event_of: Vec<Option<usize>>,
    /// The load steps (background start and await): compared by invariants, not by the
    /// parity verdict (their answers depend on timing).
    pub load_steps: Vec<usize>,
    /// Probe requests in the scenario.
    pub probes: usize,
    /// Load requests in the scenario.
    pub load_requests: usize,
    /// The `snapshot_metrics` steps, in order, and where each stands in the schedule
    /// (none when rendered for a file: their values depend on timing).
    pub snapshots: Vec<(usize, Boundary)>,
}

/// Where a metrics snapshot is taken (`chaos::metrics_check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Boundary {
    /// After the set-up, before the first step: the baseline of the first process.
    Start,
    /// Just before a router restart's SIGTERM, with that event's load in flight: the
    /// last view of the process that ends.
    BeforeRestart,
    /// Just after the restarted router answered `/healthz`: a fresh process, counters
    /// from zero, the restart's load possibly still running.
    AfterRestart,
    /// After the final probes, read until quiet: the last view of the last process.
    End,
}

/// The metric names a snapshot records.
pub const SNAPSHOT_METRICS: [&str; 5] = ["router_requests_total", "router_errors_total", "router_config_accepted_total", "router_config_rejected_total", "router_request_duration_seconds_count"];

/// Effective condition of an upstream as the router sees it through its proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// Answers 200.
    Ok,
    /// Answers 500.
    S500,
    /// No response headers within `request_ms`.
    Timeout,
    /// Connected, then closed or reset before headers.
    Protocol,
    /// Connect refused.
    Refused,
}

#[derive(Debug, Clone)]
struct Breaker {
    fails: u32,
    open: bool,
}

/// The model's state.
#[derive(Debug, Clone)]
pub struct State {
    /// The config applied.
    pub cfg: ConfigSpec,
    /// Its version.
    pub version: u64,
    /// Behaviour of each upstream.
    pub beh: [Behaviour; 4],
    /// Toxic on each upstream's proxy.
    pub tox: [Option<Toxic>; 4],
    /// Hellos the control plane has seen.
    pub hellos: u64,
    breakers: BTreeMap<(String, usize, u32), Breaker>,
}

impl State {
    /// The state right after the set-up: `cfg` at version 1, everything healthy.
    pub fn new(cfg: ConfigSpec) -> State {
        State { cfg, version: 1, beh: [Behaviour::Ok; 4], tox: [None; 4], hellos: 1, breakers: BTreeMap::new() }
    }

    /// The condition of upstream `u` through its proxy. A closed upstream port outranks
    /// every toxic but a disabled proxy: Toxiproxy dials the upstream when it accepts, and
    /// when that fails it closes the router's connection at once, black hole or not
    /// (found by the first chaos runs: the model said 504, both routers said 502).
    pub fn cond(&self, u: usize) -> Cond {
        match self.tox[u] {
            Some(Toxic::Disabled) => Cond::Refused,
            _ if self.beh[u] == Behaviour::Down => Cond::Protocol,
            Some(Toxic::BlackHole) => Cond::Timeout,
            // reset_peer acts on the way back, when the response's first bytes flow: a
            // slow upstream meets `request_ms` first (chaos seed 1130 case 222)
            Some(Toxic::ResetPeer) if self.beh[u] == Behaviour::Slow => Cond::Timeout,
            Some(Toxic::ResetPeer) => Cond::Protocol,
            _ => match self.beh[u] {
                Behaviour::Ok => Cond::Ok,
                Behaviour::Status500 => Cond::S500,
                Behaviour::Slow => Cond::Timeout,
                // Behind the proxy a closed port is an accepted connection that closes.
                Behaviour::Reset | Behaviour::Down => Cond::Protocol,
            },
        }
    }

    /// Whether health probes of `u` succeed (its `/healthz` answers 200 whatever the
    /// behaviour, unless the port is closed or the proxy refuses, swallows or resets).
    pub fn healthy(&self, u: usize) -> bool {
        !matches!(self.tox[u], Some(Toxic::Disabled | Toxic::BlackHole | Toxic::ResetPeer)) && self.beh[u] != Behaviour::Down
    }

    /// Applies an acked config: breakers whose identity (placement, endpoint, block)
    /// survives keep their state (spec §4), the others start fresh.
    pub fn apply(&mut self, cfg: ConfigSpec, version: u64) {
        self.breakers.retain(|(pid, u, t), _| cfg.placements.get(pid).is_some_and(|p| !p.pool && p.endpoints[0].0 == *u && p.breaker == Some(*t)));
        self.cfg = cfg;
        self.version = version;
    }

    /// A restart: breakers fresh (health too, which the settle waits cover).
    pub fn restart(&mut self) {
        self.breakers.clear();
        self.hellos += 1;
    }

    fn admits(&self, pid: &str, p: &PlacementSpec, u: usize) -> bool {
        if p.health_check && !self.healthy(u) {
            return false;
        }
        match p.breaker {
            Some(t) => !self.breakers.get(&(pid.to_string(), u, t)).is_some_and(|b| b.open),
            None => true,
        }
    }

    fn outcome(&mut self, pid: &str, p: &PlacementSpec, u: usize, opened: &mut Vec<String>) -> Outcome {
        let c = self.cond(u);
        let o = match c {
            Cond::Ok => Outcome::upstream(200, u, pid),
            Cond::S500 => Outcome::upstream(500, u, pid),
            Cond::Timeout => Outcome { placement: Some(pid.into()), ..Outcome::router(504, "upstream_timeout") },
            Cond::Protocol | Cond::Refused => Outcome { placement: Some(pid.into()), ..Outcome::router(502, "upstream_protocol_error") },
        };
        self.record(pid, p, u, c == Cond::Ok, opened);
        o
    }

    fn record(&mut self, pid: &str, p: &PlacementSpec, u: usize, success: bool, opened: &mut Vec<String>) {
        if let Some(t) = p.breaker {
            let b = self.breakers.entry((pid.to_string(), u, t)).or_insert(Breaker { fails: 0, open: false });
            if success {
                b.fails = 0;
            } else {
                b.fails += 1;
                if b.fails >= t && !b.open {
                    b.open = true;
                    opened.push(pid.to_string());
                }
            }
        }
    }

    /// The answers allowed to one request with routing key `key` (spec §3, steps 1-9),
    /// updating the breakers as the request does; `opened` gets the placements whose
    /// breaker it opened.
    pub fn probe(&mut self, key: &str, opened: &mut Vec<String>) -> Vec<Outcome> {
        let Some(start) = self.cfg.routes.get(key).cloned() else {
            return vec![Outcome::router(404, "unknown_routing_key")];
        };
        let mut connect_failed = false;
        let mut cur = Some(start);
        while let Some(pid) = cur {
            let p = self.cfg.placements[&pid].clone();
            let avail: Vec<usize> = p.endpoints.iter().map(|e| e.0).filter(|&u| self.admits(&pid, &p, u)).collect();
            let served: Vec<usize> = avail.iter().copied().filter(|&u| self.cond(u) != Cond::Refused).collect();
            if served.is_empty() {
                // every available endpoint refuses: each is tried once (spec §3 step 6)
                for &u in &avail {
                    self.record(&pid, &p, u, false, opened);
                    connect_failed = true;
                }
                cur = p.fallback.clone();
                continue;
            }
            // Refused members may be tried first (order is the selection's); generated
            // pools have no breaker, so that leaves no state the model must know.
            let mut outs: Vec<Outcome> = served.iter().map(|&u| self.outcome(&pid, &p, u, opened)).collect();
            outs.sort();
            outs.dedup();
            return outs;
        }
        if connect_failed {
            vec![Outcome::router(502, "upstream_connect_failed")]
        } else {
            vec![Outcome::router(503, "no_healthy_upstream")]
        }
    }
}

fn behaviour_json(b: Behaviour) -> Value {
    match b {
        Behaviour::Ok => json!({"respond": {"status": 200}}),
        Behaviour::Status500 => json!({"respond": {"status": 500}}),
        Behaviour::Slow => json!({"respond": {"status": 200, "delay_ms": SLOW_MS}}),
        Behaviour::Reset => json!("reset_before_headers"),
        Behaviour::Down => json!({"respond": {"status": 200}}),
    }
}

fn toxic_name(t: Toxic) -> &'static str {
    match t {
        Toxic::Latency => "chaos_latency",
        Toxic::BlackHole => "chaos_blackhole",
        Toxic::ResetPeer => "chaos_reset",
        Toxic::Disabled => "",
    }
}

/// Builds the steps and checks while the model follows the schedule.
struct Builder {
    steps: Vec<Value>,
    checks: BTreeMap<usize, StepCheck>,
    event_of: Vec<Option<usize>>,
    load_steps: Vec<usize>,
    event: Option<usize>,
    for_file: bool,
    probes: usize,
    load_requests: usize,
    snapshots: Vec<(usize, Boundary)>,
}

impl Builder {
    fn push(&mut self, step: Value) -> usize {
        self.steps.push(step);
        self.event_of.push(self.event);
        self.steps.len() - 1
    }

    /// A `snapshot_metrics` step at `at` (nothing when rendering for a file).
    fn snapshot(&mut self, at: Boundary) {
        if self.for_file {
            return;
        }
        let mut m = json!({"names": SNAPSHOT_METRICS});
        if at == Boundary::End {
            m["quiet_ms"] = json!(150);
        }
        let i = self.push(json!({"snapshot_metrics": m}));
        self.snapshots.push((i, at));
    }

    fn wait_admin(&mut self, pointer: String, equals: Value) {
        self.push(json!({"wait": {"admin": pointer, "equals": equals, "within_ms": 5000}}));
    }

    /// Waits until every health-checked endpoint shows the health its condition implies,
    /// and the router reports the model's version.
    fn settle(&mut self, st: &State) {
        for (pid, p) in &st.cfg.placements {
            if p.health_check {
                for (i, (u, _)) in p.endpoints.iter().enumerate() {
                    self.wait_admin(format!("/placements/{pid}/endpoints/{i}/healthy"), json!(st.healthy(*u)));
                }
            }
        }
        self.wait_admin("/config_version".into(), json!(st.version));
    }

    fn probes(&mut self, st: &mut State) {
        for key in KEYS.iter().chain([UNROUTED_KEY].iter()) {
            let mut opened = Vec::new();
            let allowed = st.probe(key, &mut opened);
            let mut send = json!({"key": key});
            if let [one] = allowed.as_slice() {
                let mut e = json!({"status": one.status, "error": one.error, "upstream": one.upstream});
                if let Some(p) = &one.placement {
                    e["placement"] = json!(p);
                }
                send["expect"] = e;
            }
            let i = self.push(json!({"send": send}));
            self.probes += 1;
            self.checks.insert(i, StepCheck::Probe { key: key.to_string(), allowed });
            for pid in opened {
                self.wait_admin(format!("/placements/{pid}/endpoints/0/breaker"), json!("open"));
            }
        }
    }

    fn lkg(&mut self, v: u64) {
        self.push(json!({"expect_file": {"path": "{{state_dir}}/last-known-good.json", "json_version": v}}));
    }

    fn push_config(&mut self, st: &mut State, cfg: &ConfigSpec, bump: u64) {
        let v = st.version + bump;
        self.push(json!({"push": {"config": config_json(cfg, v), "ack": v, "within_ms": 5000}}));
        st.apply(cfg.clone(), v);
        self.lkg(v);
    }

    fn untoxic(&mut self, st: &mut State, u: usize) {
        match st.tox[u] {
            Some(Toxic::Disabled) => {
                self.push(json!({"toxic": {"proxy": UPSTREAMS[u], "enabled": true}}));
            }
            Some(t) => {
                self.push(json!({"toxic": {"proxy": UPSTREAMS[u], "remove": toxic_name(t)}}));
            }
            None => {}
        }
        st.tox[u] = None;
    }

    fn event(&mut self, st: &mut State, e: &Event) {
        match e {
            Event::Push { config, bump } => self.push_config(st, config, *bump),
            Event::PushInvalid(kind) => {
                let mut c = config_json(&st.cfg, st.version + 1);
                let mut push = json!({"within_ms": 5000});
                let nack = match kind {
                    Invalid::UnknownField => {
                        c["zz_chaos"] = json!(1);
                        json!({"code": "unknown_field", "path": "/zz_chaos", "version": st.version + 1})
                    }
                    Invalid::BadValue => {
                        let first = c["placements"].as_object().and_then(|m| m.keys().min().cloned()).expect("a placement");
                        c["placements"][&first]["max_concurrency"] = json!(0);
                        json!({"code": "invalid_value", "path": format!("/placements/{first}/max_concurrency"), "version": st.version + 1})
                    }
                    Invalid::UnknownPlacement => {
                        c["routes"]["k0"] = json!("nowhere");
                        json!({"code": "unknown_placement", "path": "/routes/k0", "version": st.version + 1})
                    }
                    Invalid::Stale => {
                        if st.version >= 2 {
                            c = config_json(&st.cfg, st.version - 1);
                            json!({"code": "stale_version", "path": "/version", "version": st.version - 1})
                        } else {
                            let mut other = st.cfg.clone();
                            other.load_max_concurrency = if other.load_max_concurrency == 1 { 8 } else { 1 };
                            c = config_json(&other, st.version);
                            json!({"code": "stale_version", "path": "/version", "version": st.version})
                        }
                    }
                    Invalid::TooLarge => {
                        push["pad_to_bytes"] = json!(1_100_000);
                        json!({"code": "too_large", "path": ""})
                    }
                };
                push["config"] = c;
                push["nack"] = nack;
                self.push(json!({"push": push}));
                self.lkg(st.version);
            }
            Event::Upstream { up, behaviour } => {
                let name = UPSTREAMS[*up];
                if *behaviour == Behaviour::Down {
                    self.push(json!({"upstream": {"name": name, "up": false}}));
                } else {
                    self.push(json!({"upstream": {"name": name, "up": true, "behaviour": behaviour_json(*behaviour)}}));
                }
                st.beh[*up] = *behaviour;
            }
            Event::Toxic { up, toxic } => {
                self.untoxic(st, *up);
                let proxy = UPSTREAMS[*up];
                match toxic {
                    None => {}
                    Some(Toxic::Disabled) => {
                        self.push(json!({"toxic": {"proxy": proxy, "enabled": false}}));
                    }
                    Some(t @ Toxic::Latency) => {
                        self.push(json!({"toxic": {"proxy": proxy, "add": {"name": toxic_name(*t), "type": "latency", "stream": "downstream", "attributes": {"latency": 40, "jitter": 0}}}}));
                    }
                    Some(t @ Toxic::BlackHole) => {
                        self.push(json!({"toxic": {"proxy": proxy, "add": {"name": toxic_name(*t), "type": "timeout", "stream": "upstream", "attributes": {"timeout": 0}}}}));
                    }
                    Some(t @ Toxic::ResetPeer) => {
                        self.push(json!({"toxic": {"proxy": proxy, "add": {"name": toxic_name(*t), "type": "reset_peer", "stream": "downstream", "attributes": {"timeout": 0}}}}));
                    }
                }
                st.tox[*up] = *toxic;
            }
            Event::CpDrop => {
                self.push(json!({"control_plane": "drop"}));
                st.hellos += 1;
                self.push(json!({"wait": {"hellos": st.hellos, "within_ms": 5000}}));
            }
            Event::CpOutage => {
                self.push(json!({"control_plane": "stop"}));
                self.wait_admin("/control_plane/connected".into(), json!(false));
                // the router serves what it has while the control plane is gone
                self.probes(st);
                self.push(json!({"control_plane": "start"}));
                st.hellos += 1;
                self.push(json!({"wait": {"hellos": st.hellos, "within_ms": 5000}}));
            }
            Event::CpLatencyPush { config, bump } => {
                self.push(json!({"toxic": {"proxy": "control_plane", "add": {"name": "chaos_cp_latency", "type": "latency", "stream": "downstream", "attributes": {"latency": 100, "jitter": 0}}}}));
                self.push_config(st, config, *bump);
                self.push(json!({"toxic": {"proxy": "control_plane", "remove": "chaos_cp_latency"}}));
            }
            Event::CpBlackHole => {
                self.push(json!({"toxic": {"proxy": "control_plane", "add": {"name": "chaos_cp_blackhole", "type": "timeout", "stream": "downstream", "attributes": {"timeout": 0}}}}));
                self.probes(st);
                // Removing a `timeout` toxic closes the connections it held (Toxiproxy's
                // cleanup of that toxic), so the session ends and the router says hello
                // again (chaos seed 1130: hello counts differed by when the wait read them).
                self.push(json!({"toxic": {"proxy": "control_plane", "remove": "chaos_cp_blackhole"}}));
                st.hellos += 1;
                self.push(json!({"wait": {"hellos": st.hellos, "within_ms": 5000}}));
            }
            Event::Restart => {
                self.snapshot(Boundary::BeforeRestart);
                self.push(json!({"router": "restart"}));
                self.snapshot(Boundary::AfterRestart);
                st.restart();
                self.push(json!({"wait": {"hellos": st.hellos, "within_ms": 5000}}));
            }
        }
    }
}

/// Background load requests per event (a restart gets more, so that some are in flight
/// at SIGTERM).
pub const LOAD_COUNT: usize = 30;

/// Renders `s`: the scenario and the checks. `for_file`: the load steps trace nothing
/// (`trace: []`), so that `parity run` of the file compares only what is deterministic.
pub fn render(s: &Schedule, for_file: bool) -> Rendered {
    let mut st = State::new(s.initial.clone());
    let mut b = Builder { steps: vec![], checks: BTreeMap::new(), event_of: vec![], load_steps: vec![], event: None, for_file, probes: 0, load_requests: 0, snapshots: vec![] };
    b.snapshot(Boundary::Start);
    b.settle(&st);
    b.probes(&mut st);
    for (k, e) in s.events.iter().enumerate() {
        b.event = Some(k);
        let name = format!("load-{k}");
        let count = if matches!(e, Event::Restart) { 3 * LOAD_COUNT } else { LOAD_COUNT };
        let mut load = json!({"key": LOAD_KEY, "count": count, "concurrency": 2, "background": name});
        if b.for_file {
            load["trace"] = json!([]);
        }
        let i = b.push(json!({"send": load}));
        b.load_steps.push(i);
        b.load_requests += count;
        b.event(&mut st, e);
        b.settle(&st);
        b.probes(&mut st);
        let i = b.push(json!({"await": {"name": name, "within_ms": 20000}}));
        b.load_steps.push(i);
        b.checks.insert(i, StepCheck::Load { restart: matches!(e, Event::Restart) });
    }
    // Convergence: every fault undone, the router ends on the last acked config with the
    // control plane connected, and answers as that config says.
    b.event = None;
    for u in 0..4 {
        b.untoxic(&mut st, u);
        if st.beh[u] != Behaviour::Ok {
            b.push(json!({"upstream": {"name": UPSTREAMS[u], "up": true, "behaviour": behaviour_json(Behaviour::Ok)}}));
            st.beh[u] = Behaviour::Ok;
        }
    }
    b.wait_admin("/control_plane/connected".into(), json!(true));
    b.settle(&st);
    b.lkg(st.version);
    b.probes(&mut st);
    b.snapshot(Boundary::End);
    let ups: serde_json::Map<String, Value> = UPSTREAMS
        .iter()
        .map(|u| (u.to_string(), json!({})))
        .chain([(LOAD_UPSTREAM.to_string(), json!({"behaviour": {"respond": {"status": 200, "delay_ms": LOAD_DELAY_MS}}}))])
        .collect();
    let kinds: Vec<&str> = s.events.iter().map(|e| e.kind()).collect();
    let scenario = json!({
        "id": format!("chaos-{}-{}", s.seed, s.index),
        "description": format!("parity chaos, seed {} case {}: {} events ({}); the steps after each event wait for the state to settle, then probe every key; a background load runs across each event", s.seed, s.index, s.events.len(), kinds.join(", ")),
        "tags": ["chaos"],
        "timeout_ms": 30000 + 8000 * s.events.len() as u64,
        "router": {"control_plane": true, "reconnect_initial_ms": 50, "reconnect_max_ms": 400, "threads": 2, "shutdown_grace_ms": 3000},
        "upstreams": ups,
        "toxiproxy": {"upstreams": UPSTREAMS, "control_plane": true},
        "config": config_json(&s.initial, 1),
        "steps": b.steps,
    });
    Rendered { scenario, checks: b.checks, event_of: b.event_of, load_steps: b.load_steps, probes: b.probes, load_requests: b.load_requests, snapshots: b.snapshots }
}
