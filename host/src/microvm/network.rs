//! Instance networking: each instance gets a TAP device and a private IPv6
//! address from its org's /48 (`fd` + 40 bits of a hash of the org name), in a
//! /64 of its own; the host side of the TAP is the guest's gateway. The
//! host's `inet vt` nftables table ([`isolation_rules`]) keeps orgs apart,
//! takes from each TAP only its guest's address and keeps guests off the
//! host's own services.

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

/// Creates the TAP, brings it up and [attaches](attach_link) it. An
/// existing TAP of the same name is replaced.
pub fn create_tap(name: &str, addressing: &Addressing) -> Result<(), NetError> {
    let _ = delete_tap(name, addressing);
    ip(&["tuntap", "add", "dev", name, "mode", "tap"])?;
    ip(&["link", "set", name, "up"])?;
    attach_link(name, addressing)
}

/// Removes the TAP (its address and route go with it) and its entry in the
/// firewall's `guests` set.
pub fn delete_tap(name: &str, addressing: &Addressing) -> Result<(), NetError> {
    let _ = detach_link(name, addressing);
    ip(&["link", "del", name])
}

/// Wires the host side of an instance's link (a TAP, or a veth in tests):
/// the gateway address on it, the guest's /128 routed to it, IPv6
/// forwarding for what arrives on it (this interface only, see
/// [`forward_from`]) and the guest's address as the only source address
/// the firewall takes from it ([`guest_element`]).
pub fn attach_link(link: &str, addressing: &Addressing) -> Result<(), NetError> {
    ip(&[
        "-6",
        "addr",
        "add",
        &format!("{}/128", addressing.gateway),
        "dev",
        link,
        "nodad",
    ])?;
    ip(&[
        "-6",
        "route",
        "replace",
        &format!("{}/128", addressing.guest),
        "dev",
        link,
    ])?;
    forward_from(link)?;
    nft(
        &guest_element("add", link, addressing),
        "nft -f (guest address)",
    )
}

/// Takes the link's entry out of the `guests` set (the link itself is the
/// caller's to remove).
pub fn detach_link(link: &str, addressing: &Addressing) -> Result<(), NetError> {
    nft(
        &guest_element("delete", link, addressing),
        "nft -f (guest address)",
    )
}

/// The nftables script that adds (`verb` = `add`) or deletes an
/// `interface . address` element of the `guests` set; the set is declared
/// too, so that it works before [`isolate`] first ran.
pub fn guest_element(verb: &str, link: &str, addressing: &Addressing) -> String {
    format!(
        "table inet vt {{\n  {GUESTS_SET}\n}}\n{verb} element inet vt guests {{ \"{link}\" . {} }}\n",
        addressing.guest
    )
}

const GUESTS_SET: &str = "set guests { type ifname . ipv6_addr; }";

/// What a guest may send the host itself, and to any address from a
/// link-local or unspecified source: neighbour discovery (the guest
/// resolves its gateway, the host its guest), router solicitations and
/// multicast listener reports its kernel sends on its own. Router
/// advertisements and redirects are not among them.
const LINK_CONTROL: &str = "icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-report, mld2-listener-report }";

/// Enables IPv6 forwarding of packets arriving on `link`, on that interface
/// only (`force_forwarding`, Linux 6.17+), so every other interface (the
/// uplink) stays a host and keeps taking router advertisements. Older
/// kernels forward only with `all/forwarding`, which turns every interface
/// into a router; there the interfaces taking router advertisements
/// (`accept_ra` = 1) are first told to keep taking them (`accept_ra` = 2).
pub fn forward_from(link: &str) -> Result<(), NetError> {
    let conf = std::path::Path::new("/proc/sys/net/ipv6/conf");
    let write = |path: std::path::PathBuf| std::fs::write(path, "1").map_err(NetError::Missing);
    write(conf.join(link).join("forwarding"))?;
    let per_link = conf.join(link).join("force_forwarding");
    if per_link.exists() {
        return write(per_link);
    }
    let all = conf.join("all").join("forwarding");
    if std::fs::read_to_string(&all).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    tracing::warn!("this kernel has no per-interface IPv6 forwarding (Linux 6.17's force_forwarding): enabling it on all interfaces, with accept_ra=2 where router advertisements were taken");
    for entry in std::fs::read_dir(conf)
        .map_err(NetError::Missing)?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if ["all", "default", "lo"].contains(&name.as_str()) || name.starts_with("vt") {
            continue;
        }
        let accept_ra = entry.path().join("accept_ra");
        if std::fs::read_to_string(&accept_ra).is_ok_and(|v| v.trim() == "1") {
            let _ = std::fs::write(accept_ra, "2");
        }
    }
    write(all)
}

/// The `inet vt` table: instances (`vt*` links) may
/// - send only from their own address (the `guests` set maps each link to
///   its guest's address; anything else, IPv4 included, is dropped before
///   routing and counted in `spoofed`), link control messages aside;
/// - reach the host itself only with link control messages and answers to
///   connections the host opened (health checks, tunnels): everything else
///   is dropped and counted in `to_host`;
/// - reach other instances of the same org's /48 only: nothing else is
///   forwarded from or to them.
///
/// `orgs` are the prefixes of the orgs with instances on this host. The
/// chains are flushed and filled again in one transaction; the `guests`
/// set and the counters are kept.
pub fn isolation_rules(orgs: &[[u16; 3]]) -> String {
    let mut rules = format!(
        "table inet vt {{
  {GUESTS_SET}
  counter spoofed {{ }}
  counter to_host {{ }}
  chain prerouting {{ type filter hook prerouting priority raw; policy accept; }}
  chain input {{ type filter hook input priority filter; policy accept; }}
  chain forward {{ type filter hook forward priority filter; policy accept; }}
}}
flush chain inet vt prerouting
flush chain inet vt input
flush chain inet vt forward
table inet vt {{
  chain prerouting {{
    iifname \"vt*\" ip6 saddr {{ ::, fe80::/10 }} {LINK_CONTROL} accept
    iifname \"vt*\" iifname . ip6 saddr @guests accept
    iifname \"vt*\" counter name \"spoofed\" drop
  }}
  chain input {{
    iifname \"vt*\" ct state established,related accept
    iifname \"vt*\" {LINK_CONTROL} accept
    iifname \"vt*\" counter name \"to_host\" drop
  }}
  chain forward {{
"
    );
    for [a, b, c] in orgs {
        let prefix = format!("{a:x}:{b:x}:{c:x}::/48");
        rules.push_str(&format!(
            "    iifname \"vt*\" oifname \"vt*\" ip6 saddr {prefix} ip6 daddr {prefix} accept\n"
        ));
    }
    rules.push_str("    iifname \"vt*\" drop\n    oifname \"vt*\" drop\n  }\n}\n");
    rules
}

/// Installs [`isolation_rules`] atomically with `nft -f`.
pub fn isolate(orgs: &[[u16; 3]]) -> Result<(), NetError> {
    nft(&isolation_rules(orgs), "nft -f (isolation rules)")
}

/// Runs an nftables script (one transaction).
fn nft(script: &str, what: &str) -> Result<(), NetError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(NetError::Missing)?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(script.as_bytes())
            .map_err(NetError::Missing)?;
    }
    let out = child.wait_with_output().map_err(NetError::Missing)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Ip {
            args: what.into(),
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
        let accept = rules
            .find(&format!(
                "ip6 saddr {a:x}:{b:x}:{c:x}::/48 ip6 daddr {a:x}:{b:x}:{c:x}::/48 accept"
            ))
            .expect(&rules);
        let drop = rules.find("iifname \"vt*\" drop").expect(&rules);
        assert!(accept < drop, "{rules}");
        assert!(rules.contains("oifname \"vt*\" drop"), "{rules}");
    }

    #[test]
    fn guests_send_from_their_own_address_and_reach_the_host_only_for_link_control() {
        let rules = isolation_rules(&[]);
        let prerouting = &rules[rules.find("  chain prerouting {\n").expect(&rules)..];
        let own = prerouting
            .find("iifname . ip6 saddr @guests accept")
            .expect(&rules);
        let spoofed = prerouting
            .find("counter name \"spoofed\" drop")
            .expect(&rules);
        assert!(own < spoofed, "{rules}");
        let input = &rules[rules.find("  chain input {\n").expect(&rules)..];
        let answers = input
            .find("ct state established,related accept")
            .expect(&rules);
        let to_host = input.find("counter name \"to_host\" drop").expect(&rules);
        assert!(answers < to_host, "{rules}");
        assert!(!input[..to_host].contains("nd-router-advert"), "{rules}");
        // Rebuilding the rules keeps the set of guest addresses.
        assert!(!rules.contains("delete table"), "{rules}");
        assert!(rules.contains("flush chain inet vt prerouting"), "{rules}");
        let element = guest_element("add", "vt0123", &addressing("acme", 7));
        assert!(
            element.ends_with(&format!(
                "add element inet vt guests {{ \"vt0123\" . {} }}\n",
                addressing("acme", 7).guest
            )),
            "{element}"
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
