//! The host's side of edge tunnels: a QUIC server that accepts connections
//! from edges only (fleet certificates with the edge role), reads each
//! stream's [`TunnelHeader`], connects to the instance's address and port,
//! answers with a [`TunnelStatus`], writes a PROXY protocol v2 header first
//! when the endpoint asks for it, and then copies bytes both ways, each
//! direction closed on its own (half-close).
//!
//! [`Targets`] is what the agent tells the server: which instances accept
//! new connections (healthy and not draining) at which address, which guest
//! ports of each an edge may reach (the targets of its workload's endpoints,
//! nothing else), and how many tunnelled connections each has open (for
//! draining).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tracing::{debug, debug_span, info, warn, Instrument};
use vt_plan::{InstanceId, Phase};
use vt_repo::EffectiveSpec;
use vt_wire::messages::InstanceReport;
use vt_wire::proxy_v2;
use vt_wire::tunnel::{read_header, TunnelStatus, COPY_BUFFER};
use vt_wire::{require_peer, Role};

/// How long an edge has to send a whole header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting to an instance may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Target {
    address: Option<IpAddr>,
    accepting: bool,
    open: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct Inner {
    targets: HashMap<InstanceId, Target>,
    /// The guest ports edges may reach, per instance.
    ports: HashMap<InstanceId, BTreeSet<u16>>,
}

/// The instances tunnels may reach, shared by the agent and the server.
#[derive(Debug, Default)]
pub struct Targets {
    inner: Mutex<Inner>,
    bad_headers: AtomicU64,
    streams: AtomicU64,
}

/// The guest ports a workload's endpoints forward to: the only ports of its
/// instances that tunnels may reach.
pub fn endpoint_ports(spec: &EffectiveSpec) -> BTreeSet<u16> {
    spec.endpoints
        .iter()
        .filter_map(|e| spec.port_number(&e.target))
        .collect()
}

/// Counts one open tunnelled connection to an instance while it lives.
struct OpenGuard(Arc<AtomicU64>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Targets {
    /// Takes in the host's latest report: an instance accepts new
    /// connections when it is healthy, has an address and is not `draining`.
    pub fn update(&self, reports: &[InstanceReport], draining: &BTreeSet<InstanceId>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut inner.targets;
        for r in reports {
            let target = inner.entry(r.id.clone()).or_default();
            target.address = r.address.as_deref().and_then(|a| a.parse().ok());
            target.accepting =
                r.phase == Phase::Healthy && target.address.is_some() && !draining.contains(&r.id);
        }
        inner.retain(|id, t| {
            let known = reports
                .iter()
                .any(|r| &r.id == id && r.phase.holds_resources());
            known || t.open.load(Ordering::Relaxed) > 0
        });
    }

    /// Takes in the ports each instance's endpoints target (see
    /// [`endpoint_ports`]), for every instance the host runs; an instance
    /// not listed takes no tunnels at all.
    pub fn allow(&self, ports: impl IntoIterator<Item = (InstanceId, BTreeSet<u16>)>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.ports = ports.into_iter().collect();
    }

    /// Tunnelled connections open to `instance` now.
    pub fn open(&self, instance: &str) -> u64 {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .targets
            .get(instance)
            .map_or(0, |t| t.open.load(Ordering::Relaxed))
    }

    /// Streams whose header was malformed, since the agent started.
    pub fn bad_headers(&self) -> u64 {
        self.bad_headers.load(Ordering::Relaxed)
    }

    /// Tunnel streams accepted, since the agent started.
    pub fn streams(&self) -> u64 {
        self.streams.load(Ordering::Relaxed)
    }

    /// Admits a tunnel to `port` of `instance`: a known instance, a port one
    /// of its endpoints targets, and the instance accepting connections.
    fn admit(&self, instance: &str, port: u16) -> Result<(IpAddr, OpenGuard), TunnelStatus> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let target = inner
            .targets
            .get(instance)
            .ok_or(TunnelStatus::UnknownInstance)?;
        if !inner.ports.get(instance).is_some_and(|p| p.contains(&port)) {
            return Err(TunnelStatus::PortNotAllowed);
        }
        match (target.accepting, target.address) {
            (true, Some(address)) => {
                target.open.fetch_add(1, Ordering::Relaxed);
                Ok((address, OpenGuard(target.open.clone())))
            }
            _ => Err(TunnelStatus::NotAccepting),
        }
    }
}

/// Accepts edge connections on `endpoint` until it closes.
pub async fn serve(endpoint: quinn::Endpoint, targets: Arc<Targets>) {
    while let Some(incoming) = endpoint.accept().await {
        let targets = targets.clone();
        let remote = incoming.remote_address();
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(conn) => conn,
                Err(e) => {
                    warn!(%remote, error = %e, "refused a tunnel connection at the TLS handshake");
                    return;
                }
            };
            let edge = match require_peer(&conn, &[Role::Edge]) {
                Ok(peer) => peer.name,
                Err(e) => {
                    warn!(%remote, error = %e, "refused a tunnel connection: not an edge");
                    conn.close(2u32.into(), b"edges only");
                    return;
                }
            };
            info!(%edge, %remote, "edge connected for tunnels");
            while let Ok((send, recv)) = conn.accept_bi().await {
                targets.streams.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(stream(send, recv, targets.clone(), edge.clone()));
            }
            info!(%edge, "edge tunnel connection closed");
        });
    }
}

async fn stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    targets: Arc<Targets>,
    edge: String,
) {
    let header = tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut recv)).await;
    let (header, early) = match header {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(e)) => {
            let n = targets.bad_headers.fetch_add(1, Ordering::Relaxed) + 1;
            warn!(%edge, error = %e, bad_headers = n, "closed a tunnel stream with a malformed header");
            let _ = send.write_all(&[TunnelStatus::BadHeader.to_byte()]).await;
            let _ = send.finish();
            return;
        }
        Err(_) => {
            let n = targets.bad_headers.fetch_add(1, Ordering::Relaxed) + 1;
            warn!(%edge, bad_headers = n, "closed a tunnel stream that sent no header in time");
            let _ = send.finish();
            return;
        }
    };
    let span = debug_span!("tunnel", %edge, instance = %header.instance, client = %header.client, port = header.port);
    async move {
        let (address, _open) = match targets.admit(&header.instance, header.port) {
            Ok(admitted) => admitted,
            Err(status) => {
                debug!(%status, "refused");
                let _ = send.write_all(&[status.to_byte()]).await;
                let _ = send.finish();
                return;
            }
        };
        let target = std::net::SocketAddr::new(address, header.port);
        let tcp =
            match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(target))
                .await
            {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => {
                    return refuse(&mut send, TunnelStatus::ConnectFailed, &e.to_string()).await
                }
                Err(_) => return refuse(&mut send, TunnelStatus::ConnectFailed, "timed out").await,
            };
        let _ = tcp.set_nodelay(true);
        if send
            .write_all(&[TunnelStatus::Connected.to_byte()])
            .await
            .is_err()
        {
            return;
        }
        let mut tcp = tcp;
        // The PROXY header and whatever came with the tunnel header, in one write.
        let mut first = if header.proxy_v2 {
            proxy_v2::encode(header.client, header.local)
        } else {
            Vec::new()
        };
        first.extend_from_slice(&early);
        if !first.is_empty() && tcp.write_all(&first).await.is_err() {
            return;
        }
        let mut quic = tokio::io::join(recv, send);
        match tokio::io::copy_bidirectional_with_sizes(
            &mut tcp,
            &mut quic,
            COPY_BUFFER,
            COPY_BUFFER,
        )
        .await
        {
            Ok((to_guest, to_edge)) => debug!(to_guest, to_edge, "closed"),
            Err(e) => debug!(error = %e, "ended with an error"),
        }
    }
    .instrument(span)
    .await;
}

async fn refuse(send: &mut quinn::SendStream, status: TunnelStatus, why: &str) {
    debug!(%status, why, "refused");
    let _ = send.write_all(&[status.to_byte()]).await;
    let _ = send.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use vt_wire::tunnel::TunnelHeader;

    fn report(id: &str, phase: Phase) -> InstanceReport {
        InstanceReport {
            id: id.into(),
            phase,
            detail: None,
            restarts: 0,
            address: Some("::1".into()),
            image: None,
        }
    }

    fn spec(ports: &[(&str, u16)], targets: &[&str]) -> EffectiveSpec {
        let ports: Vec<_> = ports
            .iter()
            .map(|(name, port)| serde_json::json!({"name": name, "port": port}))
            .collect();
        let endpoints: Vec<_> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                serde_json::json!({"name": format!("e{i}"), "port": 443, "target": t,
                    "ipv4": false, "proxy_protocol": null})
            })
            .collect();
        let mut spec = serde_json::to_value(crate::runtime::testing::assignment(
            "x",
            vt_wire::messages::Desire::Run,
        ))
        .expect("assignment")["spec"]
            .clone();
        spec["ports"] = ports.into();
        spec["endpoints"] = endpoints.into();
        serde_json::from_value(spec).expect("spec")
    }

    #[test]
    fn endpoint_ports_are_the_targets_of_endpoints_only() {
        let s = spec(
            &[("http", 8080), ("admin", 9090), ("metrics", 9100)],
            &["http", "metrics", "http"],
        );
        assert_eq!(endpoint_ports(&s), BTreeSet::from([8080, 9100]));
        assert!(endpoint_ports(&spec(&[("http", 8080)], &[])).is_empty());
    }

    #[test]
    fn a_tunnel_reaches_an_endpoint_target_of_a_healthy_instance_only() {
        let t = Targets::default();
        t.update(
            &[
                report("web", Phase::Healthy),
                report("new", Phase::Starting),
            ],
            &BTreeSet::new(),
        );
        t.allow([
            ("web".into(), BTreeSet::from([8080])),
            ("new".into(), BTreeSet::from([8080])),
        ]);
        let admitted = t.admit("web", 8080).map(|(address, _)| address);
        assert_eq!(admitted, Ok("::1".parse().expect("address")));
        for (instance, port, refused) in [
            ("web", 9090, TunnelStatus::PortNotAllowed),
            ("web", 22, TunnelStatus::PortNotAllowed),
            ("new", 8080, TunnelStatus::NotAccepting),
            ("new", 9090, TunnelStatus::PortNotAllowed),
            ("gone", 8080, TunnelStatus::UnknownInstance),
        ] {
            assert_eq!(
                t.admit(instance, port).map(|_| ()).err(),
                Some(refused),
                "{instance}:{port}"
            );
        }
        // An instance the agent has no assignment for takes no tunnels.
        t.allow([("new".into(), BTreeSet::from([8080]))]);
        assert_eq!(
            t.admit("web", 8080).map(|_| ()).err(),
            Some(TunnelStatus::PortNotAllowed)
        );
        // Draining refuses the allowed port too.
        t.allow([("web".into(), BTreeSet::from([8080]))]);
        t.update(
            &[report("web", Phase::Healthy)],
            &BTreeSet::from(["web".into()]),
        );
        assert_eq!(
            t.admit("web", 8080).map(|_| ()).err(),
            Some(TunnelStatus::NotAccepting)
        );
    }

    /// The server over QUIC on loopback: a port the endpoints target is
    /// tunnelled; another port of the same instance, listening too, is
    /// refused with `PortNotAllowed` and never connected to.
    #[tokio::test]
    async fn the_server_refuses_ports_that_are_not_endpoint_targets() {
        use vt_wire::{FleetCa, PeerId};
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = FleetCa::create(dir.path()).expect("ca");
        let year = Duration::from_secs(3600);
        let host = ca.issue(Role::Host, "h1", year).expect("host identity");
        let edge = ca.issue(Role::Edge, "e1", year).expect("edge identity");
        let server = vt_wire::server_endpoint(
            "[::1]:0".parse().expect("addr"),
            &host,
            ca.cert(),
            vt_wire::ClientAuth::Required,
        )
        .expect("server");
        let tunnel_addr = server.local_addr().expect("addr");
        let endpoint_port = tokio::net::TcpListener::bind("[::1]:0")
            .await
            .expect("bind");
        let other_port = tokio::net::TcpListener::bind("[::1]:0")
            .await
            .expect("bind");
        let allowed = endpoint_port.local_addr().expect("addr").port();
        let other = other_port.local_addr().expect("addr").port();
        let targets = Arc::new(Targets::default());
        targets.update(&[report("web", Phase::Healthy)], &BTreeSet::new());
        targets.allow([("web".into(), BTreeSet::from([allowed]))]);
        tokio::spawn(serve(server, targets.clone()));
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = endpoint_port.accept().await {
                let _ = tcp.write_all(b"hello from the endpoint").await;
            }
        });
        let client =
            vt_wire::client_endpoint("[::1]:0".parse().expect("addr"), Some(&edge), ca.cert())
                .expect("client");
        let name = PeerId::new(Role::Host, "h1").expect("peer").dns_name();
        let conn = vt_wire::connect(&client, tunnel_addr, &name)
            .await
            .expect("connect");
        let ask = |port: u16| {
            let conn = conn.clone();
            async move {
                let (mut send, mut recv) = conn.open_bi().await.expect("stream");
                let header = TunnelHeader {
                    instance: "web".into(),
                    port,
                    client: "[2001:db8::7]:5000".parse().expect("addr"),
                    local: "[2001:db8::1]:443".parse().expect("addr"),
                    proxy_v2: false,
                };
                send.write_all(&header.encode()).await.expect("header");
                tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1024))
                    .await
                    .expect("an answer in time")
                    .expect("the stream's bytes")
            }
        };
        let refused = ask(other).await;
        assert_eq!(refused, [TunnelStatus::PortNotAllowed.to_byte()]);
        let never = tokio::time::timeout(Duration::from_millis(200), other_port.accept()).await;
        assert!(never.is_err(), "the refused port was connected to");
        let admitted = ask(allowed).await;
        assert_eq!(admitted[0], TunnelStatus::Connected.to_byte());
        assert_eq!(&admitted[1..], b"hello from the endpoint");
        assert_eq!(targets.streams(), 2);
    }
}
