//! Instance networking: each instance gets a TAP device and a private IPv6
//! address from its org's /48 (`fd` + 40 bits of a hash of the org name), in a
//! /64 of its own; the host side of the TAP is the guest's gateway.

use sha2::{Digest, Sha256};
use std::net::Ipv6Addr;
use std::process::Command;

/// The addresses of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Addressing {
    /// The guest's address (prefix length 64).
    pub guest: Ipv6Addr,
    /// The host side of the TAP, the guest's default gateway.
    pub gateway: Ipv6Addr,
}

fn hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// The org's /48, as its first three 16-bit groups.
pub fn org_prefix(org: &str) -> [u16; 3] {
    let h = hash(org);
    [
        0xfd00 | u16::from(h[0]),
        u16::from_be_bytes([h[1], h[2]]),
        u16::from_be_bytes([h[3], h[4]]),
    ]
}

/// Addresses of instance `number` of `org`: the instance gets a /64 of its
/// own within the org's /48 (subnet = the low 16 bits of its number), the
/// guest is `::2` in it and the host side of its TAP `::1`. Every packet
/// between instances therefore goes through the host, where the firewall
/// keeps orgs apart (see [`isolation_rules`]).
pub fn addressing(org: &str, number: u64) -> Addressing {
    let [a, b, c] = org_prefix(org);
    let subnet = (number & 0xffff) as u16;
    Addressing {
        guest: Ipv6Addr::new(a, b, c, subnet, 0, 0, 0, 2),
        gateway: Ipv6Addr::new(a, b, c, subnet, 0, 0, 0, 1),
    }
}

/// The number in an instance ID (`ins_000042` → 42); IDs without one hash.
pub fn instance_number(id: &str) -> u64 {
    let digits: String = id.chars().filter(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| {
        let h = hash(id);
        u64::from_be_bytes([0, 0, h[0], h[1], h[2], h[3], h[4], h[5]])
    })
}

/// A TAP name (at most 15 characters) unique to a host and instance.
pub fn tap_name(host: &str, instance: &str) -> String {
    let h = hash(&format!("{host}/{instance}"));
    format!("vt{}", hex::encode(&h[..6]))
}

/// A MAC address for an instance (locally administered).
pub fn mac(instance: &str) -> String {
    let h = hash(instance);
    format!("52:54:{:02x}:{:02x}:{:02x}:{:02x}", h[0], h[1], h[2], h[3])
}

pub use vt_wire::command::{ip, NetError};

/// Creates the TAP, brings it up with the gateway address and routes the
/// guest's address to it. An existing TAP of the same name is replaced.
pub fn create_tap(name: &str, addressing: &Addressing) -> Result<(), NetError> {
    let _ = delete_tap(name);
    ip(&["tuntap", "add", "dev", name, "mode", "tap"])?;
    ip(&["link", "set", name, "up"])?;
    ip(&[
        "-6",
        "addr",
        "add",
        &format!("{}/128", addressing.gateway),
        "dev",
        name,
        "nodad",
    ])?;
    ip(&[
        "-6",
        "route",
        "replace",
        &format!("{}/128", addressing.guest),
        "dev",
        name,
    ])?;
    Ok(())
}

/// Removes the TAP (its address and route go with it).
pub fn delete_tap(name: &str) -> Result<(), NetError> {
    ip(&["link", "del", name])
}

/// The nftables rules that keep orgs apart: traffic between instance TAPs
/// (`vt*`) is forwarded only within one org's /48. `orgs` are the prefixes
/// of the orgs with instances on this host.
pub fn isolation_rules(orgs: &[[u16; 3]]) -> String {
    let mut rules = String::from(
        "table inet vt\ndelete table inet vt\ntable inet vt {\n  chain forward {\n    type filter hook forward priority 0; policy accept;\n",
    );
    for [a, b, c] in orgs {
        let prefix = format!("{a:x}:{b:x}:{c:x}::/48");
        rules.push_str(&format!(
            "    iifname \"vt*\" oifname \"vt*\" ip6 saddr {prefix} ip6 daddr {prefix} accept\n"
        ));
    }
    rules.push_str("    iifname \"vt*\" oifname \"vt*\" drop\n  }\n}\n");
    rules
}

/// Routes between instances (IPv6 forwarding) and installs
/// [`isolation_rules`] atomically with `nft -f`.
pub fn isolate(orgs: &[[u16; 3]]) -> Result<(), NetError> {
    std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1").map_err(NetError::Missing)?;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(NetError::Missing)?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(isolation_rules(orgs).as_bytes())
            .map_err(NetError::Missing)?;
    }
    let out = child.wait_with_output().map_err(NetError::Missing)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Ip {
            args: "nft -f (isolation rules)".into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_rules_accept_within_an_org_and_drop_between() {
        let rules = isolation_rules(&[org_prefix("acme")]);
        let [a, b, c] = org_prefix("acme");
        assert!(
            rules.contains(&format!(
                "ip6 saddr {a:x}:{b:x}:{c:x}::/48 ip6 daddr {a:x}:{b:x}:{c:x}::/48 accept"
            )),
            "{rules}"
        );
        assert!(
            rules.trim_end().ends_with("drop\n  }\n}") || rules.contains("oifname \"vt*\" drop"),
            "{rules}"
        );
    }

    #[test]
    fn addresses_are_stable_per_org_and_distinct_per_instance() {
        let a = addressing("acme", 1);
        let b = addressing("acme", 2);
        let other_org = addressing("umbrella", 1);
        assert_ne!(a.guest, b.guest);
        assert_ne!(a.guest.segments()[3], b.guest.segments()[3], "a /64 each");
        assert_eq!(a.guest.segments()[..3], b.guest.segments()[..3]);
        assert_ne!(a.guest.segments()[..3], other_org.guest.segments()[..3]);
        assert_eq!(a.guest.segments()[0] & 0xff00, 0xfd00, "unique local");
        assert_eq!(addressing("acme", 1), a, "stable");
        assert_eq!(instance_number("ins_000042"), 42);
        assert!(tap_name("h1", "ins_000042").len() <= 15);
    }
}
