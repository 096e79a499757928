//! The last-known-good config file (docs/spec.md section 6): written atomically before an
//! accepted config is installed and acked, loaded once at start-up.

use crate::config;
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the last-known-good config inside `--state-dir`.
pub const LKG_FILE: &str = "last-known-good.json";

/// Path of the LKG file.
pub fn lkg_path(dir: &Path) -> PathBuf {
    dir.join(LKG_FILE)
}

/// Write `bytes` to `<dir>/last-known-good.json` atomically: temp file in the same
/// directory, fsync, rename, fsync of the directory.
pub fn write_lkg(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{LKG_FILE}.tmp-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, lkg_path(dir))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Result of loading the LKG file at start-up.
#[derive(Debug)]
pub enum LkgLoad {
    /// No file: start without a config.
    Missing,
    /// A valid config.
    Loaded(config::Config),
    /// Invalid: renamed to `.corrupt`; start without a config.
    Corrupt(String),
}

/// Load and validate (without the stale check) the LKG file; a file that fails is renamed
/// to `last-known-good.json.corrupt`, replacing an older one.
pub fn load_lkg(dir: &Path) -> LkgLoad {
    let path = lkg_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return LkgLoad::Missing,
        Err(e) => return LkgLoad::Corrupt(format!("reading {}: {e}", path.display())),
    };
    match config::parse_and_validate(&bytes) {
        Ok(c) => LkgLoad::Loaded(c),
        Err(r) => {
            let corrupt = dir.join(format!("{LKG_FILE}.corrupt"));
            let _ = std::fs::rename(&path, &corrupt);
            LkgLoad::Corrupt(format!("{}: {r}; moved to {}", path.display(), corrupt.display()))
        }
    }
}
