//! The microVM runtime: each instance is a qemu `-M microvm` guest booted from
//! the Debian cloud kernel and an initramfs whose `/init` is vt-init, with the
//! app's OCI image as its root disk, volumes as more disks, a TAP device with
//! a private IPv6 address, and a virtio-serial channel to vt-init.

pub mod artifacts;
pub mod health;
pub mod launch;
pub mod logfile;
pub mod network;
pub mod runtime;
pub mod supervisor;

pub use runtime::MicrovmRuntime;
