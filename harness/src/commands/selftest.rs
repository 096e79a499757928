//! `parity selftest`: proves the parity verdict catches differences (see
//! [`crate::selftest`]): every injected kind of difference must be reported as
//! `diverged` at the right step and field, and clean pairs must be identical.

use clap::Args;
use std::path::PathBuf;

/// Exit codes of `parity selftest`.
pub const EXIT_CODES: &str = "Exit codes:
  0  every injected difference was reported at its step and field; clean pairs identical
  1  the verdict missed or misplaced a difference, or a clean pair differed
  3  the harness failed (missing router binary)";

/// Arguments of `parity selftest`.
#[derive(Args, Debug)]
pub struct SelftestArgs {
    /// The router the pairs are made of (`go` or `pingora`).
    #[arg(long, default_value = "go")]
    pub r#impl: String,
    /// Router binaries (default as for `run`).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Only the cases whose name contains this text.
    #[arg(long)]
    pub only: Option<String>,
}

/// Runs the self-test; returns the exit code.
pub async fn run(a: SelftestArgs) -> i32 {
    if crate::env::binary_name(&a.r#impl).is_none() {
        eprintln!("parity selftest: unknown --impl {:?} (go or pingora)", a.r#impl);
        return 2;
    }
    let bin_dir = crate::env::find_bin_dir(a.bin_dir.clone());
    let bin = bin_dir.join(crate::env::binary_name(&a.r#impl).unwrap_or_default());
    if !bin.exists() {
        eprintln!("parity selftest: router binary {} not found (run `make build` or pass --bin-dir)", bin.display());
        return 3;
    }
    let logs = match tempfile::Builder::new().prefix("parity-selftest-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("parity selftest: {e}");
            return 3;
        }
    };
    let (clean, outcomes) = crate::selftest::run(&a.r#impl, &bin_dir, logs.path(), a.only.as_deref(), |name, ok, detail| {
        println!("{} {name:32} {detail}", if ok { "ok  " } else { "FAIL" });
    })
    .await;
    let bad = outcomes.iter().filter(|o| !o.ok).count() + clean.iter().filter(|(_, d)| d.is_some()).count();
    println!("parity selftest: {} of {} injected differences reported at their step and field; {} clean pairs identical of {}", outcomes.iter().filter(|o| o.ok).count(), outcomes.len(), clean.iter().filter(|(_, d)| d.is_none()).count(), clean.len());
    if bad == 0 {
        0
    } else {
        let _ = logs.keep();
        1
    }
}
