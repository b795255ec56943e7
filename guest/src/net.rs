//! Network: hostname, `lo` up with 127.0.0.1/8 (and ::1), `eth0` up with
//! the instance's IPv6 address (no duplicate address detection, so it is
//! usable at once) and a default route. Done with rtnetlink over a raw
//! `AF_NETLINK` socket; no busybox `ip` is needed. The messages are built by
//! pure functions, tested below.

use crate::sys;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;
use vt_init::protocol::Ipv6Config;

/// The interface the host's virtio-net device shows up as.
pub const ETH: &str = "eth0";

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_F_NODAD: u8 = 0x02;
const IFA_F_PERMANENT: u8 = 0x80;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_HOST: u8 = 254;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const IFF_UP: u32 = 0x1;

/// Sets the hostname and brings the network up. Without `ipv6`, only `lo`
/// comes up (and `eth0`, if present, is set up without an address).
pub fn configure(hostname: &str, ipv6: Option<&Ipv6Config>) -> Result<(), String> {
    if !hostname.is_empty() {
        sys::sethostname(hostname).map_err(|e| format!("cannot set hostname: {e}"))?;
    }
    let netlink = Netlink::open().map_err(|e| format!("cannot open a netlink socket: {e}"))?;
    let lo = ifindex("lo").map_err(|e| format!("no loopback interface: {e}"))?;
    netlink
        .request(&link_up(1, lo))
        .map_err(|e| format!("cannot bring lo up: {e}"))?;
    netlink
        .request(&new_addr(2, lo, &Ipv4Addr::LOCALHOST.octets(), 8, true))
        .map_err(|e| format!("cannot add 127.0.0.1/8 to lo: {e}"))?;

    let Some(config) = ipv6 else {
        if let Ok(eth) = ifindex(ETH) {
            let _ = netlink.request(&link_up(3, eth));
        }
        return Ok(());
    };
    // virtio_net probes as its module loads; give it a moment anyway.
    let sysfs = Path::new("/sys/class/net").join(ETH);
    if !crate::mounts::wait_for(&sysfs, Duration::from_secs(3)) {
        return Err(format!(
            "network interface {ETH} did not appear (virtio_net loaded?)"
        ));
    }
    let eth = ifindex(ETH).map_err(|e| format!("cannot find {ETH}: {e}"))?;
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{ETH}/accept_dad"), b"0");
    netlink
        .request(&link_up(3, eth))
        .map_err(|e| format!("cannot bring {ETH} up: {e}"))?;
    netlink
        .request(&new_addr(
            4,
            eth,
            &config.address.octets(),
            config.prefix_len,
            false,
        ))
        .map_err(|e| {
            format!(
                "cannot add {}/{} to {ETH}: {e}",
                config.address, config.prefix_len
            )
        })?;
    if let Some(gateway) = config.gateway {
        netlink
            .request(&default_route_v6(5, eth, gateway))
            .map_err(|e| format!("cannot add the default route via {gateway}: {e}"))?;
    }
    Ok(())
}

fn ifindex(name: &str) -> io::Result<u32> {
    let text = std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("ifindex"))?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad ifindex"))
}

struct Netlink {
    fd: OwnedFd,
}

impl Netlink {
    fn open() -> io::Result<Self> {
        // SAFETY: socket takes plain integers.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: socket succeeded: a fresh descriptor we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let timeout = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: the option value is one timeval that outlives the call.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                libc::socklen_t::try_from(std::mem::size_of::<libc::timeval>()).unwrap_or(0),
            )
        };
        Ok(Netlink { fd })
    }

    /// Sends one request to the kernel and waits for its acknowledgement.
    fn request(&self, message: &[u8]) -> io::Result<()> {
        sys::write(&self.fd, message)?;
        let seq = message.get(8..12).map_or(0, read_u32);
        let mut buf = vec![0u8; 8192];
        loop {
            let n = sys::read(&self.fd, &mut buf)?;
            match parse_ack(buf.get(..n).unwrap_or_default(), seq) {
                Some(0) => return Ok(()),
                Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
                None => continue,
            }
        }
    }
}

fn read_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(bytes.get(..4).unwrap_or(&[0; 4]));
    u32::from_ne_bytes(word)
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// A netlink message under construction: header, fixed part, attributes.
struct Message(Vec<u8>);

impl Message {
    fn new(kind: u16, flags: u16, seq: u32) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port ID: the kernel
        Message(buf)
    }

    fn bytes(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    fn attr(mut self, kind: u16, data: &[u8]) -> Self {
        let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
        self.0.extend_from_slice(&len.to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(align4(self.0.len()), 0);
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.0.len()).unwrap_or(u32::MAX);
        if let Some(head) = self.0.get_mut(..4) {
            head.copy_from_slice(&len.to_ne_bytes());
        }
        self.0
    }
}

/// `RTM_NEWLINK` setting `IFF_UP` on interface `index`.
fn link_up(seq: u32, index: u32) -> Vec<u8> {
    // struct ifinfomsg: family, pad, type, index, flags, change.
    let mut body = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
    body.extend_from_slice(&index.to_ne_bytes());
    body.extend_from_slice(&IFF_UP.to_ne_bytes());
    body.extend_from_slice(&IFF_UP.to_ne_bytes());
    Message::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq)
        .bytes(&body)
        .finish()
}

/// `RTM_NEWADDR` adding `address/prefix_len` (4 or 16 bytes) to interface
/// `index`; IPv6 addresses skip duplicate address detection.
fn new_addr(seq: u32, index: u32, address: &[u8], prefix_len: u8, host_scope: bool) -> Vec<u8> {
    let v4 = address.len() == 4;
    let family = if v4 { libc::AF_INET } else { libc::AF_INET6 } as u8;
    let flags = IFA_F_PERMANENT | if v4 { 0 } else { IFA_F_NODAD };
    let scope = if host_scope {
        RT_SCOPE_HOST
    } else {
        RT_SCOPE_UNIVERSE
    };
    // struct ifaddrmsg: family, prefixlen, flags, scope, index.
    let mut body = vec![family, prefix_len, flags, scope];
    body.extend_from_slice(&index.to_ne_bytes());
    let mut message = Message::new(
        RTM_NEWADDR,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        seq,
    )
    .bytes(&body);
    if v4 {
        message = message.attr(IFA_LOCAL, address);
    }
    message.attr(IFA_ADDRESS, address).finish()
}

/// `RTM_NEWROUTE` for `default via gateway dev index` (IPv6).
fn default_route_v6(seq: u32, index: u32, gateway: Ipv6Addr) -> Vec<u8> {
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
    // type, flags.
    let mut body = vec![
        libc::AF_INET6 as u8,
        0,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_BOOT,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
    ];
    body.extend_from_slice(&0u32.to_ne_bytes());
    Message::new(
        RTM_NEWROUTE,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        seq,
    )
    .bytes(&body)
    .attr(RTA_GATEWAY, &gateway.octets())
    .attr(RTA_OIF, &index.to_ne_bytes())
    .finish()
}

/// Finds the acknowledgement of request `seq` in a netlink reply: `Some(0)`
/// for success, `Some(errno)` for failure, `None` if it is not there.
fn parse_ack(mut reply: &[u8], seq: u32) -> Option<i32> {
    while reply.len() >= NLMSG_HDRLEN {
        let len = usize::try_from(read_u32(reply)).ok()?;
        if len < NLMSG_HDRLEN || len > reply.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([*reply.get(4)?, *reply.get(5)?]);
        let this_seq = read_u32(reply.get(8..)?);
        if kind == NLMSG_ERROR && this_seq == seq {
            let code = i32::from_ne_bytes(reply.get(16..20)?.try_into().ok()?);
            return Some(-code);
        }
        reply = reply.get(align4(len)..).unwrap_or_default();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(buf: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([buf[at], buf[at + 1]])
    }

    #[test]
    fn link_up_layout() {
        let msg = link_up(7, 2);
        assert_eq!(msg.len(), 32);
        assert_eq!(read_u32(&msg), 32);
        assert_eq!(u16_at(&msg, 4), RTM_NEWLINK);
        assert_eq!(u16_at(&msg, 6), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(read_u32(&msg[8..]), 7);
        assert_eq!(read_u32(&msg[20..]), 2, "ifi_index");
        assert_eq!(read_u32(&msg[24..]), IFF_UP, "ifi_flags");
        assert_eq!(read_u32(&msg[28..]), IFF_UP, "ifi_change");
    }

    #[test]
    fn ipv6_addr_layout() {
        let addr: Ipv6Addr = "fd00:1::2".parse().expect("addr");
        let msg = new_addr(4, 3, &addr.octets(), 64, false);
        // header 16 + ifaddrmsg 8 + IFA_ADDRESS (4 + 16)
        assert_eq!(msg.len(), 44);
        assert_eq!(read_u32(&msg) as usize, msg.len());
        assert_eq!(u16_at(&msg, 4), RTM_NEWADDR);
        assert_eq!(
            &msg[16..20],
            &[
                libc::AF_INET6 as u8,
                64,
                IFA_F_PERMANENT | IFA_F_NODAD,
                RT_SCOPE_UNIVERSE
            ]
        );
        assert_eq!(read_u32(&msg[20..]), 3);
        assert_eq!(u16_at(&msg, 24), 20, "rta_len");
        assert_eq!(u16_at(&msg, 26), IFA_ADDRESS);
        assert_eq!(&msg[28..44], &addr.octets());
    }

    #[test]
    fn ipv4_loopback_layout() {
        let msg = new_addr(2, 1, &[127, 0, 0, 1], 8, true);
        // header 16 + ifaddrmsg 8 + IFA_LOCAL 8 + IFA_ADDRESS 8
        assert_eq!(msg.len(), 40);
        assert_eq!(
            &msg[16..20],
            &[libc::AF_INET as u8, 8, IFA_F_PERMANENT, RT_SCOPE_HOST]
        );
        assert_eq!(u16_at(&msg, 26), IFA_LOCAL);
        assert_eq!(&msg[28..32], &[127, 0, 0, 1]);
        assert_eq!(u16_at(&msg, 34), IFA_ADDRESS);
    }

    #[test]
    fn default_route_layout() {
        let gw: Ipv6Addr = "fd00:1::1".parse().expect("addr");
        let msg = default_route_v6(5, 3, gw);
        // header 16 + rtmsg 12 + RTA_GATEWAY 20 + RTA_OIF 8
        assert_eq!(msg.len(), 56);
        assert_eq!(u16_at(&msg, 4), RTM_NEWROUTE);
        assert_eq!(msg[16], libc::AF_INET6 as u8);
        assert_eq!(msg[17], 0, "dst_len: default route");
        assert_eq!(msg[20], RT_TABLE_MAIN);
        assert_eq!(msg[23], RTN_UNICAST);
        assert_eq!(u16_at(&msg, 30), RTA_GATEWAY);
        assert_eq!(&msg[32..48], &gw.octets());
        assert_eq!(u16_at(&msg, 50), RTA_OIF);
        assert_eq!(read_u32(&msg[52..]), 3);
    }

    fn ack(seq: u32, errno: i32) -> Vec<u8> {
        let mut msg = Message::new(NLMSG_ERROR, 0, seq)
            .bytes(&(-errno).to_ne_bytes())
            .bytes(&[0; 16]) // the echoed request header
            .finish();
        msg.resize(align4(msg.len()), 0);
        msg
    }

    #[test]
    fn parses_acks() {
        assert_eq!(parse_ack(&ack(4, 0), 4), Some(0));
        assert_eq!(parse_ack(&ack(4, libc::EEXIST), 4), Some(libc::EEXIST));
        assert_eq!(parse_ack(&ack(3, 0), 4), None, "another request's ack");
        let mut two = ack(3, 0);
        two.extend(ack(4, libc::ENODEV));
        assert_eq!(parse_ack(&two, 4), Some(libc::ENODEV));
        assert_eq!(parse_ack(&[1, 2, 3], 4), None);
        assert_eq!(parse_ack(&[0xff; 16], 4), None);
    }
}
