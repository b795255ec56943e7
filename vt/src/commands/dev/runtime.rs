//! Which runtime the stack's hosts use: microVMs where this machine has
//! what they need (qemu, the guest, TAP devices, root), else simulated
//! instances; and which accelerator, probed once per machine.

use crate::cli::{AccelChoice, DevRuntime};
use crate::error::{CliError, ErrorCode, Exit};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vt_host::image::find_program;
use vt_host::microvm::artifacts::{self, GuestArtifacts};
use vt_host::microvm::launch::Accel;

/// The hosts' runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// qemu microVMs with this accelerator.
    Microvm(Accel),
    /// Simulated instances: nothing boots, nothing serves.
    Sim,
}

impl Runtime {
    /// `vt host run --runtime`.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Microvm(_) => "microvm",
            Runtime::Sim => "sim",
        }
    }
}

/// What the microVM runtime lacks on this machine (empty: nothing).
fn missing() -> Vec<String> {
    let mut missing = Vec::new();
    if artifacts::qemu().is_none() {
        missing.push("qemu-system-x86_64 (`just setup`)".to_string());
    }
    for (program, package) in [
        ("mkfs.ext4", "e2fsprogs"),
        ("docker-registry", "docker-registry"),
        ("ip", "iproute2"),
    ] {
        if find_program(program).is_none() {
            missing.push(format!("{program} (package {package}, `just setup`)"));
        }
    }
    if let Err(e) = GuestArtifacts::find(&artifacts::guest_dir()) {
        missing.push(e);
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun (TAP devices)".to_string());
    }
    if !rustix::process::geteuid().is_root() {
        missing.push("root (TAP devices and routes)".to_string());
    }
    missing
}

/// The runtime for `--runtime` (`auto`, `microvm`, `sim`) and `--accel`,
/// with a note to print when `auto` settles for `sim`.
pub fn choose(
    runtime: DevRuntime,
    accel: AccelChoice,
) -> Result<(Runtime, Option<String>), CliError> {
    let lacking = || {
        let missing = missing();
        (!missing.is_empty()).then(|| missing.join(", "))
    };
    match runtime {
        DevRuntime::Sim => Ok((Runtime::Sim, None)),
        DevRuntime::Microvm => match lacking() {
            Some(what) => Err(CliError::new(
                Exit::Failure,
                ErrorCode::Host,
                format!("the microVM runtime needs {what}"),
            )
            .hint("run `just setup` and `just guest` (as root), or pass --runtime sim")),
            None => Ok((Runtime::Microvm(pick_accel(accel)), None)),
        },
        DevRuntime::Auto => match lacking() {
            Some(what) => Ok((
                Runtime::Sim,
                Some(format!(
                    "simulated hosts (--runtime sim): microVMs need {what}; instances only pretend to run and endpoints do not serve"
                )),
            )),
            None => Ok((Runtime::Microvm(pick_accel(accel)), None)),
        },
    }
}

fn pick_accel(flag: AccelChoice) -> Accel {
    match flag {
        AccelChoice::Kvm => Accel::Kvm,
        AccelChoice::Tcg => Accel::Tcg,
        AccelChoice::Auto => probed_accel(),
    }
}

/// A KVM probe's outcome, cached per machine (guest kernel and qemu).
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Probed {
    kernel: String,
    qemu: PathBuf,
    accel: Accel,
}

fn cache_file() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
        })
        .join("vt")
        .join("accel.json")
}

/// KVM when a probe guest boots under it, else TCG. A failing probe waits
/// for its whole timeout (10 s on a nested VM without working KVM), so the
/// answer is kept in `~/.cache/vt/accel.json` for this kernel and qemu.
fn probed_accel() -> Accel {
    let (Some(qemu), Ok(guest)) = (
        artifacts::qemu(),
        GuestArtifacts::find(&artifacts::guest_dir()),
    ) else {
        return Accel::Tcg;
    };
    if !Path::new("/dev/kvm").exists() {
        return Accel::Tcg;
    }
    let file = cache_file();
    let cached: Option<Probed> = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(p) = cached.filter(|p| p.kernel == guest.version && p.qemu == qemu) {
        return p.accel;
    }
    super::view::say("probing whether KVM boots a guest here (once per machine, up to 10 s)");
    let scratch = std::env::temp_dir().join(format!("vt-dev-probe-{}", std::process::id()));
    let started = std::time::Instant::now();
    let accel = match artifacts::probe(&qemu, &guest, Accel::Kvm, &scratch, Duration::from_secs(10))
    {
        Ok(_) => Accel::Kvm,
        Err(why) => {
            tracing::info!(%why, "KVM cannot boot a guest here: using TCG");
            Accel::Tcg
        }
    };
    let _ = std::fs::remove_dir_all(&scratch);
    tracing::info!(%accel, took_ms = started.elapsed().as_millis() as u64, "probed the accelerator");
    let probed = Probed {
        kernel: guest.version,
        qemu,
        accel,
    };
    if let Some(dir) = file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(json) = serde_json::to_vec_pretty(&probed) {
        let _ = std::fs::write(&file, json);
    }
    accel
}
