//! The controller's endpoint side: addresses for every endpoint of the
//! desired state (see [`addresses`](vt_plan::addresses)), the
//! routing table edges receive, what edges report, and IPv4 usage.

use super::Controller;
use crate::store::StoreError;
use serde_json::json;
use std::collections::BTreeMap;
use vt_plan::addresses::{
    self, endpoint_id, AddressChange, EndpointAddress, OrgUsage, UsageRecord, Wanted,
};
use vt_plan::events::{kind, Event};
use vt_plan::{HostStatus, Millis, Phase};
use vt_wire::messages::{Backend, EndpointStats, Route};

/// What one edge last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeState {
    /// When it connected.
    pub connected: Millis,
    /// When it last reported.
    pub last_seen: Millis,
    /// Its endpoints.
    pub endpoints: Vec<EndpointStats>,
}

impl Controller {
    /// Allocates and frees endpoint addresses after the desired state changed.
    pub(super) fn reconcile_addresses(&mut self, now: Millis) {
        let wanted: Vec<Wanted> = self
            .active
            .iter()
            .filter_map(|key| self.releases.get(key))
            .flat_map(|release| {
                release.spec.endpoints.iter().map(|ep| Wanted {
                    key: release.key.clone(),
                    endpoint: ep.name.clone(),
                    name: release.name.clone(),
                    ipv4: ep.ipv4,
                })
            })
            .collect();
        let result = addresses::reconcile(&self.addresses, &wanted, &self.config.pools, now);
        for record in &result.usage {
            let seq = self.next_usage;
            self.next_usage += 1;
            self.journal.put(format!("usage/{seq:012}"), record);
        }
        for change in result.changes {
            self.address_event(change, now);
        }
        for id in self.addresses.keys() {
            if !result.addresses.contains_key(id) {
                self.journal.delete(format!("addr/{id}"));
            }
        }
        for (id, address) in &result.addresses {
            if self.addresses.get(id) != Some(address) {
                self.journal.put(format!("addr/{id}"), address);
            }
        }
        self.addresses = result.addresses;
    }

    fn address_event(&mut self, change: AddressChange, now: Millis) {
        let (kind, name, endpoint, message, fields) = match change {
            AddressChange::Allocated(a) => (
                kind::ENDPOINT_ALLOCATED,
                a.name.clone(),
                a.endpoint.clone(),
                format!(
                    "endpoint {} of {} got address {}",
                    a.endpoint, a.name, a.ipv6
                ),
                json!({"ipv6": a.ipv6}),
            ),
            AddressChange::Ipv4Added(a) => (
                kind::ENDPOINT_ALLOCATED,
                a.name.clone(),
                a.endpoint.clone(),
                format!(
                    "endpoint {} of {} got IPv4 address {} (billed per hour)",
                    a.endpoint,
                    a.name,
                    a.ipv4.map(|v| v.to_string()).unwrap_or_default()
                ),
                json!({"ipv4": a.ipv4}),
            ),
            AddressChange::Released(a) => (
                kind::ENDPOINT_RELEASED,
                a.name.clone(),
                a.endpoint.clone(),
                format!(
                    "endpoint {} of {} left the repository: {} released",
                    a.endpoint,
                    a.name,
                    a.addresses()
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                json!({"ipv6": a.ipv6, "ipv4": a.ipv4}),
            ),
            AddressChange::Ipv4Released(a, v4) => (
                kind::ENDPOINT_RELEASED,
                a.name.clone(),
                a.endpoint.clone(),
                format!(
                    "endpoint {} of {} no longer asks for IPv4: {v4} released",
                    a.endpoint, a.name
                ),
                json!({"ipv4": v4}),
            ),
            AddressChange::Exhausted {
                wanted,
                family,
                reason,
            } => (
                kind::ENDPOINT_UNALLOCATED,
                wanted.name.clone(),
                wanted.endpoint.clone(),
                format!(
                    "endpoint {} of {} has no {family} address: {reason}",
                    wanted.endpoint, wanted.name
                ),
                json!({"family": family}),
            ),
        };
        let mut fields = fields;
        fields["endpoint"] = json!(endpoint);
        self.journal.emit(
            Event::new(kind, now, message)
                .for_workload(&name)
                .fields(fields),
        );
    }

    /// Every endpoint's addresses, by `<app id>/<env id>/<endpoint>`.
    pub fn endpoint_addresses(&self) -> &BTreeMap<String, EndpointAddress> {
        &self.addresses
    }

    /// Billable IPv4 address-hours per org over `[since, now]`.
    pub fn usage(&self, since: Millis, now: Millis) -> Result<Vec<OrgUsage>, StoreError> {
        let closed: Vec<UsageRecord> = self
            .store
            .scan::<UsageRecord>("usage/")?
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| r.to >= since)
            .collect();
        Ok(addresses::usage(&closed, &self.addresses, since, now))
    }

    /// The routing table: every endpoint of every active workload with its
    /// addresses and healthy instances (an instance told to stop is already
    /// out, so edges stop sending it new connections before it stops).
    pub fn routes(&self) -> Vec<Route> {
        let mut routes = Vec::new();
        for key in &self.active {
            let Some(release) = self.releases.get(key) else {
                continue;
            };
            for ep in &release.spec.endpoints {
                let port = release.spec.port_number(&ep.target).unwrap_or(0);
                let backends = self
                    .instances
                    .values()
                    .filter(|i| &i.instance.key == key && i.instance.phase == Phase::Healthy)
                    .filter_map(|i| {
                        let host = self.hosts.get(&i.instance.host)?;
                        (host.host.status == HostStatus::Ready).then(|| Backend {
                            instance: i.instance.id.clone(),
                            host: i.instance.host.clone(),
                            port,
                            tunnel: host.tunnel,
                        })
                    })
                    .collect();
                routes.push(Route {
                    name: release.name.clone(),
                    key: key.clone(),
                    endpoint: ep.name.clone(),
                    port: ep.port,
                    ipv4: ep.ipv4,
                    proxy_protocol: ep.proxy_protocol.is_some(),
                    addresses: self
                        .addresses
                        .get(&endpoint_id(key, &ep.name))
                        .map(EndpointAddress::addresses)
                        .unwrap_or_default(),
                    backends,
                });
            }
        }
        routes
    }

    /// An edge connected.
    pub fn edge_connected(&mut self, edge: &str, now: Millis) {
        self.edges.insert(
            edge.to_string(),
            EdgeState {
                connected: now,
                last_seen: now,
                endpoints: Vec::new(),
            },
        );
        self.journal.emit(
            Event::new(kind::EDGE_CONNECTED, now, format!("edge {edge} connected"))
                .fields(json!({"edge": edge})),
        );
    }

    /// An edge reported what it serves; listeners opening and closing become
    /// events. Returns whether there were any (counters alone stay in memory).
    pub fn edge_report(&mut self, edge: &str, endpoints: Vec<EndpointStats>, now: Millis) -> bool {
        let before = self
            .edges
            .get(edge)
            .map(|e| e.endpoints.clone())
            .unwrap_or_default();
        let find = |list: &[EndpointStats], s: &EndpointStats| {
            list.iter()
                .find(|o| o.key == s.key && o.endpoint == s.endpoint)
                .cloned()
                .unwrap_or_default()
        };
        let mut events = Vec::new();
        for now_stats in &endpoints {
            let was = find(&before, now_stats);
            if was.listening != now_stats.listening || was.bind_error != now_stats.bind_error {
                events.push(listener_event(edge, now_stats, now));
            }
            let had = was.backends.len();
            let has = now_stats.backends.len();
            if (had == 0) != (has == 0) && !before.is_empty() {
                events.push(backends_event(edge, now_stats, now));
            }
        }
        for gone in &before {
            if !endpoints
                .iter()
                .any(|e| e.key == gone.key && e.endpoint == gone.endpoint)
                && !gone.listening.is_empty()
            {
                let closed = EndpointStats {
                    listening: Vec::new(),
                    ..gone.clone()
                };
                events.push(listener_event(edge, &closed, now));
            }
        }
        let named: Vec<Event> = events
            .into_iter()
            .map(|(key, e)| match self.workload_name(&key) {
                Some(name) => e.for_workload(&name),
                None => e,
            })
            .collect();
        let any = !named.is_empty();
        for e in named {
            self.journal.emit(e);
        }
        let state = self.edges.entry(edge.to_string()).or_insert(EdgeState {
            connected: now,
            last_seen: now,
            endpoints: Vec::new(),
        });
        state.last_seen = now;
        state.endpoints = endpoints;
        any
    }

    /// An edge's session ended.
    pub fn edge_disconnected(&mut self, edge: &str, now: Millis) {
        if self.edges.remove(edge).is_some() {
            self.journal.emit(
                Event::new(
                    kind::EDGE_DISCONNECTED,
                    now,
                    format!("edge {edge} disconnected"),
                )
                .fields(json!({"edge": edge})),
            );
        }
    }

    /// The edges connected now and what they reported.
    pub fn edges(&self) -> &BTreeMap<String, EdgeState> {
        &self.edges
    }
}

fn listener_event(edge: &str, s: &EndpointStats, now: Millis) -> (vt_plan::WorkloadKey, Event) {
    let (kind, message) = match (&s.bind_error, s.listening.is_empty()) {
        (Some(error), _) => (
            kind::ENDPOINT_CLOSED,
            format!(
                "edge {edge} cannot listen for endpoint {}: {error}",
                s.endpoint
            ),
        ),
        (None, true) => (
            kind::ENDPOINT_CLOSED,
            format!("edge {edge} closed endpoint {}", s.endpoint),
        ),
        (None, false) => (
            kind::ENDPOINT_LISTENING,
            format!(
                "edge {edge} listens for endpoint {} on {}",
                s.endpoint,
                s.listening.join(", ")
            ),
        ),
    };
    let event = Event::new(kind, now, message).fields(json!({
        "edge": edge, "endpoint": s.endpoint, "listening": s.listening, "error": s.bind_error,
    }));
    (s.key.clone(), event)
}

fn backends_event(edge: &str, s: &EndpointStats, now: Millis) -> (vt_plan::WorkloadKey, Event) {
    let message = if s.backends.is_empty() {
        format!(
            "endpoint {} has no healthy instance on edge {edge}: new connections are refused",
            s.endpoint
        )
    } else {
        format!(
            "endpoint {} has {} healthy instance(s) on edge {edge} again",
            s.endpoint,
            s.backends.len()
        )
    };
    let event = Event::new(kind::ENDPOINT_BACKENDS, now, message).fields(json!({
        "edge": edge, "endpoint": s.endpoint, "backends": s.backends.len(),
    }));
    (s.key.clone(), event)
}
