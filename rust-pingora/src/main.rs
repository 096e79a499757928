//! `pingora-router`: see docs/spec.md (the contract) and docs/design-pingora.md.

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        env_logger::init();
    }
    let flags = rust_pingora::server::parse_flags();
    rust_pingora::server::run(flags);
}
