//! The init proper: boot, then one `poll(2)` loop over the signalfd, the
//! channel, the app's pipes and the exec sessions' descriptors, until the
//! VM powers off.

use crate::app::{App, StartFailure};
use crate::channel::{Channel, EXEC_HIGH_WATER};
use crate::exec::{self, Execs, Interest};
use crate::mounts::{self, Mounts, ROOT};
use crate::{modules, net, reaper, spawn, sys};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::path::Path;
use std::time::{Duration, Instant};
use vt_init::protocol::{GuestToHost, HostToGuest, SecretFile, Setup, Stream};

/// How long to wait for the channel device at boot.
const CHANNEL_WAIT: Duration = Duration::from_secs(10);

/// Time after SIGKILL-ing everything to let the reaper and the channel catch
/// up before powering off.
const KILL_SETTLE: Duration = Duration::from_secs(1);

/// Most time spent writing queued frames before power-off.
const FINAL_DRAIN: Duration = Duration::from_secs(2);

/// Grace period used when stopped by a signal before `Setup` said otherwise.
const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Signals PID 1 takes through its signalfd. Any but SIGCHLD means "stop":
/// SIGTERM, SIGINT (Ctrl-Alt-Del), SIGPWR and SIGUSR2 (busybox poweroff).
const SIGNALS: [libc::c_int; 5] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGPWR,
    libc::SIGUSR2,
];

/// Boots the VM and never returns: the VM powers off at the end.
pub fn boot() -> ! {
    std::panic::set_hook(Box::new(|info| sys::log(format_args!("bug: {info}"))));
    for error in mounts::mount_early() {
        sys::log(&error);
    }
    ensure_std_fds();
    sys::disable_ctrl_alt_del();
    let signals = match sys::SignalFd::new(&SIGNALS) {
        Ok(signals) => signals,
        Err(e) => {
            sys::log(format_args!("cannot set up signal handling: {e}"));
            sys::power_off();
        }
    };
    let module_errors = modules::load_all(Path::new(modules::LOAD_ORDER));
    for error in &module_errors {
        sys::log(error);
    }
    let mut channel = match Channel::open(CHANNEL_WAIT) {
        Ok(channel) => channel,
        Err(e) => {
            sys::log(format_args!("no channel to the host ({e}); powering off"));
            sys::power_off();
        }
    };
    sys::log(format_args!("channel {}", channel.path().display()));
    for error in module_errors {
        channel.send(&GuestToHost::error(error));
    }
    let mut init = Init::new(channel, signals);
    // A bug must still end in an orderly power-off, not a kernel panic.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| init.run()));
    sys::power_off()
}

/// Makes sure descriptors 0, 1 and 2 are open (on the console), so pipes
/// never land there and get clobbered by a child's `dup2`.
fn ensure_std_fds() {
    use std::os::unix::fs::OpenOptionsExt as _;
    for fd in 0..3 {
        if sys::fd_is_open(fd) {
            continue;
        }
        let open = |path| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY)
                .open(path)
        };
        match open("/dev/console").or_else(|_| open("/dev/null")) {
            // It took the lowest free descriptor, `fd`: keep it for good,
            // inheritable like a normal standard stream.
            Ok(file) => sys::clear_cloexec(file.into_raw_fd()),
            Err(_) => return,
        }
    }
}

/// Where a stop is.
#[derive(Debug)]
struct Stopping {
    /// When SIGKILL follows SIGTERM.
    deadline: Instant,
    /// Power off at this time, once everything has been SIGKILLed.
    power_off_at: Option<Instant>,
}

/// What a polled descriptor belongs to.
#[derive(Debug, Clone, Copy)]
enum Token {
    Signals,
    Channel,
    App(Stream),
    Exec(u64, Interest),
}

struct Init {
    channel: Channel,
    signals: sys::SignalFd,
    mounts: Mounts,
    set_up: bool,
    grace: Duration,
    ctx: Option<exec::Context>,
    app: Option<App>,
    started: Option<u32>,
    execs: Execs,
    stop: Option<Stopping>,
    no_children: bool,
}

impl Init {
    fn new(channel: Channel, signals: sys::SignalFd) -> Self {
        Init {
            channel,
            signals,
            mounts: Mounts::default(),
            set_up: false,
            grace: DEFAULT_GRACE,
            ctx: None,
            app: None,
            started: None,
            execs: Execs::default(),
            stop: None,
            no_children: true,
        }
    }

    fn run(&mut self) -> ! {
        loop {
            let now = Instant::now();
            self.timers(now);
            if self.should_power_off(now) {
                self.power_off();
            }

            let mut fds = Vec::new();
            let mut tokens = Vec::new();
            let mut watch = |fd: i32, events: i16, token: Token| {
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
                tokens.push(token);
            };
            watch(self.signals.as_raw_fd(), libc::POLLIN, Token::Signals);
            if let Some(pollfd) = self.channel.interest() {
                watch(pollfd.fd, pollfd.events, Token::Channel);
            }
            if let Some(app) = &self.app {
                for (stream, fd) in app.fds() {
                    watch(fd, libc::POLLIN, Token::App(stream));
                }
            }
            let throttled = self.channel.backlog() > EXEC_HIGH_WATER;
            for (id, interest, fd) in self.execs.interests(throttled) {
                let events = match interest {
                    Interest::Read(_) => libc::POLLIN,
                    Interest::Write => libc::POLLOUT,
                };
                watch(fd, events, Token::Exec(id, interest));
            }

            let timeout = self.next_timer().map_or(-1, |at| {
                let ms = at.saturating_duration_since(now).as_millis();
                i32::try_from(ms).unwrap_or(i32::MAX).max(1)
            });
            if let Err(e) = sys::poll(&mut fds, timeout) {
                sys::log(format_args!("poll: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }

            let mut frames = Vec::new();
            for (pollfd, token) in fds.iter().zip(tokens) {
                if pollfd.revents == 0 {
                    continue;
                }
                match token {
                    Token::Signals => self.signals(&mut frames),
                    Token::Channel => {
                        for frame in self.channel.ready(pollfd.revents, Instant::now()) {
                            match frame {
                                Ok(frame) => self.handle(frame, &mut frames),
                                Err(e) => frames.push(GuestToHost::error(e)),
                            }
                        }
                    }
                    Token::App(stream) => {
                        if let Some(app) = &mut self.app {
                            app.read(stream, &mut frames);
                        }
                    }
                    Token::Exec(id, Interest::Read(stream)) => {
                        self.execs.read(id, stream, &mut frames);
                    }
                    Token::Exec(id, Interest::Write) => self.execs.write(id),
                }
            }
            for frame in &frames {
                self.channel.send(frame);
            }
            if self.channel.connected() {
                self.channel.flush();
            }
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        let stop = self
            .stop
            .as_ref()
            .map(|s| s.power_off_at.unwrap_or(s.deadline));
        [self.channel.recheck_at(), stop]
            .into_iter()
            .flatten()
            .min()
    }

    fn timers(&mut self, now: Instant) {
        let state = self.state_frames();
        if self.channel.recheck(now, state) {
            sys::log(format_args!(
                "host connected on {}",
                self.channel.path().display()
            ));
        }
        let app_running = self.app_running();
        if let Some(stop) = &self.stop {
            if stop.power_off_at.is_none() && (now >= stop.deadline || !app_running) {
                self.kill_everything(now);
            }
        }
    }

    fn should_power_off(&self, now: Instant) -> bool {
        match self.stop.as_ref().and_then(|s| s.power_off_at) {
            Some(at) => now >= at || (self.no_children && !self.app_running()),
            None => false,
        }
    }

    /// What a host that (re)connects must learn besides `Hello`.
    fn state_frames(&self) -> Vec<GuestToHost> {
        let mut frames = Vec::new();
        if let Some(pid) = self.started {
            frames.push(GuestToHost::Started { pid });
        }
        if let Some(exited) = self.app.as_ref().and_then(|a| a.exited.clone()) {
            frames.push(exited);
        }
        frames
    }

    fn app_running(&self) -> bool {
        self.app.as_ref().is_some_and(|a| a.exited.is_none())
    }

    fn signals(&mut self, frames: &mut Vec<GuestToHost>) {
        for signal in self.signals.read() {
            if signal == libc::SIGCHLD {
                self.reap(frames);
            } else {
                sys::log(format_args!("signal {signal}: stopping"));
                self.begin_stop(self.grace);
            }
        }
    }

    fn reap(&mut self, frames: &mut Vec<GuestToHost>) {
        let reaped = reaper::reap();
        self.no_children = reaped.none_left;
        for (pid, status) in reaped.exited {
            match &mut self.app {
                Some(app) if app.pid == pid && app.exited.is_none() => {
                    app.finish(status, frames);
                    sys::log(format_args!("app exited: {status:?}"));
                }
                _ => {
                    self.execs.reaped(pid, status, frames);
                }
            }
        }
    }

    fn handle(&mut self, frame: HostToGuest, frames: &mut Vec<GuestToHost>) {
        let error = match frame {
            HostToGuest::Setup(setup) => {
                if self.set_up {
                    Some(GuestToHost::error("already set up; Setup is accepted once"))
                } else if self.stop.is_some() {
                    Some(GuestToHost::error("stopping; Setup ignored"))
                } else {
                    self.set_up = true;
                    self.setup(&setup, frames);
                    None
                }
            }
            HostToGuest::Stop { grace_ms } => {
                self.begin_stop(Duration::from_millis(grace_ms));
                None
            }
            HostToGuest::Exec(req) => {
                match (&self.ctx, self.stop.is_some()) {
                    (Some(ctx), false) => self.execs.start(&req, ctx, frames),
                    (ctx, stopping) => {
                        let reason = if stopping {
                            "the VM is stopping"
                        } else if ctx.is_none() {
                            "the app's root filesystem is not set up"
                        } else {
                            "not ready"
                        };
                        frames.push(GuestToHost::Error {
                            message: format!("cannot exec: {reason}"),
                            id: Some(req.id),
                        });
                        frames.push(GuestToHost::ExecExited {
                            id: req.id,
                            code: Some(126),
                            signal: None,
                        });
                    }
                }
                None
            }
            HostToGuest::ExecInput { id, data_b64 } => self.execs.input(id, data_b64),
            HostToGuest::ExecEof { id } => self.execs.eof(id),
            HostToGuest::ExecResize { id, cols, rows } => self.execs.resize(id, cols, rows),
            HostToGuest::ExecSignal { id, signal } => self.execs.signal(id, signal),
            HostToGuest::UpdateSecrets { secrets, signals } => {
                self.update_secrets(&secrets, &signals, frames)
            }
        };
        frames.extend(error);
    }

    /// Mounts, network, volumes, secrets, then the app. The first failure
    /// is reported and nothing runs.
    fn setup(&mut self, setup: &Setup, frames: &mut Vec<GuestToHost>) {
        self.grace = Duration::from_millis(setup.grace_ms);
        if let Err(e) = self.prepare(setup) {
            sys::log(&e);
            frames.push(GuestToHost::error(e));
            return;
        }
        let env = spawn::environment(&setup.env, &[], setup.uid, &setup.hostname, false);
        self.ctx = Some(exec::Context {
            env: env.clone(),
            workdir: setup.workdir.clone(),
            uid: setup.uid,
            gid: setup.gid,
            hostname: setup.hostname.clone(),
        });
        if setup.argv.is_empty() {
            frames.push(GuestToHost::error(
                "Setup has an empty argv: nothing to run",
            ));
            return;
        }
        match App::start(setup, &env) {
            Ok(app) => {
                let pid = u32::try_from(app.pid).unwrap_or(0);
                sys::log(format_args!("app started: pid {pid}"));
                self.started = Some(pid);
                self.app = Some(app);
                self.no_children = false;
                frames.push(GuestToHost::Started { pid });
            }
            Err(failure) => {
                let StartFailure { error, child } = *failure;
                let message = format!("cannot start the app: {error}");
                sys::log(&message);
                frames.push(GuestToHost::error(message));
                // The failed child exits with 127/126; its Exited follows.
                if child.is_some() {
                    self.no_children = false;
                }
                self.app = child;
            }
        }
    }

    /// New versions of secret files: rewritten in place, then the app is
    /// signalled (never restarted).
    fn update_secrets(
        &mut self,
        secrets: &[SecretFile],
        signals: &[i32],
        frames: &mut Vec<GuestToHost>,
    ) -> Option<GuestToHost> {
        if !self.set_up || self.stop.is_some() {
            return Some(GuestToHost::error(
                "cannot update secrets: the app is not set up or is stopping",
            ));
        }
        let files = match self.mounts.update_secrets(secrets) {
            Ok(files) => files,
            Err(e) => {
                sys::log(&e);
                return Some(GuestToHost::error(e));
            }
        };
        let mut signalled = Vec::new();
        if let Some(app) = self.app.as_ref().filter(|a| a.exited.is_none()) {
            for &signal in signals {
                if sys::kill(app.pid, signal).is_ok() {
                    signalled.push(signal);
                }
            }
        }
        sys::log(format_args!(
            "secrets updated: {files} file(s), signals {signalled:?}"
        ));
        frames.push(GuestToHost::SecretsUpdated { files, signalled });
        None
    }

    fn prepare(&mut self, setup: &Setup) -> Result<(), String> {
        self.mounts.mount_root()?;
        net::configure(&setup.hostname, setup.ipv6.as_ref())?;
        self.mounts.mount_system()?;
        for volume in &setup.volumes {
            self.mounts.mount_volume(volume, (setup.uid, setup.gid))?;
        }
        self.mounts.write_secrets(&setup.secrets)?;
        if setup.workdir != "/" && !setup.workdir.is_empty() {
            mounts::check_path(&setup.workdir).map_err(|e| format!("workdir: {e}"))?;
            mounts::resolve_in_root(Path::new(ROOT), &setup.workdir, true)
                .map_err(|e| format!("cannot create workdir {}: {e}", setup.workdir))?;
        }
        Ok(())
    }

    fn begin_stop(&mut self, grace: Duration) {
        let now = Instant::now();
        match &mut self.stop {
            Some(stop) => {
                // A second request may only make the stop sooner.
                stop.deadline = stop.deadline.min(now + grace);
            }
            None => {
                self.stop = Some(Stopping {
                    deadline: now + grace,
                    power_off_at: None,
                });
                if let Some(app) = self.app.as_ref().filter(|a| a.exited.is_none()) {
                    let _ = sys::kill(app.pid, libc::SIGTERM);
                }
                self.execs.signal_all(libc::SIGHUP);
            }
        }
    }

    fn kill_everything(&mut self, now: Instant) {
        // -1: every process but PID 1.
        let _ = sys::kill(-1, libc::SIGKILL);
        if let Some(stop) = &mut self.stop {
            stop.power_off_at = Some(now + KILL_SETTLE);
        }
    }

    fn power_off(&mut self) -> ! {
        let mut frames = Vec::new();
        self.reap(&mut frames);
        for frame in &frames {
            self.channel.send(frame);
        }
        self.channel.drain(FINAL_DRAIN);
        self.mounts.teardown();
        sys::log("powering off");
        sys::power_off()
    }
}
