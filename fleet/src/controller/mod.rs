//! The fleet controller: turns commits into releases and reconciles them onto
//! hosts. [`core::Controller`] is the logic (no IO but its store); the daemon
//! around it watches git, serves hosts over QUIC and the HTTP API.

pub mod core;
pub mod events;
pub mod releases;
pub mod store;
