//! `parity bench`: the benchmark (see [`crate::bench`]); a harness error exits 3.

/// Runs the benchmark; returns its exit code.
pub async fn run(a: crate::bench::BenchArgs) -> i32 {
    match crate::bench::run(a).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            3
        }
    }
}
