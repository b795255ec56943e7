//! `vt-control`: the controller's core. [`core::Controller`] turns commits
//! into releases, takes in hosts' and edges' reports, and plans with
//! `vt_plan::plan` on every tick; its state is written through to a
//! [`store::Store`]. No sockets, no tasks, no clock: the daemon (vt-fleet)
//! and the simulator (vt-sim) drive the same core, passing `now`.
//! [`views`] and [`endpoint_views`] are what the API answers.

pub mod core;
pub mod endpoint_views;
pub mod filter;
pub mod operations;
pub mod store;
pub mod views;
