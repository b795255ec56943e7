//! What the microVM runtime needs on the host, where it is, and whether KVM
//! really boots a guest here (`vt host doctor`).

use crate::microvm::launch::{Accel, LaunchSpec};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The guest kernel and initramfs built by `just guest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestArtifacts {
    /// Uncompressed kernel.
    pub kernel: PathBuf,
    /// Initramfs with vt-init.
    pub initramfs: PathBuf,
    /// Kernel version (the directory name).
    pub version: String,
}

/// Where `just guest` puts the artifacts: `$VT_GUEST_DIR`, else `~/.cache/vt/guest`.
pub fn guest_dir() -> PathBuf {
    std::env::var_os("VT_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/vt/guest")
        })
}

impl GuestArtifacts {
    /// Finds `current/vmlinux` and `current/initramfs.cpio.gz` under `dir`.
    pub fn find(dir: &Path) -> Result<GuestArtifacts, String> {
        let current = dir.join("current");
        let version = std::fs::read_link(&current)
            .map(|p| p.display().to_string())
            .map_err(|_| format!("no guest artifacts in {} (run `just guest`)", dir.display()))?;
        let kernel = current.join("vmlinux");
        let initramfs = current.join("initramfs.cpio.gz");
        for file in [&kernel, &initramfs] {
            if !file.is_file() {
                return Err(format!("{} is missing (run `just guest`)", file.display()));
            }
        }
        Ok(GuestArtifacts {
            kernel,
            initramfs,
            version,
        })
    }
}

/// The qemu binary, if installed.
pub fn qemu() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| p.is_file())
}

/// Boots a probe guest with `accel` and reports whether vt-init started
/// (its banner on the console) within `timeout`, and how long it took.
pub fn probe(
    qemu: &Path,
    guest: &GuestArtifacts,
    accel: Accel,
    scratch: &Path,
    timeout: Duration,
) -> Result<Duration, String> {
    std::fs::create_dir_all(scratch)
        .map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let rootfs = scratch.join("probe-root.img");
    let file = std::fs::File::create(&rootfs).map_err(|e| e.to_string())?;
    file.set_len(1 << 20).map_err(|e| e.to_string())?;
    let console = scratch.join(format!("probe-{accel}.log"));
    let _ = std::fs::remove_file(&console);
    let spec = LaunchSpec {
        qemu: qemu.to_path_buf(),
        kernel: guest.kernel.clone(),
        initramfs: guest.initramfs.clone(),
        accel,
        vcpus: 1,
        memory_mib: 256,
        rootfs,
        volumes: Vec::new(),
        tap: None,
        mac: "52:54:00:00:00:99".into(),
        channel: scratch.join(format!("probe-{accel}.sock")),
        console: console.clone(),
        tsc_khz: crate::microvm::launch::host_tsc_khz(),
    };
    let started = Instant::now();
    let mut child = Command::new(qemu)
        .args(spec.args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", qemu.display()))?;
    let result = loop {
        if std::fs::read_to_string(&console).is_ok_and(|c| c.contains("vt-init")) {
            break Ok(started.elapsed());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
            }
            break Err(format!(
                "qemu exited ({status}) before the guest started: {}",
                stderr.trim()
            ));
        }
        if started.elapsed() > timeout {
            break Err(format!(
                "the guest did not reach its init within {timeout:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// One line of `vt host doctor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it is fine.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// Everything `vt host doctor` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Doctor {
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// The accelerator the runtime will use, if it can run guests at all.
    pub accel: Option<Accel>,
}

fn tool(name: &str, args: &[&str]) -> Check {
    match Command::new(name).args(args).output() {
        Ok(out) => {
            let text = String::from_utf8_lossy(if out.stdout.is_empty() {
                &out.stderr
            } else {
                &out.stdout
            })
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
            Check {
                name: name.into(),
                ok: true,
                detail: text,
            }
        }
        Err(e) => Check {
            name: name.into(),
            ok: false,
            detail: format!("missing ({e}); run `just setup`"),
        },
    }
}

/// Checks the host and probes KVM and TCG with real guests.
pub fn doctor(scratch: &Path) -> Doctor {
    let mut checks = Vec::new();
    let qemu = qemu();
    checks.push(match &qemu {
        Some(q) => tool(&q.display().to_string(), &["--version"]),
        None => Check {
            name: "qemu-system-x86_64".into(),
            ok: false,
            detail: "missing; run `just setup`".into(),
        },
    });
    checks.push(tool("mkfs.ext4", &["-V"]));
    checks.push(tool("ip", &["-V"]));
    let tun = Path::new("/dev/net/tun").exists();
    checks.push(Check {
        name: "/dev/net/tun".into(),
        ok: tun,
        detail: if tun {
            "present".into()
        } else {
            "missing: no TAP networking".into()
        },
    });
    let guest = GuestArtifacts::find(&guest_dir());
    checks.push(match &guest {
        Ok(g) => Check {
            name: "guest".into(),
            ok: true,
            detail: format!(
                "kernel {} ({}), {}",
                g.version,
                g.kernel.display(),
                g.initramfs.display()
            ),
        },
        Err(e) => Check {
            name: "guest".into(),
            ok: false,
            detail: e.clone(),
        },
    });
    let kvm_dev = Path::new("/dev/kvm").exists();
    let mut accel = None;
    if let (Some(qemu), Ok(guest)) = (&qemu, &guest) {
        let kvm = if kvm_dev {
            probe(qemu, guest, Accel::Kvm, scratch, Duration::from_secs(10))
        } else {
            Err("/dev/kvm is missing".into())
        };
        checks.push(Check {
            name: "kvm".into(),
            ok: kvm.is_ok(),
            detail: match &kvm {
                Ok(t) => format!("a guest boots under KVM ({} ms to init)", t.as_millis()),
                Err(e) => format!("cannot boot a guest: {e}"),
            },
        });
        let tcg = probe(qemu, guest, Accel::Tcg, scratch, Duration::from_secs(30));
        checks.push(Check {
            name: "tcg".into(),
            ok: tcg.is_ok(),
            detail: match &tcg {
                Ok(t) => format!("a guest boots under TCG ({} ms to init)", t.as_millis()),
                Err(e) => format!("cannot boot a guest: {e}"),
            },
        });
        accel = if kvm.is_ok() {
            Some(Accel::Kvm)
        } else {
            tcg.ok().map(|_| Accel::Tcg)
        };
    }
    Doctor { checks, accel }
}
