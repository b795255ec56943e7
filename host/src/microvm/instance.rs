//! What an instance's supervisor, its preparation and its VM loop share:
//! the host-wide [`Context`], the instance's published [`Status`], the exec
//! jobs sent to it, and [`set`], which publishes a phase. A module of its
//! own, so that `supervisor`, `prepare` and `vm` depend on it and not on
//! each other.

use crate::image::{Auth, ImageStore};
use crate::microvm::artifacts::GuestArtifacts;
use crate::microvm::launch::Accel;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::sync::Mutex;
use tokio::sync::mpsc;
use tracing::info;
use vt_plan::Phase;
use vt_wire::messages::{ExecCommand, ExecEvent, LogLine};

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

/// Log lines an instance keeps for the controller while they cannot be
/// shipped (the controller unreachable); beyond twice this many the oldest
/// go, down to this many (the instance's log file on the host keeps all).
pub const LOG_BUFFER_LINES: usize = 10_000;

/// An instance's progress, read by the runtime.
#[derive(Debug, Clone)]
pub struct Status {
    /// Phase.
    pub phase: Phase,
    /// What it is doing or why it failed.
    pub detail: Option<String>,
    /// Log lines not yet shipped (see [`Status::push_log`]).
    pub logs: Vec<LogLine>,
    /// Lines dropped from `logs` since it was last shipped.
    pub logs_dropped: u64,
    /// The guest's address.
    pub address: Option<Ipv6Addr>,
    /// Times the VM was restarted after the app ended.
    pub restarts: u32,
    /// Volume images attached to the VM.
    pub volumes: Vec<PathBuf>,
    /// The image's manifest digest, once pulled.
    pub image: Option<String>,
}

impl Status {
    /// A status at `phase`, nothing else known yet.
    pub fn new(phase: Phase, detail: Option<String>) -> Status {
        Status {
            phase,
            detail,
            logs: Vec::new(),
            logs_dropped: 0,
            address: None,
            restarts: 0,
            volumes: Vec::new(),
            image: None,
        }
    }

    /// Buffers a log line for the controller, keeping the buffer bounded
    /// ([`LOG_BUFFER_LINES`]).
    pub fn push_log(&mut self, line: LogLine) {
        self.logs.push(line);
        if self.logs.len() >= 2 * LOG_BUFFER_LINES {
            let excess = self.logs.len() - LOG_BUFFER_LINES;
            self.logs.drain(..excess);
            self.logs_dropped += excess as u64;
        }
    }
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

/// Publishes the instance's phase and detail, logging a change.
pub(crate) fn set(status: &Mutex<Status>, phase: Phase, detail: Option<String>) {
    let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
    if s.phase != phase || s.detail != detail {
        info!(phase = ?phase, detail = detail.as_deref().unwrap_or(""), "instance phase");
    }
    s.phase = phase;
    s.detail = detail;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_buffer_is_bounded_and_counts_what_it_dropped() {
        let mut status = Status::new(Phase::Healthy, None);
        let total = 5 * LOG_BUFFER_LINES;
        for n in 0..total {
            status.push_log(LogLine {
                instance: "i-1".into(),
                name: "web-1".into(),
                stream: vt_init::protocol::Stream::Stdout,
                time: n as u64,
                line: n.to_string(),
            });
            assert!(status.logs.len() < 2 * LOG_BUFFER_LINES);
        }
        assert_eq!(status.logs_dropped as usize + status.logs.len(), total);
        let last = status.logs.last().map(|l| l.line.clone());
        assert_eq!(
            last,
            Some((total - 1).to_string()),
            "the newest lines are kept"
        );
    }
}
