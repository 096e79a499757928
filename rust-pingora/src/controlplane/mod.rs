//! Control plane (docs/spec.md section 6): the WebSocket client ([`client::ControlPlane`]),
//! the frames it answers ([`handle_frame`] → [`Reply`]), the last-known-good file
//! ([`lkg`]) and the reconnect backoff ([`backoff`]).
//!
//! An accepted config is validated, compared with the current version, written to
//! `<state-dir>/last-known-good.json` and only then installed in the [`Store`] (which
//! starts and stops the health checkers) and acked. A rejected config changes nothing.

pub mod backoff;
pub mod client;
pub mod lkg;

pub use backoff::backoff_delay;
pub use client::{ControlPlane, Keepalive};
pub use lkg::{load_lkg, lkg_path, write_lkg, LkgLoad, LKG_FILE};

use crate::config::{self, check_version, Code, Rejection, VersionCheck};
use crate::store::Store;
use serde_json::{json, value::RawValue, Value};

/// Largest accepted WebSocket frame/message (16 MiB), so `too_large` can be reported.
pub const MAX_FRAME: usize = 16 << 20;

/// Reply to one control-plane frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `{"type":"ack","version":N}`
    Ack(u64),
    /// `{"type":"nack","version":N|null,"error":{...}}`
    Nack(Option<serde_json::Number>, Rejection),
}

impl Reply {
    /// The JSON text of the reply frame.
    pub fn to_json(&self) -> String {
        match self {
            Reply::Ack(v) => json!({"type":"ack","version":v}).to_string(),
            Reply::Nack(v, r) => json!({
                "type":"nack",
                "version": v.clone().map(Value::Number).unwrap_or(Value::Null),
                "error": {"code": r.code, "path": r.path, "message": r.message},
            })
            .to_string(),
        }
    }
}

#[derive(serde::Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    ty: Option<Value>,
    #[serde(borrow)]
    config: Option<&'a RawValue>,
}

fn version_of(raw: &[u8]) -> Option<serde_json::Number> {
    let v: Value = serde_json::from_slice(raw).ok()?;
    match v.get("version")? {
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.clone()),
        _ => None,
    }
}

/// Handle one text frame from the control plane: validate, compare versions, write the
/// LKG file, swap, and return the reply. A rejected config changes nothing.
pub fn handle_frame(store: &Store, text: &str) -> Reply {
    let malformed = |m: &str| Reply::Nack(None, Rejection::new(Code::MalformedJson, "", m));
    let frame: Frame = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(e) => return count(store, malformed(&format!("frame is not a config object: {e}"))),
    };
    let (Some(Value::String(ty)), Some(raw)) = (&frame.ty, frame.config) else {
        return count(store, malformed("frame is not {\"type\":\"config\",\"config\":...}"));
    };
    if ty != "config" {
        return count(store, malformed("frame type is not config"));
    }
    apply_config_bytes(store, raw.get().as_bytes())
}

fn count(store: &Store, r: Reply) -> Reply {
    if let Reply::Nack(_, rej) = &r {
        store.metrics.config_rejected.with_label_values(&[rej.code.as_str()]).inc();
    }
    r
}

/// Apply a config document from the control plane (raw bytes of the `config` member).
/// Nacks are counted in `router_config_rejected_total{code}`, applied configs in
/// `router_config_accepted_total`.
pub fn apply_config_bytes(store: &Store, raw: &[u8]) -> Reply {
    count(store, apply_inner(store, raw))
}

fn apply_inner(store: &Store, raw: &[u8]) -> Reply {
    let cfg = match config::parse_and_validate(raw) {
        Ok(c) => c,
        Err(r) => {
            let v = if raw.len() <= MAX_FRAME { version_of(raw) } else { None };
            return Reply::Nack(v, r);
        }
    };
    let current = store.current_config();
    match check_version(current.as_deref(), &cfg) {
        Err(r) => Reply::Nack(Some(cfg.version.into()), r),
        Ok(VersionCheck::Reack) => Reply::Ack(cfg.version),
        Ok(VersionCheck::Apply) => {
            if let Err(e) = write_lkg(&store.state_dir, raw) {
                eprintln!("pingora-router: cannot write last-known-good file: {e}");
                return Reply::Nack(
                    Some(cfg.version.into()),
                    Rejection::new(Code::InternalError, "", format!("writing LKG: {e}")),
                );
            }
            let v = cfg.version;
            store.install(cfg);
            store.metrics.config_accepted.inc();
            Reply::Ack(v)
        }
    }
}
