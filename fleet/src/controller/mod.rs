//! The fleet controller's IO shell around `vt_control::core::Controller`: it
//! watches git, serves hosts and edges over QUIC and the HTTP API, delivers
//! secrets and keeps the state directory.

pub mod access;
pub mod api;
pub mod api_tls;
pub mod attach;
pub mod daemon;
pub mod delivery;
pub mod git_fetch;
pub mod git_source;
pub mod perform;
pub mod sessions;
pub mod setup;
pub mod shared;
