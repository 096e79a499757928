//! Loopback addresses and free ports, used by the scenario environment and the benchmark.
use std::net::SocketAddr;

/// Picks a port on 127.0.0.1 that nothing listens on at the moment of the call.
///
/// The port is released before returning, so another process may take it before the
/// caller binds; callers that start a process on it retry on a bind failure.
///
/// # Errors
/// When no loopback socket can be bound.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The loopback address `127.0.0.1:port`.
pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable_and_addr_is_loopback() {
        let p = free_port().unwrap();
        assert_ne!(p, 0);
        std::net::TcpListener::bind(addr(p)).unwrap();
        assert_eq!(addr(8080).to_string(), "127.0.0.1:8080");
    }
}
