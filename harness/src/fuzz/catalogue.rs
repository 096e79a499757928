//! The catalogue of documented divergences: `spec/divergences.yaml`, a machine-readable
//! index of `docs/divergences.md` with a stable id and a matcher per entry. A finding whose
//! kind and input an entry matches is counted under that id, not reported.
//!
//! Format:
//!
//! ```yaml
//! divergences:
//!   - id: pingora-fragment-target          # stable id
//!     section: "`#fragment` in a request target"   # the docs/divergences.md entry
//!     kinds: ["line.client-status", "*.upstream-count"]   # globs over finding kinds
//!     request_contains: ["#"]              # optional: any of these in the client bytes
//!     response_contains: []                # optional: any of these in a generated response
//!     detail_contains: []                  # optional: any of these in the difference's text
//!     go_first_value: false                # optional: Go's value list is one value, the
//!                                          # first of Pingora's longer list
//! ```
//!
//! Byte strings are Latin-1 (one character per byte), as in scenario files.
use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Deserialize)]
struct File {
    divergences: Vec<RawEntry>,
}

#[derive(Debug, Deserialize)]
struct RawEntry {
    id: String,
    section: String,
    kinds: Vec<String>,
    #[serde(default)]
    request_contains: Vec<String>,
    #[serde(default)]
    response_contains: Vec<String>,
    #[serde(default)]
    detail_contains: Vec<String>,
    #[serde(default)]
    go_first_value: bool,
}

/// One documented divergence.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Stable id.
    pub id: String,
    /// The `docs/divergences.md` entry it indexes.
    pub section: String,
    kinds: Vec<glob::Pattern>,
    request_contains: Vec<Vec<u8>>,
    response_contains: Vec<Vec<u8>>,
    detail_contains: Vec<String>,
    go_first_value: bool,
}

/// Whether a field difference's text (`<name>: [<go values>] vs [<pingora values>]`, JSON)
/// says Go sent one value and Pingora the same value first, then more: several field lines
/// of which net/http's transport writes the first only.
fn go_first_value(detail: &str) -> bool {
    let Some((left, right)) = detail.split_once("] vs [") else { return false };
    let Some(i) = left.rfind(": [") else { return false };
    let go = &left[i + 3..];
    !go.is_empty() && !go.contains("\", \"") && right.strip_prefix(go).is_some_and(|rest| rest.starts_with(", "))
}

/// The loaded catalogue.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    /// Entries in file order (the first match wins).
    pub entries: Vec<Entry>,
}

fn latin1(s: &str) -> Result<Vec<u8>> {
    s.chars().map(|c| u8::try_from(c as u32).map_err(|_| anyhow::anyhow!("character {c:?} above U+00FF in {s:?}"))).collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

impl Catalogue {
    /// Parses the YAML text of a catalogue.
    pub fn parse(text: &str) -> Result<Catalogue> {
        let f: File = serde_yaml_ng::from_str(text).context("spec/divergences.yaml")?;
        let mut entries = Vec::new();
        for e in f.divergences {
            entries.push(Entry {
                kinds: e.kinds.iter().map(|k| glob::Pattern::new(k).with_context(|| format!("{}: kind glob {k:?}", e.id))).collect::<Result<_>>()?,
                request_contains: e.request_contains.iter().map(|s| latin1(s)).collect::<Result<_>>()?,
                response_contains: e.response_contains.iter().map(|s| latin1(s)).collect::<Result<_>>()?,
                detail_contains: e.detail_contains,
                go_first_value: e.go_first_value,
                id: e.id,
                section: e.section,
            });
        }
        Ok(Catalogue { entries })
    }

    /// Loads `path`; an absent file is an empty catalogue.
    pub fn load(path: &Path) -> Result<Catalogue> {
        match std::fs::read_to_string(path) {
            Ok(t) => Catalogue::parse(&t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Catalogue::default()),
            Err(e) => Err(e).with_context(|| path.display().to_string()),
        }
    }

    /// The entry that documents a finding of `kind` (with difference text `detail`) for
    /// these client bytes and generated responses, if any.
    pub fn matches(&self, kind: &str, detail: &str, request: &[u8], responses: &[Vec<u8>]) -> Option<&Entry> {
        self.entries.iter().find(|e| {
            e.kinds.iter().any(|k| k.matches(kind))
                && (e.detail_contains.is_empty() || e.detail_contains.iter().any(|n| detail.contains(n.as_str())))
                && (!e.go_first_value || go_first_value(detail))
                && (e.request_contains.is_empty() || e.request_contains.iter().any(|n| contains(request, n)))
                && (e.response_contains.is_empty() || e.response_contains.iter().any(|n| responses.iter().any(|r| contains(r, n))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_kind_and_input() {
        let c = Catalogue::parse(
            "divergences:\n  - id: frag\n    section: s\n    kinds: [\"line.*\"]\n    request_contains: [\"#\"]\n  - id: any\n    section: s\n    kinds: [\"response.client-header-server\"]\n    response_contains: [\"\\xe9\"]\n",
        )
        .unwrap();
        assert_eq!(c.matches("line.client-status", "", b"GET /a#b HTTP/1.1", &[]).map(|e| e.id.as_str()), Some("frag"));
        assert!(c.matches("line.client-status", "", b"GET /a HTTP/1.1", &[]).is_none());
        assert!(c.matches("fields.client-status", "", b"GET /a#b", &[]).is_none());
        assert_eq!(c.matches("response.client-header-server", "", b"", &[vec![0xe9]]).map(|e| e.id.as_str()), Some("any"));
        let d = Catalogue::parse("divergences:\n  - id: cl0\n    section: s\n    kinds: [\"*.upstream-header-content-length\"]\n    detail_contains: [\"content-length: [\\\"0\\\"] vs absent\"]\n").unwrap();
        assert!(d.matches("plain.upstream-header-content-length", "upstream request 0: content-length: [\"0\"] vs absent: go / pingora", b"", &[]).is_some());
        assert!(d.matches("plain.upstream-header-content-length", "upstream request 0: content-length: [\"5\"] vs absent: go / pingora", b"", &[]).is_none());
    }

    #[test]
    fn the_repository_catalogue_loads() {
        let p = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../spec/divergences.yaml");
        let c = Catalogue::load(&p).unwrap();
        let mut ids: Vec<&str> = c.entries.iter().map(|e| e.id.as_str()).collect();
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "ids are unique");
        // Expect: 100-continue without an upstream 100 (net/http's own 100), in the form the
        // fields mode writes it (any field casing, bare-LF line ends), and only that form.
        let detail = "response 0: interim: [{\"headers\":[],\"reason\":\"Continue\",\"status\":100,\"version\":\"HTTP/1.1\"}] vs []: go / pingora";
        let req = b"POST / HTTP/1.1\nHost: h\nX-Routing-Key: k\nexpect: 100-continue\nContent-Length: 2\n\nab";
        assert_eq!(c.matches("fields.client-interim", detail, req, &[]).map(|e| e.id.as_str()), Some("go-expect-continue-without-upstream-100"));
        assert!(c.matches("fields.client-interim", detail, b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nab", &[]).is_none(), "no Expect: not this entry");
        assert!(c.matches("response.client-interim", "response 0: interim: [] vs [{\"headers\":[],\"reason\":\"Continue\",\"status\":100,\"version\":\"HTTP/1.1\"}]: go / pingora", req, &[]).is_none(), "Pingora's 100 alone is not this entry");
        // Several User-Agent lines: net/http writes the first only; the same values in
        // another shape are not this entry.
        let ua = |d: &str| c.matches("line.upstream-header-user-agent", d, b"", &[]).map(|e| e.id.as_str());
        assert_eq!(ua("upstream request 0: user-agent: [\"=.(\"] vs [\"=.(\", \"!*?(\"]: go / pingora"), Some("go-user-agent-first-line"));
        assert_eq!(ua("upstream request 1: user-agent: [\"a\"] vs [\"a\", \"b\", \"c\"]: go / pingora"), Some("go-user-agent-first-line"));
        assert_eq!(ua("upstream request 0: user-agent: [\"a\"] vs [\"b\", \"a\"]: go / pingora"), None);
        assert_eq!(ua("upstream request 0: user-agent: [\"a\"] vs [\"ab\"]: go / pingora"), None);
        assert_eq!(ua("upstream request 0: user-agent: [\"a\", \"b\"] vs [\"a\", \"b\", \"c\"]: go / pingora"), None);
        assert_eq!(ua("upstream request 0: user-agent: [\"a\"] vs [\"a\"]: go / pingora"), None);
        // After a refused upgrade Go's gate is off: Go forwarding more is that entry, Pingora
        // forwarding more is not.
        let up = b"PUT / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n\r\nDELETE /a?\")1 HTTP/1.1\r\n\r\n";
        assert_eq!(c.matches("upgrade.upstream-count", "2 vs 1 requests upstream: go / pingora", up, &[]).map(|e| e.id.as_str()), Some("go-gate-off-after-upgrade"));
        assert!(c.matches("upgrade.upstream-count", "1 vs 2 requests upstream: go / pingora", up, &[]).is_none());
        assert!(c.matches("pipeline.upstream-count", "2 vs 1 requests upstream: go / pingora", b"GET / HTTP/1.1\r\n\r\n", &[]).is_none());
        // net/http's own 400 with its text body to a HEAD after an upgrade request (seed 7
        // case 765): Go's bytes do not frame, Pingora's do; the reverse is not this entry.
        let head = b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nHEAD /x HTTP/1.1\r\n:  a \r\n\r\n";
        assert_eq!(c.matches("upgrade.client-failure", "\"malformed\" vs null: go / pingora", head, &[]).map(|e| e.id.as_str()), Some("go-gate-off-after-upgrade"));
        assert!(c.matches("upgrade.client-failure", "null vs \"malformed\": go / pingora", head, &[]).is_none());
    }
}
