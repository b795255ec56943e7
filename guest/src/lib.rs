//! `vt-init`: the PID 1 that runs inside each vt microVM, and the protocol the
//! host agent speaks to it over a virtio-serial port.
//!
//! The library half is only [`protocol`]: the frames both sides exchange and
//! the helpers that encode and decode them. It does no IO, so the host agent
//! can use it from async code. The binary half (`src/main.rs`) is the init
//! itself; it is built static (see `scripts/build-init.sh`) and placed in the
//! initramfs as `/init`.

pub mod protocol;
