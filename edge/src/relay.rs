//! One client connection: choose an instance, open a tunnel stream to its
//! host, send the header, wait for the host's answer, then copy bytes both
//! ways until each side has closed its half. A failure before the host
//! answered "connected" (nothing was exchanged yet) is retried on another
//! instance; a client that finds none is closed at once and counted.

use crate::balance::least_connections;
use crate::pool::Pool;
use crate::stats::{EndpointId, Stats};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{debug, debug_span, Instrument};
use vt_wire::messages::{Backend, Route};
use vt_wire::tunnel::{TunnelHeader, TunnelStatus, COPY_BUFFER};

/// How long a host may take to answer a tunnel header.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// Instances tried for one client connection.
pub const MAX_ATTEMPTS: usize = 3;

/// The routing table as the edge holds it.
pub type Table = RwLock<BTreeMap<EndpointId, Arc<Route>>>;

/// What every relay shares.
pub struct Relays {
    /// The routing table.
    pub table: Table,
    /// Host connections.
    pub pool: Pool,
    /// Counters.
    pub stats: Stats,
    rotation: AtomicUsize,
}

impl Relays {
    /// Relays over `pool`, with an empty table.
    pub fn new(pool: Pool) -> Relays {
        Relays {
            table: RwLock::new(BTreeMap::new()),
            pool,
            stats: Stats::default(),
            rotation: AtomicUsize::new(0),
        }
    }

    fn route(&self, id: &EndpointId) -> Option<Arc<Route>> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        table.get(id).cloned()
    }
}

/// Serves one accepted client connection to the end.
pub async fn relay(relays: Arc<Relays>, id: EndpointId, client: TcpStream, peer: SocketAddr) {
    let local = client.local_addr().unwrap_or(peer);
    let span =
        debug_span!("connection", endpoint = %id.1, app = %id.0.app_id, env = %id.0.env_id, %peer);
    async move {
        let Some(route) = relays.route(&id) else {
            relays.stats.refused(&id);
            debug!("endpoint no longer routed: closed");
            return;
        };
        let mut excluded: Vec<bool> = route
            .backends
            .iter()
            .map(|b| b.tunnel.is_none() || relays.pool.is_down(&b.host))
            .collect();
        for _ in 0..MAX_ATTEMPTS {
            let instances: Vec<&str> = route.backends.iter().map(|b| b.instance.as_str()).collect();
            let open = relays.stats.open_counts(&id, &instances);
            let rotation = relays.rotation.fetch_add(1, Ordering::Relaxed);
            let Some(i) = least_connections(&open, &excluded, rotation) else {
                break;
            };
            excluded[i] = true;
            let backend = &route.backends[i];
            let header = TunnelHeader {
                instance: backend.instance.clone(),
                port: backend.port,
                client: peer,
                local,
                proxy_v2: route.proxy_protocol,
            };
            match tunnel(&relays.pool, backend, &header).await {
                Ok(stream) => {
                    debug!(instance = %backend.instance, host = %backend.host, "tunnelled");
                    return pipe(&relays.stats, &id, backend, client, stream).await;
                }
                Err(failure) => {
                    relays.stats.error(&id, &backend.instance, &backend.host);
                    if let Failure::Transport(_) = failure {
                        // Dead or unreachable: skip the host until it answers again.
                        relays.pool.failed(&backend.host).await;
                        for (j, b) in route.backends.iter().enumerate() {
                            excluded[j] |= b.host == backend.host;
                        }
                    }
                    debug!(instance = %backend.instance, host = %backend.host, %failure, "tunnel failed; trying another instance");
                }
            }
        }
        relays.stats.refused(&id);
        debug!("no instance could take the connection: closed");
    }
    .instrument(span)
    .await;
}

/// Why a tunnel attempt failed.
#[derive(Debug)]
enum Failure {
    /// The host answered but would not connect.
    Refused(TunnelStatus),
    /// The host could not be reached or did not answer.
    Transport(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(status) => write!(f, "host refused: {status}"),
            Failure::Transport(why) => f.write_str(why),
        }
    }
}

async fn tunnel(
    pool: &Pool,
    backend: &Backend,
    header: &TunnelHeader,
) -> Result<(quinn::SendStream, quinn::RecvStream), Failure> {
    let transport = |e: &dyn std::fmt::Display| Failure::Transport(e.to_string());
    let addr = backend
        .tunnel
        .ok_or_else(|| transport(&"the host takes no tunnels"))?;
    let (mut send, mut recv) = pool
        .open(&backend.host, addr)
        .await
        .map_err(|e| transport(&e))?;
    send.write_all(&header.encode())
        .await
        .map_err(|e| transport(&e))?;
    let mut answer = [0u8; 1];
    match tokio::time::timeout(ANSWER_TIMEOUT, recv.read_exact(&mut answer)).await {
        Ok(Ok(())) => match TunnelStatus::from_byte(answer[0]) {
            TunnelStatus::Connected => Ok((send, recv)),
            refused => Err(Failure::Refused(refused)),
        },
        Ok(Err(e)) => Err(transport(&format!("no answer: {e}"))),
        Err(_) => Err(transport(&format!("no answer within {ANSWER_TIMEOUT:?}"))),
    }
}

async fn pipe(
    stats: &Stats,
    id: &EndpointId,
    backend: &Backend,
    mut client: TcpStream,
    (send, recv): (quinn::SendStream, quinn::RecvStream),
) {
    stats.opened(id, &backend.instance, &backend.host);
    let mut tunnel = tokio::io::join(recv, send);
    let (bytes_in, bytes_out) = match tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut tunnel,
        COPY_BUFFER,
        COPY_BUFFER,
    )
    .await
    {
        Ok(moved) => moved,
        Err(e) => {
            debug!(error = %e, "connection ended with an error");
            (0, 0)
        }
    };
    let _ = client.shutdown().await;
    stats.closed(id, &backend.instance, &backend.host, bytes_in, bytes_out);
    debug!(bytes_in, bytes_out, "closed");
}
