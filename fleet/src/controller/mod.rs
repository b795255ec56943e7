//! The fleet controller: turns commits into releases and reconciles them onto
//! hosts. [`core::Controller`] is the logic (no IO but its store); the daemon
//! around it watches git, serves hosts over QUIC and the HTTP API.

pub mod addresses;
pub mod api;
pub mod attach;
pub mod core;
pub mod daemon;
pub mod delivery;
pub mod endpoint_views;
pub mod events;
pub mod git_source;
pub mod preview;
pub mod releases;
pub mod sessions;
pub mod setup;
pub mod store;
#[cfg(test)]
pub mod test_support;
pub mod views;

/// An error and its causes, joined with ": ".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
