//! `parity`: parses the command line, runs one command (see [`harness::commands`]) and
//! exits once with its code, after every router process the run started is killed.
use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = harness::commands::Cli::parse();
    let code = harness::commands::dispatch(cli.cmd).await;
    harness::env::kill_all();
    std::process::exit(code);
}
