//! The controller's QUIC side. A connection without a certificate may only
//! enrol; a host keeps one session stream on which it registers and reports
//! and receives its assignments; an edge receives the routing table. Sessions
//! push whenever the controller's state changes ([`Shared::changed`]).

use crate::controller::shared::Shared;
use std::sync::Arc;
use tracing::{debug, info, info_span, warn, Instrument};
use vt_wire::clock::now;
use vt_wire::error_chain;
use vt_wire::messages::{ControllerMessage, EdgeMessage, HostMessage};
use vt_wire::{frame, peer_of, Enroller, PeerId, Role, WireError};

/// Log lines the controller keeps, over all instances.
pub const LOG_LINES_KEPT: u64 = 200_000;

/// Accepts connections until the endpoint closes.
pub async fn serve(shared: Arc<Shared>, endpoint: quinn::Endpoint, enroller: Arc<Enroller>) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = shared.clone();
        let enroller = enroller.clone();
        let remote = incoming.remote_address();
        tokio::spawn(
            async move {
                let conn = match incoming.await {
                    Ok(conn) => conn,
                    Err(e) => {
                        // A wrong CA or an expired certificate ends here.
                        warn!(error = %e, "refused a connection at the TLS handshake");
                        return;
                    }
                };
                let result = match peer_of(&conn) {
                    Ok(None) => enroller
                        .serve(&conn, &*shared)
                        .await
                        .map(|peer| info!(role = %peer.role, name = %peer.name, "enrolled")),
                    Ok(Some(peer)) if !enrolled(&shared, &conn, &peer) => return,
                    Ok(Some(peer)) if peer.role == Role::Host => {
                        let span = info_span!("host", host = %peer.name);
                        host_session(&shared, &enroller, &conn, &peer)
                            .instrument(span)
                            .await
                    }
                    Ok(Some(peer)) if peer.role == Role::Edge => {
                        let span = info_span!("edge", edge = %peer.name);
                        edge_session(&shared, &enroller, &conn, &peer)
                            .instrument(span)
                            .await
                    }
                    Ok(Some(peer)) => Err(WireError::RoleNotAllowed { peer }),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    debug!(error = %error_chain(&e), "session ended");
                    conn.close(1u32.into(), b"session ended");
                }
            }
            .instrument(info_span!("conn", %remote)),
        );
    }
}

/// Whether `peer` may hold a session: its certificate is the one on record
/// and it is not revoked. A refused peer's connection is closed with the
/// reason, which its agent logs.
fn enrolled(shared: &Shared, conn: &quinn::Connection, peer: &PeerId) -> bool {
    let fingerprint = vt_wire::peer_fingerprint(conn)
        .map(|f| f.to_string())
        .unwrap_or_default();
    let checked = shared
        .lock()
        .check_session(peer.role, &peer.name, &fingerprint);
    match checked {
        Ok(()) => true,
        Err(refusal) => {
            warn!(role = %peer.role, name = %peer.name, %refusal, "refused a session");
            conn.close(REFUSED.into(), refusal.to_string().as_bytes());
            false
        }
    }
}

/// Renews `peer`'s certificate for the key of `csr_pem` and records it as
/// the one its sessions are accepted from; a revoked or removed node gets
/// none (its session ends).
fn renew(
    shared: &Shared,
    enroller: &Enroller,
    peer: &PeerId,
    csr_pem: &str,
) -> Result<String, WireError> {
    let renewed = enroller.renew(peer, csr_pem)?;
    let expires = renewed
        .expires
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut controller = shared.lock();
    let recorded = controller.renewed_node(
        peer.role,
        &peer.name,
        (&renewed.fingerprint.to_string(), expires),
        now(),
    );
    shared.commit(&mut controller);
    match recorded {
        Ok(()) => {
            info!(role = %peer.role, name = %peer.name, "renewed a certificate");
            Ok(renewed.cert_pem)
        }
        Err(refusal) => Err(WireError::JoinRefused(refusal.to_string())),
    }
}

/// The QUIC close code of a refused session (not enrolled, revoked).
pub const REFUSED: u32 = 3;

/// One host's session: registration, then reports in and assignments out.
async fn host_session(
    shared: &Shared,
    enroller: &Enroller,
    conn: &quinn::Connection,
    peer: &PeerId,
) -> Result<(), WireError> {
    let (mut send, mut recv) = conn.accept_bi().await?;
    let registration = match frame::recv::<HostMessage>(&mut recv).await? {
        Some(HostMessage::Register(reg)) if reg.name == peer.name => reg,
        Some(HostMessage::Register(reg)) => {
            warn!(claimed = %reg.name, "host registered under another name than its certificate's");
            return Err(WireError::CertificateParse(format!(
                "host `{}` registered as `{}`",
                peer.name, reg.name
            )));
        }
        _ => return Err(WireError::NoMessage),
    };
    let heartbeat_ms = {
        let mut controller = shared.lock();
        controller.register_host(&registration, now());
        shared.commit(&mut controller);
        controller.config().heartbeat
    };
    frame::send(&mut send, &ControllerMessage::Welcome { heartbeat_ms }).await?;
    shared
        .host_conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(peer.name.clone(), conn.clone());
    // Revoked between the first check and now: the revocation found no
    // connection to close.
    if !enrolled(shared, conn, peer) {
        return Ok(());
    }
    // Reading a frame is not cancel-safe: a task reads, the loop selects on a channel.
    let (tx, mut messages) = tokio::sync::mpsc::channel(16);
    let reader = tokio::spawn(async move {
        loop {
            let message = frame::recv::<HostMessage>(&mut recv).await;
            let end = !matches!(message, Ok(Some(_)));
            if tx.send(message).await.is_err() || end {
                return;
            }
        }
    });
    let result = host_loop(shared, enroller, &mut send, &mut messages, peer).await;
    reader.abort();
    shared.forget_conn(Role::Host, &peer.name, conn);
    result
}

async fn host_loop(
    shared: &Shared,
    enroller: &Enroller,
    send: &mut quinn::SendStream,
    messages: &mut tokio::sync::mpsc::Receiver<Result<Option<HostMessage>, WireError>>,
    peer: &PeerId,
) -> Result<(), WireError> {
    let mut changed = shared.changed.subscribe();
    let mut last_sent = None;
    loop {
        let assignments = shared.lock().assignments(&peer.name);
        if last_sent.as_ref() != Some(&assignments) {
            // Secrets are opened here, at send time, and kept nowhere.
            let mut instances = assignments.clone();
            shared.deliver_secrets(&mut instances);
            frame::send(send, &ControllerMessage::Assign { instances }).await?;
            last_sent = Some(assignments);
        }
        let queued = std::mem::take(
            shared
                .host_commands
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(peer.name.clone())
                .or_default(),
        );
        for command in queued {
            frame::send(send, &command).await?;
        }
        tokio::select! {
            message = messages.recv() => match message.unwrap_or(Ok(None))? {
                Some(HostMessage::Report { instances, volumes }) => {
                    let mut controller = shared.lock();
                    controller.host_volumes(&peer.name, volumes);
                    let before = controller.instances_of_host(&peer.name);
                    controller.report(&peer.name, &instances, now());
                    let moved = controller.instances_of_host(&peer.name) != before;
                    shared.commit(&mut controller);
                    if moved {
                        shared.tick_kick.notify_one();
                    }
                }
                Some(HostMessage::Logs { lines }) => {
                    let store = shared.lock();
                    if let Err(e) = store.store().append_logs(&lines, LOG_LINES_KEPT) {
                        warn!(error = %error_chain(&e), "cannot store log lines");
                    }
                    drop(store);
                    for line in lines {
                        let _ = shared.logs.send(line);
                    }
                }
                Some(HostMessage::Register(_)) => return Err(WireError::NoMessage),
                Some(HostMessage::Renew { csr_pem }) => {
                    let cert_pem = renew(shared, enroller, peer, &csr_pem)?;
                    frame::send(send, &ControllerMessage::Renewed { cert_pem }).await?;
                }
                None => {
                    info!("host closed its session");
                    return Ok(());
                }
            },
            changed_result = changed.changed() => {
                if changed_result.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// One edge's session: the routing table out whenever it changes, what the
/// edge serves (listeners, connections, bytes) in.
async fn edge_session(
    shared: &Shared,
    enroller: &Enroller,
    conn: &quinn::Connection,
    peer: &PeerId,
) -> Result<(), WireError> {
    let (mut send, mut recv) = conn.accept_bi().await?;
    match frame::recv::<EdgeMessage>(&mut recv).await? {
        Some(EdgeMessage::Hello { name }) if name == peer.name => {}
        _ => return Err(WireError::NoMessage),
    }
    shared
        .conns(Role::Edge)
        .insert(peer.name.clone(), conn.clone());
    // Revoked between the first check and now: the revocation found no
    // connection to close.
    if !enrolled(shared, conn, peer) {
        return Ok(());
    }
    {
        let mut controller = shared.lock();
        controller.edge_connected(&peer.name, now());
        shared.commit(&mut controller);
    }
    let (tx, mut messages) = tokio::sync::mpsc::channel(16);
    let reader = tokio::spawn(async move {
        loop {
            let message = frame::recv::<EdgeMessage>(&mut recv).await;
            let end = !matches!(message, Ok(Some(_)));
            if tx.send(message).await.is_err() || end {
                return;
            }
        }
    });
    let result = edge_loop(shared, enroller, &mut send, &mut messages, peer).await;
    reader.abort();
    shared.forget_conn(Role::Edge, &peer.name, conn);
    let mut controller = shared.lock();
    controller.edge_disconnected(&peer.name, now());
    shared.commit(&mut controller);
    result
}

async fn edge_loop(
    shared: &Shared,
    enroller: &Enroller,
    send: &mut quinn::SendStream,
    messages: &mut tokio::sync::mpsc::Receiver<Result<Option<EdgeMessage>, WireError>>,
    peer: &PeerId,
) -> Result<(), WireError> {
    let mut changed = shared.changed.subscribe();
    let mut last_sent = None;
    loop {
        let routes = shared.lock().routes();
        if last_sent.as_ref() != Some(&routes) {
            frame::send(
                send,
                &ControllerMessage::Routes {
                    routes: routes.clone(),
                },
            )
            .await?;
            last_sent = Some(routes);
        }
        tokio::select! {
            message = messages.recv() => match message.unwrap_or(Ok(None))? {
                Some(EdgeMessage::Stats { endpoints }) => {
                    let mut controller = shared.lock();
                    if controller.edge_report(&peer.name, endpoints, now()) {
                        shared.commit(&mut controller);
                    }
                }
                Some(EdgeMessage::Hello { .. }) => return Err(WireError::NoMessage),
                Some(EdgeMessage::Renew { csr_pem }) => {
                    let cert_pem = renew(shared, enroller, peer, &csr_pem)?;
                    frame::send(send, &ControllerMessage::Renewed { cert_pem }).await?;
                }
                None => {
                    info!("edge closed its session");
                    return Ok(());
                }
            },
            changed_result = changed.changed() => {
                if changed_result.is_err() {
                    return Ok(());
                }
            }
        }
    }
}
