//! `parity list`: one line per selected scenario (id, tags, first line of the description).
use std::io::Write;

/// Exit codes of `parity list`.
pub const EXIT_CODES: &str = "Exit codes:
  0  the scenarios were listed
  2  a scenario file is invalid, a file does not exist or a target matches nothing";

/// Arguments of `parity list`.
#[derive(clap::Args)]
pub struct ListArgs {
    /// Scenario files, folders or id globs (default: scenarios/).
    pub targets: Vec<String>,
    /// Only scenarios with this tag (repeatable).
    #[arg(long)]
    pub tag: Vec<String>,
}

/// Lists the scenarios; returns the exit code.
pub fn run(a: ListArgs) -> i32 {
    match super::select(&a.targets, &a.tag) {
        Err(c) => c,
        Ok(list) => {
            let mut out = std::io::stdout().lock();
            for l in list {
                // A closed pipe (`parity list | head`) just ends the listing.
                if writeln!(out, "{:<28} [{}] {}", l.scenario.id, l.scenario.tags.join(","), l.scenario.description.trim().lines().next().unwrap_or("")).is_err() {
                    break;
                }
            }
            0
        }
    }
}
