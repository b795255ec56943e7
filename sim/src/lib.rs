//! `vt-sim`: a deterministic simulation harness for the fleet controller.
//!
//! [`Sim`] runs the controller's core ([`vt_control::core::Controller`])
//! unchanged against simulated hosts ([`SimHost`]) and a simulated clock
//! ([`Clock`]). Chance comes from one seeded PRNG ([`Rng`]): boot and stop
//! delays, boot failures and the order in which hosts talk each step. A seed
//! reproduces a run exactly, which the [`Sim::timeline`] makes checkable.
//! Faults: host crashes and restarts, partitions, failing health checks,
//! failing boots, stray instances, clean and crash-style controller restarts.
//! [`Repo`] writes the desired-state repository of a scenario.

mod clock;
mod fleet;
mod host;
mod predict;
mod repo;
mod rng;

pub use clock::{Clock, Entry, EPOCH};
pub use fleet::{no_overcommit, Invariant, Sim, SimConfig};
pub use host::{Applied, Behaviour, SimHost, SimInstance, Start};
pub use predict::{predict, Moment, Prediction, TopologyHost};
pub use repo::{qualified, App, Env, Repo, ORG, PROJECT};
pub use rng::Rng;
