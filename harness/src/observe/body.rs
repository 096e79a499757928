//! A body as an observer keeps it: its length, the SHA-256 of every byte, and the bytes
//! themselves up to a cap, so that two bodies can be compared by hash whatever their size
//! and, when they differ inside the kept prefix, by the first differing offset.

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};

/// How many body bytes an observation keeps by default (64 KiB). Bodies up to this size are
/// kept whole (and can be normalised, e.g. ports in an echo body); longer ones keep this
/// prefix and are compared by length and hash.
pub const KEEP_BYTES: usize = 64 * 1024;

/// A body, kept whole up to a cap, hashed in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BodyRecord {
    /// Bytes received, in total.
    pub len: u64,
    /// Lower-case hex SHA-256 of all `len` bytes.
    pub sha256: String,
    /// The first `min(len, cap)` bytes.
    #[serde(with = "bytes_as_text")]
    pub kept: Vec<u8>,
}

impl BodyRecord {
    /// A record of `bytes`, keeping at most `cap` of them.
    pub fn of(bytes: &[u8], cap: usize) -> BodyRecord {
        let mut s = BodySink::new(cap);
        s.push(bytes);
        s.finish()
    }

    /// Whether the whole body is kept (`kept.len() == len`).
    pub fn whole(&self) -> bool {
        self.kept.len() as u64 == self.len
    }

    /// The first offset at which `self` and `other` differ, or `None` when they are equal
    /// (same length and hash). When both kept prefixes agree up to the shorter one, the
    /// offset is the end of the shorter body if the lengths differ, else the end of the kept
    /// prefix (the difference lies beyond what was kept).
    pub fn first_difference(&self, other: &BodyRecord) -> Option<u64> {
        if self.len == other.len && self.sha256 == other.sha256 {
            return None;
        }
        let n = self.kept.len().min(other.kept.len());
        if let Some(i) = (0..n).find(|&i| self.kept[i] != other.kept[i]) {
            return Some(i as u64);
        }
        if self.len != other.len && (n as u64 == self.len.min(other.len)) {
            return Some(self.len.min(other.len));
        }
        Some(n as u64)
    }
}

/// Incremental builder of a [`BodyRecord`].
pub struct BodySink {
    ctx: Context,
    len: u64,
    kept: Vec<u8>,
    cap: usize,
}

impl BodySink {
    /// An empty body keeping at most `cap` bytes.
    pub fn new(cap: usize) -> BodySink {
        BodySink { ctx: Context::new(&SHA256), len: 0, kept: Vec::new(), cap }
    }

    /// Appends bytes.
    pub fn push(&mut self, b: &[u8]) {
        self.ctx.update(b);
        self.len += b.len() as u64;
        let room = self.cap.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&b[..room.min(b.len())]);
    }

    /// Bytes so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The record.
    pub fn finish(self) -> BodyRecord {
        BodyRecord { len: self.len, sha256: hex(self.ctx.finish().as_ref()), kept: self.kept }
    }
}

/// Lower-case hex SHA-256 of `b`.
pub fn sha256_hex(b: &[u8]) -> String {
    hex(ring::digest::digest(&SHA256, b).as_ref())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Bytes serialised as text when they are UTF-8 (`"text"`), else as `{"hex": "..."}`.
pub mod bytes_as_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Hex { hex: String },
    }

    /// Serialises as text or hex.
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(b) {
            Ok(t) => Repr::Text(t.to_string()).serialize(s),
            Err(_) => Repr::Hex { hex: super::hex(b) }.serialize(s),
        }
    }

    /// Reads text or hex.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Text(t) => Ok(t.into_bytes()),
            Repr::Hex { hex } => (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(serde::de::Error::custom))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_cap() {
        let r = BodyRecord::of(b"hello world", 5);
        assert_eq!(r.len, 11);
        assert_eq!(r.kept, b"hello");
        assert!(!r.whole());
        assert_eq!(r.sha256, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        let mut s = BodySink::new(100);
        s.push(b"hello ");
        s.push(b"world");
        let w = s.finish();
        assert_eq!(w.sha256, r.sha256);
        assert!(w.whole());
    }

    #[test]
    fn first_difference_by_offset() {
        let a = BodyRecord::of(b"abcdef", 100);
        assert_eq!(a.first_difference(&BodyRecord::of(b"abcdef", 100)), None);
        assert_eq!(a.first_difference(&BodyRecord::of(b"abXdef", 100)), Some(2));
        assert_eq!(a.first_difference(&BodyRecord::of(b"abc", 100)), Some(3));
        // beyond the kept prefix: the end of the prefix
        assert_eq!(BodyRecord::of(b"abcdef", 2).first_difference(&BodyRecord::of(b"abcdeX", 2)), Some(2));
    }

    #[test]
    fn serialises_text_or_hex() {
        let t = serde_json::to_value(BodyRecord::of(b"hi", 10)).unwrap();
        assert_eq!(t["kept"], "hi");
        let h = BodyRecord::of(&[0xff, 0x00], 10);
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["kept"]["hex"], "ff00");
        let back: BodyRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, h);
    }
}
