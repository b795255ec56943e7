//! How a [`GuestSession`](super::GuestSession) ends, and the sentences the
//! supervisor reports for it.

use std::fmt;
use std::time::Duration;

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Stopped as asked: the VM powered off, or was killed when it did not
    /// in time.
    Stopped,
    /// The VM is gone or must go; the supervisor restarts it.
    Failed(Failure),
}

/// Why a VM failed. `Display` gives the sentence; the failures that
/// [`Failure::log`] names are reported with the last lines of that log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The guest's first line was not a `Hello`, or the channel closed
    /// before one.
    NoGreeting,
    /// No `Hello` within this long.
    BootTimeout(Duration),
    /// qemu exited (with this status) before the guest said hello.
    StoppedWhileBooting(String),
    /// The channel closed; the VM exited with this status, or was still
    /// running after the wait (`None`).
    ChannelClosed(Option<String>),
    /// qemu exited (with this status) while the guest ran.
    QemuExited(String),
    /// The app ended.
    AppEnded {
        /// Exit code, if it exited.
        code: Option<i32>,
        /// Signal, if one killed it.
        signal: Option<i32>,
        /// The OOM killer killed a process.
        oom: bool,
    },
    /// The guest reported an error before its app started (setup failed).
    Guest(String),
}

/// A log of the VM whose last lines explain a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmLog {
    /// The guest's serial console.
    Console,
    /// qemu's own output.
    Qemu,
}

impl Failure {
    /// The log whose last lines go after the sentence, if any.
    pub fn log(&self) -> Option<VmLog> {
        match self {
            Failure::NoGreeting
            | Failure::BootTimeout(_)
            | Failure::StoppedWhileBooting(_)
            | Failure::ChannelClosed(_) => Some(VmLog::Console),
            Failure::QemuExited(_) => Some(VmLog::Qemu),
            Failure::AppEnded { .. } | Failure::Guest(_) => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NoGreeting => f.write_str("the guest did not greet"),
            Failure::BootTimeout(after) => {
                write!(f, "the guest did not boot within {}s", after.as_secs())
            }
            Failure::StoppedWhileBooting(status) => {
                write!(f, "the VM stopped while booting ({status})")
            }
            Failure::ChannelClosed(status) => write!(
                f,
                "the VM stopped ({})",
                status.as_deref().unwrap_or("still running")
            ),
            Failure::QemuExited(status) => write!(f, "qemu exited ({status})"),
            Failure::AppEnded { oom: true, .. } => {
                f.write_str("the app was killed for running out of memory")
            }
            Failure::AppEnded { code: Some(c), .. } => write!(f, "the app exited with code {c}"),
            Failure::AppEnded {
                signal: Some(s), ..
            } => write!(f, "the app was killed by signal {s}"),
            Failure::AppEnded { .. } => f.write_str("the app ended"),
            Failure::Guest(message) => f.write_str(message),
        }
    }
}
