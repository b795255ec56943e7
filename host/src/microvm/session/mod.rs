//! The host's side of the guest protocol as a state machine that does no IO,
//! in the shape of quinn-proto's `Connection`: a [`GuestSession`] takes
//! inputs (`handle_*`: the guest's frames, the supervisor's commands, health
//! results, the VM's exit, the time) and yields outputs (`poll_*`: frames
//! for the guest, [`Event`]s for the supervisor, the next deadline). It reads
//! no clock (every input carries `now`) and owns no socket, file or task, so
//! it is tested by scripting a guest and jumping time.
//!
//! Its life: `Booting` (waiting for the guest's `Hello`, at most
//! [`BOOT_TIMEOUT`]) → `Running` (`Setup` sent; the app starts, logs, runs
//! exec sessions, gets new secret files, is health-checked) → `Stopping`
//! (`Stop` sent; the VM has [`STOP_GRACE`] and [`POWER_OFF_MARGIN`] to power
//! off) or `Closing` (the channel closed; the VM has [`CLOSE_WAIT`] to exit)
//! → ended, with one [`Event::End`].

mod exec;
mod health;
mod outcome;
mod secrets;
#[cfg(test)]
mod tests;

pub use outcome::{End, Failure, VmLog};

use crate::microvm::launch::Accel;
use exec::Execs;
use health::HealthSchedule;
use secrets::Secrets;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tracing::{info, warn};
use vt_init::protocol::{self as guest, GuestToHost, HostToGuest, Stream};
use vt_plan::{Millis, Phase};
use vt_repo::effective::{EffectiveSecret, HealthCheck};
use vt_wire::messages::{DeliveredSecret, ExecCommand, ExecInput};

/// Grace period between SIGTERM and SIGKILL when stopping an app.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a guest may take to say hello once its channel is open.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long after [`STOP_GRACE`] a stopped VM may take to power off before
/// it is killed.
pub const POWER_OFF_MARGIN: Duration = Duration::from_secs(5);
/// How long the VM may take to exit once the guest's channel closed.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// An exec session's ID, chosen by the host (1, 2, … per VM).
pub type ExecId = u64;

/// What a session needs to know about its VM and assignment.
#[derive(Debug, Clone)]
pub struct Config {
    /// When qemu was started: details say how long after it the app ran.
    pub booted: Instant,
    /// The accelerator, named in details.
    pub accel: Accel,
    /// What the guest sets up; its `secrets` are replaced by the delivered
    /// ones when the guest says hello.
    pub setup: guest::Setup,
    /// The assignment's secrets, for the signals of `on_change: signal`.
    pub secret_specs: Vec<EffectiveSecret>,
    /// The secret files delivered so far (memory only).
    pub secrets: Vec<DeliveredSecret>,
    /// The health check, if the workload has one.
    pub health: Option<HealthCheck>,
}

/// What the supervisor tells a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A piece of an interactive exec session's input.
    ExecInput {
        /// The session.
        id: ExecId,
        /// The input.
        input: ExecInput,
    },
    /// The secret files the instance should have now: before the guest
    /// says hello they go into its `Setup`; once it runs, the changed ones
    /// go to it as `UpdateSecrets` (after its app started).
    UpdateSecrets(Vec<DeliveredSecret>),
    /// Stop the app and power the VM off (after `Setup`, if the guest has
    /// not said hello yet).
    Stop,
}

/// What a session asks of the supervisor, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The instance's phase and what it is doing.
    Phase {
        /// Phase.
        phase: Phase,
        /// Detail.
        detail: String,
    },
    /// A line of the app's output.
    Log {
        /// Stream it came from.
        stream: Stream,
        /// The line.
        line: String,
        /// When the guest read it (Unix ms); `None` when the guest gave no
        /// time, and the supervisor stamps it on receipt.
        time: Option<Millis>,
    },
    /// Output of an exec session.
    ExecOutput {
        /// Session.
        id: ExecId,
        /// Stream it came from.
        stream: Stream,
        /// The bytes.
        data: Vec<u8>,
    },
    /// An exec session's process ended; the session is over.
    ExecExited {
        /// Session.
        id: ExecId,
        /// Exit code, if it exited.
        code: Option<i32>,
        /// Signal, if one killed it.
        signal: Option<i32>,
    },
    /// An exec session could not run; the session is over.
    ExecFailed {
        /// Session.
        id: ExecId,
        /// Why.
        message: String,
    },
    /// Run one health check now and hand its result to
    /// [`GuestSession::handle_health`].
    CheckHealth,
    /// Kill the VM (and wait for it).
    Kill,
    /// The session is over; the last event.
    End(End),
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for `Hello` until the deadline.
    Booting { deadline: Instant },
    /// `Setup` sent; `started` once the guest said its app runs.
    Running { started: bool },
    /// `Stop` sent; the VM is killed at the deadline.
    Stopping { deadline: Instant },
    /// The channel closed; waiting for the VM to exit until the deadline.
    Closing { deadline: Instant },
    /// [`Event::End`] was queued.
    Ended,
}

/// The host's side of one VM's conversation with its vt-init.
#[derive(Debug)]
pub struct GuestSession {
    state: State,
    booted: Instant,
    accel: Accel,
    setup: guest::Setup,
    secrets: Secrets,
    execs: Execs,
    health: Option<HealthSchedule>,
    /// A stop asked for before the guest said hello.
    stop_asked: bool,
    /// Exec frames waiting for the app to start.
    held: Vec<HostToGuest>,
    transmits: VecDeque<HostToGuest>,
    events: VecDeque<Event>,
}

impl GuestSession {
    /// A session for a VM whose channel just opened at `now`.
    pub fn new(now: Instant, config: Config) -> Self {
        GuestSession {
            state: State::Booting {
                deadline: now + BOOT_TIMEOUT,
            },
            booted: config.booted,
            accel: config.accel,
            secrets: Secrets::new(config.secret_specs, config.secrets),
            setup: config.setup,
            execs: Execs::default(),
            health: config.health.map(HealthSchedule::new),
            stop_asked: false,
            held: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Whether the guest has not said hello yet: its setup will carry the
    /// secrets as they are when it does.
    pub fn is_booting(&self) -> bool {
        matches!(self.state, State::Booting { .. })
    }

    /// Whether the session still talks to the guest (booting or running):
    /// when not, only the VM's exit and the deadline matter.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Booting { .. } | State::Running { .. })
    }

    /// Whether the guest's app has started, so exec sessions run at once
    /// (before that, [`GuestSession::open_exec`] holds their frames).
    pub fn accepts_exec(&self) -> bool {
        self.state == State::Running { started: true }
    }

    /// The next frame to write to the guest.
    pub fn poll_transmit(&mut self) -> Option<HostToGuest> {
        self.transmits.pop_front()
    }

    /// The next thing for the supervisor to do.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`GuestSession::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Booting { deadline }
            | State::Stopping { deadline }
            | State::Closing { deadline } => Some(deadline),
            State::Running { started: true } => self.health.as_ref().and_then(|h| h.next()),
            State::Running { started: false } | State::Ended => None,
        }
    }

    /// A line the guest sent (without its newline).
    pub fn handle_guest_line(&mut self, now: Instant, line: &[u8]) {
        match (self.state, guest::decode::<GuestToHost>(line)) {
            (_, Ok(message)) => self.handle_guest_message(now, message),
            (State::Booting { .. }, Err(_)) => self.fail(Failure::NoGreeting),
            (State::Running { .. }, Err(e)) => warn!(error = %e, "unreadable frame from the guest"),
            (_, Err(_)) => {}
        }
    }

    /// A frame the guest sent.
    pub fn handle_guest_message(&mut self, now: Instant, message: GuestToHost) {
        match self.state {
            State::Booting { .. } => match message {
                GuestToHost::Hello { .. } => self.greeted(now),
                _ => self.fail(Failure::NoGreeting),
            },
            State::Running { started } => self.running(now, started, message),
            State::Stopping { .. } | State::Closing { .. } | State::Ended => {}
        }
    }

    /// The guest's channel closed (end of file or a read error).
    pub fn handle_channel_closed(&mut self, now: Instant) {
        match self.state {
            State::Booting { .. } => self.fail(Failure::NoGreeting),
            State::Running { .. } => {
                self.state = State::Closing {
                    deadline: now + CLOSE_WAIT,
                }
            }
            State::Stopping { .. } | State::Closing { .. } | State::Ended => {}
        }
    }

    /// The VM (qemu) exited; `status` says how.
    pub fn handle_vm_exited(&mut self, _now: Instant, status: String) {
        match self.state {
            State::Booting { .. } => self.fail(Failure::StoppedWhileBooting(status)),
            State::Running { .. } => self.fail(Failure::QemuExited(status)),
            State::Stopping { .. } => self.end(End::Stopped),
            State::Closing { .. } => self.fail(Failure::ChannelClosed(Some(status))),
            State::Ended => {}
        }
    }

    /// Time passed: deadlines that are due fire.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Booting { deadline } if now >= deadline => {
                self.fail(Failure::BootTimeout(BOOT_TIMEOUT));
            }
            State::Stopping { deadline } if now >= deadline => {
                warn!("the VM did not power off in time; killing it");
                self.events.push_back(Event::Kill);
                self.end(End::Stopped);
            }
            State::Closing { deadline } if now >= deadline => {
                self.fail(Failure::ChannelClosed(None));
            }
            State::Running { started: true }
                if self.health.as_mut().is_some_and(|h| h.begin(now)) =>
            {
                self.events.push_back(Event::CheckHealth);
            }
            _ => {}
        }
    }

    /// The result of the health check [`Event::CheckHealth`] asked for,
    /// finished at `now`.
    pub fn handle_health(&mut self, now: Instant, result: Result<(), String>) {
        if !matches!(self.state, State::Running { .. }) {
            return;
        }
        let Some(health) = self.health.as_mut() else {
            return;
        };
        let changed = health.record(now, result.is_ok());
        if changed {
            match (health.healthy(), result) {
                (Some(true), _) => {
                    let detail = format!("{}, ready {} ms after boot", self.accel, self.ms(now));
                    self.phase(Phase::Healthy, detail);
                }
                (_, Err(e)) => self.phase(Phase::Unhealthy, format!("health check failing: {e}")),
                _ => {}
            }
        }
    }

    /// Something the supervisor was told.
    pub fn handle_command(&mut self, now: Instant, command: Command) {
        match command {
            Command::ExecInput { id, input } => {
                if let Some(frame) = self.execs.input(id, input) {
                    self.send_exec(frame);
                }
            }
            Command::UpdateSecrets(new) => match self.state {
                State::Booting { .. } => self.secrets.replace(new),
                State::Running { started: false } => self.secrets.defer(new),
                State::Running { started: true } => {
                    let frame = self.secrets.update(new, self.setup.uid, self.setup.gid);
                    self.transmits.push_back(frame);
                }
                State::Stopping { .. } | State::Closing { .. } | State::Ended => {}
            },
            Command::Stop => match self.state {
                State::Booting { .. } => self.stop_asked = true,
                State::Running { .. } => self.stop(now),
                State::Stopping { .. } | State::Closing { .. } | State::Ended => {}
            },
        }
    }

    /// Starts an exec session (`interactive`: its input follows as
    /// [`Command::ExecInput`]; otherwise `command.stdin` is its whole input)
    /// and returns its ID. Its frames wait until the app has started.
    pub fn open_exec(&mut self, _now: Instant, command: ExecCommand, interactive: bool) -> ExecId {
        let (id, frames) = self.execs.open(command, interactive);
        for frame in frames {
            self.send_exec(frame);
        }
        id
    }

    /// The guest said hello: send the setup, with the secrets as they are now.
    fn greeted(&mut self, now: Instant) {
        let mut setup = self.setup.clone();
        setup.secrets = self.secrets.for_setup(setup.uid, setup.gid);
        self.transmits
            .push_back(HostToGuest::Setup(Box::new(setup)));
        self.state = State::Running { started: false };
        if let Some(health) = self.health.as_mut() {
            health.start(now);
        }
        if self.stop_asked {
            self.stop(now);
        }
    }

    /// A frame from a guest that was set up.
    fn running(&mut self, now: Instant, started: bool, message: GuestToHost) {
        match message {
            GuestToHost::Started { pid } => self.started(now, pid),
            GuestToHost::Log {
                stream,
                line,
                time_ms,
            } => self.events.push_back(Event::Log {
                stream,
                line,
                time: (time_ms > 0).then_some(time_ms),
            }),
            GuestToHost::Exited { code, signal, oom } => {
                self.events.push_back(Event::Kill);
                self.fail(Failure::AppEnded { code, signal, oom });
            }
            GuestToHost::ExecOutput {
                id,
                stream,
                data_b64,
            } => self
                .events
                .extend(self.execs.output(id, stream, data_b64.0)),
            GuestToHost::ExecExited { id, code, signal } => {
                self.events.extend(self.execs.exited(id, code, signal));
            }
            GuestToHost::Error {
                message,
                id: Some(id),
            } => self.events.extend(self.execs.error(id, message)),
            GuestToHost::SecretsUpdated { files, signalled } => {
                info!(
                    files,
                    ?signalled,
                    "the guest rewrote secret files and signalled the app"
                );
            }
            GuestToHost::Error { message, id: None } => {
                warn!(%message, "guest error");
                if !started {
                    self.events.push_back(Event::Kill);
                    self.fail(Failure::Guest(message));
                }
            }
            GuestToHost::Hello { .. } => {}
        }
    }

    /// The guest's app runs: the phase says so, held exec sessions and
    /// secrets that changed meanwhile go to the guest.
    fn started(&mut self, now: Instant, pid: u32) {
        self.state = State::Running { started: true };
        let boot_ms = self.ms(now);
        info!(pid, boot_ms, "app started");
        if self.health.is_none() {
            let detail = format!("{}, running {boot_ms} ms after boot", self.accel);
            self.phase(Phase::Healthy, detail);
        } else {
            let detail = format!("running, waiting for the health check ({})", self.accel);
            self.phase(Phase::Starting, detail);
        }
        self.transmits.extend(self.held.drain(..));
        if let Some(frame) = self.secrets.take_deferred(self.setup.uid, self.setup.gid) {
            self.transmits.push_back(frame);
        }
    }

    /// Sends `Stop` and waits for the VM to power off.
    fn stop(&mut self, now: Instant) {
        self.phase(Phase::Stopping, "stopping".into());
        let grace_ms = u64::try_from(STOP_GRACE.as_millis()).unwrap_or(10_000);
        self.transmits.push_back(HostToGuest::Stop { grace_ms });
        self.state = State::Stopping {
            deadline: now + STOP_GRACE + POWER_OFF_MARGIN,
        };
    }

    /// Queues an exec frame, or holds it until the app has started.
    fn send_exec(&mut self, frame: HostToGuest) {
        if self.accepts_exec() {
            self.transmits.push_back(frame);
        } else {
            self.held.push(frame);
        }
    }

    fn phase(&mut self, phase: Phase, detail: String) {
        self.events.push_back(Event::Phase { phase, detail });
    }

    fn fail(&mut self, failure: Failure) {
        self.end(End::Failed(failure));
    }

    fn end(&mut self, end: End) {
        self.state = State::Ended;
        self.events.push_back(Event::End(end));
    }

    /// Milliseconds from qemu's start to `now`.
    fn ms(&self, now: Instant) -> u128 {
        now.saturating_duration_since(self.booted).as_millis()
    }
}
