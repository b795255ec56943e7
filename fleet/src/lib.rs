//! `vt-fleet`: the pure planner ([`plan`]) and the wire protocol ([`wire`])
//! that the controller, hosts and edges speak.

pub mod plan;
pub mod wire;
