//! Shared config-validation vectors (spec/vectors/config/*.json, format in
//! spec/vectors/README or docs): every vector's raw `input` bytes (or `input_text`),
//! padded to `pad_to_bytes` when given, must give the expected result.

use rust_pingora::config::{check_version, parse_and_validate};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::path::PathBuf;

#[derive(Deserialize)]
struct Vector {
    #[allow(dead_code)]
    description: Option<String>,
    input: Option<Box<RawValue>>,
    input_text: Option<String>,
    pad_to_bytes: Option<usize>,
    current: Option<Box<RawValue>>,
    expect: Expect,
}

#[derive(Deserialize)]
struct Expect {
    result: String,
    code: Option<String>,
    path: Option<String>,
}

#[test]
fn shared_config_vectors() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../spec/vectors/config");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no vectors in {}", dir.display());
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let v: Vector = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let mut doc: Vec<u8> = match (&v.input, &v.input_text) {
            (Some(raw), None) => raw.get().as_bytes().to_vec(),
            (None, Some(t)) => t.as_bytes().to_vec(),
            _ => panic!("{}: needs exactly one of input/input_text", f.display()),
        };
        if let Some(n) = v.pad_to_bytes {
            assert!(doc.len() <= n, "{}: document longer than pad_to_bytes", f.display());
            doc.resize(n, b' ');
        }
        let got = parse_and_validate(&doc).and_then(|cfg| match &v.current {
            None => Ok(()),
            Some(cur) => {
                let cur = parse_and_validate(cur.get().as_bytes())
                    .unwrap_or_else(|e| panic!("{}: current is invalid: {e}", f.display()));
                check_version(Some(&cur), &cfg).map(|_| ())
            }
        });
        let ok = match (v.expect.result.as_str(), &got) {
            ("accepted", Ok(())) => true,
            ("rejected", Err(r)) => {
                Some(r.code.as_str()) == v.expect.code.as_deref() && Some(r.path.as_str()) == v.expect.path.as_deref()
            }
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{}: expected {} {:?} {:?}, got {:?}",
                f.file_name().unwrap().to_string_lossy(),
                v.expect.result,
                v.expect.code,
                v.expect.path,
                got.map_err(|r| (r.code.as_str(), r.path))
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} vectors failed:\n{}", failures.len(), files.len(), failures.join("\n"));
}
