//! The wire protocol: fleet CA, join tokens, mutual-TLS QUIC endpoints and message framing.
//!
//! - [`FleetCa`] mints the fleet's CA (`vt fleet init`) and issues every node an
//!   [`Identity`] whose certificate names its [`Role`] and name (`<name>.<role>.vt`).
//! - A join [`Token`] lets a new host or edge [`enroll`]; the controller's side is an
//!   [`Enroller`].
//! - [`server_endpoint`] and [`client_endpoint`] build QUIC endpoints that trust the fleet
//!   CA alone; [`peer_of`] and [`require_peer`] tell a server who is connected.
//! - [`frame`] carries JSON messages on QUIC streams; [`messages`] are what the controller,
//!   hosts and edges say with them.
//! - [`tunnel`] is the edge → host stream header; [`proxy_v2`] the PROXY protocol v2
//!   header a host writes to an app.
//! - [`clock`] reads the wall clock for every daemon, [`command`] runs `ip`/`nft` for
//!   hosts and edges, [`error_chain`] renders an error with its causes.
//! - [`trust`] is the one TLS client setup of outbound HTTPS (forges, registries).

pub mod backoff;
mod ca;
pub mod clock;
pub mod codes;
pub mod command;
mod endpoint;
mod enroll;
mod error;
mod files;
pub mod frame;
pub mod messages;
mod peer;
mod pin;
pub mod proxy_v2;
mod renew;
mod role;
mod token;
pub mod trust;
pub mod tunnel;

#[cfg(test)]
mod testkit;

/// Writes a file readable by its owner only, atomically (a private
/// temporary file renamed over it), creating its directory if needed.
pub fn write_private(path: &std::path::Path, contents: &[u8]) -> Result<(), WireError> {
    files::write(path, contents, files::Mode::Private)
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `bytes` random bytes, in hex (secrets and IDs).
pub fn random_hex(bytes: usize) -> Result<String, WireError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(WireError::Random)?;
    Ok(hex::encode(buf))
}

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

pub use ca::{
    CaCert, Fingerprint, FleetCa, Identity, CA_CERT_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE,
};
pub use endpoint::{
    client_endpoint, connect, server_endpoint, use_identity, ClientAuth, ALPN, IDLE_TIMEOUT,
    KEEP_ALIVE, MAX_STREAMS,
};
pub use enroll::{
    enroll, node_identity, EnrollRequest, EnrollResponse, Enroller, Enrolment, Issued, JoinGate,
    NodeError, Renewed, ENROL_TIMEOUT,
};
pub use error::WireError;
pub use peer::{peer_fingerprint, peer_id_from_cert, peer_of, require_peer};
pub use renew::{Credentials, PendingRenewal};
pub use role::{validate_name, NameError, PeerId, Role, CONTROLLER_SERVER_NAME};
pub use token::{Binding, Claims, Token, TokenSecret, TOKEN_SECRET_FILE};
