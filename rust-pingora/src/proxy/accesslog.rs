//! The access log (docs/spec.md section 8, `--access-log`): one JSON object per request on
//! stderr, written from the `logging` hook:
//! `{"ts":"<RFC 3339, ms>","method":"GET","path":"/x","key":"tenant-a","placement":"eu-1","status":200,"error":null,"duration_ms":1.25}`.

use crate::errcode::Code;
use std::time::Duration;

/// One request as the access log shows it.
pub struct Entry<'a> {
    /// Request method.
    pub method: &'a str,
    /// Request path (no query).
    pub path: &'a str,
    /// Routing key, when one was sent.
    pub key: Option<&'a str>,
    /// Placement tried last, when one was chosen.
    pub placement: Option<&'a str>,
    /// Status sent to the client (0: none was sent).
    pub status: u16,
    /// The router error code of a router-made response.
    pub error: Option<Code>,
    /// From arrival to the end of the response.
    pub duration: Duration,
}

impl Entry<'_> {
    /// The JSON line (without the newline), timestamped now.
    pub fn line(&self) -> String {
        serde_json::json!({
            "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "method": self.method,
            "path": self.path,
            "key": self.key,
            "placement": self.placement,
            "status": self.status,
            "error": self.error.map(Code::as_str),
            "duration_ms": (self.duration.as_secs_f64() * 1e6).round() / 1e3,
        })
        .to_string()
    }

    /// Write the line to stderr.
    pub fn write(&self) {
        eprintln!("{}", self.line());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_the_spec_fields_in_order() {
        let e = Entry {
            method: "GET",
            path: "/x",
            key: Some("tenant-a"),
            placement: None,
            status: 503,
            error: Some(Code::NoHealthyUpstream),
            duration: Duration::from_micros(1250),
        };
        let line = e.line();
        let rest = line.split_once(r#"","method""#).unwrap().1;
        assert_eq!(
            rest,
            r#":"GET","path":"/x","key":"tenant-a","placement":null,"status":503,"error":"no_healthy_upstream","duration_ms":1.25}"#
        );
    }
}
