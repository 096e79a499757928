//! Byte strings in scenario files: Latin-1 decoding of raw byte strings (`send.raw`,
//! `raw_writes[].bytes`, upstream `raw.bytes`, expected bodies) and the `{{repeat N "text"}}`
//! template that generates long heads.

/// The largest `N` of `{{repeat N "text"}}`.
pub const MAX_REPEAT: usize = 1_000_000;

/// The bytes of a Latin-1 string: each character U+0000..U+00FF is one byte, so YAML
/// double-quoted escapes give any byte (`"\x00"`, `"\xe9"`). `Err` holds the first
/// character above U+00FF and its character offset.
pub fn latin1(s: &str) -> Result<Vec<u8>, (usize, char)> {
    s.chars()
        .enumerate()
        .map(|(i, c)| u8::try_from(u32::from(c)).map_err(|_| (i, c)))
        .collect()
}

/// The Latin-1 string of `b` (each byte one character), the inverse of [`latin1`].
pub fn latin1_text(b: &[u8]) -> String {
    b.iter().map(|&x| char::from(x)).collect()
}

/// A `repeat` template (the text between the braces, trimmed): `None` when `t` is not one,
/// `Some(Err(message))` when it is malformed, else `Some(Ok((n, text)))`.
///
/// Syntax: `repeat N "text"` with `N <= MAX_REPEAT`; inside the quotes `\"`, `\\`, `\r`,
/// `\n`, `\t` and `\xHH` are escapes, every other character stands for itself.
pub fn parse_repeat(t: &str) -> Option<Result<(usize, String), String>> {
    let rest = t.strip_prefix("repeat")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some(parse_repeat_args(rest.trim_start()))
}

fn parse_repeat_args(rest: &str) -> Result<(usize, String), String> {
    let usage = "expected {{repeat N \"text\"}}";
    let (n, rest) = rest.split_once(char::is_whitespace).ok_or_else(|| usage.to_string())?;
    let n: usize = n.parse().map_err(|_| format!("repeat count {n:?} is not a number; {usage}"))?;
    if n > MAX_REPEAT {
        return Err(format!("repeat count {n} is above {MAX_REPEAT}"));
    }
    let q = rest.trim();
    let inner = q.strip_prefix('"').and_then(|x| x.strip_suffix('"')).filter(|_| q.len() >= 2).ok_or_else(|| format!("repeat text must be in double quotes; {usage}"))?;
    let mut text = String::new();
    let mut it = inner.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            if c == '"' {
                return Err(format!("an unescaped \" inside the repeat text; {usage}"));
            }
            text.push(c);
            continue;
        }
        match it.next() {
            Some('"') => text.push('"'),
            Some('\\') => text.push('\\'),
            Some('r') => text.push('\r'),
            Some('n') => text.push('\n'),
            Some('t') => text.push('\t'),
            Some('x') => {
                let h: String = it.by_ref().take(2).collect();
                let b = u8::from_str_radix(&h, 16).map_err(|_| format!("bad escape \\x{h} in the repeat text"))?;
                text.push(char::from(b));
            }
            other => return Err(format!("bad escape \\{} in the repeat text", other.map(String::from).unwrap_or_default())),
        }
    }
    Ok((n, text))
}

/// `s` with every well-formed `{{repeat N "text"}}` replaced by `text` `N` times; other
/// templates and malformed repeats are left as they are.
pub fn expand_repeats(s: &str) -> String {
    if !s.contains("{{") {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        let Some(j) = rest[i + 2..].find("}}") else { break };
        let inner = &rest[i + 2..i + 2 + j];
        out.push_str(&rest[..i]);
        match parse_repeat(inner.trim()) {
            Some(Ok((n, text))) => out.push_str(&text.repeat(n)),
            _ => out.push_str(&rest[i..i + 2 + j + 2]),
        }
        rest = &rest[i + 2 + j + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_is_one_byte_per_character() {
        assert_eq!(latin1("a\r\n\u{0}\u{e9}\u{ff}").unwrap(), vec![b'a', 13, 10, 0, 0xe9, 0xff]);
        assert_eq!(latin1("ab\u{100}c"), Err((2, '\u{100}')));
        assert_eq!(latin1("\u{20ac}"), Err((0, '€')));
        assert_eq!(latin1_text(&[0x41, 0xe9, 0x00]), "A\u{e9}\u{0}");
        assert_eq!(latin1(&latin1_text(&(0..=255).collect::<Vec<u8>>())).unwrap(), (0..=255).collect::<Vec<u8>>());
    }

    #[test]
    fn repeat_parses_counts_quotes_and_escapes() {
        assert_eq!(parse_repeat("repeat 3 \"ab\""), Some(Ok((3, "ab".into()))));
        assert_eq!(parse_repeat("repeat 2 \"X-H: v\\r\\n\""), Some(Ok((2, "X-H: v\r\n".into()))));
        assert_eq!(parse_repeat("repeat 1 \"\\x00\\xe9\\\"\\\\\""), Some(Ok((1, "\u{0}\u{e9}\"\\".into()))));
        assert_eq!(parse_repeat("repeat 0 \"\""), Some(Ok((0, String::new()))));
        assert_eq!(parse_repeat("up.a"), None);
        assert_eq!(parse_repeat("repeated"), None);
        assert!(parse_repeat("repeat x \"a\"").unwrap().unwrap_err().contains("not a number"));
        assert!(parse_repeat("repeat 1000001 \"a\"").unwrap().unwrap_err().contains("above 1000000"));
        assert!(parse_repeat("repeat 1000000 \"a\"").unwrap().is_ok());
        assert!(parse_repeat("repeat 3 a").unwrap().unwrap_err().contains("double quotes"));
        assert!(parse_repeat("repeat 3 \"a\"b\"").unwrap().is_err());
        assert!(parse_repeat("repeat 3 \"\\q\"").unwrap().unwrap_err().contains("bad escape"));
    }

    #[test]
    fn expand_replaces_only_repeats() {
        assert_eq!(expand_repeats("a{{repeat 3 \"xy\"}}b{{up.u}}c{{ repeat 2 \"z\" }}"), "axyxyxyb{{up.u}}czz");
        assert_eq!(expand_repeats("{{repeat 257 \"X: v\r\n\"}}").matches("X: v\r\n").count(), 257);
        assert_eq!(expand_repeats("{{repeat x \"a\"}}"), "{{repeat x \"a\"}}");
        assert_eq!(expand_repeats("plain {{"), "plain {{");
        assert_eq!(expand_repeats(&format!("{{{{repeat {MAX_REPEAT} \"z\"}}}}")).len(), MAX_REPEAT);
    }
}
