//! `parity validate`: loads scenario files and prints every error with file, line and field.
use crate::scenario;
use crate::util::out::say;
use std::path::PathBuf;

/// Exit codes of `parity validate`.
pub const EXIT_CODES: &str = "Exit codes:
  0  every scenario file is valid
  2  a scenario file is invalid or does not exist";

/// Arguments of `parity validate`.
#[derive(clap::Args)]
pub struct ValidateArgs {
    /// Files or folders (default: scenarios/).
    pub files: Vec<PathBuf>,
}

/// Validates the files; returns the exit code.
pub fn run(a: ValidateArgs) -> i32 {
    let files = if a.files.is_empty() {
        match super::default_scenarios_dir() {
            Ok(d) => vec![d],
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        }
    } else {
        a.files
    };
    let mut all = Vec::new();
    for f in &files {
        if !f.exists() {
            eprintln!("{}: no such file", f.display());
            return 2;
        }
        match scenario::files_in(f) {
            Ok(mut v) => all.append(&mut v),
            Err(e) => {
                eprintln!("{}:0: field `.`: {e}", f.display());
                return 2;
            }
        }
    }
    let (ok, errs) = scenario::load_all(&all);
    for e in &errs {
        eprintln!("{e}");
    }
    say(&format!("{} valid, {} errors", ok.len(), errs.len()));
    if errs.is_empty() {
        0
    } else {
        2
    }
}
