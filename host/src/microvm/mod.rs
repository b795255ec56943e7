//! The microVM runtime: each instance is a qemu `-M microvm` guest booted from
//! the Debian cloud kernel and an initramfs whose `/init` is vt-init, with the
//! app's OCI image as its root disk, volumes as more disks, a TAP device with
//! a private IPv6 address, and a virtio-serial channel to vt-init.

pub mod artifacts;
pub mod health;
pub mod instance;
pub mod launch;
pub mod logfile;
pub mod network;
mod prepare;
pub mod runtime;
pub mod session;
pub mod supervisor;
mod vm;

pub use runtime::MicrovmRuntime;

/// Runs blocking work (files, `ip`, `nft`) on tokio's blocking threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| e.to_string())?
}
