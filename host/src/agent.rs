//! The agent's session with the controller: enrol once (join token → fleet
//! certificate kept in the state dir), then connect, register, report, and
//! apply assignments; reconnect with backoff when the connection drops.

use crate::drain::Drainer;
use crate::tunnel::{self, Targets};
use crate::Runtime;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, info_span, warn, Instrument};
use vt_wire::backoff::Reconnect;
use vt_wire::clock::now;
use vt_wire::messages::{ControllerMessage, ExecCommand, ExecEvent, HostMessage, HostRegistration};
use vt_wire::Credentials;
use vt_wire::{
    self as wire, frame, node_identity, NodeError, Role, WireError, CONTROLLER_SERVER_NAME,
};

/// Agent failures that stop it.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Enrolment, the certificate or TLS setup failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The QUIC endpoints cannot be set up.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// What `vt host run` was told.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The controller's QUIC address.
    pub controller: SocketAddr,
    /// Join token, needed once.
    pub token: Option<String>,
    /// Host name (DNS label).
    pub registration: HostRegistration,
    /// Where the certificate lives.
    pub state_dir: PathBuf,
    /// Where edges reach this host's tunnel server (bound and advertised);
    /// none: the host takes no endpoint traffic.
    pub tunnel: Option<SocketAddr>,
    /// How long a stopped instance keeps its open tunnelled connections.
    pub drain_timeout: Duration,
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    opts: AgentOptions,
    mut runtime: Box<dyn Runtime>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let (identity, ca) = node_identity(
        &opts.state_dir,
        opts.controller,
        opts.token.as_deref(),
        Role::Host,
        &opts.registration.name,
    )
    .await?;
    let targets = Arc::new(Targets::default());
    let (tunnel_server, tunnel_endpoint) = match opts.tunnel {
        Some(addr) => {
            let server = wire::server_endpoint(addr, &identity, &ca, wire::ClientAuth::Required)?;
            info!(%addr, "tunnel server listening for edges");
            let serving = tokio::spawn(tunnel::serve(server.clone(), targets.clone()));
            (Some(serving), Some(server))
        }
        None => (None, None),
    };
    let bind: SocketAddr = if opts.controller.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    }
    .parse()
    .map_err(|_| WireError::NoMessage)?;
    let endpoint = wire::client_endpoint(bind, Some(&identity), &ca)?;
    let mut credentials = Credentials::new(
        identity,
        ca,
        opts.state_dir.clone(),
        endpoint.clone(),
        tunnel_endpoint,
    );
    let name = opts.registration.name.clone();
    let sessions = async {
        let mut reconnect = Reconnect::default();
        loop {
            let span = info_span!("session", host = %name, controller = %opts.controller);
            let ended = session(&mut credentials, &opts, runtime.as_mut(), &targets)
                .instrument(span)
                .await;
            reconnect.after(ended, "session failed").await;
        }
    };
    tokio::select! {
        () = sessions => {}
        () = shutdown => info!("host agent stopping its instances"),
    }
    // The session future is gone: stop the instances and wait for them.
    runtime.shutdown();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        runtime.poll(now());
        if runtime.report().iter().all(|r| !r.phase.holds_resources()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    endpoint.close(0u32.into(), b"host stopping");
    if let Some(server) = tunnel_server {
        server.abort();
    }
    Ok(())
}

async fn session(
    credentials: &mut Credentials,
    opts: &AgentOptions,
    runtime: &mut dyn Runtime,
    targets: &Targets,
) -> Result<(), WireError> {
    credentials.session_started();
    let conn = wire::connect(&credentials.client, opts.controller, CONTROLLER_SERVER_NAME).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    frame::send(&mut send, &HostMessage::Register(opts.registration.clone())).await?;
    let heartbeat = match frame::recv::<ControllerMessage>(&mut recv).await? {
        Some(ControllerMessage::Welcome { heartbeat_ms }) => {
            Duration::from_millis(heartbeat_ms.max(100))
        }
        _ => return Err(WireError::NoMessage),
    };
    info!(runtime = runtime.name(), "registered with the controller");
    // Frames are read by a task so the loop can select on a cancel-safe channel.
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
    // Streams the controller opens carry exec requests.
    let (exec_tx, mut execs) =
        tokio::sync::mpsc::channel::<(ExecCommand, quinn::SendStream, quinn::RecvStream)>(16);
    let acceptor = tokio::spawn({
        let conn = conn.clone();
        async move {
            while let Ok((send, mut recv)) = conn.accept_bi().await {
                if let Ok(Some(command)) = frame::recv::<ExecCommand>(&mut recv).await {
                    if exec_tx.send((command, send, recv)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    // What the controller last assigned, and what was applied after draining.
    let mut drainer = Drainer::new(opts.drain_timeout.as_millis() as u64);
    let (mut wanted, mut applied) = (Vec::new(), Vec::new());
    let mut last_report = tokio::time::Instant::now();
    let mut renew = None;
    let result = loop {
        let mut report_now = false;
        tokio::select! {
            Some((command, mut send, recv)) = execs.recv() => {
                info!(instance = %command.instance, argv = ?command.argv, tty = command.tty, interactive = command.interactive, "exec");
                let input = command.interactive.then(|| {
                    let (tx, rx) = tokio::sync::mpsc::channel(64);
                    tokio::spawn(forward_input(recv, tx));
                    rx
                });
                match runtime.exec(command, input) {
                    Ok(mut events) => {
                        tokio::spawn(async move {
                            while let Some(event) = events.recv().await {
                                let end = !matches!(event, ExecEvent::Output { .. });
                                if frame::send(&mut send, &event).await.is_err() || end {
                                    break;
                                }
                            }
                            let _ = send.finish();
                        });
                    }
                    Err(message) => {
                        tokio::spawn(async move {
                            let _ = frame::reply(&mut send, &ExecEvent::Error { message }).await;
                        });
                    }
                }
            }
            message = messages.recv() => match message.unwrap_or(Ok(None)) {
                Ok(Some(ControllerMessage::DestroyVolume { id })) => {
                    match runtime.destroy_volume(&id) {
                        Ok(()) => info!(volume = %id, "volume destroyed"),
                        Err(e) => warn!(volume = %id, error = %e, "cannot destroy volume"),
                    }
                    report_now = true;
                }
                Ok(Some(ControllerMessage::Renewed { cert_pem })) => {
                    if let Err(e) = credentials.renewed(&cert_pem) {
                        warn!(error = %vt_wire::error_chain(&e), "cannot use the renewed certificate");
                    }
                }
                Ok(Some(ControllerMessage::Assign { instances })) => {
                    wanted = instances;
                    applied = drainer.filter(&wanted, &applied, |id| targets.open(id), now());
                    runtime.apply(&applied, now());
                    report_now = true;
                }
                Ok(Some(_)) => {}
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            },
            _ = poll.tick() => {
                if drainer.is_holding() {
                    let before = drainer.draining();
                    applied = drainer.filter(&wanted, &applied, |id| targets.open(id), now());
                    if drainer.draining() != before {
                        info!(draining = ?drainer.draining(), "drained instances stop");
                        runtime.apply(&applied, now());
                    }
                }
                report_now = runtime.poll(now()) || last_report.elapsed() >= heartbeat;
                match credentials.due(std::time::SystemTime::now()) {
                    Ok(request) => renew = request,
                    Err(e) => warn!(error = %vt_wire::error_chain(&e), "cannot ask for a renewal"),
                }
            }
        }
        if let Some(csr_pem) = renew.take() {
            if let Err(e) = frame::send(&mut send, &HostMessage::Renew { csr_pem }).await {
                break Err(e);
            }
        }
        if report_now {
            let instances = runtime.report();
            targets.allow(
                applied
                    .iter()
                    .map(|a| (a.id.clone(), tunnel::endpoint_ports(&a.spec))),
            );
            targets.update(&instances, &drainer.draining());
            if let Err(e) = frame::send(
                &mut send,
                &HostMessage::Report {
                    instances,
                    volumes: runtime.volumes(),
                },
            )
            .await
            {
                break Err(e);
            }
            last_report = tokio::time::Instant::now();
        }
        let lines = runtime.drain_logs();
        if !lines.is_empty() {
            if let Err(e) = frame::send(&mut send, &HostMessage::Logs { lines }).await {
                break Err(e);
            }
        }
    };
    reader.abort();
    acceptor.abort();
    result
}

/// Forwards an interactive exec's input frames from its stream to the
/// session. The stream's end (the user or the controller went away) hangs the
/// session up with SIGHUP; once the process has exited that goes nowhere.
async fn forward_input(
    mut recv: quinn::RecvStream,
    tx: tokio::sync::mpsc::Sender<vt_wire::messages::ExecInput>,
) {
    use vt_wire::messages::ExecInput;
    while let Ok(Some(input)) = frame::recv::<ExecInput>(&mut recv).await {
        if tx.send(input).await.is_err() {
            return;
        }
    }
    let _ = tx.send(ExecInput::Signal { signal: 1 }).await;
}
