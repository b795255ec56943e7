//! End-to-end tests: the real `vt` binary as separate processes (controller,
//! sim hosts, CLI), real git repositories changed with the `git` CLI, the
//! real QUIC protocol between them and the HTTP API, all on 127.0.0.1.
//!
//! `vt` must be built first (`cargo build -p vt`; `just test` does it). Every
//! process a test starts is killed when the test ends, pass or fail.

mod support;

mod auth;
mod backoff;
mod deploy;
mod dev;
mod diff;
mod edge;
mod faults;
mod git_history;
mod git_remote;
mod guest_isolation;
mod host_loss;
mod isolation;
mod joins;
mod microvm;
mod registry_tls;
mod rejected;
mod releases;
mod restart;
mod rollback;
mod rollout;
mod secrets;
mod webhook;
