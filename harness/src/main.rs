//! `parity`: the scenario engine and benchmark driver of pingora-parity.
mod bench;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "parity", about = "Run the same scenarios against both routers")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Benchmark profiles (issue 5).
    Bench(bench::BenchArgs),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Bench(a) => match bench::run(a).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e:#}");
                3
            }
        },
    };
    std::process::exit(code);
}
