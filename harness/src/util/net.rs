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

/// Picks `N` distinct ports on 127.0.0.1 that nothing listens on (each held while the next
/// is picked, so two picks never return the same port); released before returning, as
/// [`free_port`].
///
/// # Errors
/// When no loopback socket can be bound.
pub fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let held: Vec<std::net::TcpListener> = (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    let mut out = [0u16; N];
    for (o, l) in out.iter_mut().zip(&held) {
        *o = l.local_addr()?.port();
    }
    Ok(out)
}

/// A loopback port held by a TCP socket that is bound but never listens: a connection to
/// it is refused (RST, as to a port nothing uses), and no ephemeral bind (`127.0.0.1:0`,
/// ours or another process's) can pick it while the value lives. For the scenario's
/// "unused" port and for an upstream that is down, so that no other run's upstream or
/// router takes the port meanwhile (seen with parallel runs: a router listening on the
/// port a concurrent step expected to refuse). `SO_REUSEADDR` is set so that the port can
/// be held again right after its listener closed (connections in TIME_WAIT); `CLOEXEC` so
/// that router processes do not inherit it.
#[derive(Debug)]
pub struct ReservedPort {
    _sock: tokio::net::TcpSocket,
    port: u16,
}

impl ReservedPort {
    /// Holds `port` (0: a free port the kernel picks). A `tokio::net::TcpSocket` is a
    /// socket that listens only when asked to, and is made close-on-exec.
    ///
    /// # Errors
    /// When the socket cannot be made or bound (the port is in use by a listener).
    pub fn new(port: u16) -> anyhow::Result<ReservedPort> {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.set_reuseaddr(true)?;
        sock.bind(addr(port))?;
        let port = sock.local_addr()?.port();
        Ok(ReservedPort { _sock: sock, port })
    }

    /// The port held.
    pub fn port(&self) -> u16 {
        self.port
    }
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
        let [a, b, c] = free_ports::<3>().unwrap();
        assert!(a != b && b != c && a != c);
    }

    #[test]
    fn a_reserved_port_refuses_connections_and_is_never_picked() {
        let r = ReservedPort::new(0).unwrap();
        let e = std::net::TcpStream::connect(addr(r.port())).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        // Ephemeral binds never return it.
        let picked: Vec<u16> = (0..2000).filter_map(|_| free_port().ok()).collect();
        assert!(!picked.contains(&r.port()));
        // Once it is dropped, the port can be listened on again; and a port whose
        // listener just closed can be held.
        let p = r.port();
        drop(r);
        let l = std::net::TcpListener::bind(addr(p)).unwrap();
        let _c = std::net::TcpStream::connect(addr(p)).unwrap();
        drop(l);
        let again = ReservedPort::new(p).unwrap();
        assert_eq!(again.port(), p);
    }
}
