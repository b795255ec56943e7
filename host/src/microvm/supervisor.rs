//! One instance's life on the host, as a task: prepare it (image, disks,
//! network: [`prepare`](crate::microvm::prepare)), boot its VM and run it
//! (the guest protocol is a [`GuestSession`](crate::microvm::session), driven
//! by [`vm`](crate::microvm::vm)), restart the VM with backoff when it dies,
//! and stop it gracefully when told. Its progress is published in a
//! [`Status`](crate::microvm::instance::Status) the runtime reads.

use crate::microvm::instance::{set, Context, ExecJob, Status};
use crate::microvm::prepare::{clean_up, prepare};
use crate::microvm::vm::{run_vm, VmIo};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::watch;
use tracing::{info_span, warn, Instrument};
use vt_plan::Phase;
use vt_wire::backoff::Backoff;
use vt_wire::messages::{Assignment, DeliveredSecret};

pub use crate::microvm::prepare::volume_path;
pub use crate::microvm::session::STOP_GRACE;

/// First restart backoff; each next one doubles.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// Longest restart backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A running supervisor.
#[derive(Debug)]
pub struct Handle {
    /// Its progress.
    pub status: Arc<Mutex<Status>>,
    stop: watch::Sender<bool>,
    jobs: mpsc::UnboundedSender<ExecJob>,
    /// The secret files the instance should have (memory only).
    secrets: watch::Sender<Vec<DeliveredSecret>>,
}

impl Handle {
    /// Asks the instance to stop (idempotent).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// New secret files for the instance (a release that only changes
    /// secrets declared `on_change: signal`): the running guest gets them and
    /// the app its signal; a VM restarted later boots with them.
    pub fn update_secrets(&self, secrets: &[DeliveredSecret]) {
        self.secrets.send_if_modified(|current| {
            let changed = current.as_slice() != secrets;
            if changed {
                *current = secrets.to_vec();
            }
            changed
        });
    }

    /// Queues a command; it runs once the app has started.
    pub fn exec(&self, job: ExecJob) -> Result<(), String> {
        self.jobs
            .send(job)
            .map_err(|_| "the instance is gone".to_string())
    }
}

/// Starts supervising an assignment.
pub fn spawn(ctx: Arc<Context>, assignment: Assignment) -> Handle {
    let status = Arc::new(Mutex::new(Status::new(
        Phase::Starting,
        Some("preparing".into()),
    )));
    let (stop, stop_rx) = watch::channel(false);
    let (jobs, jobs_rx) = mpsc::unbounded_channel();
    let (secrets, secrets_rx) = watch::channel(assignment.secrets.clone());
    let span = info_span!("instance", instance = %assignment.id, app = %assignment.name, release = assignment.release.get());
    let channels = Channels {
        stop: stop_rx,
        jobs: jobs_rx,
        secrets: secrets_rx,
    };
    tokio::spawn(supervise(ctx, assignment, status.clone(), channels).instrument(span));
    Handle {
        status,
        stop,
        jobs,
        secrets,
    }
}

/// What a supervisor is told while it runs.
struct Channels {
    stop: watch::Receiver<bool>,
    jobs: mpsc::UnboundedReceiver<ExecJob>,
    secrets: watch::Receiver<Vec<DeliveredSecret>>,
}

async fn supervise(
    ctx: Arc<Context>,
    a: Assignment,
    status: Arc<Mutex<Status>>,
    channels: Channels,
) {
    let Channels {
        mut stop,
        mut jobs,
        mut secrets,
    } = channels;
    let prepared = tokio::select! {
        p = prepare(&ctx, &a, &status) => p,
        _ = stop.changed() => Err("stopped before it started".to_string()),
    };
    let prepared = match prepared {
        Ok(p) => p,
        Err(reason) if *stop.borrow() => {
            set(&status, Phase::Stopped, Some(reason));
            return;
        }
        Err(reason) => {
            warn!(%reason, "instance failed to prepare");
            set(&status, Phase::Failed, Some(reason));
            return;
        }
    };
    {
        let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
        s.address = Some(prepared.addressing.guest);
        s.volumes = prepared.volumes.clone();
    }
    let mut restarts = 0u32;
    let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
    loop {
        let mut io = VmIo {
            stop: &mut stop,
            jobs: &mut jobs,
            secrets: &mut secrets,
        };
        match run_vm(&ctx, &a, &prepared, &status, &mut io).await {
            Ok(()) => {
                set(&status, Phase::Stopped, Some("stopped".into()));
                break;
            }
            Err(reason) => {
                restarts += 1;
                let delay = backoff.next_delay();
                warn!(%reason, restarts, ?delay, "the VM stopped; restarting");
                // Restarted in place (crash-loop backoff): still this
                // instance, so the controller does not replace it.
                status.lock().unwrap_or_else(|p| p.into_inner()).restarts = restarts;
                set(
                    &status,
                    Phase::Starting,
                    Some(format!(
                        "restarting in {}s (restart {restarts}): {reason}",
                        delay.as_secs()
                    )),
                );
                // A stop the VM's loop already saw (while the guest booted).
                if *stop.borrow() {
                    set(
                        &status,
                        Phase::Stopped,
                        Some(format!("stopped after: {reason}")),
                    );
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => {
                        set(&status, Phase::Stopped, Some(format!("stopped after: {reason}")));
                        break;
                    }
                }
            }
        }
    }
    clean_up(&prepared).await;
}
