//! `vt-init`: PID 1 inside each vt microVM.
//!
//! In order: mount `/proc`, `/sys`, `/dev`, `/dev/pts`, `/dev/shm`, `/run`;
//! load the kernel modules in `/lib/modules/load-order`; open the
//! virtio-serial channel and send `Hello`; wait for `Setup`; mount the root
//! filesystem (`/dev/vda`, ext4) at `/rootfs`; hostname and network
//! (rtnetlink); `/proc`, `/sys`, `/dev` into the root; volumes; secrets on
//! tmpfs; start the app chrooted; forward its output; serve exec sessions;
//! reap every zombie; on `Stop` or SIGTERM: SIGTERM the app, wait, SIGKILL
//! everything, sync, unmount, power off. See `vt_init::protocol`.
//!
//! Run outside a VM (not as PID 1) it only answers `--version`.

// PID 1 must make raw system calls (mount, finit_module, reboot, fork,
// chroot, signalfd, rtnetlink, terminals) that have no safe std wrapper.
// Each unsafe block is small and carries a SAFETY comment.
#![allow(unsafe_code)]

mod app;
mod channel;
mod exec;
mod init;
mod modules;
mod mounts;
mod net;
mod reaper;
mod spawn;
mod sys;

use std::io::Write as _;
use vt_init::protocol::PROTOCOL_VERSION;

fn main() {
    if std::process::id() == 1 {
        init::boot();
    }
    let version = std::env::args()
        .skip(1)
        .any(|arg| arg == "--version" || arg == "-V");
    if version {
        let _ = writeln!(
            std::io::stdout(),
            "vt-init {} (protocol {PROTOCOL_VERSION})",
            env!("CARGO_PKG_VERSION")
        );
        return;
    }
    let _ = writeln!(
        std::io::stderr(),
        "vt-init is the PID 1 of a vt microVM and does nothing elsewhere; \
         `vt-init --version` prints its version"
    );
    std::process::exit(2);
}
