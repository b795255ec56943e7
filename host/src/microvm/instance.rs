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

/// Publishes the instance's phase and detail, logging a change.
pub(crate) fn set(status: &Mutex<Status>, phase: Phase, detail: Option<String>) {
    let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
    if s.phase != phase || s.detail != detail {
        info!(phase = ?phase, detail = detail.as_deref().unwrap_or(""), "instance phase");
    }
    s.phase = phase;
    s.detail = detail;
}
