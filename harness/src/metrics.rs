//! Reading the routers' `/metrics` (Prometheus text format 0.0.4) into series keyed by
//! name and sorted labels, so that `router_errors_total{code="no_config"}` written in a
//! scenario finds the same series whatever the label order in the exposition.

use std::collections::BTreeMap;

/// A series: metric name and labels (sorted by name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    /// Metric name.
    pub name: String,
    /// Labels, sorted by name.
    pub labels: BTreeMap<String, String>,
}

impl SeriesKey {
    /// Parses `name` or `name{a="x",b="y"}` (values may use `\"`, `\\`, `\n` escapes).
    pub fn parse(s: &str) -> Result<SeriesKey, String> {
        let s = s.trim();
        let (name, rest) = match s.find('{') {
            Some(i) => (&s[..i], Some(&s[i..])),
            None => (s, None),
        };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            return Err(format!("bad metric name {name:?}"));
        }
        let mut labels = BTreeMap::new();
        if let Some(rest) = rest {
            let inner = rest
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .ok_or_else(|| format!("bad label set {rest:?}"))?;
            let mut chars = inner.chars().peekable();
            loop {
                while matches!(chars.peek(), Some(' ') | Some(',')) {
                    chars.next();
                }
                if chars.peek().is_none() {
                    break;
                }
                let mut lname = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '=' {
                        break;
                    }
                    lname.push(c);
                    chars.next();
                }
                if chars.next() != Some('=') || chars.next() != Some('"') {
                    return Err(format!("bad label in {s:?}"));
                }
                let mut val = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated label value in {s:?}")),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => val.push('\n'),
                            Some(c) => val.push(c),
                            None => return Err(format!("bad escape in {s:?}")),
                        },
                        Some(c) => val.push(c),
                    }
                }
                labels.insert(lname.trim().to_string(), val);
            }
        }
        Ok(SeriesKey { name: name.to_string(), labels })
    }
}

impl std::fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name)?;
        if !self.labels.is_empty() {
            let l: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            write!(f, "{{{}}}", l.join(","))?;
        }
        Ok(())
    }
}

/// A scrape: every sample line, by series.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Value per series.
    pub series: BTreeMap<SeriesKey, f64>,
}

impl Scrape {
    /// Parses an exposition; comment lines and unparsable lines are skipped.
    pub fn parse(text: &str) -> Scrape {
        let mut series = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The value follows the last '}' (or the name), then an optional timestamp.
            let (key, rest) = match line.rfind('}') {
                Some(i) => (&line[..=i], line[i + 1..].trim()),
                None => match line.find(char::is_whitespace) {
                    Some(i) => (&line[..i], line[i..].trim()),
                    None => continue,
                },
            };
            let val = rest.split_whitespace().next().unwrap_or("");
            let v = match val {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => match v.parse::<f64>() {
                    Ok(x) => x,
                    Err(_) => continue,
                },
            };
            if let Ok(k) = SeriesKey::parse(key) {
                series.insert(k, v);
            }
        }
        Scrape { series }
    }

    /// The value of a series; None when the exposition does not have it (absent is not 0).
    pub fn value(&self, key: &SeriesKey) -> Option<f64> {
        self.series.get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exposition_and_orders_labels() {
        let s = Scrape::parse(
            "# HELP x y\n# TYPE router_requests_total counter\nrouter_requests_total{status=\"200\",placement=\"a\"} 3\nrouter_config_version 7\nrouter_request_duration_seconds_bucket{placement=\"a\",le=\"+Inf\"} 3 1700000000\n",
        );
        let k = SeriesKey::parse("router_requests_total{placement=\"a\", status=\"200\"}").unwrap();
        assert_eq!(s.value(&k), Some(3.0));
        assert_eq!(s.value(&SeriesKey::parse("router_config_version").unwrap()), Some(7.0));
        let b = SeriesKey::parse("router_request_duration_seconds_bucket{le=\"+Inf\",placement=\"a\"}").unwrap();
        assert_eq!(s.value(&b), Some(3.0));
        // absent is not 0
        assert_eq!(s.value(&SeriesKey::parse("router_errors_total{code=\"x\"}").unwrap()), None);
    }

    #[test]
    fn label_escapes_and_errors() {
        let k = SeriesKey::parse(r#"m{a="x\"y",b=""}"#).unwrap();
        assert_eq!(k.labels["a"], "x\"y");
        assert_eq!(k.labels["b"], "");
        assert!(SeriesKey::parse("m{a=x}").is_err());
        assert!(SeriesKey::parse("").is_err());
    }
}
