//! The edge → host tunnel protocol. Each client TCP connection accepted by an
//! edge becomes one bidirectional QUIC stream to the host running the chosen
//! instance. The stream starts with a small binary [`TunnelHeader`] naming the
//! instance, the guest port, the client's address and the address it
//! connected to; the host answers with one [`TunnelStatus`] byte, and then the
//! stream carries the connection's bytes both ways (each direction finished
//! independently, like a TCP half-close).
//!
//! Header layout (all integers big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `vtT1` |
//! | 1 | flags: bit 0 = write a PROXY protocol v2 header to the guest |
//! | 2 | guest port |
//! | 1 + n | instance ID: length (1..=[`MAX_INSTANCE_ID`]), then ASCII bytes |
//! | 1 + 4/16 + 2 | client address: family (4 or 6), address, port |
//! | 1 + 4/16 + 2 | endpoint address the client connected to, same encoding |

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use vt_plan::InstanceId;

/// The first bytes of every tunnel stream.
pub const MAGIC: &[u8; 4] = b"vtT1";
/// The longest instance ID a header may carry.
pub const MAX_INSTANCE_ID: usize = 64;
/// Buffer size of each direction when copying a tunnelled connection
/// (tokio's default of 8 KiB caps one flow's throughput).
pub const COPY_BUFFER: usize = 64 * 1024;
/// The longest header there can be.
pub const MAX_HEADER: usize = 4 + 1 + 2 + 1 + MAX_INSTANCE_ID + 2 * (1 + 16 + 2);
const FLAG_PROXY_V2: u8 = 1;

/// What an edge tells a host about one tunnelled connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelHeader {
    /// The instance to connect to.
    pub instance: InstanceId,
    /// The port inside the guest.
    pub port: u16,
    /// The client's address, as the edge saw it.
    pub client: SocketAddr,
    /// The endpoint address and port the client connected to.
    pub local: SocketAddr,
    /// Whether the host writes a PROXY protocol v2 header before the first byte.
    pub proxy_v2: bool,
}

/// Why a header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The stream does not start with [`MAGIC`].
    #[error("not a vt tunnel stream (bad magic)")]
    BadMagic,
    /// Flags this version does not know.
    #[error("unknown tunnel flags {0:#04x}")]
    UnknownFlags(u8),
    /// An instance ID that is empty, too long or not ASCII.
    #[error("bad instance ID in tunnel header")]
    BadInstance,
    /// An address family other than 4 or 6.
    #[error("unknown address family {0}")]
    BadFamily(u8),
    /// The stream ended before the header did.
    #[error("tunnel header truncated after {0} bytes")]
    Truncated(usize),
}

impl TunnelHeader {
    /// The header's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_HEADER);
        out.extend_from_slice(MAGIC);
        out.push(if self.proxy_v2 { FLAG_PROXY_V2 } else { 0 });
        out.extend_from_slice(&self.port.to_be_bytes());
        let id = self.instance.as_bytes();
        let len = id.len().min(MAX_INSTANCE_ID);
        out.push(len as u8);
        out.extend_from_slice(&id[..len]);
        put_addr(&mut out, self.client);
        put_addr(&mut out, self.local);
        out
    }

    /// Reads a header from the start of `buf`: `Ok(None)` if more bytes are
    /// needed, else the header and how many bytes it took. Errors as soon as
    /// the bytes seen cannot start a valid header.
    pub fn decode(buf: &[u8]) -> Result<Option<(TunnelHeader, usize)>, HeaderError> {
        let mut r = Reader { buf, at: 0 };
        let Some(magic) = r.take(4) else {
            return if MAGIC.starts_with(buf) {
                Ok(None)
            } else {
                Err(HeaderError::BadMagic)
            };
        };
        if magic != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let Some(flags) = r.byte() else {
            return Ok(None);
        };
        if flags & !FLAG_PROXY_V2 != 0 {
            return Err(HeaderError::UnknownFlags(flags));
        }
        let Some(port) = r.u16() else {
            return Ok(None);
        };
        let Some(len) = r.byte() else {
            return Ok(None);
        };
        let len = usize::from(len);
        if len == 0 || len > MAX_INSTANCE_ID {
            return Err(HeaderError::BadInstance);
        }
        let Some(id) = r.take(len) else {
            return Ok(None);
        };
        if !id.iter().all(|b| b.is_ascii_graphic()) {
            return Err(HeaderError::BadInstance);
        }
        let instance = String::from_utf8_lossy(id).into_owned().into();
        let Some(client) = r.addr()? else {
            return Ok(None);
        };
        let Some(local) = r.addr()? else {
            return Ok(None);
        };
        let header = TunnelHeader {
            instance,
            port,
            client,
            local,
            proxy_v2: flags & FLAG_PROXY_V2 != 0,
        };
        Ok(Some((header, r.at)))
    }
}

fn put_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let bytes = self.buf.get(self.at..self.at + n)?;
        self.at += n;
        Some(bytes)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn addr(&mut self) -> Result<Option<SocketAddr>, HeaderError> {
        let Some(family) = self.byte() else {
            return Ok(None);
        };
        let ip = match family {
            4 => match self.take(4) {
                Some(b) => IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])),
                None => return Ok(None),
            },
            6 => match self.take(16) {
                Some(b) => {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(b);
                    IpAddr::V6(Ipv6Addr::from(octets))
                }
                None => return Ok(None),
            },
            other => return Err(HeaderError::BadFamily(other)),
        };
        Ok(self.u16().map(|port| SocketAddr::new(ip, port)))
    }
}

/// The host's one-byte answer to a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelStatus {
    /// Connected to the guest; the bytes follow.
    Connected,
    /// The host has no such instance.
    UnknownInstance,
    /// The instance is draining, unhealthy or not yet up: try another.
    NotAccepting,
    /// The guest refused or did not answer the connection.
    ConnectFailed,
    /// The header was malformed.
    BadHeader,
    /// The port is not the target of any of the instance's endpoints.
    PortNotAllowed,
}

impl TunnelStatus {
    /// The byte on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            TunnelStatus::Connected => 0,
            TunnelStatus::UnknownInstance => 1,
            TunnelStatus::NotAccepting => 2,
            TunnelStatus::ConnectFailed => 3,
            TunnelStatus::BadHeader => 4,
            TunnelStatus::PortNotAllowed => 5,
        }
    }

    /// The status a byte stands for (unknown bytes read as a bad header).
    pub fn from_byte(byte: u8) -> TunnelStatus {
        match byte {
            0 => TunnelStatus::Connected,
            1 => TunnelStatus::UnknownInstance,
            2 => TunnelStatus::NotAccepting,
            3 => TunnelStatus::ConnectFailed,
            5 => TunnelStatus::PortNotAllowed,
            _ => TunnelStatus::BadHeader,
        }
    }
}

impl fmt::Display for TunnelStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TunnelStatus::Connected => "connected",
            TunnelStatus::UnknownInstance => "unknown instance",
            TunnelStatus::NotAccepting => "instance not accepting connections",
            TunnelStatus::ConnectFailed => "cannot connect to the instance",
            TunnelStatus::BadHeader => "malformed tunnel header",
            TunnelStatus::PortNotAllowed => "port is not an endpoint target of the instance",
        })
    }
}

/// Reads a header from a stream (a QUIC receive stream on the host), a chunk
/// at a time; returns the header and any bytes that followed it in the same
/// reads. A stream that ends first is [`HeaderError::Truncated`].
pub async fn read_header<R: tokio::io::AsyncRead + Unpin>(
    recv: &mut R,
) -> Result<(TunnelHeader, Vec<u8>), HeaderError> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(MAX_HEADER);
    let mut chunk = [0u8; MAX_HEADER];
    loop {
        if let Some((header, used)) = TunnelHeader::decode(&buf)? {
            return Ok((header, buf.split_off(used)));
        }
        match recv.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return Err(HeaderError::Truncated(buf.len())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(proxy_v2: bool) -> TunnelHeader {
        TunnelHeader {
            instance: "ins_01j9zq3x8k7m".into(),
            port: 8080,
            client: "[2001:db8::7]:51000".parse().expect("addr"),
            local: "[fd00:76::1]:443".parse().expect("addr"),
            proxy_v2,
        }
    }

    #[test]
    fn round_trips_both_families() {
        for h in [
            sample(true),
            TunnelHeader {
                client: "192.0.2.9:4000".parse().expect("addr"),
                local: "198.51.100.1:80".parse().expect("addr"),
                ..sample(false)
            },
        ] {
            let bytes = h.encode();
            assert_eq!(TunnelHeader::decode(&bytes), Ok(Some((h, bytes.len()))));
        }
    }

    #[test]
    fn every_proper_prefix_asks_for_more_and_trailing_bytes_are_left() {
        let h = sample(true);
        let mut bytes = h.encode();
        for cut in 0..bytes.len() {
            assert_eq!(
                TunnelHeader::decode(&bytes[..cut]),
                Ok(None),
                "cut at {cut}"
            );
        }
        let len = bytes.len();
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(TunnelHeader::decode(&bytes), Ok(Some((h, len))));
    }

    #[test]
    fn malformed_headers_are_refused_early() {
        assert_eq!(TunnelHeader::decode(b"GET "), Err(HeaderError::BadMagic));
        assert_eq!(TunnelHeader::decode(b"vx"), Err(HeaderError::BadMagic));
        let good = sample(false).encode();
        let mut flags = good.clone();
        flags[4] = 0x80;
        assert_eq!(
            TunnelHeader::decode(&flags),
            Err(HeaderError::UnknownFlags(0x80))
        );
        let mut empty_id = good.clone();
        empty_id[7] = 0;
        assert_eq!(
            TunnelHeader::decode(&empty_id),
            Err(HeaderError::BadInstance)
        );
        let mut family = good.clone();
        family[8 + "ins_01j9zq3x8k7m".len()] = 5;
        assert_eq!(
            TunnelHeader::decode(&family),
            Err(HeaderError::BadFamily(5))
        );
        let mut control = good;
        control[8] = b'\n';
        assert_eq!(
            TunnelHeader::decode(&control),
            Err(HeaderError::BadInstance)
        );
    }

    /// Yields its bytes in the given pieces, one per read.
    struct Pieces(Vec<Vec<u8>>);

    impl tokio::io::AsyncRead for Pieces {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if !self.0.is_empty() {
                let piece = self.0.remove(0);
                buf.put_slice(&piece);
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn a_header_split_across_reads_at_every_offset_is_read_whole() {
        let h = sample(true);
        let mut bytes = h.encode();
        bytes.extend_from_slice(b"hello");
        for cut in 1..bytes.len() {
            let mut r = Pieces(vec![bytes[..cut].to_vec(), bytes[cut..].to_vec()]);
            let (got, rest) = block_on(read_header(&mut r)).expect("a header");
            assert_eq!(got, h, "cut at {cut}");
            let mut seen = rest;
            seen.extend(r.0.concat());
            assert_eq!(seen, b"hello", "cut at {cut}");
        }
    }

    #[test]
    fn a_truncated_header_is_an_error_at_every_length() {
        let bytes = sample(false).encode();
        for cut in 0..bytes.len() {
            let mut r = Pieces(vec![bytes[..cut].to_vec()]);
            assert_eq!(
                block_on(read_header(&mut r)),
                Err(HeaderError::Truncated(cut)),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            TunnelStatus::Connected,
            TunnelStatus::UnknownInstance,
            TunnelStatus::NotAccepting,
            TunnelStatus::ConnectFailed,
            TunnelStatus::BadHeader,
            TunnelStatus::PortNotAllowed,
        ] {
            assert_eq!(TunnelStatus::from_byte(s.to_byte()), s);
        }
        assert_eq!(TunnelStatus::from_byte(200), TunnelStatus::BadHeader);
    }
}
