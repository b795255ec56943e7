//! `vt-fleet`: the controller daemon around `vt_control`'s core: the git
//! source, host and edge sessions over QUIC, the HTTP API, secret delivery
//! and the state directory.

pub mod controller;
