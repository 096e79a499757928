//! `parity chaos`: random fault schedules under load on both routers ([`crate::chaos`],
//! docs/chaos.md).
pub use crate::chaos::{ChaosArgs, EXIT_CODES};

/// Runs the chaos cases; returns the exit code (0 clean, 1 findings, 2 usage, 3 harness).
pub async fn run(a: ChaosArgs) -> i32 {
    crate::chaos::run(a).await
}
