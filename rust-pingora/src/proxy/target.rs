//! Request-target forms and Host validation (RFC 9112 section 3.2, docs/spec.md section 3
//! *Requests the router accepts*, docs/conformance.md 15-23).
//!
//! Pure functions over the raw target bytes and header values, so that both the request
//! hooks and the tests use one rule.

/// The form of a request-target (RFC 9112 section 3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm<'a> {
    /// `/path?query`: forwarded byte for byte.
    Origin,
    /// `http://authority/path?query` (scheme `http`, `https`, `ws` or `wss`, any case):
    /// `authority` becomes the client's host; [`TargetForm::origin_bytes`] is what the upstream
    /// receives.
    Absolute {
        /// The raw authority bytes (no userinfo: a target with `@` is [`TargetForm::Invalid`]).
        authority: &'a [u8],
        /// The path and query as received, or `None` when the target has no path (then the
        /// origin-form is `/` followed by the query, if any).
        path_and_query: &'a [u8],
    },
    /// `*` with `OPTIONS` (answered by the router itself); `*` with another method is
    /// [`TargetForm::Invalid`] (RFC 9112 section 3.2.4).
    Asterisk,
    /// Anything else: 400.
    Invalid,
}

impl TargetForm<'_> {
    /// The origin-form the upstream receives for an absolute-form target: the path and
    /// query byte for byte, `/` in front when the target had no path.
    pub fn origin_bytes(&self) -> Option<Vec<u8>> {
        match self {
            TargetForm::Absolute { path_and_query, .. } => {
                let mut v = Vec::with_capacity(path_and_query.len() + 1);
                if !path_and_query.starts_with(b"/") {
                    v.push(b'/');
                }
                v.extend_from_slice(path_and_query);
                Some(v)
            }
            _ => None,
        }
    }
}

/// Whether every `%` in the path part of `target` (up to the first `?`) starts a
/// valid percent-encoding `%HH` (RFC 3986 section 2.1). The query is not checked: its bytes
/// are forwarded as they are.
pub fn path_escapes_valid(target: &[u8]) -> bool {
    let end = target.iter().position(|b| *b == b'?').unwrap_or(target.len());
    let path = &target[..end];
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' {
            match (path.get(i + 1), path.get(i + 2)) {
                (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

/// The request-target as the client sent it: the bytes between the first and the last
/// space of the request line of the raw head `raw` (Pingora's parsed path has already lost
/// a `#fragment`). `None` when the first line has fewer than two spaces.
pub fn raw_target(raw: &[u8]) -> Option<&[u8]> {
    let line = raw.split(|b| *b == b'\n').next()?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let first = line.iter().position(|b| *b == b' ')?;
    let last = line.iter().rposition(|b| *b == b' ')?;
    (last > first).then(|| &line[first + 1..last])
}

/// Classify a raw request-target (as received, before any decoding) of a request with
/// method `method`.
pub fn classify<'a>(method: &http::Method, target: &'a [u8]) -> TargetForm<'a> {
    // A fragment is never part of a request-target (RFC 9112 section 3.2); Pingora would
    // drop it silently, so the target could not go up byte for byte: refuse it.
    if target.is_empty() || target.contains(&b'#') {
        return TargetForm::Invalid;
    }
    if target[0] == b'/' {
        return if path_escapes_valid(target) { TargetForm::Origin } else { TargetForm::Invalid };
    }
    if target == b"*" {
        return if method == http::Method::OPTIONS { TargetForm::Asterisk } else { TargetForm::Invalid };
    }
    let Some(colon) = target.iter().position(|b| *b == b':') else { return TargetForm::Invalid };
    let scheme = &target[..colon];
    let http_family = [&b"http"[..], b"https", b"ws", b"wss"].iter().any(|s| scheme.eq_ignore_ascii_case(s));
    let Some(rest) = target[colon + 1..].strip_prefix(b"//") else { return TargetForm::Invalid };
    if !http_family {
        return TargetForm::Invalid;
    }
    let end = rest.iter().position(|b| *b == b'/' || *b == b'?').unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(end);
    if authority.is_empty() || authority.contains(&b'@') || !path_escapes_valid(path_and_query) {
        return TargetForm::Invalid;
    }
    TargetForm::Absolute { authority, path_and_query }
}

/// Whether a `Host` value is acceptable (RFC 9112 section 3.2, RFC 9110 section 7.2): not
/// empty, only bytes that can appear in `uri-host [ ":" port ]` — letters, digits and
/// `!$%&'()*+,-.:;=[]_~` (the byte set Go's net/http checks) — and a port, if any, of digits
/// only (the Go router's extra check), so both routers refuse the same values.
pub fn valid_host(v: &[u8]) -> bool {
    !v.is_empty() && valid_host_bytes(v) && valid_port(v)
}

/// The port after the last `:` (after the `]` of an IP literal) is `*DIGIT`.
fn valid_port(v: &[u8]) -> bool {
    let rest = if v.first() == Some(&b'[') {
        let Some(close) = v.iter().position(|b| *b == b']') else { return false };
        let rest = &v[close + 1..];
        if rest.is_empty() {
            return true;
        }
        if rest[0] != b':' {
            return false;
        }
        rest
    } else {
        v
    };
    match rest.iter().rposition(|b| *b == b':') {
        None => true,
        Some(i) => rest[i + 1..].iter().all(u8::is_ascii_digit),
    }
}

fn valid_host_bytes(v: &[u8]) -> bool {
    v.iter().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'$' | b'%' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'-' | b'.' | b':' | b';'
                    | b'=' | b'[' | b']' | b'_' | b'~'
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(target: &[u8]) -> TargetForm<'_> {
        super::classify(&http::Method::GET, target)
    }

    #[test]
    fn raw_targets() {
        assert_eq!(raw_target(b"GET /f#frag HTTP/1.1\r\nHost: h\r\n\r\n"), Some(&b"/f#frag"[..]));
        assert_eq!(raw_target(b"GET /a b HTTP/1.1\n"), Some(&b"/a b"[..]));
        assert_eq!(raw_target(b"GET /\r\n"), None);
    }

    #[test]
    fn forms() {
        assert_eq!(classify(b"/a/../b?x=%zz;y"), TargetForm::Origin);
        assert_eq!(super::classify(&http::Method::OPTIONS, b"*"), TargetForm::Asterisk);
        assert_eq!(classify(b"*"), TargetForm::Invalid);
        let abs = classify(b"http://front.example:8080/abs/p?x=1");
        assert_eq!(abs, TargetForm::Absolute { authority: b"front.example:8080", path_and_query: b"/abs/p?x=1" });
        assert_eq!(abs.origin_bytes().unwrap(), b"/abs/p?x=1");
        let bare = classify(b"HTTPS://front.example");
        assert_eq!(bare.origin_bytes().unwrap(), b"/");
        assert_eq!(classify(b"http://h?q=1").origin_bytes().unwrap(), b"/?q=1");
        assert_eq!(classify(b"/a\"b{|}^"), TargetForm::Origin);
        assert_eq!(classify(b"/q?c=%zz&d=%"), TargetForm::Origin);
        for bad in [
            &b""[..], b"abc/def", b"front.example:443", b"/f#frag", b"http://h/#f", b"/%", b"/%zz", b"/a%2", b"/a%2?x", b"http://h/%g0",
            b"http://u@h/x", b"ftp://h/x", b"http:/h", b"http:///x",
        ] {
            assert_eq!(classify(bad), TargetForm::Invalid, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn hosts() {
        for ok in [&b"a.example"[..], b"[::1]:80", b"[::1]", b"a_b.example", b"a.example:8080", b"a.example:"] {
            assert!(valid_host(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        for bad in [&b""[..], b"a b.example", b"a.example/evil", b"u@a.example", b"a.example, b.example", b"a?x", b"a\tb", b"caf\xe9", b"a.example:abc", b"[::1]x", b"[::1"] {
            assert!(!valid_host(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
