//! The vendored Pingora crates are the released crates plus a documented diff, nothing else.
//!
//! For every directory `vendor/<crate>/` there must be `vendor/<crate>.sha256` (the SHA-256 of
//! every file of the released `.crate`, in `sha256sum` format, paths relative to the crate root,
//! generated from `~/.cargo/registry/src/*/<crate>-<version>` before the patch was applied) and
//! `vendor/<crate>.patch` (a unified diff, `a/` and `b/` prefixes, paths relative to the crate
//! root). The check removes the patch from the vendored tree (in memory) and requires the result
//! to be byte-for-byte the released crate: the same set of files, each with the manifest's hash.
//! It also requires the workspace to `[patch.crates-io]` the crate with that directory, and
//! `Cargo.lock` to hold exactly one package of that name. See `vendor/README.md`.
//!
//! Offline, no tools outside the test binary.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn vendor_root() -> PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("vendor")
}

fn workspace_root() -> PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The names of the vendored crates: every directory directly under `vendor/`.
fn vendored_crates(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Every regular file under `dir`, as `/`-separated paths relative to `dir`.
fn walk(dir: &Path) -> BTreeMap<String, PathBuf> {
    fn go(base: &Path, dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                go(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap();
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.insert(rel.join("/"), path);
            }
        }
    }
    let mut out = BTreeMap::new();
    go(dir, dir, &mut out);
    out
}

/// `sha256sum` output: `<64 hex>  <path>` per line.
fn parse_manifest(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let (hash, path) = line
            .split_once("  ")
            .ok_or_else(|| format!("manifest line {}: not `<sha256>  <path>`", i + 1))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("manifest line {}: bad hash {hash:?}", i + 1));
        }
        out.insert(path.to_string(), hash.to_ascii_lowercase());
    }
    Ok(out)
}

/// One hunk of a unified diff: where it starts on the new side (1-based) and its body lines,
/// each with its leading ' ', '-' or '+'.
struct Hunk {
    new_start: usize,
    lines: Vec<String>,
}

/// A unified diff, by file (path after `+++ b/`).
fn parse_patch(text: &str) -> Result<BTreeMap<String, Vec<Hunk>>, String> {
    let mut files: BTreeMap<String, Vec<Hunk>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.split_inclusive('\n') {
        if let Some(path) = line.strip_prefix("+++ ") {
            let path = path.trim_end().split('\t').next().unwrap();
            let path = path
                .strip_prefix("b/")
                .ok_or_else(|| format!("patch: `+++ {path}` lacks the b/ prefix"))?;
            files.entry(path.to_string()).or_default();
            current = Some(path.to_string());
        } else if line.starts_with("--- ") {
            current = None;
        } else if let Some(header) = line.strip_prefix("@@ -") {
            let file = current.as_ref().ok_or("patch: hunk before a +++ line")?;
            let plus = header.split(' ').nth(1).ok_or("patch: bad hunk header")?;
            let start = plus.trim_start_matches('+').split(',').next().unwrap();
            let new_start = start.parse().map_err(|_| format!("patch: bad hunk header {line:?}"))?;
            files.get_mut(file).unwrap().push(Hunk { new_start, lines: Vec::new() });
        } else if line.starts_with('\\') {
            return Err("patch: `\\ No newline at end of file` is not supported".into());
        } else if let Some(file) = &current {
            let hunk = files.get_mut(file).unwrap().last_mut().ok_or("patch: line outside a hunk")?;
            hunk.lines.push(line.to_string());
        }
    }
    Ok(files)
}

/// Undo `hunks` on `text` (the patched file): every context and `+` line must be where the hunk
/// says; they are replaced by the context and `-` lines.
fn unapply(text: &str, hunks: &[Hunk]) -> Result<String, String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::new();
    let mut at = 0; // next unconsumed line of `lines` (0-based)
    for hunk in hunks {
        let start = hunk.new_start.saturating_sub(1);
        if start < at || start > lines.len() {
            return Err(format!("hunk at new line {} out of order or range", hunk.new_start));
        }
        out.extend(lines[at..start].iter().copied());
        at = start;
        for l in &hunk.lines {
            let (tag, body) = l.split_at(1);
            match tag {
                " " | "+" => {
                    if lines.get(at) != Some(&body) {
                        return Err(format!(
                            "hunk at new line {}: line {} is {:?}, the patch says {:?}",
                            hunk.new_start,
                            at + 1,
                            lines.get(at),
                            body
                        ));
                    }
                    at += 1;
                    if tag == " " {
                        out.push_str(body);
                    }
                }
                "-" => out.push_str(body),
                _ => return Err(format!("hunk line {l:?} has no ' ', '+' or '-' tag")),
            }
        }
    }
    out.extend(lines[at..].iter().copied());
    Ok(out)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks `root/<name>/` against `root/<name>.sha256` and `root/<name>.patch`.
/// Returns every difference found, or `Ok` when the tree is the release plus the patch.
fn check_crate(root: &Path, name: &str) -> Result<(), Vec<String>> {
    let read = |ext: &str| {
        fs::read_to_string(root.join(format!("{name}.{ext}")))
            .map_err(|e| vec![format!("{name}.{ext}: {e}")])
    };
    let manifest = parse_manifest(&read("sha256")?).map_err(|e| vec![e])?;
    let patch = parse_patch(&read("patch")?).map_err(|e| vec![e])?;
    let tree = walk(&root.join(name));
    let mut errors = Vec::new();

    let have: BTreeSet<&String> = tree.keys().collect();
    let want: BTreeSet<&String> = manifest.keys().collect();
    for extra in have.difference(&want) {
        errors.push(format!("{name}/{extra}: not in the released crate"));
    }
    for missing in want.difference(&have) {
        errors.push(format!("{name}/{missing}: in the released crate, missing here"));
    }
    for file in patch.keys() {
        if !tree.contains_key(file) {
            errors.push(format!("{name}.patch changes {file}, which is not vendored"));
        }
    }
    for (rel, path) in &tree {
        let Some(expected) = manifest.get(rel) else { continue };
        let bytes = fs::read(path).unwrap();
        let original = match patch.get(rel) {
            None => bytes,
            Some(hunks) => {
                let text = match String::from_utf8(bytes) {
                    Ok(t) => t,
                    Err(_) => {
                        errors.push(format!("{name}/{rel}: patched file is not UTF-8"));
                        continue;
                    }
                };
                match unapply(&text, hunks) {
                    Ok(t) => t.into_bytes(),
                    Err(e) => {
                        errors.push(format!("{name}/{rel}: {name}.patch does not apply: {e}"));
                        continue;
                    }
                }
            }
        };
        if &sha256_hex(&original) != expected {
            errors.push(format!(
                "{name}/{rel}: differs from the released crate beyond {name}.patch"
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[test]
fn vendored_crates_are_the_release_plus_their_patch() {
    let root = vendor_root();
    let crates = vendored_crates(&root);
    assert!(!crates.is_empty(), "no vendored crate under {}", root.display());
    let mut errors = Vec::new();
    for name in &crates {
        if let Err(e) = check_crate(&root, name) {
            errors.extend(e);
        }
    }
    assert!(errors.is_empty(), "vendored tree check failed:\n  {}", errors.join("\n  "));
}

#[test]
fn every_vendored_crate_is_the_one_patched_copy_in_the_lock() {
    let manifest = fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    let lock = fs::read_to_string(workspace_root().join("Cargo.lock")).unwrap();
    let patch_section = manifest
        .split("[patch.crates-io]")
        .nth(1)
        .expect("the workspace Cargo.toml has a [patch.crates-io] section")
        .split("\n[")
        .next()
        .unwrap();
    for name in vendored_crates(&vendor_root()) {
        let entry = format!("{name} = {{ path = \"rust-pingora/vendor/{name}\" }}");
        assert!(
            patch_section.lines().any(|l| l.trim() == entry),
            "[patch.crates-io] lacks `{entry}`"
        );
        let packages = lock.matches(&format!("\nname = \"{name}\"\n")).count();
        assert_eq!(packages, 1, "Cargo.lock holds {packages} packages named {name}");
    }
}

#[test]
fn a_change_outside_the_patch_is_caught() {
    // Copy one vendored crate to a scratch directory, change one byte of a file the patch does
    // not touch and one line of the patched file: the check must name both.
    let root = vendor_root();
    let name = vendored_crates(&root).into_iter().next().unwrap();
    let scratch = std::env::temp_dir().join(format!("vendor-check-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    let tree = walk(&root.join(&name));
    for (rel, path) in &tree {
        let dest = scratch.join(&name).join(rel);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(path, dest).unwrap();
    }
    for ext in ["sha256", "patch"] {
        let file = format!("{name}.{ext}");
        fs::copy(root.join(&file), scratch.join(&file)).unwrap();
    }
    assert_eq!(check_crate(&scratch, &name), Ok(()), "the unmodified copy must pass");

    let license = scratch.join(&name).join("LICENSE");
    let mut bytes = fs::read(&license).unwrap();
    bytes[0] ^= 0x20;
    fs::write(&license, bytes).unwrap();
    let patch = parse_patch(&fs::read_to_string(root.join(format!("{name}.patch"))).unwrap())
        .unwrap();
    let patched = patch.keys().next().expect("the patch changes a file").clone();
    let patched_path = scratch.join(&name).join(&patched);
    let text = fs::read_to_string(&patched_path).unwrap();
    fs::write(&patched_path, format!("// an extra line\n{text}")).unwrap();
    fs::write(scratch.join(&name).join("EXTRA"), "x").unwrap();

    let errors = check_crate(&scratch, &name).unwrap_err();
    let _ = fs::remove_dir_all(&scratch);
    assert!(errors.iter().any(|e| e.contains("LICENSE")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains(&patched)), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("EXTRA")), "{errors:?}");
}
