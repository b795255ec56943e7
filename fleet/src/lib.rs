//! `vt-fleet`: the pure planner ([`plan`]) and the wire protocol ([`wire`])
//! that the controller, hosts and edges speak.

pub mod controller;
pub mod host;
pub mod plan;
pub mod wire;
