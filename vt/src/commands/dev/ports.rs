//! Loopback ports of the stack: the previous run's when they are still free,
//! free ones picked by the kernel when not (or the first time).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

/// What listens on a port: TCP (the API, the registry) or UDP (QUIC: the
/// controller, the hosts' tunnels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// Whether `addr` can be bound right now.
pub fn is_free(addr: SocketAddr, proto: Proto) -> bool {
    match proto {
        Proto::Tcp => TcpListener::bind(addr).is_ok(),
        Proto::Udp => UdpSocket::bind(addr).is_ok(),
    }
}

/// A port on 127.0.0.1 that is free now.
pub fn any_free(proto: Proto) -> io::Result<SocketAddr> {
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    match proto {
        Proto::Tcp => TcpListener::bind(any)?.local_addr(),
        Proto::Udp => UdpSocket::bind(any)?.local_addr(),
    }
}

/// A port for one piece of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Picked {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The previous run's port, when it was taken and this one replaces it.
    pub moved_from: Option<SocketAddr>,
}

/// `previous` when it names a port that is still free, else a free one.
pub fn keep_or_pick(previous: Option<SocketAddr>, proto: Proto) -> io::Result<Picked> {
    match previous.filter(|a| a.port() != 0) {
        Some(addr) if is_free(addr, proto) => Ok(Picked {
            addr,
            moved_from: None,
        }),
        taken => Ok(Picked {
            addr: any_free(proto)?,
            moved_from: taken,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_is_kept_and_a_taken_one_replaced() {
        for proto in [Proto::Tcp, Proto::Udp] {
            let free = any_free(proto).expect("a free port");
            assert_eq!(
                keep_or_pick(Some(free), proto).expect("keep"),
                Picked {
                    addr: free,
                    moved_from: None
                }
            );
            let fresh = keep_or_pick(None, proto).expect("pick");
            assert!(fresh.moved_from.is_none() && fresh.addr.port() != 0);
            let unset = keep_or_pick(Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))), proto)
                .expect("port 0 is no port");
            assert!(unset.moved_from.is_none() && unset.addr.port() != 0);
        }
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken = tcp.local_addr().expect("addr");
        assert!(!is_free(taken, Proto::Tcp));
        let moved = keep_or_pick(Some(taken), Proto::Tcp).expect("pick");
        assert_eq!(moved.moved_from, Some(taken));
        assert_ne!(moved.addr, taken);
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let taken = udp.local_addr().expect("addr");
        assert_eq!(
            keep_or_pick(Some(taken), Proto::Udp)
                .expect("pick")
                .moved_from,
            Some(taken)
        );
    }
}
