//! `pingora-router`: see docs/spec.md (the contract) and docs/design-pingora.md.

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        env_logger::init();
    }
    let code = match rust_pingora::server::parse_flags() {
        Ok(flags) => rust_pingora::server::run(flags, rust_pingora::server::shutdown_signals()),
        Err(code) => code,
    };
    std::process::exit(code);
}
