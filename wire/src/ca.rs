//! The fleet CA that `vt fleet init` mints, and the node identities it issues.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::error::WireError;
use super::files::{self, Mode};
use super::peer::peer_id_from_cert;
use super::role::{PeerId, Role, CONTROLLER_SERVER_NAME};

/// File name of the CA certificate in a state directory (every node has one).
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA's private key (the controller's state directory only), mode 0600.
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of a node's own certificate in its state directory.
pub const CERT_FILE: &str = "node.pem";
/// File name of a node's own private key in its state directory, mode 0600.
pub const KEY_FILE: &str = "node.key";

/// How long a fleet CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How far back certificates are back-dated, to tolerate clocks a little behind.
pub(crate) const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The SHA-256 digest of a certificate's DER bytes; written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }

    /// Parses 64 hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        ::hex::decode_to_slice(hex, &mut out).ok()?;
        Some(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(d)?;
        Fingerprint::from_hex(&hex)
            .ok_or_else(|| serde::de::Error::custom("expected 64 hex digits of a SHA-256 digest"))
    }
}

/// The fleet CA's certificate: the one trust anchor of every node.
#[derive(Clone, Debug)]
pub struct CaCert {
    pem: String,
    der: CertificateDer<'static>,
}

impl CaCert {
    /// Parses a PEM certificate.
    pub fn from_pem(pem: &str) -> Result<Self, WireError> {
        Self::parse(pem, || "the CA certificate".to_owned())
    }

    fn parse(pem: &str, what: impl Fn() -> String) -> Result<Self, WireError> {
        let der =
            CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|source| WireError::Pem {
                what: what(),
                source,
            })?;
        Ok(CaCert {
            pem: pem.to_owned(),
            der,
        })
    }

    /// Loads `ca.pem` from a state directory.
    pub fn load(dir: &Path) -> Result<Self, WireError> {
        let path = dir.join(CA_CERT_FILE);
        let pem = files::read_string(&path)?;
        Self::parse(&pem, || format!("the CA certificate in {}", path.display()))
    }

    /// Writes `ca.pem` into a state directory.
    pub fn save(&self, dir: &Path) -> Result<(), WireError> {
        files::write(&dir.join(CA_CERT_FILE), self.pem.as_bytes(), Mode::Public)
    }

    /// The certificate as PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The certificate as DER.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// The SHA-256 fingerprint that join tokens pin.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.der)
    }
}

/// The fleet CA with its private key: lives in the controller's state directory and
/// issues every node's certificate.
#[derive(Debug)]
pub struct FleetCa {
    cert: CaCert,
    issuer: Issuer<'static, KeyPair>,
}

impl FleetCa {
    /// Makes a new self-signed CA (ECDSA P-256, valid ten years) and stores it as
    /// `ca.pem` and `ca.key` (mode 0600) in `dir`. Refuses to replace an existing CA.
    pub fn create(dir: &Path) -> Result<Self, WireError> {
        for file in [CA_CERT_FILE, CA_KEY_FILE] {
            if dir.join(file).exists() {
                return Err(WireError::CaExists(dir.to_owned()));
            }
        }
        let now = SystemTime::now();
        let mut params = CertificateParams::default();
        params.distinguished_name = fleet_name(&[(DnType::CommonName, "vt fleet CA")]);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = (now + CA_VALIDITY).into();
        params.serial_number = Some(random_serial()?);
        let key = KeyPair::generate()?;
        let key_pem = key.serialize_pem();
        let cert = CaCert::from_pem(&params.self_signed(&key)?.pem())?;
        files::write(&dir.join(CA_KEY_FILE), key_pem.as_bytes(), Mode::Private)?;
        cert.save(dir)?;
        Ok(FleetCa {
            cert,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads the CA that [`FleetCa::create`] stored in `dir`.
    pub fn load(dir: &Path) -> Result<Self, WireError> {
        let cert = CaCert::load(dir)?;
        let key = KeyPair::from_pem(&files::read_string(&dir.join(CA_KEY_FILE))?)?;
        let issuer = Issuer::from_ca_cert_der(cert.der(), key)?;
        Ok(FleetCa { cert, issuer })
    }

    /// The CA's certificate, which every node trusts.
    pub fn cert(&self) -> &CaCert {
        &self.cert
    }

    /// Issues a certificate and a fresh key for a node, valid from now (back-dated five
    /// minutes for clock skew) for `validity`.
    pub fn issue(&self, role: Role, name: &str, validity: Duration) -> Result<Identity, WireError> {
        let now = SystemTime::now();
        self.issue_between(role, name, now - CLOCK_SKEW, now + validity)
    }

    /// Issues a certificate and a fresh key for a node, valid between the two times.
    ///
    /// The certificate's subject is `CN=<name>, OU=<role>, O=vt fleet`; its DNS name
    /// `<name>.<role>.vt` is what [`peer_id_from_cert`] reads back. A controller's
    /// certificate also names `controller.vt`, `localhost`, `127.0.0.1` and `::1`.
    /// Every certificate may serve and dial (both server and client auth).
    pub fn issue_between(
        &self,
        role: Role,
        name: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Identity, WireError> {
        self.issue_naming(role, name, &[], (not_before, not_after))
    }

    /// Issues the controller's HTTPS API certificate: a controller
    /// certificate (`api.controller.vt`, `localhost`, loopback) that also
    /// names `names` (DNS names or IP addresses), valid from now (back-dated
    /// for clock skew) for `validity`.
    pub fn issue_api(&self, names: &[String], validity: Duration) -> Result<Identity, WireError> {
        let now = SystemTime::now();
        self.issue_naming(
            Role::Controller,
            "api",
            names,
            (now - CLOCK_SKEW, now + validity),
        )
    }

    fn issue_naming(
        &self,
        role: Role,
        name: &str,
        names: &[String],
        window: (SystemTime, SystemTime),
    ) -> Result<Identity, WireError> {
        let params = node_params(&PeerId::new(role, name)?, names, window)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Identity::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// Renews `peer`'s certificate: signs the public key of the certificate
    /// request `csr_pem` (made by the node with a new key) for `peer`'s role
    /// and name — whatever else the request asks — valid from now
    /// (back-dated for clock skew) for `validity`. Returns the certificate.
    pub fn renew(
        &self,
        peer: &PeerId,
        csr_pem: &str,
        validity: Duration,
    ) -> Result<String, WireError> {
        let request = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
        let now = SystemTime::now();
        let params = node_params(peer, &[], (now - CLOCK_SKEW, now + validity))?;
        Ok(params.signed_by(&request.public_key, &self.issuer)?.pem())
    }
}

/// A distinguished name `O=vt fleet` followed by `more`.
fn fleet_name(more: &[(DnType, &str)]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "vt fleet");
    for (kind, value) in more {
        name.push(kind.clone(), *value);
    }
    name
}

/// When a DER certificate is valid: from, until.
pub(crate) fn validity_of(der: &[u8]) -> Result<(SystemTime, SystemTime), WireError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| WireError::CertificateParse(e.to_string()))?;
    let at = |t: &x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
    };
    Ok((
        at(&parsed.validity().not_before),
        at(&parsed.validity().not_after),
    ))
}

/// What every certificate the fleet CA issues says: see
/// [`FleetCa::issue_between`].
fn node_params(
    id: &PeerId,
    names: &[String],
    (not_before, not_after): (SystemTime, SystemTime),
) -> Result<CertificateParams, WireError> {
    let (role, name) = (id.role, id.name.as_str());
    let mut sans = vec![id.dns_name()];
    if role == Role::Controller {
        sans.extend([CONTROLLER_SERVER_NAME, "localhost", "127.0.0.1", "::1"].map(str::to_owned));
    }
    sans.extend(
        names
            .iter()
            .filter(|n| !sans.contains(n))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name = fleet_name(&[
        (DnType::OrganizationalUnitName, role.as_str()),
        (DnType::CommonName, name),
    ]);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

/// A node's own certificate and private key, as issued by the fleet CA.
pub struct Identity {
    cert_pem: String,
    key_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    peer: PeerId,
    /// When the certificate is valid: from, until.
    valid: (SystemTime, SystemTime),
}

impl Identity {
    /// Parses a certificate and its key from PEM, and reads the role and name the
    /// certificate carries.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, WireError> {
        Self::parse(cert_pem, key_pem, "")
    }

    fn parse(cert_pem: &str, key_pem: &str, place: &str) -> Result<Self, WireError> {
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|source| {
            WireError::Pem {
                what: format!("the node certificate{place}"),
                source,
            }
        })?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|source| WireError::Pem {
                what: format!("the node key{place}"),
                source,
            })?;
        let peer = peer_id_from_cert(&cert)?;
        let valid = validity_of(&cert)?;
        Ok(Identity {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            cert,
            key,
            peer,
            valid,
        })
    }

    /// Loads `node.pem` and `node.key` from a state directory.
    pub fn load(dir: &Path) -> Result<Self, WireError> {
        let cert_pem = files::read_string(&dir.join(CERT_FILE))?;
        let key_pem = files::read_string(&dir.join(KEY_FILE))?;
        Self::parse(&cert_pem, &key_pem, &format!(" in {}", dir.display()))
    }

    /// Writes `node.pem` and `node.key` (mode 0600) into a state directory.
    pub fn save(&self, dir: &Path) -> Result<(), WireError> {
        files::write(&dir.join(KEY_FILE), self.key_pem.as_bytes(), Mode::Private)?;
        files::write(&dir.join(CERT_FILE), self.cert_pem.as_bytes(), Mode::Public)
    }

    /// The role and name the certificate carries.
    pub fn peer_id(&self) -> &PeerId {
        &self.peer
    }

    /// When the certificate expires.
    pub fn expires(&self) -> SystemTime {
        self.valid.1
    }

    /// When to renew it: with a third of its lifetime left (the lifetime
    /// counted from issue, without the back-dating for clock skew).
    pub fn renew_at(&self) -> SystemTime {
        let (from, until) = self.valid;
        let lifetime = until
            .duration_since(from + CLOCK_SKEW)
            .unwrap_or(Duration::ZERO);
        until - lifetime / 3
    }

    /// The certificate as PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key as PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The certificate as DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// A copy of the private key, for a TLS configuration.
    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            peer: self.peer.clone(),
            valid: self.valid,
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// A random positive 128-bit serial number.
fn random_serial() -> Result<SerialNumber, WireError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(WireError::Random)?;
    // Positive (high bit clear) and with a non-zero first byte, so it stays 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn create_then_load_issues_certificates_that_chain_to_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let created = FleetCa::create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let loaded = FleetCa::load(dir.path()).unwrap();
        assert_eq!(loaded.cert().fingerprint(), created.cert().fingerprint());
        let id = loaded
            .issue(Role::Host, "node-1", Duration::from_secs(3600))
            .unwrap();
        assert_eq!(id.peer_id(), &PeerId::new(Role::Host, "node-1").unwrap());

        let err = FleetCa::create(dir.path()).unwrap_err();
        assert!(matches!(err, WireError::CaExists(_)), "{err}");
    }

    #[test]
    fn identities_round_trip_through_a_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let ca = FleetCa::create(&dir.path().join("ca")).unwrap();
        let id = ca
            .issue(Role::Edge, "edge-7", Duration::from_secs(60))
            .unwrap();
        id.save(&dir.path().join("edge")).unwrap();
        let back = Identity::load(&dir.path().join("edge")).unwrap();
        assert_eq!(back.peer_id(), id.peer_id());
        assert_eq!(back.cert_pem(), id.cert_pem());
    }

    #[test]
    fn bad_names_are_refused_before_issuing() {
        let dir = tempfile::tempdir().unwrap();
        let ca = FleetCa::create(dir.path()).unwrap();
        let err = ca
            .issue(Role::Host, "evil.controller", Duration::from_secs(60))
            .unwrap_err();
        assert!(
            matches!(err, WireError::Name(crate::role::NameError::InvalidName(_))),
            "{err}"
        );
    }

    #[test]
    fn fingerprints_print_and_parse_as_hex() {
        let fp = Fingerprint::of(b"anything");
        let hex = fp.to_string();
        assert_eq!(hex.len(), 64);
        assert_eq!(Fingerprint::from_hex(&hex), Some(fp));
        assert_eq!(Fingerprint::from_hex("zz"), None);
        assert_eq!(Fingerprint::from_hex(&"é".repeat(32)), None);
    }
}
