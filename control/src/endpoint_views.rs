//! The API's answers about endpoints (`GET /v1/endpoints`) and IPv4 usage
//! (`GET /v1/usage`): pure functions of the controller's state.

use crate::core::Controller;
use crate::filter::matches;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};
use vt_plan::addresses::{endpoint_id, OrgUsage};
use vt_plan::{Millis, Phase};

/// One endpoint: its addresses, the instances behind it, and its traffic
/// summed over edges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    /// Qualified env name.
    pub workload: String,
    /// Endpoint name.
    pub endpoint: String,
    /// Public port.
    pub port: u16,
    /// Port inside the guest.
    pub target_port: u16,
    /// IPv6 address (none until allocated).
    pub ipv6: Option<Ipv6Addr>,
    /// Whether it asks for IPv4.
    pub ipv4_requested: bool,
    /// IPv4 address, with the add-on.
    pub ipv4: Option<Ipv4Addr>,
    /// Whether the app gets a PROXY v2 header.
    pub proxy_protocol: bool,
    /// Edges and what they listen on.
    pub edges: Vec<EdgeListenerView>,
    /// Instances of the workload and their traffic.
    pub instances: Vec<EndpointInstanceView>,
    /// Connections open now.
    pub open: u64,
    /// Connections since the edges started.
    pub total: u64,
    /// Bytes from clients.
    pub bytes_in: u64,
    /// Bytes to clients.
    pub bytes_out: u64,
    /// Failed tunnel attempts.
    pub errors: u64,
    /// Clients that found no instance.
    pub refused: u64,
}

/// An edge serving an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeListenerView {
    /// Edge name.
    pub edge: String,
    /// Addresses it listens on.
    pub listening: Vec<String>,
    /// Why it cannot listen, if it cannot.
    pub error: Option<String>,
    /// Clients it could not place.
    pub refused: u64,
}

/// One instance behind an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointInstanceView {
    /// Instance ID.
    pub instance: String,
    /// Host name.
    pub host: String,
    /// Phase (`healthy`, `stopping`, ...).
    pub phase: String,
    /// Whether edges send it new connections.
    pub routed: bool,
    /// Connections open now (all edges).
    pub open: u64,
    /// Connections in total.
    pub total: u64,
    /// Bytes from clients.
    pub bytes_in: u64,
    /// Bytes to clients.
    pub bytes_out: u64,
    /// Failed tunnel attempts.
    pub errors: u64,
}

/// Every endpoint of the active workloads, optionally of one app (and env).
pub fn endpoints(c: &Controller, app: Option<&str>, env: Option<&str>) -> Vec<EndpointView> {
    let addresses = c.endpoint_addresses();
    let edges = c.edges();
    c.routes()
        .into_iter()
        .filter(|r| app.is_none_or(|a| matches(&r.name, a, env)))
        .map(|route| {
            let held = addresses.get(&endpoint_id(&route.key, &route.endpoint));
            let reports: Vec<(&String, _)> = edges
                .iter()
                .filter_map(|(edge, state)| {
                    let s = state
                        .endpoints
                        .iter()
                        .find(|s| s.key == route.key && s.endpoint == route.endpoint)?;
                    Some((edge, s))
                })
                .collect();
            let mut instances: Vec<EndpointInstanceView> = c
                .instances_of(&route.key)
                .into_iter()
                .filter(|i| i.instance.phase.holds_resources())
                .map(|i| {
                    let traffic = reports
                        .iter()
                        .flat_map(|(_, s)| s.backends.iter())
                        .filter(|b| i.instance.id == b.instance);
                    let mut view = EndpointInstanceView {
                        instance: i.instance.id.to_string(),
                        host: i.instance.host.to_string(),
                        phase: crate::core::phase_name(i.instance.phase),
                        routed: route.backends.iter().any(|b| i.instance.id == b.instance),
                        open: 0,
                        total: 0,
                        bytes_in: 0,
                        bytes_out: 0,
                        errors: 0,
                    };
                    for b in traffic {
                        view.open += b.open;
                        view.total += b.total;
                        view.bytes_in += b.bytes_in;
                        view.bytes_out += b.bytes_out;
                        view.errors += b.errors;
                    }
                    view
                })
                .collect();
            instances.sort_by_key(|i| {
                (
                    i.phase != crate::core::phase_name(Phase::Healthy),
                    i.instance.clone(),
                )
            });
            let sum = |f: fn(&EndpointInstanceView) -> u64| instances.iter().map(f).sum::<u64>();
            EndpointView {
                workload: route.name.clone(),
                endpoint: route.endpoint.clone(),
                port: route.port,
                target_port: route.backends.first().map_or(0, |b| b.port),
                ipv6: held.map(|a| a.ipv6),
                ipv4_requested: route.ipv4,
                ipv4: held.and_then(|a| a.ipv4),
                proxy_protocol: route.proxy_protocol,
                edges: reports
                    .iter()
                    .map(|(edge, s)| EdgeListenerView {
                        edge: (*edge).clone(),
                        listening: s.listening.clone(),
                        error: s.bind_error.clone(),
                        refused: s.refused,
                    })
                    .collect(),
                open: sum(|i| i.open),
                total: sum(|i| i.total),
                bytes_in: sum(|i| i.bytes_in),
                bytes_out: sum(|i| i.bytes_out),
                errors: sum(|i| i.errors),
                refused: reports.iter().map(|(_, s)| s.refused).sum(),
                instances,
            }
        })
        .collect()
}

/// `GET /v1/usage`: billable IPv4 address-hours per org.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageView {
    /// Window start (Unix ms).
    pub since: Millis,
    /// Window end (Unix ms).
    pub until: Millis,
    /// Per org.
    pub orgs: Vec<OrgUsage>,
}
