//! What an edge counts per endpoint and instance: open connections, totals,
//! bytes each way, errors, refusals, and the listeners' state. The balancer
//! reads open counts from here; the controller gets a snapshot every second.

use std::collections::BTreeMap;
use std::sync::Mutex;
use vt_plan::{HostId, InstanceId, WorkloadKey};
use vt_wire::messages::{BackendStats, EndpointStats};

/// An endpoint: its workload and name.
pub type EndpointId = (WorkloadKey, String);

#[derive(Debug, Default, Clone)]
struct Endpoint {
    listening: Vec<String>,
    bind_error: Option<String>,
    refused: u64,
    /// Instance → counters; instances no longer routed stay while they have
    /// open connections.
    backends: BTreeMap<InstanceId, BackendStats>,
}

/// The edge's counters, shared by listeners, relays and the session.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<BTreeMap<EndpointId, Endpoint>>,
}

impl Stats {
    fn with<T>(&self, id: &EndpointId, f: impl FnOnce(&mut Endpoint) -> T) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(inner.entry(id.clone()).or_default())
    }

    fn backend<'a>(e: &'a mut Endpoint, instance: &str, host: &str) -> &'a mut BackendStats {
        e.backends
            .entry(instance.into())
            .or_insert_with(|| BackendStats {
                instance: instance.into(),
                host: host.into(),
                ..BackendStats::default()
            })
    }

    /// Keeps the endpoints and instances of the routing table (plus instances
    /// with open connections); forgets the rest.
    pub fn retain(&self, routed: &BTreeMap<EndpointId, Vec<(InstanceId, HostId)>>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.retain(|id, e| {
            e.backends.retain(|instance, b| {
                b.open > 0
                    || routed
                        .get(id)
                        .is_some_and(|list| list.iter().any(|(i, _)| i == instance))
            });
            routed.contains_key(id) || !e.backends.is_empty()
        });
        for (id, list) in routed {
            let e = inner.entry(id.clone()).or_default();
            for (instance, host) in list {
                Self::backend(e, instance, host);
            }
        }
    }

    /// Records the listeners of an endpoint.
    pub fn listening(&self, id: &EndpointId, listening: Vec<String>, bind_error: Option<String>) {
        self.with(id, |e| {
            e.listening = listening;
            e.bind_error = bind_error;
        });
    }

    /// Open connections per instance of an endpoint, in `instances` order.
    pub fn open_counts(&self, id: &EndpointId, instances: &[&str]) -> Vec<u64> {
        self.with(id, |e| {
            instances
                .iter()
                .map(|i| e.backends.get(*i).map_or(0, |b| b.open))
                .collect()
        })
    }

    /// A connection to `instance` started.
    pub fn opened(&self, id: &EndpointId, instance: &str, host: &str) {
        self.with(id, |e| {
            let b = Self::backend(e, instance, host);
            b.open += 1;
            b.total += 1;
        });
    }

    /// A connection to `instance` ended after moving these bytes.
    pub fn closed(
        &self,
        id: &EndpointId,
        instance: &str,
        host: &str,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        self.with(id, |e| {
            let b = Self::backend(e, instance, host);
            b.open = b.open.saturating_sub(1);
            b.bytes_in += bytes_in;
            b.bytes_out += bytes_out;
        });
    }

    /// A tunnel to `instance` failed.
    pub fn error(&self, id: &EndpointId, instance: &str, host: &str) {
        self.with(id, |e| Self::backend(e, instance, host).errors += 1);
    }

    /// A client found no instance to go to.
    pub fn refused(&self, id: &EndpointId) {
        self.with(id, |e| e.refused += 1);
    }

    /// Everything, for the controller.
    pub fn snapshot(&self) -> Vec<EndpointStats> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .iter()
            .map(|((key, endpoint), e)| EndpointStats {
                key: key.clone(),
                endpoint: endpoint.clone(),
                listening: e.listening.clone(),
                bind_error: e.bind_error.clone(),
                refused: e.refused,
                backends: e.backends.values().cloned().collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> EndpointId {
        (WorkloadKey::default(), "http".into())
    }

    #[test]
    fn counts_follow_connections_and_survive_until_closed() {
        let s = Stats::default();
        let routed = BTreeMap::from([(id(), vec![("i1".into(), "h1".into())])]);
        s.retain(&routed);
        s.opened(&id(), "i1", "h1");
        s.opened(&id(), "i1", "h1");
        assert_eq!(s.open_counts(&id(), &["i1", "i2"]), [2, 0]);
        // i1 leaves the routing table but keeps its open connections.
        s.retain(&BTreeMap::new());
        assert_eq!(s.snapshot()[0].backends[0].open, 2);
        s.closed(&id(), "i1", "h1", 10, 20);
        s.closed(&id(), "i1", "h1", 1, 2);
        let snap = s.snapshot();
        let b = &snap[0].backends[0];
        assert_eq!((b.open, b.total, b.bytes_in, b.bytes_out), (0, 2, 11, 22));
        s.retain(&BTreeMap::new());
        assert!(s.snapshot().is_empty());
    }
}
