//! Renewing a node's certificate over its session, without a restart.
//!
//! The node makes a new key and a certificate request ([`PendingRenewal::start`],
//! due at [`Identity::renew_at`]); the controller signs the request's key for
//! the role and name of the session's peer, whatever the request says
//! ([`FleetCa::renew`](super::FleetCa::renew)); the node keeps the new
//! certificate ([`PendingRenewal::finish`]) and presents it from its next
//! connection on ([`use_identity`](super::use_identity)).

use std::path::PathBuf;
use std::time::SystemTime;

use rcgen::{CertificateParams, KeyPair, PublicKeyData};
use tracing::info;

use super::ca::{CaCert, Identity};
use super::endpoint::{use_identity, ClientAuth};
use super::error::WireError;
use super::role::PeerId;

/// A renewal the node asked for: the new key, waiting for its certificate.
pub struct PendingRenewal {
    key: KeyPair,
    peer: PeerId,
}

impl std::fmt::Debug for PendingRenewal {
    /// Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PendingRenewal({})", self.peer)
    }
}

impl PendingRenewal {
    /// A new key for `peer` and the certificate request (PEM) to send.
    pub fn start(peer: &PeerId) -> Result<(PendingRenewal, String), WireError> {
        let key = KeyPair::generate()?;
        let request = CertificateParams::new(vec![peer.dns_name()])?.serialize_request(&key)?;
        let pem = request.pem()?;
        let pending = PendingRenewal {
            key,
            peer: peer.clone(),
        };
        Ok((pending, pem))
    }

    /// The new identity from the controller's certificate, which must be for
    /// the same role and name, and for the new key.
    pub fn finish(self, cert_pem: &str) -> Result<Identity, WireError> {
        let identity = Identity::from_pem(cert_pem, &self.key.serialize_pem())?;
        if identity.peer_id() != &self.peer {
            return Err(WireError::CertificateParse(format!(
                "the renewed certificate names {}, not {}",
                identity.peer_id(),
                self.peer
            )));
        }
        let (_, cert) = x509_parser::parse_x509_certificate(identity.cert_der())
            .map_err(|e| WireError::CertificateParse(e.to_string()))?;
        if cert.public_key().raw != self.key.subject_public_key_info().as_slice() {
            return Err(WireError::CertificateParse(
                "the renewed certificate is not for the new key".into(),
            ));
        }
        Ok(identity)
    }
}

/// A node's identity and the endpoints that present it: when the
/// certificate is due ([`Identity::renew_at`]) the node sends a request for a
/// new key ([`Credentials::due`]); the controller's answer is saved to the
/// state directory and presented from the next connection on, to the
/// controller and (a host's tunnel server) to edges alike
/// ([`Credentials::renewed`]).
#[derive(Debug)]
pub struct Credentials {
    identity: Identity,
    ca: CaCert,
    state_dir: PathBuf,
    /// Dials the controller.
    pub client: quinn::Endpoint,
    /// Takes edges' tunnels, for a host with a tunnel server.
    tunnel: Option<quinn::Endpoint>,
    /// The renewal asked for on this session, if any.
    pending: Option<PendingRenewal>,
}

impl Credentials {
    /// The identity saved in `state_dir`, presented by `client` and `tunnel`.
    pub fn new(
        identity: Identity,
        ca: CaCert,
        state_dir: PathBuf,
        client: quinn::Endpoint,
        tunnel: Option<quinn::Endpoint>,
    ) -> Credentials {
        Credentials {
            identity,
            ca,
            state_dir,
            client,
            tunnel,
            pending: None,
        }
    }

    /// A new session starts: a renewal asked for on the last one is asked again.
    pub fn session_started(&mut self) {
        self.pending = None;
    }

    /// The certificate request to send, when the certificate is due at
    /// `now` and no renewal is pending on this session.
    pub fn due(&mut self, now: SystemTime) -> Result<Option<String>, WireError> {
        if self.pending.is_some() || now < self.identity.renew_at() {
            return Ok(None);
        }
        let (pending, csr) = PendingRenewal::start(self.identity.peer_id())?;
        self.pending = Some(pending);
        info!(expires = ?self.identity.expires(), "asking the controller to renew the certificate");
        Ok(Some(csr))
    }

    /// Takes the renewed certificate: checks it is for the pending key,
    /// saves it, and presents it from the next connection on.
    pub fn renewed(&mut self, cert_pem: &str) -> Result<&Identity, WireError> {
        let pending = self.pending.take().ok_or(WireError::NoMessage)?;
        let identity = pending.finish(cert_pem)?;
        identity.save(&self.state_dir)?;
        let tunnel = self.tunnel.as_ref().map(|t| (t, ClientAuth::Required));
        use_identity(&mut self.client, tunnel, &identity, &self.ca)?;
        info!(expires = ?identity.expires(), "renewed the certificate");
        self.identity = identity;
        Ok(&self.identity)
    }

    /// The fleet CA.
    pub fn ca(&self) -> &CaCert {
        &self.ca
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{FleetCa, Role};
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_renewal_keeps_the_name_and_takes_the_new_key_and_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let ca = FleetCa::create(dir.path()).unwrap();
        let old = ca.issue(Role::Host, "h1", Duration::from_secs(60)).unwrap();
        let due = old.renew_at();
        let expires = old.expires();
        assert!(
            due < expires && due > expires - Duration::from_secs(30),
            "{due:?}"
        );

        let (pending, csr) = PendingRenewal::start(old.peer_id()).unwrap();
        let cert = ca
            .renew(old.peer_id(), &csr, Duration::from_secs(3600))
            .unwrap();
        let new = pending.finish(&cert).unwrap();
        assert_eq!(new.peer_id(), old.peer_id());
        assert!(new.expires() > SystemTime::now() + Duration::from_secs(3000));

        // The controller names the session's peer, whatever the request asks.
        let other = crate::PeerId::new(Role::Host, "h2").unwrap();
        let (pending, csr) = PendingRenewal::start(&other).unwrap();
        let cert = ca
            .renew(old.peer_id(), &csr, Duration::from_secs(60))
            .unwrap();
        assert!(pending.finish(&cert).is_err(), "h2 asked, h1 got it");
        // Another key's certificate is not taken.
        let (pending, _) = PendingRenewal::start(old.peer_id()).unwrap();
        let (_, csr) = PendingRenewal::start(old.peer_id()).unwrap();
        let cert = ca
            .renew(old.peer_id(), &csr, Duration::from_secs(60))
            .unwrap();
        assert!(pending.finish(&cert).is_err());
    }
}
