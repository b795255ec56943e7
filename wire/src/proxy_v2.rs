//! The PROXY protocol version 2 header (HAProxy's `proxy-protocol.txt`,
//! section 2.2), which a host writes to an app before the first byte of a
//! tunnelled connection so the app sees the client's real address.
//!
//! Layout: the 12-byte signature, `0x21` (version 2, command PROXY), the
//! family and transport (`0x11` TCP over IPv4, `0x21` TCP over IPv6), the
//! length of what follows (big-endian), then source address, destination
//! address, source port and destination port. The whole header is built in
//! one buffer so the host can send it in one write.

use std::net::{IpAddr, SocketAddr};

/// The 12 bytes every v2 header starts with.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
const VERSION_2_PROXY: u8 = 0x21;
const TCP_OVER_IPV4: u8 = 0x11;
const TCP_OVER_IPV6: u8 = 0x21;

/// The header for a TCP connection from `client` to `destination` (the
/// endpoint address the client connected to). An IPv4 address paired with an
/// IPv6 one is written as IPv4-mapped IPv6.
pub fn encode(client: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&SIGNATURE);
    out.push(VERSION_2_PROXY);
    match (client.ip(), destination.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            out.push(TCP_OVER_IPV4);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
        (src, dst) => {
            out.push(TCP_OVER_IPV6);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&as_v6(src).octets());
            out.extend_from_slice(&as_v6(dst).octets());
        }
    }
    out.extend_from_slice(&client.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

fn as_v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_is_exactly_the_spec_layout() {
        let h = encode(
            "192.0.2.10:51000".parse().expect("addr"),
            "198.51.100.1:443".parse().expect("addr"),
        );
        let mut want = SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0x00, 0x0C]);
        want.extend_from_slice(&[192, 0, 2, 10, 198, 51, 100, 1]);
        want.extend_from_slice(&[0xC7, 0x38, 0x01, 0xBB]);
        assert_eq!(h, want);
        assert_eq!(h.len(), 28);
    }

    #[test]
    fn ipv6_header_is_exactly_the_spec_layout() {
        let h = encode(
            "[2001:db8::1]:1".parse().expect("addr"),
            "[fd00:76::2]:80".parse().expect("addr"),
        );
        assert_eq!(&h[..12], &SIGNATURE);
        assert_eq!(&h[12..16], &[0x21, 0x21, 0x00, 0x24]);
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        src[15] = 1;
        assert_eq!(&h[16..32], &src);
        let mut dst = [0u8; 16];
        dst[..4].copy_from_slice(&[0xfd, 0x00, 0x00, 0x76]);
        dst[15] = 2;
        assert_eq!(&h[32..48], &dst);
        assert_eq!(&h[48..], &[0x00, 0x01, 0x00, 0x50]);
        assert_eq!(h.len(), 52);
    }

    #[test]
    fn mixed_families_become_ipv4_mapped_ipv6() {
        let h = encode(
            "192.0.2.10:5".parse().expect("addr"),
            "[fd00::1]:6".parse().expect("addr"),
        );
        assert_eq!(h[13], 0x21);
        assert_eq!(
            &h[16..32],
            &"::ffff:192.0.2.10"
                .parse::<std::net::Ipv6Addr>()
                .expect("v6")
                .octets()
        );
    }
}
