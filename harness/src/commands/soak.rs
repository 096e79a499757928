//! `parity soak`: each router for N seconds under load with config swaps, endpoint
//! flaps, breaker trips and control-plane drops ([`crate::soak`], docs/soak.md).
pub use crate::soak::{SoakArgs, EXIT_CODES};

/// Runs the soak; returns the exit code (0 pass, 1 a check failed, 3 harness error).
pub async fn run(a: SoakArgs) -> i32 {
    crate::soak::run(a).await
}
