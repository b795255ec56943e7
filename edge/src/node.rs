//! The edge's session with the controller.

use crate::listeners::Listeners;
use crate::pool::Pool;
use crate::relay::Relays;
use crate::stats::EndpointId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, info_span, warn, Instrument};
use vt_plan::{HostId, InstanceId};
use vt_wire::backoff::Reconnect;
use vt_wire::messages::{ControllerMessage, EdgeMessage, Route};
use vt_wire::Credentials;
use vt_wire::{
    self as wire, frame, node_identity, NodeError, Role, WireError, CONTROLLER_SERVER_NAME,
};

/// How often the edge sends its counters when they change.
pub const STATS_EVERY: Duration = Duration::from_secs(1);

/// What `vt edge run` was told.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// The controller's QUIC address.
    pub controller: SocketAddr,
    /// Join token, needed once.
    pub token: Option<String>,
    /// Edge name (DNS label).
    pub name: String,
    /// Where the certificate lives.
    pub state_dir: PathBuf,
    /// Network device to add endpoint addresses to (`lo`), if any.
    pub assign_to: Option<String>,
}

/// Failures that stop the edge.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// Enrolment or the certificate failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The QUIC endpoints cannot be set up.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Runs the edge until `shutdown` resolves.
pub async fn run(
    opts: EdgeOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), EdgeError> {
    let (identity, ca) = node_identity(
        &opts.state_dir,
        opts.controller,
        opts.token.as_deref(),
        Role::Edge,
        &opts.name,
    )
    .await?;
    let any = |v6: bool| -> SocketAddr {
        if v6 {
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
        }
    };
    let control = wire::client_endpoint(any(opts.controller.is_ipv6()), Some(&identity), &ca)?;
    let tunnels = wire::client_endpoint(any(true), Some(&identity), &ca)?;
    let mut credentials =
        Credentials::new(identity, ca, opts.state_dir.clone(), control.clone(), None);
    let relays = Arc::new(Relays::new(Pool::new(tunnels)));
    let mut listeners = Listeners::new(opts.assign_to.clone());
    let sessions = async {
        let mut reconnect = Reconnect::default();
        loop {
            let span = info_span!("session", edge = %opts.name, controller = %opts.controller);
            let ended = session(&mut credentials, &opts, &relays, &mut listeners)
                .instrument(span)
                .await;
            reconnect
                .after(
                    ended,
                    "session failed; still serving the last routing table",
                )
                .await;
        }
    };
    tokio::select! {
        () = sessions => {}
        () = shutdown => info!("edge stopping"),
    }
    listeners.close_all();
    control.close(0u32.into(), b"edge stopping");
    Ok(())
}

async fn session(
    credentials: &mut Credentials,
    opts: &EdgeOptions,
    relays: &Arc<Relays>,
    listeners: &mut Listeners,
) -> Result<(), WireError> {
    credentials.session_started();
    let conn = wire::connect(&credentials.client, opts.controller, CONTROLLER_SERVER_NAME).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    frame::send(
        &mut send,
        &EdgeMessage::Hello {
            name: opts.name.clone(),
        },
    )
    .await?;
    info!("connected to the controller");
    let (tx, mut messages) = tokio::sync::mpsc::channel(16);
    let reader = tokio::spawn(async move {
        loop {
            let message = frame::recv::<ControllerMessage>(&mut recv).await;
            let end = !matches!(message, Ok(Some(_)));
            if tx.send(message).await.is_err() || end {
                return;
            }
        }
    });
    let mut tick = tokio::time::interval(STATS_EVERY);
    let mut last_sent = None;
    let mut since_sent = 0u32;
    let result = loop {
        let mut send_now = false;
        tokio::select! {
            message = messages.recv() => match message.unwrap_or(Ok(None)) {
                Ok(Some(ControllerMessage::Routes { routes })) => {
                    apply_routes(relays, routes);
                    listeners.reconcile(relays);
                    send_now = true;
                }
                Ok(Some(ControllerMessage::Renewed { cert_pem })) => {
                    if let Err(e) = renewed(credentials, relays, &cert_pem) {
                        warn!(error = %wire::error_chain(&e), "cannot use the renewed certificate");
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            },
            _ = tick.tick() => {
                since_sent += 1;
                send_now = since_sent >= 5;
                match credentials.due(std::time::SystemTime::now()) {
                    Ok(Some(csr_pem)) => {
                        if let Err(e) = frame::send(&mut send, &EdgeMessage::Renew { csr_pem }).await {
                            break Err(e);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => warn!(error = %wire::error_chain(&e), "cannot ask for a renewal"),
                }
            }
        }
        let endpoints = relays.stats.snapshot();
        if send_now || last_sent.as_ref() != Some(&endpoints) {
            if let Err(e) = frame::send(
                &mut send,
                &EdgeMessage::Stats {
                    endpoints: endpoints.clone(),
                },
            )
            .await
            {
                break Err(e);
            }
            last_sent = Some(endpoints);
            since_sent = 0;
        }
    };
    reader.abort();
    result
}

/// Takes the renewed certificate: the session's endpoint presents it from
/// the next connection, tunnels to hosts from a new endpoint.
fn renewed(
    credentials: &mut Credentials,
    relays: &Relays,
    cert_pem: &str,
) -> Result<(), WireError> {
    let identity = credentials.renewed(cert_pem)?.clone();
    let bind = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
    let tunnels = wire::client_endpoint(bind, Some(&identity), credentials.ca())?;
    relays.pool.use_endpoint(tunnels);
    Ok(())
}

/// Replaces the routing table and forgets what it no longer names.
fn apply_routes(relays: &Relays, routes: Vec<Route>) {
    let table: BTreeMap<EndpointId, Arc<Route>> = routes
        .into_iter()
        .map(|r| ((r.key.clone(), r.endpoint.clone()), Arc::new(r)))
        .collect();
    let routed: BTreeMap<EndpointId, Vec<(InstanceId, HostId)>> = table
        .iter()
        .map(|(id, r)| {
            let list = r
                .backends
                .iter()
                .map(|b| (b.instance.clone(), b.host.clone()))
                .collect();
            (id.clone(), list)
        })
        .collect();
    let hosts: Vec<HostId> = table
        .values()
        .flat_map(|r| r.backends.iter().map(|b| b.host.clone()))
        .collect();
    info!(
        endpoints = table.len(),
        backends = hosts.len(),
        "routing table updated"
    );
    relays.stats.retain(&routed);
    relays
        .pool
        .retain(&hosts.iter().map(HostId::as_str).collect::<Vec<_>>());
    *relays.table.write().unwrap_or_else(|p| p.into_inner()) = table;
}
