//! Header rules of the proxy (docs/spec.md section 3, "Headers"): hop-by-hop removal in
//! both directions (RFC 9110 section 7.6.1), `Host` and `X-Forwarded-*` on the way up,
//! `X-Router-Placement` on the way down, and the raw-header checks `request_filter` makes
//! (RFC 9112 section 6.3: a message with both `Content-Length` and `Transfer-Encoding`).

use crate::routing::{EndpointRt, PlacementRt};
use http::header::{self, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;
use std::net::IpAddr;

/// Request headers larger than this (request line + header fields + final CRLF, as sent)
/// are answered 431.
pub const MAX_REQUEST_HEADER_BYTES: usize = 64 * 1024;

/// Hop-by-hop header names (RFC 9110 section 7.6.1) removed in both directions.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// [`HOP_BY_HOP`] as header names (no parsing or allocation per request).
static HOP_BY_HOP_NAMES: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_ROUTER_PLACEMENT: &str = "X-Router-Placement";

/// Whether the raw request head (`raw`: request line, then one field per line) has a
/// field called `name` (lowercase ASCII; matched case-insensitively).
pub fn has_header_raw(raw: &[u8], name: &[u8]) -> bool {
    raw.split(|b| *b == b'\n').skip(1).any(|line| {
        line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name) && line[name.len()] == b':'
    })
}

/// Whether any line of the list field `name` in `headers` lists `token` (case-insensitive;
/// RFC 9110 section 5.6.1: a list may span several field lines).
fn field_lists(headers: &http::HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|v| v.as_bytes().split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes())))
}

/// Whether a `Connection` field of `headers` lists the connection option `option`
/// (case-insensitive; RFC 9110 section 7.6.1), in any of its lines.
pub fn connection_has(headers: &http::HeaderMap, option: &str) -> bool {
    field_lists(headers, header::CONNECTION, option)
}

/// Field names nominated by `Connection` (RFC 9110 section 7.6.1), lowercased; tokens that
/// are not valid field names are skipped (they name no header). Empty (no allocation)
/// when the message has no `Connection` header.
fn nominated(headers: &http::HeaderMap) -> Vec<HeaderName> {
    let mut names = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        if let Ok(s) = v.to_str() {
            for t in s.split(',') {
                let t = t.trim();
                if !t.is_empty() {
                    if let Ok(n) = HeaderName::from_bytes(t.as_bytes()) {
                        names.push(n);
                    }
                }
            }
        }
    }
    names
}

/// The hop-by-hop names present in `headers` to remove: the nominated ones and
/// [`HOP_BY_HOP`], except `Transfer-Encoding` (Pingora frames bodies itself from it) and,
/// when `keep_upgrade` (a `101`), except `Connection` and `Upgrade`. One pass over the
/// names present (a handful) rather than a hash lookup per listed name; no allocation
/// when there is nothing to remove.
fn hop_by_hop_present(headers: &http::HeaderMap, nominated: &[HeaderName], keep_upgrade: bool) -> Vec<HeaderName> {
    let mut out = Vec::new();
    for n in headers.keys() {
        if (HOP_BY_HOP_NAMES.contains(n) || nominated.contains(n))
            && *n != header::TRANSFER_ENCODING
            && !(keep_upgrade && (*n == header::CONNECTION || *n == header::UPGRADE))
        {
            out.push(n.clone());
        }
    }
    out
}

/// The HTTP/2 header list size of `req` (RFC 9113 section 6.5.2, as RFC 7541 section 4.1
/// counts it): for each field, the pseudo-header fields `:method`, `:scheme`, `:authority`
/// and `:path` included, its name and value lengths in bytes plus 32. The 64 KiB head limit
/// applies to this on HTTP/2 (docs/spec.md section 3, *TLS and HTTP/2 on the listener*).
pub fn h2_header_list_size(req: &RequestHeader) -> usize {
    const ENTRY: usize = 32;
    let uri = &req.uri;
    let mut n = ":method".len() + req.method.as_str().len() + ENTRY;
    n += ":scheme".len() + uri.scheme_str().unwrap_or("https").len() + ENTRY;
    if let Some(a) = uri.authority() {
        n += ":authority".len() + a.as_str().len() + ENTRY;
    }
    n += ":path".len() + req.raw_path().len() + ENTRY;
    for (name, value) in req.headers.iter() {
        n += name.as_str().len() + value.len() + ENTRY;
    }
    n
}

/// Rewrite the upstream request `up` (Pingora's copy of the client's request `down`) for
/// the chosen endpoint `ep`: hop-by-hop fields removed (an upgrade request keeps `Connection: Upgrade`
/// and its `Upgrade` value; `TE: trailers` is kept), `Host` = the endpoint's `host:port`,
/// `X-Forwarded-Host` = the client's `Host` (an HTTP/2 request's `:authority` without one;
/// absent without either), `X-Forwarded-Proto: https` when `tls` (the client came over the
/// TLS listener) else `http`, `X-Forwarded-For`
/// = the incoming values joined, then `client` (a hop-by-hop `X-Forwarded-For` does not
/// travel on).
pub fn upstream_request(
    down: &RequestHeader,
    client: Option<IpAddr>,
    tls: bool,
    ep: &EndpointRt,
    up: &mut RequestHeader,
) -> Result<()> {
    let is_upgrade = down.headers.contains_key(header::UPGRADE);
    let te_trailers = field_lists(&down.headers, header::TE, "trailers");
    let client_host = down.headers.get(header::HOST).cloned().or_else(|| {
        down.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()).filter(|_| down.version == http::Version::HTTP_2)
    });
    let nominated = nominated(&down.headers);
    let xff = forwarded_for(&down.headers, &nominated, client);
    let upgrade_value = if is_upgrade { down.headers.get(header::UPGRADE).cloned() } else { None };
    // Framing headers are Pingora's: it re-frames bodies itself.
    for name in hop_by_hop_present(&up.headers, &nominated, false) {
        up.remove_header(&name);
    }
    if let Some(u) = upgrade_value {
        up.insert_header(header::CONNECTION, "Upgrade")?;
        up.insert_header(header::UPGRADE, u)?;
    }
    if te_trailers {
        up.insert_header("TE", "trailers")?;
    }
    match &ep.host {
        Some(v) => up.insert_header(header::HOST, v.clone())?,
        None => up.insert_header(header::HOST, ep.cfg.origin.authority())?,
    }
    match client_host {
        Some(h) => up.insert_header("X-Forwarded-Host", h)?,
        None => {
            up.remove_header("X-Forwarded-Host");
        }
    }
    up.insert_header("X-Forwarded-Proto", HeaderValue::from_static(if tls { "https" } else { "http" }))?;
    if up.headers.contains_key(&X_FORWARDED_FOR) {
        up.remove_header(&X_FORWARDED_FOR);
    }
    if let Some(v) = xff {
        up.insert_header("X-Forwarded-For", v)?;
    }
    Ok(())
}

/// The `X-Forwarded-For` value to send upstream: the incoming lines' values joined with
/// `", "` (none when `nominated` names the field: it is hop-by-hop then), then `client`;
/// `None` when that is empty. Built from the values' bytes, so a value with obs-text
/// (`\xe9`) travels on as net/http forwards it, rather than being dropped (parity fuzz seed
/// 7, fields.upstream-header-x-forwarded-for; RFC 9110 section 5.5 allows obs-text).
pub fn forwarded_for(down: &http::HeaderMap, nominated: &[HeaderName], client: Option<IpAddr>) -> Option<HeaderValue> {
    let mut xff: Vec<u8> = Vec::new();
    let mut parts = 0usize;
    let incoming = if nominated.contains(&X_FORWARDED_FOR) { None } else { Some(down.get_all(&X_FORWARDED_FOR)) };
    let client = client.map(|ip| ip.to_string());
    for v in incoming.into_iter().flatten().map(HeaderValue::as_bytes).chain(client.as_deref().map(str::as_bytes)) {
        if parts > 0 {
            xff.extend_from_slice(b", ");
        }
        xff.extend_from_slice(v);
        parts += 1;
    }
    // Valid field values joined by ", " are a valid field value.
    (parts > 0).then(|| HeaderValue::from_bytes(&xff).ok()).flatten()
}

/// Rewrite a forwarded 1xx (not `101`) for the client: its hop-by-hop fields and the ones
/// its `Connection` names are removed, as from final responses (spec section 3,
/// "Headers"; RFC 9110 section 7.6.1). Its framing fields are gone already
/// (`framing::response_fix`).
pub fn interim_response(resp: &mut ResponseHeader) {
    let nominated = nominated(&resp.headers);
    for name in hop_by_hop_present(&resp.headers, &nominated, false) {
        resp.remove_header(&name);
    }
}

/// Rewrite the upstream's response header `resp` (final or `101`) for the client: HTTP/1.1,
/// hop-by-hop fields removed except `Transfer-Encoding` (Pingora frames the downstream body
/// from it) and, on a `101`, `Connection` / `Upgrade`; `X-Router-Placement` = `p`'s id.
pub fn downstream_response(resp: &mut ResponseHeader, p: Option<&PlacementRt>) -> Result<()> {
    let status = resp.status.as_u16();
    // The client talks HTTP/1.1 to the router whatever the upstream spoke.
    resp.set_version(http::Version::HTTP_11);
    let nominated = nominated(&resp.headers);
    for name in hop_by_hop_present(&resp.headers, &nominated, status == 101) {
        resp.remove_header(&name);
    }
    if let Some(p) = p {
        match &p.hot.placement {
            Some(v) => resp.insert_header(X_ROUTER_PLACEMENT, v.clone())?,
            None => resp.insert_header(X_ROUTER_PLACEMENT, p.cfg.id.as_str())?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_header_names_match_whole_field_names_only() {
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nX-Transfer-Encoding: chunked\r\n\r\n";
        assert!(has_header_raw(raw, b"content-length"));
        assert!(!has_header_raw(raw, b"transfer-encoding"));
        // the request line is not a field
        assert!(!has_header_raw(b"content-length: 1\r\n\r\n", b"content-length"));
    }

    #[test]
    fn forwarded_for_keeps_obs_text_and_joins_lines() {
        let ip: Option<IpAddr> = Some("127.0.0.1".parse().unwrap());
        let mut h = http::HeaderMap::new();
        assert_eq!(forwarded_for(&h, &[], ip).unwrap(), "127.0.0.1");
        assert_eq!(forwarded_for(&h, &[], None), None);
        h.append(X_FORWARDED_FOR, HeaderValue::from_bytes(b"\xe9z").unwrap());
        h.append(X_FORWARDED_FOR, HeaderValue::from_static(""));
        assert_eq!(forwarded_for(&h, &[], ip).unwrap().as_bytes(), b"\xe9z, , 127.0.0.1");
        assert_eq!(forwarded_for(&h, &[X_FORWARDED_FOR], ip).unwrap(), "127.0.0.1");
    }

    #[test]
    fn connection_options_are_tokens() {
        let mut h = http::HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("close, X-Hop"));
        assert!(!connection_has(&h, "upgrade"));
        h.append(header::CONNECTION, HeaderValue::from_static(" Upgrade "));
        assert!(connection_has(&h, "upgrade"));
        assert!(!connection_has(&http::HeaderMap::new(), "upgrade"));
        // an HTTP/1.0 request's keep-alive anywhere in the list (request_filter)
        let mut k = http::HeaderMap::new();
        k.append(header::CONNECTION, HeaderValue::from_static("upgrade, Keep-Alive"));
        assert!(connection_has(&k, "keep-alive"));
    }

    #[test]
    fn hop_by_hop_and_nominated_names_go_transfer_encoding_stays() {
        let mut h = http::HeaderMap::new();
        for (n, v) in [
            ("connection", "x-private, keep-alive"),
            ("keep-alive", "5"),
            ("x-private", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-kept", "1"),
        ] {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let nom = nominated(&h);
        let mut gone: Vec<String> = hop_by_hop_present(&h, &nom, false).iter().map(|n| n.to_string()).collect();
        gone.sort();
        assert_eq!(gone, ["connection", "keep-alive", "upgrade", "x-private"]);
        let mut gone_101: Vec<String> = hop_by_hop_present(&h, &nom, true).iter().map(|n| n.to_string()).collect();
        gone_101.sort();
        assert_eq!(gone_101, ["keep-alive", "x-private"]);
    }
}
