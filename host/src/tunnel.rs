//! The host's side of edge tunnels: a QUIC server that accepts connections
//! from edges only (fleet certificates with the edge role), reads each
//! stream's [`TunnelHeader`], connects to the instance's address and port,
//! answers with a [`TunnelStatus`], writes a PROXY protocol v2 header first
//! when the endpoint asks for it, and then copies bytes both ways, each
//! direction closed on its own (half-close).
//!
//! [`Targets`] is what the agent tells the server: which instances accept
//! new connections (healthy and not draining) at which address, and how many
//! tunnelled connections each has open (for draining).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tracing::{debug, debug_span, info, warn, Instrument};
use vt_plan::{InstanceId, Phase};
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

/// The instances tunnels may reach, shared by the agent and the server.
#[derive(Debug, Default)]
pub struct Targets {
    inner: Mutex<HashMap<InstanceId, Target>>,
    bad_headers: AtomicU64,
    streams: AtomicU64,
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

    /// Tunnelled connections open to `instance` now.
    pub fn open(&self, instance: &str) -> u64 {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
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

    fn admit(&self, instance: &str) -> Result<(IpAddr, OpenGuard), TunnelStatus> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let target = inner.get(instance).ok_or(TunnelStatus::UnknownInstance)?;
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
        let (address, _open) = match targets.admit(&header.instance) {
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
