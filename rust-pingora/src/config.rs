//! Config document model and validation (docs/spec.md section 2).
//!
//! [`parse_and_validate`] takes the raw bytes of a config document and returns either a
//! typed [`Config`] or the first [`Rejection`] in the exact order of section 2
//! (`too_large`, `malformed_json`, the depth-first structural pass, references, chains).
//! The control-plane-only `stale_version` rule lives in [`check_version`].
//! The endpoint grammar is implemented by hand ([`parse_endpoint`]) rather than through a
//! URL library, as the spec requires.

use crate::balance::SelectionKind;
use serde_json::{Map, Number, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv6Addr;

/// Largest accepted document, in bytes (1 MiB).
pub const MAX_DOCUMENT_BYTES: usize = 1_048_576;
/// Longest allowed fallback chain, in placements.
pub const MAX_CHAIN: usize = 8;
/// Largest allowed `version` (2^53 - 1).
pub const MAX_VERSION: u64 = 9_007_199_254_740_991;

/// The rejection vocabulary of a config document (docs/spec.md section 2, "Validation",
/// and section 6 for `internal_error`): the `code` of a nack and the `code` label of
/// `router_config_rejected_total`. The wire names ([`Code::as_str`]) are the contract and
/// never change; the match is exhaustive, so a new code cannot exist without its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The document is over [`MAX_DOCUMENT_BYTES`] (or the frame over the frame limit).
    TooLarge,
    /// Not JSON, not a JSON object, or a frame that is not `{"type":"config","config":...}`.
    MalformedJson,
    /// A member the schema does not know (the smallest such key in byte order).
    UnknownField,
    /// A required member is absent.
    MissingField,
    /// A value of the wrong type or outside its range.
    InvalidValue,
    /// An `endpoint` that is not `scheme://host:port[/]`.
    InvalidEndpoint,
    /// A route or a fallback names a placement that does not exist.
    UnknownPlacement,
    /// A fallback chain loops or is longer than [`MAX_CHAIN`].
    FallbackCycle,
    /// The control plane's version rule ([`check_version`]): not above the current one.
    StaleVersion,
    /// The router could not apply a valid config (writing the last-known-good file failed);
    /// the only nack code that is not a validation result (spec section 6).
    InternalError,
}

impl Code {
    /// Every code: the validation codes in the order of spec section 2, then
    /// `stale_version` and `internal_error`.
    pub const ALL: [Code; 10] = [
        Code::TooLarge,
        Code::MalformedJson,
        Code::UnknownField,
        Code::MissingField,
        Code::InvalidValue,
        Code::InvalidEndpoint,
        Code::UnknownPlacement,
        Code::FallbackCycle,
        Code::StaleVersion,
        Code::InternalError,
    ];

    /// The wire name, e.g. `"malformed_json"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::TooLarge => "too_large",
            Code::MalformedJson => "malformed_json",
            Code::UnknownField => "unknown_field",
            Code::MissingField => "missing_field",
            Code::InvalidValue => "invalid_value",
            Code::InvalidEndpoint => "invalid_endpoint",
            Code::UnknownPlacement => "unknown_placement",
            Code::FallbackCycle => "fallback_cycle",
            Code::StaleVersion => "stale_version",
            Code::InternalError => "internal_error",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serialises as the wire name (the nack's `error.code`).
impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One rejection: a stable `code`, a JSON Pointer `path` (RFC 6901) and free text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The rejection's code (spec section 2).
    pub code: Code,
    /// JSON Pointer to the offending field; `""` for the document itself.
    pub path: String,
    /// Human-readable explanation; not compared by tests.
    pub message: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {:?}: {}", self.code, self.path, self.message)
    }
}

impl Rejection {
    /// A rejection with `code` at JSON Pointer `path`, explained by `message`.
    pub fn new(code: Code, path: impl Into<String>, message: impl Into<String>) -> Rejection {
        Rejection { code, path: path.into(), message: message.into() }
    }
}

fn rej(code: Code, path: impl Into<String>, message: impl Into<String>) -> Rejection {
    Rejection::new(code, path, message)
}

/// Escape one JSON Pointer reference token (RFC 6901 section 3): `~` -> `~0`, `/` -> `~1`.
pub fn escape_pointer_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// A parsed endpoint origin (`scheme://host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `true` for `https://`.
    pub tls: bool,
    /// Host as written, without brackets for IPv6.
    pub host: String,
    /// Port, 1..=65535.
    pub port: u16,
}

impl Endpoint {
    /// `host:port` as sent in `Host` (IPv6 hosts bracketed).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parse an endpoint per the grammar of spec section 2 (`SCHEME "://" HOST ":" PORT ["/"]`).
/// Returns `None` when the string does not match as a whole.
pub fn parse_endpoint(s: &str) -> Option<Endpoint> {
    let (tls, rest) = if let Some(r) = s.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = s.strip_prefix("https://") {
        (true, r)
    } else {
        return None;
    };
    let (host, after_host) = if let Some(r) = rest.strip_prefix('[') {
        let end = r.find(']')?;
        let inner = &r[..end];
        // only plain IPv6 literals: no zone identifiers
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return None;
        }
        inner.parse::<Ipv6Addr>().ok()?;
        (inner.to_string(), &r[end + 1..])
    } else {
        let end = rest.find(':')?;
        let h = &rest[..end];
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
            return None;
        }
        let first = h.as_bytes()[0];
        let last = h.as_bytes()[h.len() - 1];
        if first == b'.' || first == b'-' || last == b'.' || last == b'-' {
            return None;
        }
        (h.to_string(), &rest[end..])
    };
    let port_part = after_host.strip_prefix(':')?;
    let port_str = port_part.strip_suffix('/').unwrap_or(port_part);
    if port_str.is_empty()
        || port_str.len() > 5
        || port_str.starts_with('0')
        || !port_str.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut v: u64 = 0;
    for b in port_str.bytes() {
        v = v.saturating_mul(10).saturating_add((b - b'0') as u64);
    }
    if !(1..=65535).contains(&v) {
        return None;
    }
    Some(Endpoint { tls, host, port: v as u16 })
}

/// `health_check` block (spec section 4). Times in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckCfg {
    /// Probe path, starts with `/`.
    pub path: String,
    /// Time between probes, ms.
    pub interval_ms: u64,
    /// Whole-probe deadline, ms.
    pub timeout_ms: u64,
    /// Consecutive failures that mark the endpoint unhealthy.
    pub unhealthy_threshold: u32,
    /// Consecutive successes that mark it healthy again.
    pub healthy_threshold: u32,
}

/// `circuit_breaker` block (spec section 5). Times in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerCfg {
    /// Consecutive failures that open a closed breaker.
    pub failure_threshold: u32,
    /// Time from opening to half-open, ms.
    pub open_ms: u64,
    /// Half-open permits outstanding at once.
    pub half_open_max_requests: u32,
    /// Consecutive half-open successes that close it.
    pub success_threshold: u32,
}

/// `tls` block: file paths of PEM material and the verified/SNI name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsCfg {
    /// PEM file of trusted CAs; `None`: the system roots.
    pub ca_file: Option<String>,
    /// SNI and verified name; `None` or empty: the endpoint host.
    pub server_name: Option<String>,
    /// PEM client certificate chain.
    pub client_cert_file: Option<String>,
    /// PEM client private key.
    pub client_key_file: Option<String>,
}

/// Most entries of `endpoints` (spec section 2).
pub const MAX_ENDPOINTS: usize = 256;
/// Largest `weight` of an `endpoints` entry.
pub const MAX_WEIGHT: u64 = 1000;

/// One endpoint of a placement: an `endpoints` entry, or the single `endpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointCfg {
    /// The url exactly as written (the `endpoint` label of metrics and admin).
    pub url: String,
    /// The parsed url.
    pub origin: Endpoint,
    /// Relative weight, 1..=1000 (1 for the single `endpoint` form).
    pub weight: u32,
}

impl Endpoint {
    /// "The same endpoint" of spec section 2 *Endpoints*: equal scheme, host compared
    /// ASCII case-insensitively, equal port (the trailing `/` is not kept by the parser).
    pub fn same_as(&self, other: &Endpoint) -> bool {
        self.tls == other.tls && self.port == other.port && self.host.eq_ignore_ascii_case(&other.host)
    }
}

/// A placement's `hash_key` (spec section 3, *Endpoint selection*).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// `routing_key`: the `X-Routing-Key` value.
    RoutingKey,
    /// `path`: the request target's path as received, without the query.
    Path,
    /// `header:<name>`: the first value of that field (name lower-cased), `""` if absent.
    Header(http::HeaderName),
}

impl HashKey {
    /// Parse the `hash_key` grammar: `routing_key`, `path` or `header:<token>` (RFC 9110
    /// section 5.6.2 token); `None` otherwise.
    pub fn parse(s: &str) -> Option<HashKey> {
        match s {
            "routing_key" => Some(HashKey::RoutingKey),
            "path" => Some(HashKey::Path),
            _ => {
                let name = s.strip_prefix("header:")?;
                let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
                if name.is_empty() || !name.bytes().all(tchar) {
                    return None;
                }
                http::HeaderName::from_bytes(name.as_bytes()).ok().map(HashKey::Header)
            }
        }
    }
}

/// One placement of a validated config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Placement id (the key in `placements`).
    pub id: String,
    /// The endpoints in config order (1..=256; the `endpoint` form gives one of weight 1).
    pub endpoints: Vec<EndpointCfg>,
    /// How a request picks among the endpoints.
    pub selection: SelectionKind,
    /// With `consistent_hash` only: what is hashed.
    pub hash_key: Option<HashKey>,
    /// Next placement of the chain.
    pub fallback: Option<String>,
    /// Requests in flight at most.
    pub max_concurrency: u32,
    /// TCP connect (and TLS handshake) timeout, ms.
    pub connect_ms: u64,
    /// Response-header deadline after the request was written, ms.
    pub request_ms: u64,
    /// Active health check; `None`: always healthy.
    pub health_check: Option<HealthCheckCfg>,
    /// Breaker; `None`: always admits.
    pub circuit_breaker: Option<BreakerCfg>,
    /// TLS settings of an `https://` placement (all its endpoints).
    pub tls: Option<TlsCfg>,
    /// The upstream HTTP version (`protocol`; `h2` only on `https://`).
    pub protocol: UpstreamProtocol,
}

/// A placement's `protocol` (docs/spec.md section 2; section 3 *Upstream HTTP/2*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UpstreamProtocol {
    /// `"http/1.1"` (also the default when absent).
    #[default]
    Http11,
    /// `"h2"`: ALPN offers `h2` alone (RFC 9113 section 3.2); `https://` endpoints only.
    H2,
}

impl Placement {
    /// `true` when the placement's endpoints are `https://` (all share entry 0's scheme).
    pub fn is_tls(&self) -> bool {
        self.endpoints[0].origin.tls
    }
}

/// A validated config document.
#[derive(Debug, Clone)]
pub struct Config {
    /// Document version, 0..=2^53-1.
    pub version: u64,
    /// routing key -> placement id
    pub routes: HashMap<String, String>,
    /// placement id -> placement, in byte order of id
    pub placements: BTreeMap<String, Placement>,
    /// The parsed document, used for "same content" comparisons (order-insensitive).
    pub value: Value,
}

impl Config {
    /// Two configs have the same content when their parsed JSON values are equal.
    pub fn same_content(&self, other: &Config) -> bool {
        self.value == other.value
    }
}

/// Outcome of comparing an incoming valid config with the current one (spec section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionCheck {
    /// Higher version (or no current config): apply it.
    Apply,
    /// Equal version and same content: ack again, change nothing.
    Reack,
}

/// The control-plane-only `stale_version` rule.
pub fn check_version(current: Option<&Config>, new: &Config) -> Result<VersionCheck, Rejection> {
    match current {
        None => Ok(VersionCheck::Apply),
        Some(cur) if new.version > cur.version => Ok(VersionCheck::Apply),
        Some(cur) if new.version == cur.version && new.same_content(cur) => Ok(VersionCheck::Reack),
        Some(cur) => Err(rej(
            Code::StaleVersion,
            "/version",
            format!("version {} is stale (current {})", new.version, cur.version),
        )),
    }
}

fn as_int(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => int_of(n),
        _ => None,
    }
}

fn int_of(n: &Number) -> Option<i128> {
    if let Some(u) = n.as_u64() {
        Some(u as i128)
    } else {
        n.as_i64().map(|i| i as i128)
    }
}

fn check_int(v: &Value, path: &str, lo: i128, hi: i128) -> Result<u64, Rejection> {
    match as_int(v) {
        Some(i) if i >= lo && i <= hi => Ok(i as u64),
        Some(i) => Err(rej(Code::InvalidValue, path, format!("{i} is outside {lo}..={hi}"))),
        None => Err(rej(Code::InvalidValue, path, "expected an integer")),
    }
}

fn check_obj<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, Rejection> {
    v.as_object().ok_or_else(|| rej(Code::InvalidValue, path, "expected an object"))
}

fn check_str<'a>(v: &'a Value, path: &str) -> Result<&'a str, Rejection> {
    v.as_str().ok_or_else(|| rej(Code::InvalidValue, path, "expected a string"))
}

/// Unknown keys first (smallest in byte order), then missing required keys (in table order).
fn check_keys(
    obj: &Map<String, Value>,
    path: &str,
    known: &[&str],
    required: &[&str],
) -> Result<(), Rejection> {
    let unknown = obj.keys().filter(|k| !known.contains(&k.as_str())).min();
    if let Some(k) = unknown {
        return Err(rej(
            Code::UnknownField,
            format!("{path}/{}", escape_pointer_token(k)),
            format!("unknown field {k:?}"),
        ));
    }
    for r in required {
        if !obj.contains_key(*r) {
            return Err(rej(Code::MissingField, format!("{path}/{r}"), format!("missing field {r:?}")));
        }
    }
    Ok(())
}

fn valid_placement_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Parse and fully validate a config document from its raw bytes (spec section 2, order
/// steps 1-4). `stale_version` is not checked here; see [`check_version`].
pub fn parse_and_validate(raw: &[u8]) -> Result<Config, Rejection> {
    if raw.len() > MAX_DOCUMENT_BYTES {
        return Err(rej(Code::TooLarge, "", format!("document is {} bytes, over 1 MiB", raw.len())));
    }
    let normalised;
    let text = if raw.windows(2).any(|w| w == b"-0") {
        normalised = normalise_negative_zero(raw);
        &normalised[..]
    } else {
        raw
    };
    let value: Value = serde_json::from_slice(text)
        .map_err(|e| rej(Code::MalformedJson, "", format!("not JSON: {e}")))?;
    validate_value(value)
}

/// `-0` written without fraction or exponent is the integer 0, but serde_json parses it
/// as the float `-0.0`, indistinguishable from `-0.0`. Rewrite each such token outside
/// strings to ` 0` (same length, same value) before parsing.
fn normalise_negative_zero(raw: &[u8]) -> Vec<u8> {
    let mut out = raw.to_vec();
    let mut in_str = false;
    let mut esc = false;
    let mut i = 0;
    while i < out.len() {
        let b = out[i];
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else if b == b'"' {
            in_str = true;
        } else if b == b'-' && out.get(i + 1) == Some(&b'0') {
            let next = out.get(i + 2).copied();
            if !matches!(next, Some(b'.' | b'e' | b'E' | b'0'..=b'9')) {
                out[i] = b' ';
            }
        }
        i += 1;
    }
    out
}

/// Validate an already-parsed document (steps 2-4 of the order).
pub fn validate_value(value: Value) -> Result<Config, Rejection> {
    let top = value
        .as_object()
        .ok_or_else(|| rej(Code::MalformedJson, "", "the document is not a JSON object"))?;
    check_keys(top, "", &["version", "routes", "placements"], &["version", "routes", "placements"])?;
    let version = check_int(&top["version"], "/version", 0, MAX_VERSION as i128)?;

    // routes
    let routes_obj = check_obj(&top["routes"], "/routes")?;
    let mut route_keys: Vec<&String> = routes_obj.keys().collect();
    route_keys.sort();
    let mut routes = HashMap::with_capacity(route_keys.len());
    for k in &route_keys {
        let path = format!("/routes/{}", escape_pointer_token(k));
        if k.is_empty() || k.len() > 256 {
            return Err(rej(Code::InvalidValue, path, "routing key must be 1..=256 bytes"));
        }
        let v = check_str(&routes_obj[k.as_str()], &path)?;
        routes.insert((*k).clone(), v.to_string());
    }

    // placements
    let pl_obj = check_obj(&top["placements"], "/placements")?;
    let mut ids: Vec<&String> = pl_obj.keys().collect();
    ids.sort();
    let mut placements = BTreeMap::new();
    for id in &ids {
        let path = format!("/placements/{}", escape_pointer_token(id));
        if !valid_placement_id(id) {
            return Err(rej(Code::InvalidValue, path, "placement id must match ^[A-Za-z0-9._-]{1,64}$"));
        }
        let p = validate_placement(id, &pl_obj[id.as_str()], &path)?;
        placements.insert((*id).clone(), p);
    }

    // references
    for k in &route_keys {
        let target = &routes[k.as_str()];
        if !placements.contains_key(target) {
            return Err(rej(
                Code::UnknownPlacement,
                format!("/routes/{}", escape_pointer_token(k)),
                format!("route names unknown placement {target:?}"),
            ));
        }
    }
    for (id, p) in &placements {
        if let Some(f) = &p.fallback {
            if !placements.contains_key(f) {
                return Err(rej(
                    Code::UnknownPlacement,
                    format!("/placements/{}/fallback", escape_pointer_token(id)),
                    format!("fallback names unknown placement {f:?}"),
                ));
            }
        }
    }

    // chains
    for id in placements.keys() {
        let mut seen: Vec<&str> = vec![id.as_str()];
        let mut cur = id.as_str();
        while let Some(next) = placements[cur].fallback.as_deref() {
            if seen.contains(&next) || seen.len() >= MAX_CHAIN {
                return Err(rej(
                    Code::FallbackCycle,
                    format!("/placements/{}/fallback", escape_pointer_token(id)),
                    "fallback chain loops or is longer than 8 placements",
                ));
            }
            seen.push(next);
            cur = next;
        }
    }

    Ok(Config { version, routes, placements, value })
}

fn validate_placement(id: &str, v: &Value, path: &str) -> Result<Placement, Rejection> {
    let obj = check_obj(v, path)?;
    const KNOWN: &[&str] = &[
        "endpoint",
        "endpoints",
        "selection",
        "hash_key",
        "fallback",
        "max_concurrency",
        "timeouts",
        "health_check",
        "circuit_breaker",
        "tls",
        "protocol",
    ];
    // Missing keys in table order; neither `endpoint` nor `endpoints` is reported at
    // `endpoint`'s place.
    let required: &[&str] = if obj.contains_key("endpoints") {
        &["max_concurrency", "timeouts"]
    } else {
        &["endpoint", "max_concurrency", "timeouts"]
    };
    check_keys(obj, path, KNOWN, required)?;

    let mut endpoints = Vec::new();
    if let Some(v) = obj.get("endpoint") {
        let ep_path = format!("{path}/endpoint");
        let url = check_str(v, &ep_path)?;
        let origin = parse_endpoint(url)
            .ok_or_else(|| rej(Code::InvalidEndpoint, ep_path.clone(), format!("{url:?} is not scheme://host:port")))?;
        endpoints.push(EndpointCfg { url: url.to_string(), origin, weight: 1 });
    }
    if let Some(v) = obj.get("endpoints") {
        endpoints = validate_endpoints(v, &format!("{path}/endpoints"), !endpoints.is_empty())?;
    }

    let selection = match obj.get("selection") {
        None => SelectionKind::default(),
        Some(v) => {
            let sp = format!("{path}/selection");
            let name = check_str(v, &sp)?;
            SelectionKind::parse(name).ok_or_else(|| rej(Code::InvalidValue, sp, format!("unknown selection {name:?}")))?
        }
    };
    let hp = format!("{path}/hash_key");
    let hash_key = match (obj.get("hash_key"), selection) {
        (None, SelectionKind::ConsistentHash) => {
            return Err(rej(Code::MissingField, hp, "consistent_hash needs hash_key"));
        }
        (None, _) => None,
        (Some(_), sel) if sel != SelectionKind::ConsistentHash => {
            return Err(rej(Code::InvalidValue, hp, "hash_key is only allowed with consistent_hash"));
        }
        (Some(v), _) => {
            let text = check_str(v, &hp)?;
            Some(HashKey::parse(text).ok_or_else(|| {
                rej(Code::InvalidValue, hp.clone(), format!("{text:?} is not routing_key, path or header:<name>"))
            })?)
        }
    };

    let fallback = match obj.get("fallback") {
        Some(f) => Some(check_str(f, &format!("{path}/fallback"))?.to_string()),
        None => None,
    };
    let max_concurrency =
        check_int(&obj["max_concurrency"], &format!("{path}/max_concurrency"), 1, 100_000)? as u32;

    let t_path = format!("{path}/timeouts");
    let t = check_obj(&obj["timeouts"], &t_path)?;
    check_keys(t, &t_path, &["connect_ms", "request_ms"], &["connect_ms", "request_ms"])?;
    let connect_ms = check_int(&t["connect_ms"], &format!("{t_path}/connect_ms"), 1, 60_000)?;
    let request_ms = check_int(&t["request_ms"], &format!("{t_path}/request_ms"), 1, 600_000)?;

    let health_check = match obj.get("health_check") {
        None => None,
        Some(hv) => {
            let hp = format!("{path}/health_check");
            let h = check_obj(hv, &hp)?;
            const HK: &[&str] =
                &["path", "interval_ms", "timeout_ms", "unhealthy_threshold", "healthy_threshold"];
            check_keys(h, &hp, HK, HK)?;
            let pp = format!("{hp}/path");
            let hpath = check_str(&h["path"], &pp)?;
            if !hpath.starts_with('/') || hpath.len() > 1024 {
                return Err(rej(Code::InvalidValue, pp, "path must start with / and be 1..=1024 bytes"));
            }
            Some(HealthCheckCfg {
                path: hpath.to_string(),
                interval_ms: check_int(&h["interval_ms"], &format!("{hp}/interval_ms"), 10, 3_600_000)?,
                timeout_ms: check_int(&h["timeout_ms"], &format!("{hp}/timeout_ms"), 1, 60_000)?,
                unhealthy_threshold: check_int(
                    &h["unhealthy_threshold"],
                    &format!("{hp}/unhealthy_threshold"),
                    1,
                    100,
                )? as u32,
                healthy_threshold: check_int(
                    &h["healthy_threshold"],
                    &format!("{hp}/healthy_threshold"),
                    1,
                    100,
                )? as u32,
            })
        }
    };

    let circuit_breaker = match obj.get("circuit_breaker") {
        None => None,
        Some(bv) => {
            let bp = format!("{path}/circuit_breaker");
            let b = check_obj(bv, &bp)?;
            const BK: &[&str] =
                &["failure_threshold", "open_ms", "half_open_max_requests", "success_threshold"];
            check_keys(b, &bp, BK, BK)?;
            Some(BreakerCfg {
                failure_threshold: check_int(
                    &b["failure_threshold"],
                    &format!("{bp}/failure_threshold"),
                    1,
                    1000,
                )? as u32,
                open_ms: check_int(&b["open_ms"], &format!("{bp}/open_ms"), 1, 3_600_000)?,
                half_open_max_requests: check_int(
                    &b["half_open_max_requests"],
                    &format!("{bp}/half_open_max_requests"),
                    1,
                    1000,
                )? as u32,
                success_threshold: check_int(
                    &b["success_threshold"],
                    &format!("{bp}/success_threshold"),
                    1,
                    1000,
                )? as u32,
            })
        }
    };

    let tls = match obj.get("tls") {
        None => None,
        Some(tv) => {
            let tp = format!("{path}/tls");
            let t = check_obj(tv, &tp)?;
            const TK: &[&str] = &["ca_file", "server_name", "client_cert_file", "client_key_file"];
            check_keys(t, &tp, TK, &[])?;
            let mut cfg = TlsCfg::default();
            for (k, slot) in [
                ("ca_file", &mut cfg.ca_file),
                ("server_name", &mut cfg.server_name),
                ("client_cert_file", &mut cfg.client_cert_file),
                ("client_key_file", &mut cfg.client_key_file),
            ] {
                if let Some(x) = t.get(k) {
                    *slot = Some(check_str(x, &format!("{tp}/{k}"))?.to_string());
                }
            }
            if !endpoints[0].origin.tls {
                return Err(rej(Code::InvalidValue, tp, "tls is only allowed on https:// endpoints"));
            }
            match (&cfg.client_cert_file, &cfg.client_key_file) {
                (Some(_), None) => {
                    return Err(rej(Code::MissingField, format!("{tp}/client_key_file"), "client_cert_file needs client_key_file"))
                }
                (None, Some(_)) => {
                    return Err(rej(Code::MissingField, format!("{tp}/client_cert_file"), "client_key_file needs client_cert_file"))
                }
                _ => {}
            }
            Some(cfg)
        }
    };

    // `protocol` after `tls` (spec section 2, the Order).
    let protocol = match obj.get("protocol") {
        None => UpstreamProtocol::Http11,
        Some(pv) => {
            let pp = format!("{path}/protocol");
            match pv.as_str() {
                Some("http/1.1") => UpstreamProtocol::Http11,
                Some("h2") if endpoints[0].origin.tls => UpstreamProtocol::H2,
                Some("h2") => return Err(rej(Code::InvalidValue, pp, "protocol h2 is only allowed on https:// endpoints")),
                _ => return Err(rej(Code::InvalidValue, pp, "expected \"http/1.1\" or \"h2\"")),
            }
        }
    };

    Ok(Placement {
        id: id.to_string(),
        endpoints,
        selection,
        hash_key,
        fallback,
        max_concurrency,
        connect_ms,
        request_ms,
        health_check,
        circuit_breaker,
        tls,
        protocol,
    })
}

/// `endpoints` (spec section 2 *Endpoints* and the Order's walk): presence together with
/// `endpoint`, type and length, then each entry fully in index order (type, keys, `url`,
/// `weight`, same endpoint as an earlier entry, scheme of entry 0).
fn validate_endpoints(v: &Value, path: &str, with_endpoint: bool) -> Result<Vec<EndpointCfg>, Rejection> {
    if with_endpoint {
        return Err(rej(Code::InvalidValue, path, "endpoint and endpoints are exclusive"));
    }
    let arr = v.as_array().ok_or_else(|| rej(Code::InvalidValue, path, "expected an array"))?;
    if arr.is_empty() || arr.len() > MAX_ENDPOINTS {
        return Err(rej(Code::InvalidValue, path, format!("{} entries, expected 1..=256", arr.len())));
    }
    let mut out: Vec<EndpointCfg> = Vec::with_capacity(arr.len());
    for (i, e) in arr.iter().enumerate() {
        let ep = format!("{path}/{i}");
        let obj = check_obj(e, &ep)?;
        check_keys(obj, &ep, &["url", "weight"], &["url"])?;
        let up = format!("{ep}/url");
        let url = check_str(&obj["url"], &up)?;
        let origin = parse_endpoint(url)
            .ok_or_else(|| rej(Code::InvalidEndpoint, up.clone(), format!("{url:?} is not scheme://host:port")))?;
        let weight = match obj.get("weight") {
            None => 1,
            Some(w) => check_int(w, &format!("{ep}/weight"), 1, MAX_WEIGHT as i128)? as u32,
        };
        if out.iter().any(|o| o.origin.same_as(&origin)) {
            return Err(rej(Code::InvalidValue, ep, format!("{url:?} repeats an earlier endpoint")));
        }
        if let Some(first) = out.first() {
            if first.origin.tls != origin.tls {
                return Err(rej(Code::InvalidValue, ep, "all endpoints of a placement share entry 0's scheme"));
            }
        }
        out.push(EndpointCfg { url: url.to_string(), origin, weight });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_grammar() {
        let ok = [
            "http://127.0.0.1:9001",
            "https://api.internal:443/",
            "http://[::1]:80",
            "http://a-b.c:65535",
        ];
        for s in ok {
            assert!(parse_endpoint(s).is_some(), "{s}");
        }
        let bad = [
            "HTTP://a:1",
            "http://a",
            "http://a:0",
            "http://a:65536",
            "http://u@a:1",
            "http://a:1/x",
            "http://a:1?q",
            "http://a:1#f",
            "http://-a:1",
            "http://a.:1",
            "http://[::1%eth0]:1",
            "http://[zz]:1",
            "ftp://a:1",
            "http://a:1//",
            "http://:1",
            "http://a:01",
            "http://a:000080",
        ];
        for s in bad {
            assert!(parse_endpoint(s).is_none(), "{s}");
        }
        assert_eq!(parse_endpoint("http://[::1]:8").unwrap().authority(), "[::1]:8");
    }

    #[test]
    fn float_is_not_integer() {
        let doc = br#"{"version":5.0,"routes":{},"placements":{}}"#;
        let e = parse_and_validate(doc).unwrap_err();
        assert_eq!((e.code, e.path.as_str()), (Code::InvalidValue, "/version"));
        let e = parse_and_validate(br#"{"version":-0.0,"routes":{},"placements":{}}"#).unwrap_err();
        assert_eq!((e.code, e.path.as_str()), (Code::InvalidValue, "/version"));
        let c = parse_and_validate(br#"{"version":-0,"routes":{"-0":"x"},"placements":{"x":{"endpoint":"http://a:1","max_concurrency":1,"timeouts":{"connect_ms":1,"request_ms":1}}}}"#).unwrap();
        assert_eq!(c.version, 0);
        assert!(c.routes.contains_key("-0"), "strings untouched");
    }

    #[test]
    fn codes_have_distinct_wire_names() {
        let names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "too_large",
                "malformed_json",
                "unknown_field",
                "missing_field",
                "invalid_value",
                "invalid_endpoint",
                "unknown_placement",
                "fallback_cycle",
                "stale_version",
                "internal_error",
            ]
        );
        assert_eq!(serde_json::to_string(&Code::StaleVersion).unwrap(), "\"stale_version\"");
        assert_eq!(Code::FallbackCycle.to_string(), "fallback_cycle");
    }

    fn placement_doc(p: &str) -> Vec<u8> {
        format!(r#"{{"version":1,"routes":{{}},"placements":{{"p":{{{p},"max_concurrency":1,"timeouts":{{"connect_ms":1,"request_ms":1}}}}}}}}"#)
            .into_bytes()
    }

    fn rejection(p: &str) -> (Code, String) {
        let e = parse_and_validate(&placement_doc(p)).unwrap_err();
        (e.code, e.path)
    }

    #[test]
    fn endpoints_selection_hash_key_parse() {
        let c = parse_and_validate(&placement_doc(
            r#""endpoints":[{"url":"http://127.0.0.1:1","weight":3},{"url":"http://127.0.0.1:2"}],"selection":"consistent_hash","hash_key":"header:X-User""#,
        ))
        .unwrap();
        let p = &c.placements["p"];
        assert_eq!(p.endpoints.len(), 2);
        assert_eq!((p.endpoints[0].weight, p.endpoints[1].weight), (3, 1));
        assert_eq!(p.selection, SelectionKind::ConsistentHash);
        assert_eq!(p.hash_key, Some(HashKey::Header(http::HeaderName::from_static("x-user"))));
        // the single-endpoint form is one endpoint of weight 1, round robin
        let c = parse_and_validate(&placement_doc(r#""endpoint":"https://h:1/""#)).unwrap();
        let p = &c.placements["p"];
        assert_eq!((p.endpoints.len(), p.endpoints[0].weight, p.endpoints[0].url.as_str()), (1, 1, "https://h:1/"));
        assert_eq!((p.selection, p.is_tls()), (SelectionKind::RoundRobin, true));
    }

    #[test]
    fn endpoints_rejections_codes_and_paths() {
        let iv = Code::InvalidValue;
        let cases: &[(&str, Code, &str)] = &[
            (r#""endpoint":"http://a:1","endpoints":[{"url":"http://a:2"}]"#, iv, "/placements/p/endpoints"),
            (r#""endpoint":1,"endpoints":[]"#, iv, "/placements/p/endpoint"),
            (r#""endpoints":[]"#, iv, "/placements/p/endpoints"),
            (r#""endpoints":{}"#, iv, "/placements/p/endpoints"),
            (r#""endpoints":[null]"#, iv, "/placements/p/endpoints/0"),
            (r#""endpoints":[{"weight":1}]"#, Code::MissingField, "/placements/p/endpoints/0/url"),
            (r#""endpoints":[{"url":"http://a:1","x":1}]"#, Code::UnknownField, "/placements/p/endpoints/0/x"),
            (r#""endpoints":[{"url":"http://a"}]"#, Code::InvalidEndpoint, "/placements/p/endpoints/0/url"),
            (r#""endpoints":[{"url":"http://a:1","weight":0}]"#, iv, "/placements/p/endpoints/0/weight"),
            (r#""endpoints":[{"url":"http://a:1","weight":1001}]"#, iv, "/placements/p/endpoints/0/weight"),
            (r#""endpoints":[{"url":"http://a:1","weight":1.5}]"#, iv, "/placements/p/endpoints/0/weight"),
            (r#""endpoints":[{"url":"http://a:1"},{"url":"http://A:1/"}]"#, iv, "/placements/p/endpoints/1"),
            (r#""endpoints":[{"url":"http://a:1"},{"url":"https://b:1"}]"#, iv, "/placements/p/endpoints/1"),
            (r#""endpoints":[{"url":"http://a:1"}],"selection":"least_conn""#, iv, "/placements/p/selection"),
            (r#""endpoints":[{"url":"http://a:1"}],"selection":"consistent_hash""#, Code::MissingField, "/placements/p/hash_key"),
            (r#""endpoints":[{"url":"http://a:1"}],"hash_key":"path""#, iv, "/placements/p/hash_key"),
            (r#""endpoints":[{"url":"http://a:1"}],"selection":"consistent_hash","hash_key":"header:""#, iv, "/placements/p/hash_key"),
            (r#""endpoints":[{"url":"http://a:1"}],"selection":"consistent_hash","hash_key":"header:a b""#, iv, "/placements/p/hash_key"),
            (r#""endpoints":[{"url":"http://a:1"}],"selection":"consistent_hash","hash_key":"Path""#, iv, "/placements/p/hash_key"),
            (r#""endpoints":[{"url":"http://a:1"}],"tls":{}"#, iv, "/placements/p/tls"),
        ];
        for (p, code, path) in cases {
            assert_eq!(rejection(p), (*code, path.to_string()), "{p}");
        }
        let many: Vec<String> = (1..=257).map(|i| format!(r#"{{"url":"http://a:{i}"}}"#)).collect();
        assert_eq!(rejection(&format!(r#""endpoints":[{}]"#, many.join(","))), (iv, "/placements/p/endpoints".into()));
        assert!(parse_and_validate(&placement_doc(&format!(r#""endpoints":[{}]"#, many[..256].join(",")))).is_ok());
        // neither form: today's code and path
        let doc = br#"{"version":1,"routes":{},"placements":{"p":{"max_concurrency":1,"timeouts":{"connect_ms":1,"request_ms":1}}}}"#;
        let e = parse_and_validate(doc).unwrap_err();
        assert_eq!((e.code, e.path.as_str()), (Code::MissingField, "/placements/p/endpoint"));
    }
}
