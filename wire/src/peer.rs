//! Reading a peer's role and name from its certificate, and checking them per connection.

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use super::ca::Fingerprint;
use super::error::WireError;
use super::role::{PeerId, Role};

/// Reads the role and name from a DER certificate issued by [`FleetCa`](super::FleetCa),
/// from its `<name>.<role>.vt` DNS name. It does not verify the certificate: use it on
/// certificates that the TLS handshake already verified.
pub fn peer_id_from_cert(der: &[u8]) -> Result<PeerId, WireError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| WireError::CertificateParse(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| WireError::CertificateParse(e.to_string()))?
        .ok_or(WireError::NoFleetIdentity)?;
    san.value
        .general_names
        .iter()
        .find_map(|name| match name {
            GeneralName::DNSName(dns) => PeerId::from_dns_name(dns),
            _ => None,
        })
        .ok_or(WireError::NoFleetIdentity)
}

/// Who is at the other end of a connection: `None` when the peer presented no
/// certificate (an enrolling node on a [`ClientAuth::Optional`](super::ClientAuth)
/// server). The certificate was verified against the fleet CA during the handshake.
pub fn peer_of(conn: &quinn::Connection) -> Result<Option<PeerId>, WireError> {
    let Some(identity) = conn.peer_identity() else {
        return Ok(None);
    };
    let certs = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| WireError::CertificateParse("the peer identity is not X.509".to_owned()))?;
    match certs.first() {
        Some(leaf) => peer_id_from_cert(leaf).map(Some),
        None => Ok(None),
    }
}

/// The SHA-256 fingerprint of the certificate the peer presented, if any
/// (verified against the fleet CA during the handshake).
pub fn peer_fingerprint(conn: &quinn::Connection) -> Option<Fingerprint> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    certs.first().map(|leaf| Fingerprint::of(leaf.as_ref()))
}

/// The peer of a connection, if it presented a certificate for one of the `allowed`
/// roles; servers call this before handling anything but enrolment.
pub fn require_peer(conn: &quinn::Connection, allowed: &[Role]) -> Result<PeerId, WireError> {
    let peer = peer_of(conn)?.ok_or(WireError::Unauthenticated)?;
    if allowed.contains(&peer.role) {
        Ok(peer)
    } else {
        Err(WireError::RoleNotAllowed { peer })
    }
}
