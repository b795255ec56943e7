//! The edge's listeners: one TCP listener per endpoint address and port in
//! the routing table, bound with `IP_FREEBIND` so an address need not be up
//! yet, and optionally added to a network device (`--assign-to lo`) so the
//! kernel delivers its traffic. A listener whose endpoint leaves the table is
//! closed and its address removed from the device.

use crate::relay::{relay, Relays};
use crate::stats::EndpointId;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Backlog of each listener.
const BACKLOG: i32 = 4096;

/// Binds a listening socket on `addr`, even if the address is not local yet.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
        socket.set_freebind_v6(true)?;
    } else {
        socket.set_freebind_v4(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

struct Bound {
    endpoint: EndpointId,
    task: JoinHandle<()>,
}

/// The listeners an edge has open.
pub struct Listeners {
    bound: BTreeMap<SocketAddr, Bound>,
    /// Device to add endpoint addresses to, if any.
    assign_to: Option<String>,
    assigned: BTreeSet<std::net::IpAddr>,
}

impl Listeners {
    /// No listeners yet; addresses go on `assign_to` when given.
    pub fn new(assign_to: Option<String>) -> Listeners {
        Listeners {
            bound: BTreeMap::new(),
            assign_to,
            assigned: BTreeSet::new(),
        }
    }

    /// Opens and closes listeners to match the routing table in `relays`,
    /// and records each endpoint's listeners in its stats.
    pub fn reconcile(&mut self, relays: &Arc<Relays>) {
        let wanted: BTreeMap<SocketAddr, EndpointId> = {
            let table = relays.table.read().unwrap_or_else(|p| p.into_inner());
            table
                .iter()
                .flat_map(|(id, route)| {
                    route
                        .addresses
                        .iter()
                        .map(move |ip| (SocketAddr::new(*ip, route.port), id.clone()))
                })
                .collect()
        };
        let gone: Vec<SocketAddr> = self
            .bound
            .iter()
            .filter(|(addr, b)| wanted.get(addr) != Some(&b.endpoint))
            .map(|(addr, _)| *addr)
            .collect();
        for addr in gone {
            if let Some(b) = self.bound.remove(&addr) {
                b.task.abort();
                info!(%addr, endpoint = %b.endpoint.1, "listener closed");
            }
        }
        let mut errors: BTreeMap<EndpointId, String> = BTreeMap::new();
        for (addr, id) in &wanted {
            if self.bound.contains_key(addr) {
                continue;
            }
            if let Err(e) = self.assign(addr.ip()) {
                warn!(%addr, error = %e, "cannot add the endpoint address to its device");
            }
            match bind(*addr) {
                Ok(listener) => {
                    info!(%addr, endpoint = %id.1, "listening");
                    let task = tokio::spawn(accept(listener, relays.clone(), id.clone()));
                    self.bound.insert(
                        *addr,
                        Bound {
                            endpoint: id.clone(),
                            task,
                        },
                    );
                }
                Err(e) => {
                    warn!(%addr, error = %e, "cannot listen");
                    errors.insert(id.clone(), format!("{addr}: {e}"));
                }
            }
        }
        self.unassign_unused(&wanted);
        let ids: BTreeSet<&EndpointId> = wanted.values().collect();
        for id in ids {
            let listening = self
                .bound
                .iter()
                .filter(|(_, b)| &b.endpoint == id)
                .map(|(addr, _)| addr.to_string())
                .collect();
            relays
                .stats
                .listening(id, listening, errors.get(id).cloned());
        }
    }

    fn assign(&mut self, ip: std::net::IpAddr) -> Result<(), String> {
        let Some(dev) = &self.assign_to else {
            return Ok(());
        };
        if self.assigned.contains(&ip) {
            return Ok(());
        }
        let (family, cidr) = match ip {
            std::net::IpAddr::V6(_) => ("-6", format!("{ip}/128")),
            std::net::IpAddr::V4(_) => ("-4", format!("{ip}/32")),
        };
        let mut args = vec![
            family,
            "addr",
            "replace",
            cidr.as_str(),
            "dev",
            dev.as_str(),
        ];
        if ip.is_ipv6() {
            args.push("nodad");
        }
        vt_wire::command::ip(&args).map_err(|e| e.to_string())?;
        self.assigned.insert(ip);
        Ok(())
    }

    fn unassign_unused(&mut self, wanted: &BTreeMap<SocketAddr, EndpointId>) {
        let Some(dev) = self.assign_to.clone() else {
            return;
        };
        let still: BTreeSet<std::net::IpAddr> = wanted.keys().map(SocketAddr::ip).collect();
        let unused: Vec<std::net::IpAddr> = self.assigned.difference(&still).copied().collect();
        for ip in unused {
            let cidr = if ip.is_ipv6() {
                format!("{ip}/128")
            } else {
                format!("{ip}/32")
            };
            match vt_wire::command::ip(&["addr", "del", &cidr, "dev", &dev]) {
                Ok(()) => info!(%ip, %dev, "endpoint address released"),
                Err(e) => warn!(%ip, error = %e, "cannot remove the endpoint address"),
            }
            self.assigned.remove(&ip);
        }
    }

    /// Closes every listener and removes the addresses it added.
    pub fn close_all(&mut self) {
        for (_, b) in std::mem::take(&mut self.bound) {
            b.task.abort();
        }
        self.unassign_unused(&BTreeMap::new());
    }
}

async fn accept(listener: TcpListener, relays: Arc<Relays>, id: EndpointId) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                let _ = client.set_nodelay(true);
                tokio::spawn(relay(relays.clone(), id.clone(), client, peer));
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
