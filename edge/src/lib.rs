//! The edge (`vt edge run`): accepts TCP connections on endpoint addresses
//! and carries each one over a QUIC stream to a host running a healthy
//! instance of the app.
//!
//! - [`node`]: enrol, keep a session with the controller (routing table in,
//!   counters out), reconnect with backoff; the data path keeps serving the
//!   last routing table while the controller is away.
//! - [`listeners`]: one listener per endpoint address and port (`IP_FREEBIND`).
//! - [`relay`]: per connection: choose ([`balance`]), tunnel, retry, copy.
//! - [`pool`]: one QUIC connection per host, replaced when it dies.
//! - [`stats`]: per endpoint and instance counters.
//!
//! The edge knows nothing of git or manifests: the routing table is all it
//! is told.

pub mod balance;
pub mod listeners;
pub mod node;
pub mod pool;
pub mod relay;
pub mod stats;

pub use node::{run, EdgeError, EdgeOptions};
