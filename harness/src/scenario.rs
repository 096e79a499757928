//! The scenario model: one YAML file per scenario, parsed with `serde_yaml_ng` into the
//! typed model below, then checked for the rules serde cannot express (references between
//! parts, one-of fields). Every error names the file, the line and the field path
//! (`steps[3].send.expect.upstream`). The format is documented in `docs/scenarios.md`;
//! `parity schema` prints the JSON Schema derived from these types.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// One scenario file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Unique id, `^[a-z0-9][a-z0-9-]*$`; results and reports are keyed by it.
    pub id: String,
    /// What the scenario shows, for humans.
    pub description: String,
    /// Free tags for `parity run --tag`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Deadline for the whole scenario against one implementation, milliseconds.
    #[serde(default = "default_scenario_timeout")]
    pub timeout_ms: u64,
    /// Mock upstreams by name. Config documents refer to them as `{{up.NAME}}`.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamSpec>,
    /// How the router is started.
    #[serde(default)]
    pub router: RouterSpec,
    /// The initial config document. With a control plane it is pushed on the first hello
    /// and acked before the first step; without one it is written as the LKG file.
    #[serde(default)]
    pub config: Option<Value>,
    /// The steps, run in order.
    pub steps: Vec<Step>,
}

fn default_scenario_timeout() -> u64 {
    60_000
}

/// A mock upstream.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// Serve HTTPS with a certificate made at run time (rcgen) for `localhost` and
    /// `127.0.0.1`; `{{up.NAME.ca_file}}` is the CA's PEM file.
    #[serde(default)]
    pub tls: bool,
    /// Whether the port accepts connections at the start (default true).
    #[serde(default = "yes")]
    pub up: bool,
    /// Status of `GET /healthz` (the health-check path), default 200.
    #[serde(default = "default_health")]
    pub health_status: u16,
    /// What every other request gets.
    #[serde(default)]
    pub behaviour: Behaviour,
}

fn yes() -> bool {
    true
}
fn default_health() -> u16 {
    200
}

/// What an upstream does with a request (other than `/healthz`). `respond` is served by
/// wiremock; the others by the harness's own TCP upstream.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Behaviour {
    /// A plain response (wiremock).
    Respond(Respond),
    /// 200 with a JSON body describing what arrived: method, target, version, headers
    /// (lower-case names, in order), body byte count.
    Echo,
    /// Reads the whole body, counting bytes, answers 200 with header `X-Received-Bytes`.
    Sink,
    /// Accepts and reads the request, never answers.
    Hang,
    /// Reads the request, then resets the connection (RST) before any response byte.
    ResetBeforeHeaders,
    /// Reads the request, then closes the connection before any response byte.
    CloseBeforeHeaders,
    /// Answers bytes that are not an HTTP/1.x response.
    Garbage,
    /// Sends headers with `Content-Length: declared`, then `sent` body bytes, then closes.
    AbortMidBody {
        /// Declared Content-Length.
        declared: u64,
        /// Body bytes actually sent before the close.
        sent: u64,
    },
    /// Chunked response: `chunks` chunks `interval_ms` apart; `sse` sets
    /// `Content-Type: text/event-stream` and writes `data: N\n\n` events.
    Drip {
        /// Number of chunks; 0 means endless.
        chunks: u32,
        /// Gap between chunks, milliseconds.
        interval_ms: u64,
        /// Server-sent events framing.
        #[serde(default)]
        sse: bool,
    },
    /// Holds every request until a step `release`s the upstream, then answers 200.
    Hold,
    /// Answers `101 Switching Protocols` (echoing the request's `Upgrade`), then echoes
    /// every byte it receives on the tunnel.
    Upgrade,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour::Respond(Respond::default())
    }
}

/// A plain response.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Respond {
    /// Status code (default 200).
    #[serde(default = "default_status")]
    pub status: u16,
    /// Extra response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body (default: `hello from NAME`).
    #[serde(default)]
    pub body: Option<String>,
    /// Delay before the response, milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
}

impl Default for Respond {
    fn default() -> Self {
        Respond { status: 200, headers: BTreeMap::new(), body: None, delay_ms: 0 }
    }
}

fn default_status() -> u16 {
    200
}

/// Router process options; everything else comes from the environment.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    /// Start the harness's control plane and pass `--control-plane` (default true).
    #[serde(default = "yes")]
    pub control_plane: bool,
    /// Push the latest accepted config whenever the router says hello (default true).
    #[serde(default = "yes")]
    pub push_on_hello: bool,
    /// `--shutdown-grace-ms`.
    #[serde(default)]
    pub shutdown_grace_ms: Option<u64>,
    /// `--reconnect-initial-ms` (default 50).
    #[serde(default = "default_reconnect_initial")]
    pub reconnect_initial_ms: u64,
    /// `--reconnect-max-ms` (default 400).
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// Exact text of `last-known-good.json` written to the state dir before the first
    /// start (templates filled in), e.g. a corrupt file.
    #[serde(default)]
    pub lkg_text: Option<String>,
    /// Pass `--access-log` (JSON lines on stderr).
    #[serde(default)]
    pub access_log: bool,
    /// `--threads` (default 2).
    #[serde(default = "default_threads")]
    pub threads: u32,
}

impl Default for RouterSpec {
    fn default() -> Self {
        RouterSpec {
            control_plane: true,
            push_on_hello: true,
            shutdown_grace_ms: None,
            lkg_text: None,
            access_log: false,
            reconnect_initial_ms: default_reconnect_initial(),
            reconnect_max_ms: default_reconnect_max(),
            threads: default_threads(),
        }
    }
}

fn default_reconnect_initial() -> u64 {
    50
}
fn default_reconnect_max() -> u64 {
    400
}
fn default_threads() -> u32 {
    2
}

/// One step. Written as a one-key map: `- send: {...}`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Send requests to the router's data plane.
    Send(Send),
    /// Wait for a background send and check its expectations.
    Await(Await),
    /// Push a config (or raw frame) from the control plane and expect ack/nack.
    Push(Push),
    /// Change an upstream: up/down, behaviour, health status, release held requests.
    Upstream(UpstreamAction),
    /// Control the control plane.
    ControlPlane(CpAction),
    /// Control the router process.
    Router(RouterAction),
    /// Wait until observable state matches, with a deadline.
    Wait(Wait),
    /// Check fields of `GET /admin/state` by JSON Pointer.
    ExpectAdmin(BTreeMap<String, Value>),
    /// Check metric values (`name{label="v"}`); an absent series reads as 0.
    ExpectMetrics(BTreeMap<String, f64>),
    /// Check what the control plane saw.
    ExpectControlPlane(CpExpect),
    /// Check what an upstream received.
    ExpectUpstream(UpstreamExpect),
    /// Check a file the router keeps (e.g. `{{state_dir}}/last-known-good.json`).
    ExpectFile(FileExpect),
    /// Check the access log (JSON lines with a `ts` member on the current process's
    /// stderr; needs `router.access_log`).
    ExpectAccessLog(AccessLogExpect),
}

/// Access-log expectations.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessLogExpect {
    /// Number of access-log lines so far.
    #[serde(default)]
    pub count: Option<usize>,
    /// The last lines, in any order: each entry's members must be equal in a distinct
    /// line (`ts` must be RFC 3339 and `duration_ms` a number in every one of them).
    #[serde(default)]
    pub last: Vec<BTreeMap<String, Value>>,
}

/// A file check.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileExpect {
    /// Path (templates allowed).
    pub path: String,
    /// Whether it exists.
    #[serde(default)]
    pub exists: Option<bool>,
    /// Its JSON `version` member.
    #[serde(default)]
    pub json_version: Option<u64>,
}

/// Requests to send.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Send {
    /// `X-Routing-Key`; absent: no header.
    #[serde(default)]
    pub key: Option<String>,
    /// Request target (default `/`).
    #[serde(default = "default_path")]
    pub path: String,
    /// Method (default GET).
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body text.
    #[serde(default)]
    pub body: Option<String>,
    /// A generated body of this many bytes, streamed with `Content-Length`.
    #[serde(default)]
    pub body_bytes: Option<u64>,
    /// Raw bytes written to a fresh connection instead of a built request (malformed
    /// requests); `\r\n` must be written out in the YAML string.
    #[serde(default)]
    pub raw: Option<String>,
    /// Add a header `X-Padding` of this many bytes (oversized request heads).
    #[serde(default)]
    pub pad_header_bytes: Option<usize>,
    /// What of the responses goes into the observation trace: any of `status`, `error`,
    /// `upstream`, `placement`, `complete`. Default: all of them (only `status` for `raw`
    /// and `pad_header_bytes` sends, whose error documents the HTTP stack may make).
    /// Expectations are checked whatever is traced.
    #[serde(default)]
    pub trace: Option<Vec<String>>,
    /// With `raw`: after a `101` response, write these bytes on the tunnel and read as
    /// many back into the body.
    #[serde(default)]
    pub tunnel_write: Option<String>,
    /// Number of requests (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// How many at a time (default 1).
    #[serde(default = "one")]
    pub concurrency: u32,
    /// Per-request deadline, milliseconds (default 10000).
    #[serde(default = "default_req_timeout")]
    pub timeout_ms: u64,
    /// Read the response body as a stream: stop after this many chunks (for endless
    /// responses) and record chunk timing.
    #[serde(default)]
    pub read_chunks: Option<u32>,
    /// Run in the background under this name; `await` it later.
    #[serde(default)]
    pub background: Option<String>,
    /// Expectations on every response (and on the tallies).
    #[serde(default)]
    pub expect: SendExpect,
}

fn default_path() -> String {
    "/".into()
}
fn default_method() -> String {
    "GET".into()
}
fn one() -> u32 {
    1
}
fn default_req_timeout() -> u64 {
    10_000
}

/// Expectations on responses. Scalar fields apply to every response; `*_counts` to the
/// tallies over all responses of the step.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SendExpect {
    /// Status of every response.
    #[serde(default)]
    pub status: Option<u16>,
    /// `X-Router-Error` of every response; `null`: absent.
    #[serde(default, deserialize_with = "some_value")]
    pub error: Option<Option<String>>,
    /// `X-Upstream-Name` of every response; `null`: absent.
    #[serde(default, deserialize_with = "some_value")]
    pub upstream: Option<Option<String>>,
    /// `X-Router-Placement` of every response; `null`: absent.
    #[serde(default, deserialize_with = "some_value")]
    pub placement: Option<Option<String>>,
    /// Exact body of every response.
    #[serde(default)]
    pub body: Option<String>,
    /// The body is a router-made error document `{"error": code, "message": ...}`.
    #[serde(default)]
    pub error_body: Option<bool>,
    /// Response headers of every response (`null`: absent); templates allowed.
    #[serde(default)]
    pub headers: BTreeMap<String, Option<String>>,
    /// Headers the `echo` upstream received (lower-case names; `null`: absent).
    #[serde(default)]
    pub echo_headers: BTreeMap<String, Option<String>>,
    /// Whether the body arrived complete (false: the connection was cut).
    #[serde(default)]
    pub complete: Option<bool>,
    /// No response at all: the connection failed or was refused.
    #[serde(default)]
    pub no_response: Option<bool>,
    /// Count of responses per status.
    #[serde(default)]
    pub status_counts: BTreeMap<String, u32>,
    /// Count of responses per `X-Router-Error` (`-` for none).
    #[serde(default)]
    pub error_counts: BTreeMap<String, u32>,
    /// Count of responses per `X-Upstream-Name` (`-` for none).
    #[serde(default)]
    pub upstream_counts: BTreeMap<String, u32>,
    /// With `read_chunks`: at least this many chunks arrived.
    #[serde(default)]
    pub chunks_at_least: Option<u32>,
    /// With `read_chunks`: no gap between the response head and a chunk, or between two
    /// chunks, was longer than this (milliseconds).
    #[serde(default)]
    pub max_chunk_gap_ms: Option<u64>,
}

/// Serde helper so that an explicit `null` means `Some(None)`.
fn some_value<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Some(Option::deserialize(d)?))
}

/// Wait for a background send.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Await {
    /// The `background` name of the send.
    pub name: String,
    /// Deadline, milliseconds (default 15000).
    #[serde(default = "default_wait")]
    pub within_ms: u64,
}

/// A push from the control plane.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Push {
    /// The config document (templates are filled in).
    #[serde(default)]
    pub config: Option<Value>,
    /// The config member's exact text (for malformed JSON, `5.0`, ...).
    #[serde(default)]
    pub config_text: Option<String>,
    /// A whole frame's exact text, sent as is.
    #[serde(default)]
    pub frame: Option<String>,
    /// Append spaces to the config text until it is this many bytes.
    #[serde(default)]
    pub pad_to_bytes: Option<usize>,
    /// Expect `{"type":"ack","version":N}`.
    #[serde(default)]
    pub ack: Option<u64>,
    /// Expect a nack.
    #[serde(default)]
    pub nack: Option<NackExpect>,
    /// Deadline for the answer, milliseconds (default 5000).
    #[serde(default = "default_push_wait")]
    pub within_ms: u64,
}

fn default_push_wait() -> u64 {
    5_000
}

/// An expected nack.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NackExpect {
    /// `error.code`.
    pub code: String,
    /// `error.path` (JSON Pointer); absent: not checked.
    #[serde(default)]
    pub path: Option<String>,
    /// `version`; absent: not checked; `null` allowed.
    #[serde(default, deserialize_with = "some_value")]
    pub version: Option<Option<u64>>,
}

/// Change an upstream.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamAction {
    /// Upstream name.
    pub name: String,
    /// `false`: close the port and every connection (connections are refused);
    /// `true`: listen again on the same port.
    #[serde(default)]
    pub up: Option<bool>,
    /// New behaviour.
    #[serde(default)]
    pub behaviour: Option<Behaviour>,
    /// New `/healthz` status.
    #[serde(default)]
    pub health_status: Option<u16>,
    /// Let held requests (behaviour `hold`) answer, and later ones pass at once.
    #[serde(default)]
    pub release: Option<bool>,
}

/// Control-plane actions.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum CpAction {
    /// Close the listener and every connection: connects are refused.
    Stop,
    /// Listen again on the same port.
    Start,
    /// Close the current connections, keep listening.
    Drop,
}

/// Router actions.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RouterAction {
    /// SIGTERM, wait for the exit (SIGKILL after the deadline), start again with the
    /// same flags, ports and state dir, wait for `/healthz`.
    Restart,
    /// Send SIGTERM only.
    Sigterm,
    /// Wait for the process to exit and check its exit code.
    ExpectExit {
        /// Expected exit code.
        code: i32,
        /// Deadline, milliseconds (default 10000).
        #[serde(default = "default_exit_wait")]
        within_ms: u64,
    },
    /// Check the router's peak resident memory (VmHWM) so far.
    ExpectRssBelow {
        /// Upper bound, bytes.
        bytes: u64,
    },
    /// Check that the data-plane port refuses new connections.
    ExpectRefused,
}

fn default_exit_wait() -> u64 {
    10_000
}

/// Wait until a condition holds; a timeout is an expectation failure.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    /// JSON Pointer into `GET /admin/state`.
    #[serde(default)]
    pub admin: Option<String>,
    /// A metric series `name{label="v",...}`; absent reads as 0.
    #[serde(default)]
    pub metric: Option<String>,
    /// Number of hellos the control plane has received.
    #[serde(default)]
    pub hellos: Option<u32>,
    /// Number of live control-plane connections.
    #[serde(default)]
    pub cp_connections: Option<u32>,
    /// The data-plane port refuses new connections (after SIGTERM).
    #[serde(default)]
    pub data_port_refused: Option<bool>,
    /// Body chunks received by a background send (by name), at least `at_least`.
    #[serde(default)]
    pub background_chunks: Option<String>,
    /// Requests an upstream has received (by name), at least `at_least`.
    #[serde(default)]
    pub upstream_requests: Option<String>,
    /// The value to reach (admin, metric).
    #[serde(default)]
    pub equals: Option<Value>,
    /// Numeric lower bound (metric, hellos, upstream_requests).
    #[serde(default)]
    pub at_least: Option<f64>,
    /// Deadline, milliseconds (default 15000).
    #[serde(default = "default_wait")]
    pub within_ms: u64,
}

fn default_wait() -> u64 {
    15_000
}

/// What the control plane saw.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CpExpect {
    /// Number of hellos so far.
    #[serde(default)]
    pub hellos: Option<u32>,
    /// The last hello's `config_version` (`null` allowed).
    #[serde(default, deserialize_with = "some_value")]
    pub last_hello_version: Option<Option<u64>>,
    /// The last hello's `impl` is the implementation under test.
    #[serde(default)]
    pub hello_impl_matches: Option<bool>,
}

/// What an upstream received.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamExpect {
    /// Upstream name.
    pub name: String,
    /// Requests received (other than health checks).
    #[serde(default)]
    pub requests: Option<u64>,
    /// Body bytes received by a `sink`.
    #[serde(default)]
    pub body_bytes: Option<u64>,
}

/// A scenario together with its source file.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The parsed scenario.
    pub scenario: Scenario,
    /// Where it came from.
    pub file: PathBuf,
}

/// A validation error: file, 1-based line (0 when unknown), field path, message.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, 0 when not known.
    pub line: usize,
    /// Field path, e.g. `steps[2].send.count`; `.` for the document.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: field `{}`: {}", self.file.display(), self.line, self.field, self.message)
    }
}

/// Maps field paths (`steps[2].send.count`) to the 1-based line where that node starts,
/// from the YAML event stream (yaml-rust2 markers).
#[derive(Debug, Default)]
pub struct LineMap {
    lines: HashMap<String, usize>,
}

impl LineMap {
    /// Builds the map; a text that does not scan gives an empty map.
    pub fn build(text: &str) -> LineMap {
        use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
        use yaml_rust2::scanner::Marker;
        enum Frame {
            Map { path: String, key: Option<String>, expect_key: bool },
            Seq { path: String, idx: usize },
        }
        struct Recv {
            stack: Vec<Frame>,
            lines: HashMap<String, usize>,
        }
        fn join(base: &str, key: &str) -> String {
            if base.is_empty() {
                key.to_string()
            } else {
                format!("{base}.{key}")
            }
        }
        impl Recv {
            /// Path of the node that starts now, and advance the parent.
            fn node_path(&mut self) -> Option<String> {
                match self.stack.last_mut() {
                    None => Some(String::new()),
                    Some(Frame::Seq { path, idx }) => {
                        let p = format!("{path}[{idx}]");
                        *idx += 1;
                        Some(p)
                    }
                    Some(Frame::Map { path, key, expect_key }) => {
                        if *expect_key {
                            None
                        } else {
                            *expect_key = true;
                            key.take().map(|k| join(path, &k))
                        }
                    }
                }
            }
        }
        impl MarkedEventReceiver for Recv {
            fn on_event(&mut self, ev: Event, mark: Marker) {
                let line = mark.line();
                match ev {
                    Event::Scalar(s, ..) => {
                        if let Some(Frame::Map { path, key, expect_key }) = self.stack.last_mut() {
                            if *expect_key {
                                *expect_key = false;
                                self.lines.entry(join(path, &s)).or_insert(line);
                                *key = Some(s);
                                return;
                            }
                        }
                        if let Some(p) = self.node_path() {
                            self.lines.entry(p).or_insert(line);
                        }
                    }
                    Event::Alias(_) => {
                        self.node_path();
                    }
                    Event::MappingStart(..) => {
                        let p = self.node_path().unwrap_or_default();
                        self.lines.entry(p.clone()).or_insert(line);
                        self.stack.push(Frame::Map { path: p, key: None, expect_key: true });
                    }
                    Event::SequenceStart(..) => {
                        let p = self.node_path().unwrap_or_default();
                        self.lines.entry(p.clone()).or_insert(line);
                        self.stack.push(Frame::Seq { path: p, idx: 0 });
                    }
                    Event::MappingEnd | Event::SequenceEnd => {
                        self.stack.pop();
                    }
                    _ => {}
                }
            }
        }
        let mut r = Recv { stack: Vec::new(), lines: HashMap::new() };
        let mut p = Parser::new_from_str(text);
        let _ = p.load(&mut r, false);
        LineMap { lines: r.lines }
    }

    /// Line of `path`, or of its nearest ancestor that has one; 0 when none.
    pub fn line(&self, path: &str) -> usize {
        let mut p = path.to_string();
        loop {
            if let Some(l) = self.lines.get(&p) {
                return *l;
            }
            // strip the last segment
            let cut = p.rfind(['.', '[']);
            match cut {
                Some(i) => p.truncate(i),
                None => return self.lines.get("").copied().unwrap_or(0),
            }
        }
    }
}

/// Parses and checks one scenario text. `file` is only used in errors.
pub fn parse(text: &str, file: &Path) -> Result<Scenario, Vec<ScenarioError>> {
    let map = LineMap::build(text);
    // Enums are written as one-key maps (`- send: {...}`), not YAML tags.
    let yaml = serde_yaml_ng::Deserializer::from_str(text);
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(yaml, &mut track);
    let res: Result<Scenario, serde_yaml_ng::Error> = serde_yaml_ng::with::singleton_map_recursive::deserialize(de);
    let sc: Scenario = match res {
        Ok(s) => s,
        Err(inner) => {
            let field = track.path().to_string();
            let line = inner
                .location()
                .map(|l| l.line())
                .filter(|l| *l > 0)
                .unwrap_or_else(|| map.line(&field));
            let mut msg = inner.to_string();
            // serde_yaml_ng appends " at line L column C"; the line is reported separately.
            if let Some(i) = msg.find(" at line ") {
                msg.truncate(i);
            }
            // and may start with the path of the mapping ("steps[0].send: unknown field").
            if let Some((head, rest)) = msg.split_once(": ") {
                if !head.contains(' ') && field.starts_with(head) {
                    msg = rest.to_string();
                }
            }
            return Err(vec![ScenarioError { file: file.to_path_buf(), line, field, message: msg }]);
        }
    };
    let errs = check(&sc, &map, file);
    if errs.is_empty() {
        Ok(sc)
    } else {
        Err(errs)
    }
}

/// Rules the types cannot express. Returns every violation found.
fn check(sc: &Scenario, map: &LineMap, file: &Path) -> Vec<ScenarioError> {
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
                let bodies = [s.body.is_some(), s.body_bytes.is_some(), s.raw.is_some()];
                if bodies.iter().filter(|x| **x).count() > 1 {
                    err(b.clone(), "at most one of body, body_bytes, raw".into());
                }
                if let Some(t) = &s.trace {
                    for (k, d) in t.iter().enumerate() {
                        if !["status", "error", "upstream", "placement", "complete"].contains(&d.as_str()) {
                            err(format!("{b}.trace[{k}]"), format!("{d:?} is not one of status, error, upstream, placement, complete"));
                        }
                    }
                }
                if s.tunnel_write.is_some() && s.raw.is_none() {
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
            }
            Step::Wait(w) => {
                let n = [
                    w.admin.is_some(),
                    w.metric.is_some(),
                    w.hellos.is_some(),
                    w.cp_connections.is_some(),
                    w.upstream_requests.is_some(),
                    w.data_port_refused.is_some(),
                    w.background_chunks.is_some(),
                ]
                .iter()
                .filter(|x| **x)
                .count();
                if n != 1 {
                    err(format!("{base}.wait"), "exactly one of admin, metric, hellos, cp_connections, upstream_requests, data_port_refused, background_chunks".into());
                }
                if (w.admin.is_some() || w.metric.is_some()) && w.equals.is_none() && w.at_least.is_none() {
                    err(format!("{base}.wait"), "admin and metric need equals or at_least".into());
                }
                if let Some(n) = &w.background_chunks {
                    if !backgrounds.contains(n) {
                        err(format!("{base}.wait.background_chunks"), format!("no earlier background send named {n:?}"));
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
            }
            Step::ExpectAccessLog(_) => {
                if !sc.router.access_log {
                    err(base.clone(), "needs router.access_log: true".into());
                }
            }
            Step::ExpectFile(f) => {
                check_templates(&Value::String(f.path.clone()), format!("{base}.expect_file.path"), &mut err);
            }
            Step::ControlPlane(_) | Step::ExpectControlPlane(_) => {
                if !sc.router.control_plane {
                    err(base.clone(), "needs router.control_plane: true".into());
                }
            }
            Step::Router(_) => {}
        }
    }
    errs
}

/// The `{{...}}` templates in a string, without braces.
pub fn templates(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        match rest[i + 2..].find("}}") {
            Some(j) => {
                out.push(rest[i + 2..i + 2 + j].trim().to_string());
                rest = &rest[i + 2 + j + 2..];
            }
            None => break,
        }
    }
    out
}

/// spec/config.schema.json, embedded so that validation works from any folder.
const CONFIG_SCHEMA: &str = include_str!("../../spec/config.schema.json");

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
/// `state_dir`.
fn check_template(t: &str, known: &dyn Fn(&str) -> bool) -> Result<(), String> {
    if t == "unused_port" || t == "state_dir" {
        return Ok(());
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

/// Reads every `*.yaml`/`*.yml` file directly in `path` (a folder, sorted by name; `bench`
/// and other subfolders are skipped) or `path` itself (a file).
pub fn files_in(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        v.sort();
        Ok(v)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

/// Loads and checks files; also checks that ids are unique. All errors are returned.
pub fn load_all(files: &[PathBuf]) -> (Vec<Loaded>, Vec<ScenarioError>) {
    let mut ok: Vec<Loaded> = Vec::new();
    let mut errs = Vec::new();
    for f in files {
        match std::fs::read_to_string(f) {
            Err(e) => errs.push(ScenarioError { file: f.clone(), line: 0, field: ".".into(), message: e.to_string() }),
            Ok(text) => match parse(&text, f) {
                Ok(s) => {
                    if let Some(prev) = ok.iter().find(|l| l.scenario.id == s.id) {
                        errs.push(ScenarioError {
                            file: f.clone(),
                            line: LineMap::build(&text).line("id"),
                            field: "id".into(),
                            message: format!("id {:?} already used by {}", s.id, prev.file.display()),
                        });
                    } else {
                        ok.push(Loaded { scenario: s, file: f.clone() });
                    }
                }
                Err(mut e) => errs.append(&mut e),
            },
        }
    }
    (ok, errs)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn template_scan() {
        assert_eq!(templates("x{{up.a}}y{{ up.b.port }}"), vec!["up.a", "up.b.port"]);
    }
}
