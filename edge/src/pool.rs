//! One long-lived QUIC connection per host, opened on first use. A dead
//! connection (closed, reset by a restarted host, idle past the transport's
//! timeout after a partition) is replaced on the next use; a host that cannot
//! be reached is skipped for a backoff period (doubling up to
//! [`MAX_BACKOFF`]) so new connections go elsewhere at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};
use vt_wire::backoff::Backoff;
use vt_wire::{self as wire, PeerId, Role};

/// How long connecting to a host may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// First backoff after a failed connect.
pub const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why no stream could be opened to a host.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The host is in its backoff period after failing.
    #[error("host {0} is unreachable (backing off)")]
    BackingOff(String),
    /// Connecting failed.
    #[error("cannot connect to host {host}: {why}")]
    Connect {
        /// Host name.
        host: String,
        /// Why.
        why: String,
    },
    /// The connection broke while opening the stream.
    #[error("connection to host {host} lost: {source}")]
    Lost {
        /// Host name.
        host: String,
        /// Why.
        #[source]
        source: quinn::ConnectionError,
    },
}

struct HostSlot {
    conn: Option<quinn::Connection>,
    down_until: Option<Instant>,
    backoff: Backoff,
}

impl Default for HostSlot {
    fn default() -> HostSlot {
        HostSlot {
            conn: None,
            down_until: None,
            backoff: Backoff::new(MIN_BACKOFF, MAX_BACKOFF),
        }
    }
}

/// The edge's connections to hosts.
pub struct Pool {
    /// Replaced when the edge's certificate is renewed (connections open on
    /// the old one stay until they close).
    endpoint: Mutex<quinn::Endpoint>,
    hosts: Mutex<HashMap<String, Arc<tokio::sync::Mutex<HostSlot>>>>,
}

impl Pool {
    /// A pool dialling from `endpoint` (a client endpoint with the edge's certificate).
    pub fn new(endpoint: quinn::Endpoint) -> Pool {
        Pool {
            endpoint: Mutex::new(endpoint),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// Dials new connections from `endpoint` (one presenting a renewed
    /// certificate) from now on.
    pub fn use_endpoint(&self, endpoint: quinn::Endpoint) {
        *self.endpoint.lock().unwrap_or_else(|p| p.into_inner()) = endpoint;
    }

    fn slot(&self, host: &str) -> Arc<tokio::sync::Mutex<HostSlot>> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts.entry(host.to_string()).or_default().clone()
    }

    /// Whether `host` is in its backoff period (the balancer skips it).
    pub fn is_down(&self, host: &str) -> bool {
        let slot = self.slot(host);
        let Ok(slot) = slot.try_lock() else {
            return false;
        };
        slot.down_until.is_some_and(|t| Instant::now() < t)
    }

    /// Opens a bidirectional stream to `host` at `addr`, connecting first if
    /// there is no live connection.
    pub async fn open(
        &self,
        host: &str,
        addr: SocketAddr,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), PoolError> {
        let conn = self.connection(host, addr).await?;
        match conn.open_bi().await {
            Ok(streams) => Ok(streams),
            Err(source) => {
                self.slot(host).lock().await.conn = None;
                Err(PoolError::Lost {
                    host: host.to_string(),
                    source,
                })
            }
        }
    }

    async fn connection(
        &self,
        host: &str,
        addr: SocketAddr,
    ) -> Result<quinn::Connection, PoolError> {
        let slot = self.slot(host);
        let mut slot = slot.lock().await;
        if let Some(conn) = &slot.conn {
            if conn.close_reason().is_none() && conn.remote_address() == addr {
                return Ok(conn.clone());
            }
            info!(%host, reason = ?conn.close_reason(), "tunnel connection to host ended: reconnecting");
            slot.conn = None;
        }
        if slot.down_until.is_some_and(|t| Instant::now() < t) {
            return Err(PoolError::BackingOff(host.to_string()));
        }
        let server_name = PeerId::new(Role::Host, host)
            .map(|p| p.dns_name())
            .map_err(|e| PoolError::Connect {
                host: host.to_string(),
                why: e.to_string(),
            })?;
        let endpoint = self
            .endpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let attempt = tokio::time::timeout(
            CONNECT_TIMEOUT,
            wire::connect(&endpoint, addr, &server_name),
        )
        .await;
        match attempt {
            Ok(Ok(conn)) => {
                info!(%host, %addr, "tunnel connection to host up");
                slot.conn = Some(conn.clone());
                slot.down_until = None;
                slot.backoff.reset();
                Ok(conn)
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => vt_wire::error_chain(&e),
                    _ => format!("timed out after {CONNECT_TIMEOUT:?}"),
                };
                let backoff = slot.backoff.next_delay();
                slot.down_until = Some(Instant::now() + backoff);
                warn!(%host, %addr, %why, ?backoff, "cannot reach host");
                Err(PoolError::Connect {
                    host: host.to_string(),
                    why,
                })
            }
        }
    }

    /// A stream to `host` failed in transport: drop its connection and back
    /// off, so the next connections go elsewhere and a later one reconnects.
    pub async fn failed(&self, host: &str) {
        let slot = self.slot(host);
        let mut slot = slot.lock().await;
        if let Some(conn) = slot.conn.take() {
            conn.close(0u32.into(), b"tunnel failed");
        }
        let backoff = slot.backoff.next_delay();
        slot.down_until = Some(Instant::now() + backoff);
        warn!(%host, ?backoff, "tunnel to host failed; backing off");
    }

    /// Forgets hosts no longer in the routing table. Their connections
    /// close once the last relayed stream on them ends (streams keep a
    /// connection alive), so draining connections are not cut.
    pub fn retain(&self, hosts: &[&str]) {
        let mut all = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|name, _| hosts.contains(&name.as_str()));
    }
}
