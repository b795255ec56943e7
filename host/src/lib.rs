//! The host agent (`vt host run`): enrols with a join token, keeps a session
//! with the controller, and runs its assigned instances through a [`Runtime`].

pub mod agent;
pub mod drain;
pub mod image;
pub mod microvm;
pub mod runtime;
pub mod sim_runtime;
pub mod tunnel;

pub use runtime::Runtime;
