//! One boot of an instance's VM: qemu started, the guest's channel opened,
//! then the socket plumbing around a [`GuestSession`]: lines read from the
//! guest and the supervisor's commands are handed to it, its frames written,
//! its events acted on (status, log file, exec channels, health checks,
//! kill), and the loop sleeps until its next deadline. Blocking file IO
//! (the instance directory, qemu's log, the app's log file, log tails) runs
//! off the async runtime.

use crate::microvm::blocking;
use crate::microvm::health;
use crate::microvm::instance::{set, Context, ExecJob, Status};
use crate::microvm::launch::{host_tsc_khz, vcpus, LaunchSpec};
use crate::microvm::logfile::{LogFile, MAX_LOG_BYTES};
use crate::microvm::network;
use crate::microvm::prepare::Prepared;
use crate::microvm::session::{Command, Config, End, Event, ExecId, Failure, GuestSession, VmLog};
use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::process::Child;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{StreamExt, StreamMap};
use tracing::warn;
use vt_init::protocol::{self as guest, ExecRequest, HostToGuest, Stream};
use vt_plan::{Millis, Phase};
use vt_repo::effective::HealthCheck;
use vt_wire::messages::{Assignment, DeliveredSecret, ExecEvent, ExecInput, LogLine};

/// How long qemu may take to open the guest's channel.
const CHANNEL_TIMEOUT: Duration = Duration::from_secs(10);

/// The channels a running VM's loop listens to.
pub(crate) struct VmIo<'a> {
    /// Becomes `true` (or closes) when the instance must stop.
    pub stop: &'a mut watch::Receiver<bool>,
    /// Commands to run in the instance.
    pub jobs: &'a mut mpsc::UnboundedReceiver<ExecJob>,
    /// The secret files the instance should have.
    pub secrets: &'a mut watch::Receiver<Vec<DeliveredSecret>>,
}

/// Boots the VM and runs it until it is stopped (`Ok`) or dies (`Err`).
pub(crate) async fn run_vm(
    ctx: &Context,
    a: &Assignment,
    p: &Prepared,
    status: &Mutex<Status>,
    io: &mut VmIo<'_>,
) -> Result<(), String> {
    let VmIo {
        stop,
        jobs,
        secrets,
    } = io;
    let Launched {
        boot,
        child,
        stream,
        console,
        qemu_log,
    } = launch(ctx, a, p, status).await?;
    let (read, write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();

    let mut session = GuestSession::new(
        Instant::now(),
        Config {
            booted: boot,
            accel: ctx.accel,
            setup: p.setup.clone(),
            secret_specs: a.spec.secrets.clone(),
            secrets: secrets.borrow_and_update().clone(),
            health: a.spec.health.clone(),
        },
    );
    let mut shell = Shell {
        status,
        instance: a,
        write,
        child,
        log_file: LogFile::new(&p.dir, MAX_LOG_BYTES),
        execs: BTreeMap::new(),
        inputs: StreamMap::new(),
        health: health_target(a, p.addressing.guest),
        console,
        qemu_log,
    };
    // Set once the stop was handed to the session (a closed sender counts).
    let mut stop_handed = false;
    let mut secrets_open = true;
    loop {
        if let Some(end) = shell.drain(&mut session).await {
            return end;
        }
        let open = session.is_open();
        let deadline = session.poll_timeout();
        let sleep = tokio::time::sleep_until(deadline.map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            tokio::time::Instant::from_std,
        ));
        tokio::select! {
            Some(job) = jobs.recv(), if session.accepts_exec() => {
                shell.start_exec(&mut session, job).await?;
            }
            changed = secrets.changed(), if open && secrets_open => match changed {
                Ok(()) => {
                    let new = secrets.borrow_and_update().clone();
                    session.handle_command(Instant::now(), Command::UpdateSecrets(new));
                }
                Err(_) => secrets_open = false,
            },
            Some((id, input)) = shell.inputs.next(), if open && !shell.inputs.is_empty() => {
                shell.input(&mut session, id, input).await?;
            }
            line = lines.next_line(), if open => match line {
                Ok(Some(line)) => {
                    if session.is_booting() && secrets.has_changed().unwrap_or(false) {
                        // The setup carries the secrets as they are when
                        // the guest says hello.
                        let new = secrets.borrow_and_update().clone();
                        session.handle_command(Instant::now(), Command::UpdateSecrets(new));
                    }
                    session.handle_guest_line(Instant::now(), line.as_bytes());
                }
                _ => session.handle_channel_closed(Instant::now()),
            },
            exit = shell.child.wait() => {
                let exit = exit.map_or_else(|e| e.to_string(), |s| s.to_string());
                session.handle_vm_exited(Instant::now(), exit);
            }
            () = sleep, if deadline.is_some() => session.handle_timeout(Instant::now()),
            _ = stop.changed(), if open && !stop_handed => {
                stop_handed = true;
                session.handle_command(Instant::now(), Command::Stop);
            }
        }
    }
}

/// A VM that was started, and its guest's channel.
struct Launched {
    /// When qemu was started.
    boot: Instant,
    child: Child,
    stream: UnixStream,
    console: PathBuf,
    qemu_log: PathBuf,
}

/// Starts qemu and opens the guest's channel.
async fn launch(
    ctx: &Context,
    a: &Assignment,
    p: &Prepared,
    status: &Mutex<Status>,
) -> Result<Launched, String> {
    let channel = p.dir.join("channel.sock");
    let console = p.dir.join("console.log");
    let qemu_log = p.dir.join("qemu.log");
    let (dir, stale) = (p.dir.clone(), channel.clone());
    let tsc_khz = blocking(move || {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let _ = std::fs::remove_file(&stale);
        Ok(host_tsc_khz())
    })
    .await?;
    let spec = LaunchSpec {
        qemu: ctx.qemu.clone(),
        kernel: ctx.guest.kernel.clone(),
        initramfs: ctx.guest.initramfs.clone(),
        accel: ctx.accel,
        vcpus: vcpus(a.spec.cpu.0),
        memory_mib: a.spec.memory.mib().max(64),
        rootfs: p.rootfs.clone(),
        volumes: p.volumes.clone(),
        tap: Some(p.tap.clone()),
        mac: network::mac(&a.id),
        channel: channel.clone(),
        console: console.clone(),
        tsc_khz,
    };
    set(
        status,
        Phase::Starting,
        Some(format!("booting ({})", ctx.accel)),
    );
    let boot = Instant::now();
    let log = qemu_log.clone();
    let stderr = blocking(move || std::fs::File::create(&log).map_err(|e| e.to_string())).await?;
    let mut child = tokio::process::Command::new(&ctx.qemu)
        .args(spec.args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", ctx.qemu.display()))?;

    let stream = loop {
        match UnixStream::connect(&channel).await {
            Ok(s) => break s,
            Err(_) if boot.elapsed() < CHANNEL_TIMEOUT => {
                if let Ok(Some(exit)) = child.try_wait() {
                    return Err(format!(
                        "qemu exited at once ({exit}): {}",
                        tail(&qemu_log).await
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(format!("cannot open the guest channel: {e}")),
        }
    };
    Ok(Launched {
        boot,
        child,
        stream,
        console,
        qemu_log,
    })
}

/// What a health check connects to: the check, the guest's address and the
/// checked port's number (0 when the port is not declared).
fn health_target(a: &Assignment, address: Ipv6Addr) -> Option<(HealthCheck, Ipv6Addr, u16)> {
    let check = a.spec.health.clone()?;
    let port = a.spec.port_number(&check.port).unwrap_or(0);
    Some((check, address, port))
}

/// The IO side of one VM's session.
struct Shell<'a> {
    status: &'a Mutex<Status>,
    instance: &'a Assignment,
    write: OwnedWriteHalf,
    child: Child,
    log_file: LogFile,
    /// Where each live exec session's events go.
    execs: BTreeMap<ExecId, mpsc::Sender<ExecEvent>>,
    /// The input of interactive sessions.
    inputs: StreamMap<ExecId, ReceiverStream<ExecInput>>,
    health: Option<(HealthCheck, Ipv6Addr, u16)>,
    console: PathBuf,
    qemu_log: PathBuf,
}

impl Shell<'_> {
    /// Writes the session's frames and acts on its events until it has
    /// none; returns the VM's end once the session ended.
    async fn drain(&mut self, session: &mut GuestSession) -> Option<Result<(), String>> {
        loop {
            match self.flush(session).await {
                Ok(failed) => {
                    for id in failed {
                        warn!(
                            session = id,
                            "cannot write exec input: the guest channel is closed"
                        );
                    }
                }
                Err(reason) => return Some(Err(reason)),
            }
            match session.poll_event()? {
                Event::Phase { phase, detail } => set(self.status, phase, Some(detail)),
                Event::Log { stream, line, time } => self.log(stream, line, time).await,
                Event::ExecOutput { id, stream, data } => {
                    if let Some(tx) = self.execs.get(&id) {
                        let _ = tx.send(ExecEvent::Output { stream, data }).await;
                    }
                }
                Event::ExecExited { id, code, signal } => {
                    self.end_exec(id, ExecEvent::Exited { code, signal }).await;
                }
                Event::ExecFailed { id, message } => {
                    self.end_exec(id, ExecEvent::Error { message }).await;
                }
                Event::CheckHealth => {
                    let result = match &self.health {
                        Some((check, address, port)) => {
                            health::check_once(check, *address, *port).await
                        }
                        None => Ok(()),
                    };
                    session.handle_health(Instant::now(), result);
                }
                Event::Kill => {
                    let _ = self.child.kill().await;
                }
                Event::End(End::Stopped) => return Some(Ok(())),
                Event::End(End::Failed(failure)) => {
                    return Some(Err(self.describe(&failure).await))
                }
            }
        }
    }

    /// Writes the session's frames to the guest. A setup that cannot be
    /// sent ends the VM; returns the exec sessions whose frames could not
    /// be written.
    async fn flush(&mut self, session: &mut GuestSession) -> Result<Vec<ExecId>, String> {
        let mut failed = Vec::new();
        while let Some(frame) = session.poll_transmit() {
            let bytes = match guest::encode(&frame) {
                Ok(bytes) => bytes,
                Err(e) if matches!(frame, HostToGuest::Setup(_)) => return Err(e.to_string()),
                Err(_) => continue,
            };
            let Err(e) = self.write.write_all(&bytes).await else {
                continue;
            };
            match frame {
                HostToGuest::Setup(_) => return Err(format!("cannot send the setup: {e}")),
                HostToGuest::UpdateSecrets { .. } => {
                    warn!("cannot send new secrets: the guest channel is closed");
                }
                HostToGuest::Stop { .. } => {}
                HostToGuest::Exec(ExecRequest { id, .. })
                | HostToGuest::ExecInput { id, .. }
                | HostToGuest::ExecEof { id }
                | HostToGuest::ExecResize { id, .. }
                | HostToGuest::ExecSignal { id, .. } => failed.push(id),
            }
        }
        Ok(failed)
    }

    /// Starts a command in the guest; its events go to the job's channel.
    async fn start_exec(&mut self, session: &mut GuestSession, job: ExecJob) -> Result<(), String> {
        let id = session.open_exec(Instant::now(), job.command, job.input.is_some());
        if let Some(input) = job.input {
            self.inputs.insert(id, ReceiverStream::new(input));
        }
        for _ in self.flush(session).await? {
            let message = "the guest channel is closed".to_string();
            let _ = job.events.send(ExecEvent::Error { message }).await;
        }
        self.execs.insert(id, job.events);
        Ok(())
    }

    /// Hands a piece of an interactive session's input to the guest.
    async fn input(
        &mut self,
        session: &mut GuestSession,
        id: ExecId,
        input: ExecInput,
    ) -> Result<(), String> {
        session.handle_command(Instant::now(), Command::ExecInput { id, input });
        for id in self.flush(session).await? {
            warn!(
                session = id,
                "cannot write exec input: the guest channel is closed"
            );
        }
        Ok(())
    }

    /// An exec session is over: its last event, and its input is dropped.
    async fn end_exec(&mut self, id: ExecId, last: ExecEvent) {
        self.inputs.remove(&id);
        if let Some(tx) = self.execs.remove(&id) {
            let _ = tx.send(last).await;
        }
    }

    /// A line of the app's output: to the log file, then to be shipped.
    async fn log(&mut self, stream: Stream, line: String, time: Option<Millis>) {
        let time = time.unwrap_or_else(vt_wire::clock::now);
        let (file, text) = (self.log_file.clone(), line.clone());
        let written = tokio::task::spawn_blocking(move || file.append(time, stream, &text)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "cannot write the instance's log file"),
            Err(e) => warn!(error = %e, "cannot write the instance's log file"),
        }
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.push_log(LogLine {
            instance: self.instance.id.clone(),
            name: self.instance.name.clone(),
            stream,
            time,
            line,
        });
    }

    /// The sentence for a failure, with the last lines of the log it names.
    async fn describe(&self, failure: &Failure) -> String {
        match failure.log() {
            Some(VmLog::Console) => format!("{failure}: {}", tail(&self.console).await),
            Some(VmLog::Qemu) => format!("{failure}: {}", tail(&self.qemu_log).await),
            None => failure.to_string(),
        }
    }
}

/// The last lines of a log file, for error messages.
async fn tail(path: &Path) -> String {
    let text = tokio::fs::read_to_string(path).await.unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}
