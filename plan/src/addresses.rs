//! Endpoint addresses: every endpoint in the desired state gets a stable IPv6
//! address from the fleet's prefix, and, with `ipv4: true`, an address from
//! the IPv4 pool. Addresses are kept while the endpoint exists (across
//! releases and restarts: they are stored) and freed when it leaves the
//! repository. IPv4 time is metered: each period an endpoint held an IPv4
//! address becomes a [`UsageRecord`] when it ends.
//!
//! [`reconcile`] is pure: the controller passes what it has and what the
//! repository wants and applies the answer.

use crate::{Millis, WorkloadKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv6 prefix, `fd76:7400:e::/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Prefix {
    /// The network address.
    pub addr: Ipv6Addr,
    /// Prefix length (at most 126).
    pub len: u8,
}

/// An IPv4 pool, `198.51.100.0/28`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V4Pool {
    /// The network address.
    pub addr: Ipv4Addr,
    /// Prefix length (at most 32).
    pub len: u8,
}

/// Where endpoint addresses come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pools {
    /// Every endpoint gets an address from here.
    pub v6: V6Prefix,
    /// Endpoints with `ipv4: true` get one from here, if there is a pool.
    pub v4: Option<V4Pool>,
}

/// The prefix a fleet uses when `fleet.json` names none.
pub const DEFAULT_V6_PREFIX: &str = "fd76:7400:e::/64";

impl Default for Pools {
    fn default() -> Self {
        Pools {
            v6: V6Prefix {
                addr: Ipv6Addr::new(0xfd76, 0x7400, 0xe, 0, 0, 0, 0, 0),
                len: 64,
            },
            v4: None,
        }
    }
}

/// A prefix or pool that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a network in CIDR notation (`fd76:7400:e::/64`, `198.51.100.0/28`)")]
pub struct BadNetwork(pub String);

fn split_cidr(s: &str, max: u8) -> Result<(&str, u8), BadNetwork> {
    let bad = || BadNetwork(s.to_string());
    let (addr, len) = s.split_once('/').ok_or_else(bad)?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if len > max {
        return Err(bad());
    }
    Ok((addr, len))
}

impl FromStr for V6Prefix {
    type Err = BadNetwork;
    fn from_str(s: &str) -> Result<Self, BadNetwork> {
        let (addr, len) = split_cidr(s, 126)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| BadNetwork(s.to_string()))?;
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        Ok(V6Prefix {
            addr: Ipv6Addr::from(u128::from(addr) & mask),
            len,
        })
    }
}

impl FromStr for V4Pool {
    type Err = BadNetwork;
    fn from_str(s: &str) -> Result<Self, BadNetwork> {
        let (addr, len) = split_cidr(s, 32)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| BadNetwork(s.to_string()))?;
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        Ok(V4Pool {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        })
    }
}

impl fmt::Display for V6Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Display for V4Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Most IPv6 addresses handed out from one prefix.
const V6_LIMIT: u128 = 1 << 20;

impl V6Prefix {
    /// Host addresses in order, skipping the all-zero one.
    fn addresses(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        let size = 1u128
            .checked_shl(128 - u32::from(self.len))
            .unwrap_or(u128::MAX);
        let base = u128::from(self.addr);
        (1..size.min(V6_LIMIT)).map(move |i| Ipv6Addr::from(base + i))
    }
}

impl V4Pool {
    /// Usable addresses in order: without the network and broadcast addresses
    /// for pools of four or more.
    fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let size = 1u64 << (32 - u32::from(self.len));
        let base = u64::from(u32::from(self.addr));
        let (first, last) = if size >= 4 { (1, size - 1) } else { (0, size) };
        (first..last).map(move |i| Ipv4Addr::from((base + i) as u32))
    }
}

/// The addresses one endpoint holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointAddress {
    /// Workload.
    pub key: WorkloadKey,
    /// Endpoint name.
    pub endpoint: String,
    /// Qualified env name (`acme/shop/web/prod`).
    pub name: String,
    /// Org name, for billing.
    pub org: String,
    /// Its IPv6 address.
    pub ipv6: Ipv6Addr,
    /// Its IPv4 address, with the add-on.
    pub ipv4: Option<Ipv4Addr>,
    /// Since when it holds the IPv4 address.
    pub ipv4_since: Option<Millis>,
    /// When the IPv6 address was allocated.
    pub allocated: Millis,
}

impl EndpointAddress {
    /// The stored key: `<app id>/<env id>/<endpoint>`.
    pub fn id(&self) -> String {
        endpoint_id(&self.key, &self.endpoint)
    }

    /// Its addresses, IPv6 first.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut out = vec![IpAddr::V6(self.ipv6)];
        out.extend(self.ipv4.map(IpAddr::V4));
        out
    }
}

/// The ID of an endpoint of a workload.
pub fn endpoint_id(key: &WorkloadKey, endpoint: &str) -> String {
    format!("{}/{}/{endpoint}", key.app_id, key.env_id)
}

/// An endpoint the repository declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Workload.
    pub key: WorkloadKey,
    /// Endpoint name.
    pub endpoint: String,
    /// Qualified env name.
    pub name: String,
    /// Whether it asks for the IPv4 add-on.
    pub ipv4: bool,
}

/// One period an endpoint held a billable IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Org billed.
    pub org: String,
    /// Qualified env name.
    pub name: String,
    /// Endpoint name.
    pub endpoint: String,
    /// The address.
    pub address: Ipv4Addr,
    /// Start (Unix ms).
    pub from: Millis,
    /// End (Unix ms).
    pub to: Millis,
}

/// What changed, for events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressChange {
    /// An endpoint got its addresses.
    Allocated(EndpointAddress),
    /// An endpoint left the repository; its addresses are free.
    Released(EndpointAddress),
    /// An endpoint got an IPv4 address.
    Ipv4Added(EndpointAddress),
    /// An endpoint gave its IPv4 address back.
    Ipv4Released(EndpointAddress, Ipv4Addr),
    /// No address was free (or there is no IPv4 pool).
    Exhausted {
        /// The endpoint.
        wanted: Wanted,
        /// `ipv6` or `ipv4`.
        family: &'static str,
        /// Why.
        reason: String,
    },
}

/// The answer of [`reconcile`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Every endpoint's addresses afterwards, by [`endpoint_id`].
    pub addresses: BTreeMap<String, EndpointAddress>,
    /// Closed IPv4 periods to store.
    pub usage: Vec<UsageRecord>,
    /// What changed.
    pub changes: Vec<AddressChange>,
}

/// Brings `current` in line with `wanted`: keeps what still exists, frees
/// what does not, allocates the lowest free address for what is new.
pub fn reconcile(
    current: &BTreeMap<String, EndpointAddress>,
    wanted: &[Wanted],
    pools: &Pools,
    now: Millis,
) -> Reconciled {
    let mut out = Reconciled::default();
    let wanted_ids: BTreeMap<String, &Wanted> = wanted
        .iter()
        .map(|w| (endpoint_id(&w.key, &w.endpoint), w))
        .collect();
    for (id, held) in current {
        if !wanted_ids.contains_key(id) {
            out.usage.extend(close_ipv4(held, now));
            out.changes.push(AddressChange::Released(held.clone()));
        }
    }
    let mut kept: BTreeMap<String, EndpointAddress> = current
        .iter()
        .filter(|(id, _)| wanted_ids.contains_key(*id))
        .map(|(id, a)| (id.clone(), a.clone()))
        .collect();
    let mut used_v6: BTreeSet<Ipv6Addr> = kept.values().map(|a| a.ipv6).collect();
    let mut used_v4: BTreeSet<Ipv4Addr> = kept.values().filter_map(|a| a.ipv4).collect();
    for (id, w) in &wanted_ids {
        let address = match kept.remove(id) {
            Some(mut held) => {
                held.name.clone_from(&w.name);
                held
            }
            None => {
                let Some(ipv6) = pools.v6.addresses().find(|a| !used_v6.contains(a)) else {
                    out.changes.push(AddressChange::Exhausted {
                        wanted: (*w).clone(),
                        family: "ipv6",
                        reason: format!("no free address left in {}", pools.v6),
                    });
                    continue;
                };
                used_v6.insert(ipv6);
                let fresh = EndpointAddress {
                    key: w.key.clone(),
                    endpoint: w.endpoint.clone(),
                    name: w.name.clone(),
                    org: w.name.split('/').next().unwrap_or_default().to_string(),
                    ipv6,
                    ipv4: None,
                    ipv4_since: None,
                    allocated: now,
                };
                out.changes.push(AddressChange::Allocated(fresh.clone()));
                fresh
            }
        };
        let address = match (w.ipv4, address.ipv4) {
            (true, None) => match pools.v4 {
                Some(pool) => match pool.addresses().find(|a| !used_v4.contains(a)) {
                    Some(v4) => {
                        used_v4.insert(v4);
                        let with = EndpointAddress {
                            ipv4: Some(v4),
                            ipv4_since: Some(now),
                            ..address
                        };
                        out.changes.push(AddressChange::Ipv4Added(with.clone()));
                        with
                    }
                    None => {
                        out.changes.push(AddressChange::Exhausted {
                            wanted: (*w).clone(),
                            family: "ipv4",
                            reason: format!("no free address left in the IPv4 pool {pool}"),
                        });
                        address
                    }
                },
                None => {
                    out.changes.push(AddressChange::Exhausted {
                        wanted: (*w).clone(),
                        family: "ipv4",
                        reason: "the fleet has no IPv4 pool (`vt fleet init --ipv4-pool`)".into(),
                    });
                    address
                }
            },
            (false, Some(v4)) => {
                out.usage.extend(close_ipv4(&address, now));
                let without = EndpointAddress {
                    ipv4: None,
                    ipv4_since: None,
                    ..address
                };
                out.changes
                    .push(AddressChange::Ipv4Released(without.clone(), v4));
                without
            }
            _ => address,
        };
        out.addresses.insert(id.clone(), address);
    }
    out
}

fn close_ipv4(held: &EndpointAddress, now: Millis) -> Option<UsageRecord> {
    Some(UsageRecord {
        org: held.org.clone(),
        name: held.name.clone(),
        endpoint: held.endpoint.clone(),
        address: held.ipv4?,
        from: held.ipv4_since?,
        to: now,
    })
}

/// Billable IPv4 time of one org.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrgUsage {
    /// Org name.
    pub org: String,
    /// IPv4 address-hours in the window, closed and still open periods together.
    pub ipv4_address_hours: f64,
    /// IPv4 addresses the org holds now.
    pub ipv4_addresses_now: u32,
    /// IPv6 endpoint addresses the org holds now (not billed).
    pub ipv6_addresses_now: u32,
}

/// Address-hours per org over `[since, now]`, from closed periods and the
/// addresses held now.
pub fn usage(
    closed: &[UsageRecord],
    held: &BTreeMap<String, EndpointAddress>,
    since: Millis,
    now: Millis,
) -> Vec<OrgUsage> {
    let mut by_org: BTreeMap<String, OrgUsage> = BTreeMap::new();
    let hours = |from: Millis, to: Millis| {
        let (from, to) = (from.max(since), to.min(now));
        to.saturating_sub(from) as f64 / 3_600_000.0
    };
    for r in closed {
        let entry = by_org.entry(r.org.clone()).or_default();
        entry.ipv4_address_hours += hours(r.from, r.to);
    }
    for a in held.values() {
        let entry = by_org.entry(a.org.clone()).or_default();
        entry.ipv6_addresses_now += 1;
        if let (Some(_), Some(from)) = (a.ipv4, a.ipv4_since) {
            entry.ipv4_addresses_now += 1;
            entry.ipv4_address_hours += hours(from, now);
        }
    }
    by_org
        .into_iter()
        .map(|(org, u)| OrgUsage { org, ..u })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> WorkloadKey {
        WorkloadKey {
            app_id: format!("app_{n}"),
            env_id: "env_1".into(),
        }
    }

    fn want(n: u8, endpoint: &str, ipv4: bool) -> Wanted {
        Wanted {
            key: key(n),
            endpoint: endpoint.into(),
            name: format!("acme/shop/web{n}/prod"),
            ipv4,
        }
    }

    fn pools() -> Pools {
        Pools {
            v6: "fd00:e::/64".parse().expect("prefix"),
            v4: Some("198.51.100.0/30".parse().expect("pool")),
        }
    }

    #[test]
    fn networks_parse_and_are_masked() {
        let p: V6Prefix = "fd00:e::99/64".parse().expect("prefix");
        assert_eq!(p.to_string(), "fd00:e::/64");
        let v4: V4Pool = "198.51.100.7/29".parse().expect("pool");
        assert_eq!(v4.to_string(), "198.51.100.0/29");
        assert!("fd00::".parse::<V6Prefix>().is_err());
        assert!("10.0.0.0/33".parse::<V4Pool>().is_err());
    }

    #[test]
    fn addresses_are_stable_and_the_lowest_free_one_is_taken() {
        let first = reconcile(
            &BTreeMap::new(),
            &[want(1, "http", false), want(2, "http", true)],
            &pools(),
            10,
        );
        let a1 = &first.addresses[&endpoint_id(&key(1), "http")];
        let a2 = &first.addresses[&endpoint_id(&key(2), "http")];
        assert_eq!(a1.ipv6.to_string(), "fd00:e::1");
        assert_eq!(a2.ipv6.to_string(), "fd00:e::2");
        assert_eq!(
            a2.ipv4.map(|a| a.to_string()).as_deref(),
            Some("198.51.100.1")
        );
        // Same wants later: nothing changes.
        let again = reconcile(
            &first.addresses,
            &[want(2, "http", true), want(1, "http", false)],
            &pools(),
            99,
        );
        assert_eq!(again.addresses, first.addresses);
        assert!(again.changes.is_empty() && again.usage.is_empty());
        // Endpoint 1 leaves: its address is free for the next newcomer.
        let third = reconcile(
            &again.addresses,
            &[want(2, "http", true), want(3, "http", false)],
            &pools(),
            200,
        );
        assert_eq!(
            third.addresses[&endpoint_id(&key(3), "http")]
                .ipv6
                .to_string(),
            "fd00:e::1"
        );
        assert!(matches!(&third.changes[0], AddressChange::Released(a) if a.endpoint == "http"));
    }

    #[test]
    fn ipv4_periods_are_metered_when_they_end() {
        let start = reconcile(&BTreeMap::new(), &[want(1, "http", true)], &pools(), 0);
        let off = reconcile(
            &start.addresses,
            &[want(1, "http", false)],
            &pools(),
            7_200_000,
        );
        assert_eq!(off.usage.len(), 1);
        assert_eq!((off.usage[0].from, off.usage[0].to), (0, 7_200_000));
        let report = usage(&off.usage, &off.addresses, 0, 10_800_000);
        assert_eq!(report.len(), 1);
        assert!((report[0].ipv4_address_hours - 2.0).abs() < 1e-9);
        assert_eq!(report[0].ipv4_addresses_now, 0);
        // An address still held counts up to now.
        let held = usage(&[], &start.addresses, 0, 1_800_000);
        assert!((held[0].ipv4_address_hours - 0.5).abs() < 1e-9);
        assert_eq!(held[0].org, "acme");
    }

    #[test]
    fn exhausted_pools_and_missing_pools_are_reported_not_fatal() {
        // A /30 has two usable addresses.
        let wants = [want(1, "a", true), want(2, "a", true), want(3, "a", true)];
        let r = reconcile(&BTreeMap::new(), &wants, &pools(), 0);
        assert_eq!(r.addresses.values().filter(|a| a.ipv4.is_some()).count(), 2);
        assert!(r
            .changes
            .iter()
            .any(|c| matches!(c, AddressChange::Exhausted { family: "ipv4", .. })));
        let no_pool = Pools {
            v4: None,
            ..pools()
        };
        let r = reconcile(&BTreeMap::new(), &[want(1, "a", true)], &no_pool, 0);
        assert_eq!(r.addresses.len(), 1);
        assert!(r.addresses.values().all(|a| a.ipv4.is_none()));
    }
}
