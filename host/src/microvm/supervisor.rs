//! One instance's life on the host, as a task: pull the image, build its
//! disks and network, boot the VM, set up the app through vt-init, run the
//! health checks, forward logs, restart the VM with backoff when the app
//! exits, and stop it gracefully when told. Its progress is published in a
//! [`Status`] the runtime reads.

use crate::image::{effective_process, Auth, ImageStore};
use crate::microvm::artifacts::GuestArtifacts;
use crate::microvm::health::{self, Verdict};
use crate::microvm::launch::{disk_device, vcpus, Accel, LaunchSpec};
use crate::microvm::logfile::{LogFile, MAX_LOG_BYTES};
use crate::microvm::network::{self, Addressing};
use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::sync::watch;
use tracing::{info, info_span, warn, Instrument};
use vt_init::protocol::{self as guest, GuestToHost, HostToGuest};
use vt_plan::{Millis, Phase};
use vt_wire::messages::{Assignment, DeliveredSecret, ExecCommand, ExecEvent, LogLine};

/// Grace period between SIGTERM and SIGKILL when stopping an app.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a guest may take to say hello after qemu starts.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest restart backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What every instance on this host shares.
#[derive(Debug)]
pub struct Context {
    /// This host's name.
    pub host: String,
    /// The host's state directory (`instances/`, `volumes/`, `images/`).
    pub dir: PathBuf,
    /// Kernel and initramfs.
    pub guest: GuestArtifacts,
    /// qemu binary.
    pub qemu: PathBuf,
    /// Accelerator in use.
    pub accel: Accel,
    /// The image store.
    pub images: ImageStore,
    /// Registry credentials.
    pub auth: Auth,
    /// Prefixes of the orgs with instances here, kept apart by the firewall.
    pub orgs: Mutex<std::collections::BTreeSet<[u16; 3]>>,
}

/// An instance's progress, read by the runtime.
#[derive(Debug, Clone)]
pub struct Status {
    /// Phase.
    pub phase: Phase,
    /// What it is doing or why it failed.
    pub detail: Option<String>,
    /// Log lines not yet shipped.
    pub logs: Vec<LogLine>,
    /// The guest's address.
    pub address: Option<Ipv6Addr>,
    /// Times the VM was restarted after the app ended.
    pub restarts: u32,
    /// Volume images attached to the VM.
    pub volumes: Vec<PathBuf>,
    /// The image's manifest digest, once pulled.
    pub image: Option<String>,
}

/// A command to run in the instance, and where its events go.
#[derive(Debug)]
pub struct ExecJob {
    /// What to run.
    pub command: ExecCommand,
    /// Where output and exit go.
    pub events: mpsc::Sender<ExecEvent>,
    /// An interactive command's input (its `stdin` field is then unused).
    pub input: Option<mpsc::Receiver<vt_wire::messages::ExecInput>>,
}

/// The guest frame for one piece of an exec session's input.
fn input_frame(id: u64, input: vt_wire::messages::ExecInput) -> HostToGuest {
    use vt_wire::messages::ExecInput;
    match input {
        ExecInput::Data { data } => HostToGuest::ExecInput {
            id,
            data_b64: data.into(),
        },
        ExecInput::Eof => HostToGuest::ExecEof { id },
        ExecInput::Resize { cols, rows } => HostToGuest::ExecResize { id, cols, rows },
        ExecInput::Signal { signal } => HostToGuest::ExecSignal { id, signal },
    }
}

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

fn now_ms() -> Millis {
    vt_wire::clock::now()
}

/// Starts supervising an assignment.
pub fn spawn(ctx: Arc<Context>, assignment: Assignment) -> Handle {
    let status = Arc::new(Mutex::new(Status {
        phase: Phase::Starting,
        detail: Some("preparing".into()),
        logs: Vec::new(),
        address: None,
        restarts: 0,
        volumes: Vec::new(),
        image: None,
    }));
    let (stop, stop_rx) = watch::channel(false);
    let (jobs, jobs_rx) = mpsc::unbounded_channel();
    let (secrets, secrets_rx) = watch::channel(assignment.secrets.clone());
    let span = info_span!("instance", instance = %assignment.id, app = %assignment.name, release = assignment.release);
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

fn set(status: &Mutex<Status>, phase: Phase, detail: Option<String>) {
    let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
    if s.phase != phase || s.detail != detail {
        info!(phase = ?phase, detail = detail.as_deref().unwrap_or(""), "instance phase");
    }
    s.phase = phase;
    s.detail = detail;
}

/// Disks, network and process of a prepared instance.
struct Prepared {
    dir: PathBuf,
    rootfs: PathBuf,
    volumes: Vec<PathBuf>,
    tap: String,
    addressing: Addressing,
    setup: guest::Setup,
}

/// What a supervisor is told while it runs.
struct Channels {
    stop: watch::Receiver<bool>,
    jobs: mpsc::UnboundedReceiver<ExecJob>,
    secrets: watch::Receiver<Vec<DeliveredSecret>>,
}

/// The guest's secret files for the delivered secrets: read-only for the
/// app's user, in memory (the guest puts them on a tmpfs).
fn secret_files(secrets: &[DeliveredSecret], uid: u32, gid: u32) -> Vec<guest::SecretFile> {
    secrets
        .iter()
        .map(|s| guest::SecretFile {
            path: s.path.clone(),
            content_b64: s.content.clone(),
            mode: 0o400,
            uid,
            gid,
        })
        .collect()
}

/// The files of `new` that differ from `old`, and the signals their
/// secrets' `on_change: signal` asks for (each once, in spec order).
fn secret_update(
    a: &Assignment,
    old: &[DeliveredSecret],
    new: &[DeliveredSecret],
) -> (Vec<DeliveredSecret>, Vec<i32>) {
    let changed: Vec<DeliveredSecret> = new.iter().filter(|s| !old.contains(s)).cloned().collect();
    let mut signals = Vec::new();
    for secret in &a.spec.secrets {
        if changed.iter().any(|c| c.name == secret.name) {
            if let Some(signal) = secret.signal_number() {
                if !signals.contains(&signal) {
                    signals.push(signal);
                }
            }
        }
    }
    (changed, signals)
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
                let backoff = Duration::from_secs(1u64 << restarts.min(6)).min(MAX_BACKOFF);
                warn!(%reason, restarts, ?backoff, "the VM stopped; restarting");
                // Restarted in place (crash-loop backoff): still this
                // instance, so the controller does not replace it.
                status.lock().unwrap_or_else(|p| p.into_inner()).restarts = restarts;
                set(
                    &status,
                    Phase::Starting,
                    Some(format!(
                        "restarting in {}s (restart {restarts}): {reason}",
                        backoff.as_secs()
                    )),
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {
                        set(&status, Phase::Stopped, Some(format!("stopped after: {reason}")));
                        break;
                    }
                }
            }
        }
    }
    let _ = network::delete_tap(&prepared.tap);
    let _ = tokio::fs::remove_file(&prepared.rootfs).await;
}

/// Pulls the image, builds the disks and the network, resolves the process.
async fn prepare(
    ctx: &Context,
    a: &Assignment,
    status: &Mutex<Status>,
) -> Result<Prepared, String> {
    set(
        status,
        Phase::Starting,
        Some(format!("pulling {}", a.spec.image)),
    );
    let image = ctx
        .images
        .pull(&a.spec.image, &ctx.auth)
        .await
        .map_err(|e| format!("cannot pull {}: {}", a.spec.image, vt_wire::error_chain(&e)))?;
    status.lock().unwrap_or_else(|p| p.into_inner()).image = Some(image.digest.to_string());
    set(
        status,
        Phase::Starting,
        Some(format!("building the root filesystem of {}", image.digest)),
    );
    let dir = ctx.dir.join("instances").join(&a.id);
    let rootfs_path = dir.join("rootfs.ext4");
    let (images, img, dest) = (ctx.images.clone(), image.clone(), rootfs_path.clone());
    let rootfs = tokio::task::spawn_blocking(move || {
        let rootfs = images.rootfs(&img)?;
        images.instance_disk(&rootfs, &dest)?;
        Ok::<_, crate::image::ImageError>(rootfs)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| {
        format!(
            "cannot build the root filesystem: {}",
            vt_wire::error_chain(&e)
        )
    })?;

    let command = (!a.spec.command.is_empty()).then_some(a.spec.command.as_slice());
    let args = (!a.spec.args.is_empty()).then_some(a.spec.args.as_slice());
    let process = effective_process(
        &image.run_config(),
        command,
        args,
        &a.spec.env,
        &rootfs.users,
    )
    .map_err(|e| format!("cannot tell what to run: {e}"))?;

    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (i, v) in a.spec.volumes.iter().enumerate() {
        set(
            status,
            Phase::Starting,
            Some(format!("preparing volume {}", v.name)),
        );
        let path = volume_path(&ctx.dir, a, &v.name);
        ensure_volume(&path, v.size.0).await?;
        mounts.push(guest::VolumeMount {
            device: disk_device(i + 1),
            mount: v.mount.clone(),
        });
        volumes.push(path);
    }

    let org = a.name.split('/').next().unwrap_or_default();
    let addressing = network::addressing(org, network::instance_number(&a.id));
    let tap = network::tap_name(&ctx.host, &a.id);
    network::create_tap(&tap, &addressing).map_err(|e| e.to_string())?;
    let orgs = {
        let mut orgs = ctx.orgs.lock().unwrap_or_else(|p| p.into_inner());
        orgs.insert(network::org_prefix(org))
            .then(|| orgs.iter().copied().collect::<Vec<_>>())
    };
    if let Some(orgs) = orgs {
        network::isolate(&orgs).map_err(|e| format!("cannot isolate orgs: {e}"))?;
    }

    let setup = guest::Setup {
        hostname: a.id.replace('_', "-"),
        ipv6: Some(guest::Ipv6Config {
            address: addressing.guest,
            prefix_len: 64,
            gateway: Some(addressing.gateway),
        }),
        env: process.env.into_iter().collect(),
        argv: process.argv,
        workdir: process.workdir,
        uid: process.uid,
        gid: process.gid,
        secrets: Vec::new(),
        volumes: mounts,
        grace_ms: u64::try_from(STOP_GRACE.as_millis()).unwrap_or(10_000),
    };
    Ok(Prepared {
        dir,
        rootfs: rootfs_path,
        volumes,
        tap,
        addressing,
        setup,
    })
}

/// Where a volume of a workload lives on this host: named by the workload's
/// IDs, the volume name and the slot, never by the instance, so it outlives
/// instances and releases.
pub fn volume_path(dir: &Path, a: &Assignment, name: &str) -> PathBuf {
    let slot = a.slot.map(|s| format!("-{s}")).unwrap_or_default();
    dir.join("volumes")
        .join(format!("{}-{}", a.key.app_id, a.key.env_id))
        .join(format!("{name}{slot}.ext4"))
}

/// Creates a sparse ext4 volume image of `size` bytes, unless it exists.
async fn ensure_volume(path: &Path, size: u64) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let free = fs_free(parent);
    if free.is_some_and(|f| f < size / 20) {
        return Err(format!(
            "not enough disk space for volume {} ({} requested)",
            path.display(),
            vt_repo::ByteSize(size)
        ));
    }
    let tmp = path.with_extension("tmp");
    let file =
        std::fs::File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    file.set_len(size)
        .map_err(|e| format!("cannot size {}: {e}", tmp.display()))?;
    let out = tokio::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&tmp)
        .output()
        .await
        .map_err(|e| format!("cannot run mkfs.ext4: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "mkfs.ext4 failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Free bytes on the filesystem holding `path` (via `df`), if known.
fn fs_free(path: &Path) -> Option<u64> {
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

/// The channels a running VM's loop listens to.
struct VmIo<'a> {
    stop: &'a mut watch::Receiver<bool>,
    jobs: &'a mut mpsc::UnboundedReceiver<ExecJob>,
    secrets: &'a mut watch::Receiver<Vec<DeliveredSecret>>,
}

/// Boots the VM and runs it until it is stopped (`Ok`) or dies (`Err`).
async fn run_vm(
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
    std::fs::create_dir_all(&p.dir)
        .map_err(|e| format!("cannot create {}: {e}", p.dir.display()))?;
    let channel = p.dir.join("channel.sock");
    let console = p.dir.join("console.log");
    let _ = std::fs::remove_file(&channel);
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
        tsc_khz: crate::microvm::launch::host_tsc_khz(),
    };
    set(
        status,
        Phase::Starting,
        Some(format!("booting ({})", ctx.accel)),
    );
    let boot = Instant::now();
    let stderr = std::fs::File::create(p.dir.join("qemu.log")).map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(&ctx.qemu)
        .args(spec.args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", ctx.qemu.display()))?;

    let stream = loop {
        match tokio::net::UnixStream::connect(&channel).await {
            Ok(s) => break s,
            Err(_) if boot.elapsed() < Duration::from_secs(10) => {
                if let Ok(Some(exit)) = child.try_wait() {
                    return Err(format!(
                        "qemu exited at once ({exit}): {}",
                        tail(&p.dir.join("qemu.log"))
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(format!("cannot open the guest channel: {e}")),
        }
    };
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();

    let hello = tokio::select! {
        hello = tokio::time::timeout(BOOT_TIMEOUT, lines.next_line()) => hello,
        exit = child.wait() => {
            let exit = exit.map_or_else(|e| e.to_string(), |s| s.to_string());
            return Err(format!("the VM stopped while booting ({exit}): {}", tail(&console)));
        }
    };
    match hello {
        Ok(Ok(Some(line)))
            if matches!(
                guest::decode::<GuestToHost>(line.as_bytes()),
                Ok(GuestToHost::Hello { .. })
            ) => {}
        Ok(_) => return Err(format!("the guest did not greet: {}", tail(&console))),
        Err(_) => {
            return Err(format!(
                "the guest did not boot within {}s: {}",
                BOOT_TIMEOUT.as_secs(),
                tail(&console)
            ))
        }
    }
    // The secrets as they are now: a VM restarted after an in-place secret
    // change boots with the new versions.
    let mut delivered = secrets.borrow_and_update().clone();
    let mut setup = p.setup.clone();
    setup.secrets = secret_files(&delivered, setup.uid, setup.gid);
    let setup = guest::encode(&HostToGuest::Setup(Box::new(setup))).map_err(|e| e.to_string())?;
    write
        .write_all(&setup)
        .await
        .map_err(|e| format!("cannot send the setup: {e}"))?;

    let check = a.spec.health.clone();
    let port = check
        .as_ref()
        .and_then(|c| a.spec.ports.iter().find(|port| port.name == c.port))
        .map_or(0, |port| port.port);
    let mut verdict = Verdict::default();
    // Until the first verdict, check every 200 ms: a fresh instance should
    // not wait a whole interval to become healthy.
    let interval = check
        .as_ref()
        .map_or(Duration::from_secs(3600), health::interval);
    let mut ticker = tokio::time::interval(interval.min(Duration::from_millis(200)));
    let mut settled = false;
    let mut started = false;
    // Live exec sessions: where their events go, and whether they are interactive.
    let mut sessions: BTreeMap<u64, (mpsc::Sender<ExecEvent>, bool)> = BTreeMap::new();
    let log_file = LogFile::new(&p.dir, MAX_LOG_BYTES);
    // The input of interactive sessions, by session ID.
    let mut inputs = tokio_stream::StreamMap::new();
    let mut next_session = 0u64;
    loop {
        tokio::select! {
            Some(job) = jobs.recv(), if started => {
                next_session += 1;
                let id = next_session;
                let c = job.command;
                let mut frames = vec![HostToGuest::Exec(guest::ExecRequest { id, argv: c.argv, tty: c.tty, cols: c.cols, rows: c.rows, env: Vec::new() })];
                let interactive = job.input.is_some();
                if let Some(input) = job.input {
                    inputs.insert(id, tokio_stream::wrappers::ReceiverStream::new(input));
                } else {
                    if !c.stdin.is_empty() {
                        frames.push(HostToGuest::ExecInput { id, data_b64: c.stdin.into() });
                    }
                    frames.push(HostToGuest::ExecEof { id });
                }
                for frame in frames {
                    if let Ok(bytes) = guest::encode(&frame) {
                        if write.write_all(&bytes).await.is_err() {
                            let _ = job.events.send(ExecEvent::Error { message: "the guest channel is closed".into() }).await;
                        }
                    }
                }
                sessions.insert(id, (job.events, interactive));
            }
            Ok(()) = secrets.changed(), if started => {
                let new = secrets.borrow_and_update().clone();
                let (changed, signals) = secret_update(a, &delivered, &new);
                let names: Vec<String> = changed.iter().map(|s| format!("{} v{}", s.name, s.version)).collect();
                info!(secrets = ?names, ?signals, "updating secret files in the guest");
                let frame = HostToGuest::UpdateSecrets { secrets: secret_files(&changed, p.setup.uid, p.setup.gid), signals };
                if let Ok(bytes) = guest::encode(&frame) {
                    if write.write_all(&bytes).await.is_err() {
                        warn!("cannot send new secrets: the guest channel is closed");
                    }
                }
                delivered = new;
            }
            Some((id, input)) = tokio_stream::StreamExt::next(&mut inputs), if !inputs.is_empty() => {
                if let Ok(bytes) = guest::encode(&input_frame(id, input)) {
                    if write.write_all(&bytes).await.is_err() {
                        warn!(session = id, "cannot write exec input: the guest channel is closed");
                    }
                }
            }
            line = lines.next_line() => {
                let line = match line {
                    Ok(Some(line)) => line,
                    _ => {
                        let exit = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                        return Err(format!("the VM stopped ({}): {}", exit.map_or("still running".into(), |e| e.map_or_else(|e| e.to_string(), |s| s.to_string())), tail(&console)));
                    }
                };
                match guest::decode::<GuestToHost>(line.as_bytes()) {
                    Ok(GuestToHost::Started { pid }) => {
                        started = true;
                        info!(pid, boot_ms = boot.elapsed().as_millis() as u64, "app started");
                        if check.is_none() {
                            set(status, Phase::Healthy, Some(format!("{}, running {} ms after boot", ctx.accel, boot.elapsed().as_millis())));
                        } else {
                            set(status, Phase::Starting, Some(format!("running, waiting for the health check ({})", ctx.accel)));
                        }
                    }
                    Ok(GuestToHost::Log { stream, line, time_ms }) => {
                        let stream = match stream { guest::Stream::Stdout => "stdout", guest::Stream::Stderr => "stderr" };
                        let time = if time_ms > 0 { time_ms } else { now_ms() };
                        if let Err(e) = log_file.append(time, stream, &line) {
                            warn!(error = %e, "cannot write the instance's log file");
                        }
                        let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
                        s.logs.push(LogLine { instance: a.id.clone(), name: a.name.clone(), stream: stream.into(), time, line });
                    }
                    Ok(GuestToHost::Exited { code, signal, oom }) => {
                        let why = match (code, signal, oom) {
                            (_, _, true) => "the app was killed for running out of memory".to_string(),
                            (Some(c), _, _) => format!("the app exited with code {c}"),
                            (_, Some(s), _) => format!("the app was killed by signal {s}"),
                            _ => "the app ended".to_string(),
                        };
                        let _ = child.kill().await;
                        return Err(why);
                    }
                    Ok(GuestToHost::ExecOutput { id, stream, data_b64 }) => {
                        if let Some((tx, _)) = sessions.get(&id) {
                            let stream = match stream { guest::Stream::Stdout => "stdout", guest::Stream::Stderr => "stderr" };
                            let _ = tx.send(ExecEvent::Output { stream: stream.into(), data: data_b64.0 }).await;
                        }
                    }
                    Ok(GuestToHost::ExecExited { id, code, signal }) => {
                        inputs.remove(&id);
                        if let Some((tx, _)) = sessions.remove(&id) {
                            let _ = tx.send(ExecEvent::Exited { code, signal }).await;
                        }
                    }
                    Ok(GuestToHost::Error { message, id: Some(id) }) => {
                        match sessions.get(&id) {
                            // An interactive session goes on until its process exits
                            // (a failed start is followed by `ExecExited`): the
                            // message goes to its stderr.
                            Some((tx, true)) => {
                                let data = format!("vt: {message}\r\n").into_bytes();
                                let _ = tx.send(ExecEvent::Output { stream: "stderr".into(), data }).await;
                            }
                            Some((_, false)) => {
                                inputs.remove(&id);
                                if let Some((tx, _)) = sessions.remove(&id) {
                                    let _ = tx.send(ExecEvent::Error { message }).await;
                                }
                            }
                            None => {}
                        }
                    }
                    Ok(GuestToHost::SecretsUpdated { files, signalled }) => {
                        info!(files, ?signalled, "the guest rewrote secret files and signalled the app");
                    }
                    Ok(GuestToHost::Error { message, .. }) => {
                        warn!(%message, "guest error");
                        if !started {
                            let _ = child.kill().await;
                            return Err(message);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "unreadable frame from the guest"),
                }
            }
            _ = ticker.tick(), if started && check.is_some() => {
                if let Some(c) = &check {
                    let result = health::check_once(c, p.addressing.guest, port).await;
                    let changed = verdict.record(c, result.is_ok());
                    if verdict.healthy.is_some() && !settled {
                        settled = true;
                        ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
                    }
                    if changed {
                        match (verdict.healthy, result) {
                            (Some(true), _) => set(status, Phase::Healthy, Some(format!("{}, ready {} ms after boot", ctx.accel, boot.elapsed().as_millis()))),
                            (_, Err(e)) => set(status, Phase::Unhealthy, Some(format!("health check failing: {e}"))),
                            _ => {}
                        }
                    }
                }
            }
            exit = child.wait() => {
                return Err(format!("qemu exited ({}): {}", exit.map_or_else(|e| e.to_string(), |s| s.to_string()), tail(&p.dir.join("qemu.log"))));
            }
            _ = stop.changed() => {
                set(status, Phase::Stopping, Some("stopping".into()));
                let grace = u64::try_from(STOP_GRACE.as_millis()).unwrap_or(10_000);
                if let Ok(frame) = guest::encode(&HostToGuest::Stop { grace_ms: grace }) {
                    let _ = write.write_all(&frame).await;
                }
                if tokio::time::timeout(STOP_GRACE + Duration::from_secs(5), child.wait()).await.is_err() {
                    warn!("the VM did not power off in time; killing it");
                    let _ = child.kill().await;
                }
                return Ok(());
            }
        }
    }
}

/// The last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}
