//! Router-made responses (docs/spec.md section 3, "Router-made responses"): the code's
//! status, `X-Router-Error: <code>`, `Content-Type: application/json`, `Content-Length`,
//! the body `{"error":"<code>","message":"<human text>"}`, and `X-Router-Placement` when a
//! placement had been chosen.

use crate::errcode::Code;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// The response header and body for `code`, naming `placement` if given.
pub fn error_response(code: Code, placement: Option<&str>) -> (ResponseHeader, Bytes) {
    let body = serde_json::json!({"error": code.as_str(), "message": code.message()}).to_string();
    let mut resp = ResponseHeader::build(code.status(), Some(5)).expect("status");
    resp.insert_header("Content-Type", "application/json").unwrap();
    resp.insert_header("X-Router-Error", code.as_str()).unwrap();
    resp.insert_header("Content-Length", body.len().to_string()).unwrap();
    if let Some(p) = placement {
        resp.insert_header("X-Router-Placement", p).unwrap();
    }
    (resp, Bytes::from(body))
}

/// Write the router-made response for `code` on `session` (header, then the whole body).
pub async fn respond(session: &mut Session, code: Code, placement: Option<&str>) -> Result<()> {
    let (resp, body) = error_response(code, placement);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_status_header_and_json_body() {
        for code in Code::ALL {
            let (resp, body) = error_response(code, Some("eu-1"));
            assert_eq!(resp.status.as_u16(), code.status());
            assert_eq!(resp.headers["x-router-error"], code.as_str());
            assert_eq!(resp.headers["content-type"], "application/json");
            assert_eq!(resp.headers["x-router-placement"], "eu-1");
            assert_eq!(resp.headers["content-length"], body.len().to_string().as_str());
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v, serde_json::json!({"error": code.as_str(), "message": code.message()}));
        }
        let (resp, _) = error_response(Code::NoConfig, None);
        assert!(resp.headers.get("x-router-placement").is_none());
    }
}
