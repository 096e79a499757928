//! Printing to stdout that survives a closed pipe.
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Prints one line to stdout; once stdout is closed (`parity run | head -1`) it stops
/// printing instead of panicking like `println!`, so the run still finishes, writes its
/// results and stops its routers.
pub fn say(line: &str) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}
