//! The scenario model: the typed form of one scenario file, from which `parity schema`
//! derives the JSON Schema; the format is documented in `docs/scenarios.md`. Also the
//! template syntax (`{{up.NAME}}`, ...) that strings of the model may contain.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

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
    /// Toxiproxy between the router and some upstreams and/or the control plane
    /// ([`crate::toxiproxy`]); `toxic` steps change its proxies.
    #[serde(default)]
    pub toxiproxy: Option<crate::toxiproxy::ToxiproxySpec>,
    /// The client transports the scenario runs over ([`crate::tls::Transport`]): `parity
    /// run` uses the first, `parity run --transport T` runs the scenario when T is listed.
    /// Absent: `h1`, and with `--transport h1+tls`/`h2+tls` every scenario the default rule
    /// of [`crate::tls::applies`] admits (docs/scenarios.md, "Transports").
    #[serde(default)]
    pub transports: Option<Vec<crate::tls::Transport>>,
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

/// What an upstream does with a request (other than `/healthz`). Every behaviour is served
/// by the harness's own TCP upstream, which records each request it receives (any number
/// of header fields, heads up to [`crate::upstreams::MAX_HEAD_BYTES`]).
///
/// Written as a name (`hang`) or a one-key map (`{respond: {...}}`); `echo` may be either
/// (`echo` or `{echo: {delay_ms: 300}}`), hence the hand-written `Deserialize` around the
/// derived one.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(remote = "Self", rename_all = "snake_case", deny_unknown_fields)]
#[schemars(transform = echo_may_be_a_name)]
pub enum Behaviour {
    /// A plain response.
    Respond(Respond),
    /// 200 with a JSON body describing what arrived: method, target, version, headers
    /// (lower-case names, in order), body byte count. Plain `echo` or `{echo: {delay_ms}}`.
    Echo(EchoSpec),
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
    /// After reading a request head (and its body by its framing, if any), waits
    /// `delay_ms`, writes exactly `bytes` (no `X-Upstream-Name` is added), and closes the
    /// connection when `close`, else reads the next request on it.
    Raw(RawReply),
}

impl<'de> Deserialize<'de> for Behaviour {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{value::MapAccessDeserializer, IntoDeserializer, MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Behaviour;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a behaviour name (e.g. `echo`) or a one-key map (e.g. `{respond: {status: 503}}`)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Behaviour, E> {
                if v == "echo" {
                    return Ok(Behaviour::Echo(EchoSpec::default()));
                }
                Behaviour::deserialize(v.into_deserializer())
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Behaviour, A::Error> {
                Behaviour::deserialize(MapAccessDeserializer::new(m))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Behaviour {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Behaviour::serialize(self, s)
    }
}

/// Schema of [`Behaviour`]: the derived one-of, plus the name `echo`.
fn echo_may_be_a_name(schema: &mut schemars::Schema) {
    if let Some(one_of) = schema.get_mut("oneOf").and_then(|v| v.as_array_mut()) {
        one_of.push(serde_json::json!({"description": "`echo` without options", "type": "string", "const": "echo"}));
    }
}

/// Options of the `echo` behaviour.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct EchoSpec {
    /// Delay before each answer, milliseconds (after the request was read whole).
    #[serde(default)]
    pub delay_ms: u64,
}

/// The `raw` behaviour: exact response bytes.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawReply {
    /// The bytes written, as a Latin-1 string (each character U+0000..U+00FF is one byte;
    /// YAML escapes such as `"\r\n"`, `"\x00"`); `{{repeat N "text"}}` expands.
    pub bytes: String,
    /// Close the connection after writing (default false: read the next request).
    #[serde(default)]
    pub close: bool,
    /// Delay before writing, milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
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
    /// `--cp-ping-ms`: control-plane keepalive ping interval (absent: router default).
    #[serde(default)]
    pub cp_ping_ms: Option<u64>,
    /// `--cp-pong-timeout-ms`: longest wait for an answer to a ping (absent: router
    /// default).
    #[serde(default)]
    pub cp_pong_timeout_ms: Option<u64>,
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
    /// Make the data listener TLS: `--tls-cert`/`--tls-key` with the run's certificate
    /// ([`crate::tls::TestPki`]), and `--client-ca` when `client_ca`. Set by `parity run
    /// --transport h1+tls|h2+tls` on every scenario it runs.
    #[serde(default)]
    pub tls: Option<TlsSpec>,
}

/// The router's TLS listener (issue 15).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// Pass `--client-ca` (the run's CA): client certificates are required.
    #[serde(default)]
    pub client_ca: bool,
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
            cp_ping_ms: None,
            cp_pong_timeout_ms: None,
            threads: default_threads(),
            tls: None,
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
    /// One request per key, to check consistent hashing: sticky keys, bounded movement
    /// against an earlier spread ([`crate::steps::key_spread`]).
    KeySpread(crate::steps::key_spread::KeySpread),
    /// Check metric values (`name{label="v"}`); `null` expects the series to be absent
    /// (a labelled counter never incremented, spec section 7). An absent series is its
    /// own value and fails any expected number (0 included); a failed scrape fails the
    /// step.
    ExpectMetrics(BTreeMap<String, Option<f64>>),
    /// Record, without expecting anything, the values of the named metrics in
    /// `GET /metrics` and the control plane's acks and nacks so far: the counter
    /// snapshots `parity chaos` holds against what the clients saw
    /// ([`crate::steps::snapshot_metrics`]).
    SnapshotMetrics(SnapshotMetrics),
    /// Check what the control plane saw.
    ExpectControlPlane(CpExpect),
    /// Check what an upstream received.
    ExpectUpstream(UpstreamExpect),
    /// Check a file the router keeps (e.g. `{{state_dir}}/last-known-good.json`).
    ExpectFile(FileExpect),
    /// Check the access log (JSON lines with a `ts` member on the current process's
    /// stderr; needs `router.access_log`).
    ExpectAccessLog(AccessLogExpect),
    /// Add or remove a Toxiproxy toxic on one proxy, or disable/enable it
    /// ([`crate::toxiproxy`]); needs the scenario's `toxiproxy` block.
    Toxic(crate::toxiproxy::ToxicStep),
    /// TLS handshakes with the router's data listener ([`crate::steps::tls`]); needs
    /// `router.tls`.
    Tls(TlsProbe),
}

/// `tls` step: `connections` handshakes one after the other with one client
/// configuration (its session cache is shared, so the second may resume).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsProbe {
    /// The client certificate presented (default none).
    #[serde(default)]
    pub client_cert: crate::tls::ClientCert,
    /// ALPN protocols offered, in order (default `[h2, http/1.1]`; `[]`: no ALPN).
    #[serde(default = "default_alpn")]
    pub alpn: Vec<String>,
    /// Only this TLS version (`"1.2"` or `"1.3"`); absent: both.
    #[serde(default)]
    pub version: Option<TlsVersion>,
    /// Connections made (default 1).
    #[serde(default = "one")]
    pub connections: u32,
    /// Expectations, on every connection unless said otherwise.
    #[serde(default)]
    pub expect: TlsExpect,
}

fn default_alpn() -> Vec<String> {
    vec!["h2".into(), "http/1.1".into()]
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246).
    #[serde(rename = "1.2")]
    V12,
    /// TLS 1.3 (RFC 8446).
    #[serde(rename = "1.3")]
    V13,
}

/// Expectations of a `tls` step.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsExpect {
    /// `ok` or `failed` ([`crate::tls::probe`]).
    #[serde(default)]
    pub handshake: Option<HandshakeExpect>,
    /// The negotiated ALPN protocol; `null`: none.
    #[serde(default, deserialize_with = "some_value")]
    pub alpn: Option<Option<String>>,
    /// Per connection, in order: whether its session was resumed.
    #[serde(default)]
    pub resumed: Option<Vec<bool>>,
    /// The certificate the router presented: `initial` or `next` (after
    /// `router: swap_tls_cert`).
    #[serde(default)]
    pub server_cert: Option<String>,
    /// The alert of a failed handshake as rustls names it (`CertificateRequired`,
    /// `UnknownCA`, ...). Only when given is the alert part of the trace: stacks may
    /// choose different alerts (docs/divergences.md).
    #[serde(default)]
    pub alert: Option<String>,
    /// The CAs the router named in its CertificateRequest (`certificate_authorities`), by
    /// the run's names (`ca`, `next_ca`, `wrong_ca`, `other`); `[]`: a request naming none.
    /// Only when given is it part of the trace.
    #[serde(default)]
    pub ca_names: Option<Vec<String>>,
}

/// Expected handshake outcome.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HandshakeExpect {
    /// Completed, and not ended by an alert right after.
    Ok,
    /// Refused with an alert (or the connection closed).
    Failed,
}

/// A metrics snapshot (`snapshot_metrics` step).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotMetrics {
    /// Metric names to record (every series of each, all labels); a histogram's
    /// `_count` series is named as such.
    pub names: Vec<String>,
    /// Read again until two reads this many milliseconds apart agree (the recorded
    /// series and the control plane's answers), at most 2 s: for a snapshot taken when
    /// nothing should be in flight, since a router records an answer just after the
    /// client has it. Absent: one read.
    #[serde(default)]
    pub quiet_ms: Option<u64>,
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
    /// Raw bytes written to a fresh connection in one write instead of a built request
    /// (malformed or pipelined requests): a Latin-1 string, each character U+0000..U+00FF
    /// one byte (`\r\n`, `\x00`, `\xe9` written as YAML double-quoted escapes);
    /// `{{repeat N "text"}}` expands. Every response the router writes is read, see
    /// [`SendExpect::responses`].
    #[serde(default)]
    pub raw: Option<String>,
    /// Like `raw`, in several writes on one connection: each write `after_ms` after the
    /// previous one (pipelining while a response is in flight, a head split over writes).
    /// Exclusive with `raw` and the built request's fields.
    #[serde(default)]
    pub raw_writes: Option<Vec<RawWrite>>,
    /// Start reading the response only this many milliseconds after the connection was
    /// made (a client busy writing: surfaces a reset the way curl does after a 431 with
    /// unread bytes).
    #[serde(default)]
    pub read_delay_ms: u64,
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
    /// Over TLS: the client certificate presented; absent: the good one when the router
    /// requires one (`router.tls.client_ca`), else none.
    #[serde(default)]
    pub client_cert: Option<crate::tls::ClientCert>,
    /// `h2+tls` only: the `count` requests are streams on one HTTP/2 connection,
    /// `concurrency` open at a time (default false: a connection per request).
    #[serde(default)]
    pub one_connection: bool,
    /// `h2+tls` with `one_connection`: once the router's `GOAWAY` has arrived (waiting
    /// up to `timeout_ms`), open this many more streams on the connection (refused by the
    /// GOAWAY, RFC 9113 §6.8); recorded after the others.
    #[serde(default)]
    pub after_goaway: u32,
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

/// One write of `raw_writes`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawWrite {
    /// Milliseconds after the previous write (after the connect for the first).
    #[serde(default)]
    pub after_ms: u64,
    /// The bytes, a Latin-1 string as `raw`.
    pub bytes: String,
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
    /// Every final response on each connection of the step, in order; the count must match
    /// exactly. With a raw send, the client reads until this many final responses arrived,
    /// then lingers briefly to see an extra one (a failure) or the connection's end.
    #[serde(default)]
    pub responses: Option<Vec<ResponseExpect>>,
    /// How each connection is after its last response: `eof` (orderly close), `reset`
    /// (RST), `open` (still open after the linger).
    #[serde(default)]
    pub connection: Option<ConnExpect>,
}

/// One expected final response of [`SendExpect::responses`]. Everything but `status` is
/// optional.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ResponseExpect {
    /// Status code.
    pub status: u16,
    /// Reason phrase exactly as sent.
    #[serde(default)]
    pub reason: Option<String>,
    /// `X-Router-Error`; `null`: absent.
    #[serde(default, deserialize_with = "some_value")]
    pub error: Option<Option<String>>,
    /// `X-Upstream-Name`; `null`: absent.
    #[serde(default, deserialize_with = "some_value")]
    pub upstream: Option<Option<String>>,
    /// Header values (case-insensitive names): the field's lines joined with `, `;
    /// `null`: absent.
    #[serde(default)]
    pub headers: BTreeMap<String, Option<String>>,
    /// The exact list of a field's lines, in order (`[]`: absent).
    #[serde(default)]
    pub header_values: BTreeMap<String, Vec<String>>,
    /// Exact body (a Latin-1 string as `raw`).
    #[serde(default)]
    pub body: Option<String>,
    /// The interim (1xx) responses before it, in order; the count must match.
    #[serde(default)]
    pub interim: Option<Vec<InterimExpect>>,
}

/// One expected interim (1xx) response.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct InterimExpect {
    /// Status code.
    pub status: u16,
    /// Header values as in [`ResponseExpect::headers`].
    #[serde(default)]
    pub headers: BTreeMap<String, Option<String>>,
}

/// How a connection is after its last response.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConnExpect {
    /// The router closed it in order (FIN).
    Eof,
    /// The router reset it (RST).
    Reset,
    /// Still open after the linger.
    Open,
    /// HTTP/2: the stream ended with `RST_STREAM` (its code is in the trace).
    StreamReset,
    /// HTTP/2: the stream ended whole, and a `GOAWAY` had arrived (its code is in the
    /// trace), or the stream was refused by it.
    Goaway,
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
    /// Send SIGHUP: the router re-reads its TLS files (spec: certificate reload).
    Sighup,
    /// Replace the router's `--tls-cert`/`--tls-key` files with the run's second
    /// certificate (`next`), each file renamed over the old one.
    SwapTlsCert,
    /// Replace the router's `--tls-cert`/`--tls-key` files with text that is not PEM (a
    /// reload that must fail and keep the old certificate).
    BreakTlsCert,
    /// Replace the router's `--client-ca` file with the run's second CA (`next_ca`),
    /// renamed over; after a `sighup` the router accepts `client_cert: next_ca` and
    /// refuses `good`.
    SwapClientCa,
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
    /// A metric series `name{label="v",...}`; an absent series is its own value (it never
    /// equals 0 or reaches `at_least`).
    #[serde(default)]
    pub metric: Option<String>,
    /// Number of hellos the control plane has received.
    #[serde(default)]
    pub hellos: Option<u32>,
    /// Number of live control-plane connections.
    #[serde(default)]
    pub cp_connections: Option<u32>,
    /// At least this many control-plane connections have ended (after their WebSocket
    /// handshake) since the run began: a count that only grows, for waits on a connection
    /// ending that a later connection may follow within milliseconds.
    #[serde(default)]
    pub cp_closed: Option<u32>,
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
    /// A timing window the condition must be met in, measured from the end of an earlier
    /// step (where the contract states a time: breaker `open_ms`, probe interval,
    /// reconnect backoff). Met outside it is a failed expectation.
    #[serde(default)]
    pub window: Option<Window>,
}

/// When a `wait` condition may be met: between `min_ms` and `max_ms` after the end of
/// step `after_step` (1-based, as reports number steps).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// The step whose end starts the clock (1-based).
    pub after_step: usize,
    /// Lower bound, milliseconds.
    pub min_ms: u64,
    /// Upper bound, milliseconds.
    pub max_ms: u64,
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
    /// Every request received (other than health checks) since the scenario's start or
    /// the previous `expect_upstream` of this upstream with `received`, in arrival order;
    /// the count must match.
    #[serde(default)]
    pub received: Option<Vec<ReceivedExpect>>,
}

/// One request an upstream received. Every member is optional.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ReceivedExpect {
    /// Method.
    #[serde(default)]
    pub method: Option<String>,
    /// Request target, byte for byte as it arrived.
    #[serde(default)]
    pub target: Option<String>,
    /// `HTTP/1.0` or `HTTP/1.1`.
    #[serde(default)]
    pub version: Option<String>,
    /// Header values (case-insensitive names): the field's lines joined with `, `;
    /// `null`: absent.
    #[serde(default)]
    pub headers: BTreeMap<String, Option<String>>,
    /// Exact body (a Latin-1 string).
    #[serde(default)]
    pub body: Option<String>,
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

