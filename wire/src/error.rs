//! The one error type of the wire module.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::role::{NameError, PeerId, Role};

/// Everything that can go wrong in the wire module: state files, certificates, join
/// tokens, enrolment, QUIC endpoints and framing.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A state file could not be read.
    #[error("could not read {path}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A state file could not be written.
    #[error("could not write {path}")]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `FleetCa::create` found a CA already there; it never overwrites one.
    #[error("{0} already holds a fleet CA; refusing to replace it")]
    CaExists(PathBuf),
    /// PEM text held no usable item of the expected kind.
    #[error("{what} is not valid PEM")]
    Pem {
        /// What was being parsed, e.g. "the CA certificate in /var/lib/vt/ca.pem".
        what: String,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// rcgen could not make or load a key or certificate.
    #[error("could not generate or load a certificate or key")]
    Certificate(#[from] rcgen::Error),
    /// A certificate could not be parsed as X.509.
    #[error("could not parse a certificate as X.509: {0}")]
    CertificateParse(String),
    /// A certificate carries no `<name>.<role>.vt` subject alternative name.
    #[error(
        "the certificate names no vt role and name (no DNS name of the form <name>.<role>.vt)"
    )]
    NoFleetIdentity,
    /// A node name or role is not valid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The random number generator failed.
    #[error("could not gather random bytes")]
    Random(#[source] getrandom::Error),
    /// The system clock reads a time before 1970.
    #[error("the system clock reads a time before 1970")]
    ClockBeforeEpoch,
    /// rustls refused the TLS configuration.
    #[error("could not build the TLS configuration")]
    Tls(#[from] rustls::Error),
    /// rustls could not build a certificate verifier.
    #[error("could not build the certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The TLS configuration cannot be used for QUIC.
    #[error("the TLS configuration offers no cipher suite usable by QUIC")]
    QuicCrypto(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// A QUIC endpoint could not bind its UDP socket.
    #[error("could not bind a QUIC endpoint on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A connection could not even be started (bad server name, endpoint stopping, ...).
    #[error("could not start a connection to {addr}")]
    Connect {
        /// The peer's address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: quinn::ConnectError,
    },
    /// The connection failed or was closed (handshake refused, timeout, peer gone).
    #[error("the QUIC connection failed")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing to a stream failed.
    #[error("could not write to a QUIC stream")]
    Write(#[from] quinn::WriteError),
    /// Reading from a stream failed.
    #[error("could not read from a QUIC stream")]
    Read(#[from] quinn::ReadError),
    /// The stream had already been finished or reset.
    #[error("the QUIC stream was already closed")]
    ClosedStream(#[from] quinn::ClosedStream),
    /// The stream ended between a frame's first byte and its last.
    #[error("the stream ended in the middle of a frame")]
    TruncatedFrame,
    /// A frame is larger than [`MAX_FRAME`](super::frame::MAX_FRAME).
    #[error("a frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The frame's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A message could not be encoded as JSON.
    #[error("could not encode a message as JSON")]
    Encode(#[source] serde_json::Error),
    /// A frame did not hold the expected message.
    #[error("could not decode a message")]
    Decode(#[source] serde_json::Error),
    /// The peer finished the stream without sending a message.
    #[error("the peer closed the stream without sending a message")]
    NoMessage,
    /// A join token is not of the form `vtj_<claims>.<tag>`.
    #[error("the join token is malformed: {0}")]
    TokenMalformed(&'static str),
    /// A join token's tag does not match its claims under this controller's secret.
    #[error("the join token's signature does not match: it was altered, forged or minted by another controller")]
    TokenForged,
    /// A join token bound to one name was presented for another.
    #[error("the join token is for a node named {bound}, not {asked}")]
    TokenBoundToName {
        /// The name the token is bound to.
        bound: String,
        /// The name asked for.
        asked: String,
    },
    /// The controller refused a verified join (a token used before, a name
    /// enrolled already).
    #[error("{0}")]
    JoinRefused(String),
    /// A join token has expired.
    #[error("the join token expired at unix time {expired_at}")]
    TokenExpired {
        /// Expiry, in seconds since 1970.
        expired_at: u64,
    },
    /// A join token was minted for another role.
    #[error("the join token is for role {token}, not {wanted}")]
    TokenWrongRole {
        /// The role in the token.
        token: Role,
        /// The role asked for.
        wanted: Role,
    },
    /// The controller's join-token secret is missing its 32 bytes or cannot key the MAC.
    #[error("the join-token secret is unusable: {0}")]
    TokenSecret(String),
    /// Join tokens exist for hosts and edges only.
    #[error("join tokens cannot be minted for the controller role")]
    TokenForController,
    /// The controller answered an enrolment request with a refusal.
    #[error("the controller refused the enrolment: {0}")]
    EnrolmentRefused(String),
    /// The enrolment answer does not match what was asked or pinned.
    #[error("the controller's enrolment answer is inconsistent: {0}")]
    EnrolmentMismatch(&'static str),
    /// The peer presented no certificate where one is needed.
    #[error("the peer presented no certificate")]
    Unauthenticated,
    /// The peer's certificate is for a role not allowed here.
    #[error("the peer is {peer}, a role not allowed here")]
    RoleNotAllowed {
        /// Who the peer is.
        peer: PeerId,
    },
    /// An operation took too long.
    #[error("{what} took longer than {after:?}")]
    Timeout {
        /// What timed out.
        what: &'static str,
        /// The limit.
        after: Duration,
    },
}
