//! Listening sockets with the accept backlog of a server that a whole
//! cluster connects to.
//!
//! `std::net::TcpListener::bind` asks the kernel for a backlog of 128
//! pending connections. The collectors of a few racks flushing in the same
//! second, or reconnecting together after a restart of the relay, overflow
//! that: the kernel drops their handshakes and each waits for a SYN
//! retransmission (1 s, then 3 s, …), close to the collectors' 5 s client
//! timeout. Go's `net.Listen`, which cc-metric-store and the cc-lib
//! receivers use, asks for `net.core.somaxconn` (4096 on current Linux);
//! [`bind_tcp`] asks for as many as the system allows, which it caps at
//! that same setting.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

/// The backlog asked for: more than any system grants, so that the kernel's
/// limit (`net.core.somaxconn` on Linux) is what applies.
pub const LISTEN_BACKLOG: i32 = 65_535;

/// Binds a listening TCP socket to the first address `addr` resolves to
/// that can be bound, as `TcpListener::bind` does, with [`LISTEN_BACKLOG`]
/// (and `SO_REUSEADDR`, close-on-exec, as std sets them).
///
/// # Errors
///
/// The error of the last address tried, or `InvalidInput` if `addr`
/// resolves to none.
pub fn bind_tcp(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in addr.to_socket_addrs()? {
        match bind_one(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_like_std_and_accepts() {
        let listener = bind_tcp("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(server.local_addr().unwrap(), addr);
        // The port is taken now.
        assert_eq!(bind_tcp(addr).unwrap_err().kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn an_address_that_resolves_to_nothing_is_an_error() {
        let none: &[SocketAddr] = &[];
        assert_eq!(
            bind_tcp(none).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
