//! Enrolment: how a new host or edge, holding only a join token and the controller's
//! address, gets its certificate.
//!
//! 1. The node reads the CA fingerprint from the token (claims are readable by anyone
//!    holding it) and dials the controller without a certificate, accepting only a
//!    server certificate that chains to the CA with that fingerprint (the controller's
//!    server presents the CA certificate after its own).
//! 2. It sends [`EnrollRequest`] `{ token, role, name }` on one bidirectional stream.
//! 3. The controller ([`Enroller`]) verifies the token's tag, role and expiry, issues a
//!    certificate *and generates its key* (the key crosses the wire, inside the TLS
//!    session), and replies [`EnrollResponse::Issued`] with certificate, key and CA, or
//!    [`EnrollResponse::Refused`] with the reason.
//! 4. The node checks the answer against what it asked and pinned, and stores it with
//!    [`Enrolment::save`].

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::ca::{validity_of, CaCert, Fingerprint, FleetCa, Identity, CLOCK_SKEW};
use super::endpoint::{client_endpoint_with, connect, provider};
use super::error::WireError;
use super::frame;
use super::pin::PinnedCa;
use super::role::{PeerId, Role, CONTROLLER_SERVER_NAME};
use super::token::{Binding, Claims, Token, TokenSecret};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// How long an enrolment may take, on either side, from connecting to the answer.
pub const ENROL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a node keeps retrying an enrolment that fails in transport.
pub const ENROL_RETRY_FOR: Duration = Duration::from_secs(60);

/// What an enrolling node asks for.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The join token, as printed by `vt fleet token create`.
    pub token: String,
    /// The role the node enrols as; must match the token's.
    pub role: Role,
    /// The node's name, a DNS label.
    pub name: String,
}

impl std::fmt::Debug for EnrollRequest {
    /// The role and name; never the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("role", &self.role)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The controller's answer to an [`EnrollRequest`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
pub enum EnrollResponse {
    /// The node's new certificate, its private key and the fleet CA, all PEM.
    Issued {
        /// The node's certificate.
        cert_pem: String,
        /// The node's private key.
        key_pem: String,
        /// The fleet CA's certificate.
        ca_pem: String,
    },
    /// Enrolment was refused.
    Refused {
        /// Why, as a sentence.
        reason: String,
    },
}

impl std::fmt::Debug for EnrollResponse {
    /// The outcome; never the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnrollResponse::Issued { .. } => f.write_str("Issued { .. }"),
            EnrollResponse::Refused { reason } => {
                f.debug_struct("Refused").field("reason", reason).finish()
            }
        }
    }
}

/// What a node gets from enrolment: its identity and the CA to trust.
#[derive(Clone, Debug)]
pub struct Enrolment {
    /// The node's certificate and key.
    pub identity: Identity,
    /// The fleet CA's certificate.
    pub ca: CaCert,
}

impl Enrolment {
    /// Stores `node.pem`, `node.key` (mode 0600) and `ca.pem` in the node's state
    /// directory, where [`Identity::load`] and [`CaCert::load`] find them.
    pub fn save(&self, dir: &Path) -> Result<(), WireError> {
        self.ca.save(dir)?;
        self.identity.save(dir)
    }
}

/// A certificate the enroller renewed (the key stays with the node).
#[derive(Debug, Clone)]
pub struct Renewed {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its fingerprint, which the controller records.
    pub fingerprint: Fingerprint,
    /// When it expires.
    pub expires: SystemTime,
}

/// A certificate the enroller made for a verified join token.
#[derive(Debug)]
pub struct Issued {
    /// The node's new identity.
    pub identity: Identity,
    /// The token's claims (its nonce, bound name, expiry).
    pub claims: Claims,
    /// When the certificate expires.
    pub expires: SystemTime,
}

/// What the controller checks and records before a verified join gets its
/// certificate: that the token was not used before and that the name is not
/// enrolled already (the controller's records, which the wire does not keep).
pub trait JoinGate: Send + Sync {
    /// Admits `request` with what was `issued` for it, recording both; or
    /// says why not, as a sentence for the node.
    fn admit(&self, request: &EnrollRequest, issued: &Issued) -> Result<(), String>;
}

/// The controller's side of enrolment: verifies join tokens and issues certificates.
#[derive(Debug)]
pub struct Enroller {
    ca: FleetCa,
    secret: TokenSecret,
    validity: Duration,
}

impl Enroller {
    /// An enroller issuing certificates valid for `validity` from `ca`, accepting tokens
    /// minted with `secret`.
    pub fn new(ca: FleetCa, secret: TokenSecret, validity: Duration) -> Self {
        Enroller {
            ca,
            secret,
            validity,
        }
    }

    /// The fleet CA.
    pub fn ca(&self) -> &FleetCa {
        &self.ca
    }

    /// Mints a join token for `role` that pins this fleet's CA, expires `ttl` after
    /// `now` and carries `binding` (what `vt fleet token create` calls).
    pub fn mint(
        &self,
        role: Role,
        ttl: Duration,
        now: SystemTime,
        binding: &Binding,
    ) -> Result<Token, WireError> {
        Token::mint(
            role,
            ttl,
            now,
            self.ca.cert().fingerprint(),
            binding,
            &self.secret,
        )
    }

    /// Renews `peer`'s certificate for the key of `csr_pem` (see
    /// [`crate::PendingRenewal`]), valid for this enroller's validity.
    pub fn renew(&self, peer: &PeerId, csr_pem: &str) -> Result<Renewed, WireError> {
        let cert_pem = self.ca.renew(peer, csr_pem, self.validity)?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|source| {
            WireError::Pem {
                what: "the renewed certificate".into(),
                source,
            }
        })?;
        Ok(Renewed {
            fingerprint: Fingerprint::of(der.as_ref()),
            expires: validity_of(der.as_ref())?.1,
            cert_pem,
        })
    }

    /// Decides a request at `now`: verifies the token (and the name it is
    /// bound to) and issues the certificate; returns it with the token's
    /// claims and the certificate's expiry. Whether the token was used before
    /// is the [`JoinGate`]'s to say.
    pub fn answer(&self, req: &EnrollRequest, now: SystemTime) -> Result<Issued, WireError> {
        let token = Token::parse(&req.token)?;
        token.verify(&self.secret, req.role, now)?;
        if let Some(bound) = token.claims().name.as_deref().filter(|b| *b != req.name) {
            return Err(WireError::TokenBoundToName {
                bound: bound.to_string(),
                asked: req.name.clone(),
            });
        }
        let expires = now + self.validity;
        let identity = self
            .ca
            .issue_between(req.role, &req.name, now - CLOCK_SKEW, expires)?;
        Ok(Issued {
            identity,
            claims: token.claims().clone(),
            expires,
        })
    }

    /// Serves one enrolment on a connection from a node without a certificate: reads
    /// its request, answers it, lets `gate` admit and record it, waits until the
    /// answer is delivered and closes the connection. Returns who was enrolled, or
    /// why not (the node was told too).
    pub async fn serve(
        &self,
        conn: &quinn::Connection,
        gate: &dyn JoinGate,
    ) -> Result<PeerId, WireError> {
        let outcome = tokio::time::timeout(ENROL_TIMEOUT, self.serve_inner(conn, gate))
            .await
            .unwrap_or(Err(WireError::Timeout {
                what: "serving an enrolment",
                after: ENROL_TIMEOUT,
            }));
        let reason: &[u8] = if outcome.is_ok() {
            b"enrolled"
        } else {
            b"refused"
        };
        conn.close(0u32.into(), reason);
        outcome
    }

    async fn serve_inner(
        &self,
        conn: &quinn::Connection,
        gate: &dyn JoinGate,
    ) -> Result<PeerId, WireError> {
        let (mut tx, mut rx) = conn.accept_bi().await?;
        let req: EnrollRequest = frame::recv(&mut rx).await?.ok_or(WireError::NoMessage)?;
        let admitted = self.answer(&req, SystemTime::now()).and_then(|issued| {
            gate.admit(&req, &issued).map_err(WireError::JoinRefused)?;
            Ok(issued.identity)
        });
        let (resp, outcome) = match admitted {
            Ok(identity) => (
                EnrollResponse::Issued {
                    cert_pem: identity.cert_pem().to_owned(),
                    key_pem: identity.key_pem().to_owned(),
                    ca_pem: self.ca.cert().pem().to_owned(),
                },
                Ok(identity.peer_id().clone()),
            ),
            Err(e) => (
                EnrollResponse::Refused {
                    reason: e.to_string(),
                },
                Err(e),
            ),
        };
        frame::reply(&mut tx, &resp).await?;
        // Closing before the node has the answer could discard it.
        let _ = tx.stopped().await;
        outcome
    }
}

/// Enrols this node as `role`/`name` with the controller at `controller`, using a join
/// token; store the result with [`Enrolment::save`].
pub async fn enroll(
    controller: SocketAddr,
    token: &str,
    role: Role,
    name: &str,
) -> Result<Enrolment, WireError> {
    let wanted = PeerId::new(role, name)?;
    let token = Token::parse(token)?;
    let pinned = token.claims().ca;
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa::new(pinned, provider())))
        .with_no_client_auth();
    let bind = match controller {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let endpoint = client_endpoint_with(bind, tls)?;
    let req = EnrollRequest {
        token: token.as_str().to_owned(),
        role,
        name: name.to_owned(),
    };
    let exchange = async {
        let conn = connect(&endpoint, controller, CONTROLLER_SERVER_NAME).await?;
        let resp: EnrollResponse = frame::request(&conn, &req).await?;
        conn.close(0u32.into(), b"done");
        Ok::<_, WireError>(resp)
    };
    let resp = tokio::time::timeout(ENROL_TIMEOUT, exchange)
        .await
        .map_err(|_| WireError::Timeout {
            what: "enrolling with the controller",
            after: ENROL_TIMEOUT,
        })??;
    endpoint.wait_idle().await;
    match resp {
        EnrollResponse::Refused { reason } => Err(WireError::EnrolmentRefused(reason)),
        EnrollResponse::Issued {
            cert_pem,
            key_pem,
            ca_pem,
        } => {
            let ca = CaCert::from_pem(&ca_pem)?;
            if ca.fingerprint() != pinned {
                return Err(WireError::EnrolmentMismatch(
                    "its CA certificate is not the one the join token pins",
                ));
            }
            let identity = Identity::from_pem(&cert_pem, &key_pem)?;
            if identity.peer_id() != &wanted {
                return Err(WireError::EnrolmentMismatch(
                    "the certificate names another role or node",
                ));
            }
            Ok(Enrolment { identity, ca })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::testkit::{within, Fleet, V4, V6};
    use crate::{client_endpoint, peer_of, ClientAuth, Fingerprint};

    const HOUR: Duration = Duration::from_secs(3600);

    /// A controller on `ip` that enrols anonymous clients and tells certified ones who
    /// they are.
    struct Controller {
        fleet: Fleet,
        enroller: Arc<Enroller>,
        addr: SocketAddr,
        _endpoint: quinn::Endpoint,
    }

    /// A gate admitting each token (by nonce) once, as the controller's does.
    struct Once(std::sync::Mutex<std::collections::BTreeSet<String>>);

    impl JoinGate for Once {
        fn admit(&self, _: &EnrollRequest, issued: &Issued) -> Result<(), String> {
            let fresh = self.0.lock().unwrap().insert(issued.claims.nonce.clone());
            fresh
                .then_some(())
                .ok_or_else(|| "this join token was used already".to_string())
        }
    }

    static ONCE: Once = Once(std::sync::Mutex::new(std::collections::BTreeSet::new()));

    impl Controller {
        fn start(ip: IpAddr) -> Controller {
            let fleet = Fleet::new();
            let ca = FleetCa::load(&fleet.dir.path().join("controller")).unwrap();
            let enroller = Arc::new(Enroller::new(ca, TokenSecret::generate().unwrap(), HOUR));
            let (endpoint, addr) = fleet.controller(ip, ClientAuth::Optional);
            let (server, serving) = (endpoint.clone(), enroller.clone());
            tokio::spawn(async move {
                while let Some(incoming) = server.accept().await {
                    let enroller = serving.clone();
                    tokio::spawn(async move {
                        let Ok(conn) = incoming.await else { return };
                        match peer_of(&conn).unwrap() {
                            None => {
                                let _ = enroller.serve(&conn, &ONCE).await;
                            }
                            Some(peer) => {
                                let (mut tx, mut rx) = conn.accept_bi().await.unwrap();
                                let () = frame::recv(&mut rx).await.unwrap().unwrap();
                                frame::reply(&mut tx, &peer).await.unwrap();
                                let _ = tx.stopped().await;
                            }
                        }
                    });
                }
            });
            Controller {
                fleet,
                enroller,
                addr,
                _endpoint: endpoint,
            }
        }

        async fn enroll(
            &self,
            token: &Token,
            role: Role,
            name: &str,
        ) -> Result<Enrolment, WireError> {
            within(enroll(self.addr, token.as_str(), role, name)).await
        }
    }

    async fn enrolment_yields_a_working_certificate_on(ip: IpAddr) {
        let ctl = Controller::start(ip);
        let token = ctl
            .enroller
            .mint(Role::Host, HOUR, SystemTime::now(), &Binding::default())
            .unwrap();
        let enrolment = ctl.enroll(&token, Role::Host, "node-1").await.unwrap();
        let state = ctl.fleet.dir.path().join("node-1");
        enrolment.save(&state).unwrap();

        let identity = Identity::load(&state).unwrap();
        let ca = CaCert::load(&state).unwrap();
        assert_eq!(ca.fingerprint(), ctl.fleet.ca.cert().fingerprint());
        let client = client_endpoint(SocketAddr::new(ip, 0), Some(&identity), &ca).unwrap();
        let seen: PeerId = within(async {
            let conn = connect(&client, ctl.addr, CONTROLLER_SERVER_NAME)
                .await
                .unwrap();
            frame::request(&conn, &()).await.unwrap()
        })
        .await;
        assert_eq!(seen, PeerId::new(Role::Host, "node-1").unwrap());
    }

    #[tokio::test]
    async fn enrolment_yields_a_working_certificate_over_ipv4() {
        enrolment_yields_a_working_certificate_on(V4).await;
    }

    #[tokio::test]
    async fn enrolment_yields_a_working_certificate_over_ipv6() {
        enrolment_yields_a_working_certificate_on(V6).await;
    }

    #[tokio::test]
    async fn expired_forged_and_wrong_role_tokens_are_refused() {
        let ctl = Controller::start(V4);
        let now = SystemTime::now();
        let refusal = |result: Result<Enrolment, WireError>| result.unwrap_err().to_string();

        let expired = ctl
            .enroller
            .mint(Role::Host, HOUR, now - 2 * HOUR, &Binding::default())
            .unwrap();
        let err = refusal(ctl.enroll(&expired, Role::Host, "node-1").await);
        assert!(
            err.starts_with(
                "the controller refused the enrolment: the join token expired at unix time"
            ),
            "{err}"
        );

        let fingerprint = ctl.fleet.ca.cert().fingerprint();
        let forger = TokenSecret::generate().unwrap();
        let forged = Token::mint(
            Role::Host,
            HOUR,
            now,
            fingerprint,
            &Binding::default(),
            &forger,
        )
        .unwrap();
        let err = refusal(ctl.enroll(&forged, Role::Host, "node-1").await);
        assert_eq!(
            err,
            "the controller refused the enrolment: the join token's signature does not match: \
             it was altered, forged or minted by another controller"
        );

        let edge = ctl
            .enroller
            .mint(Role::Edge, HOUR, now, &Binding::default())
            .unwrap();
        let err = refusal(ctl.enroll(&edge, Role::Host, "node-1").await);
        assert_eq!(
            err,
            "the controller refused the enrolment: the join token is for role edge, not host"
        );
        let err = refusal(ctl.enroll(&edge, Role::Controller, "ctl-2").await);
        assert_eq!(
            err,
            "the controller refused the enrolment: the join token is for role edge, not controller"
        );

        // The same edge token still works for what it was minted for.
        ctl.enroll(&edge, Role::Edge, "edge-1").await.unwrap();
    }

    #[tokio::test]
    async fn a_token_pinning_another_ca_never_reaches_the_controller() {
        let ctl = Controller::start(V4);
        let secret = TokenSecret::generate().unwrap();
        let token = Token::mint(
            Role::Host,
            HOUR,
            SystemTime::now(),
            Fingerprint([1; 32]),
            &Binding::default(),
            &secret,
        )
        .unwrap();
        let err = ctl.enroll(&token, Role::Host, "node-1").await.unwrap_err();
        assert!(matches!(err, WireError::Connection(_)), "{err}");
    }

    #[tokio::test]
    async fn a_gate_refuses_a_second_use_and_a_bound_token_fits_one_name() {
        let ctl = Controller::start(V4);
        let refusal = |result: Result<Enrolment, WireError>| result.unwrap_err().to_string();
        let now = SystemTime::now();
        let token = ctl
            .enroller
            .mint(Role::Host, HOUR, now, &Binding::default())
            .unwrap();
        ctl.enroll(&token, Role::Host, "node-a").await.unwrap();
        let err = refusal(ctl.enroll(&token, Role::Host, "node-b").await);
        assert_eq!(
            err,
            "the controller refused the enrolment: this join token was used already"
        );
        let bound = Binding {
            name: Some("node-c".into()),
            controller: None,
        };
        let token = ctl.enroller.mint(Role::Host, HOUR, now, &bound).unwrap();
        let err = refusal(ctl.enroll(&token, Role::Host, "node-d").await);
        assert_eq!(
            err,
            "the controller refused the enrolment: the join token is for a node named node-c, not node-d"
        );
        ctl.enroll(&token, Role::Host, "node-c").await.unwrap();
    }

    #[test]
    fn debug_shows_neither_tokens_nor_keys() {
        let request = EnrollRequest {
            token: "vtj_secret.tag".into(),
            role: Role::Host,
            name: "h1".into(),
        };
        let issued = EnrollResponse::Issued {
            cert_pem: "CERT".into(),
            key_pem: "PRIVATE KEY".into(),
            ca_pem: "CA".into(),
        };
        let shown = format!("{request:?} {issued:?}");
        assert!(
            !shown.contains("vtj_secret") && !shown.contains("PRIVATE"),
            "{shown}"
        );
        assert!(shown.contains("h1"), "{shown}");
    }

    #[test]
    fn bad_names_are_refused_before_dialing_or_issuing() {
        let fleet = Fleet::new();
        let ca = FleetCa::load(&fleet.dir.path().join("controller")).unwrap();
        let enroller = Enroller::new(ca, TokenSecret::generate().unwrap(), HOUR);
        let now = SystemTime::now();
        let token = enroller
            .mint(Role::Host, HOUR, now, &Binding::default())
            .unwrap();
        let req = EnrollRequest {
            token: token.as_str().to_owned(),
            role: Role::Host,
            name: "Not A Label".to_owned(),
        };
        let err = enroller.answer(&req, now).unwrap_err();
        assert!(
            matches!(err, WireError::Name(crate::role::NameError::InvalidName(_))),
            "{err}"
        );
    }
}

/// Why a node (host or edge) has no certificate to start with.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// No certificate yet and no join token to get one.
    #[error("this {role} has no fleet certificate in {dir}: pass --token with a join token from `vt fleet token create --role {role}`")]
    NoToken {
        /// The state directory.
        dir: std::path::PathBuf,
        /// What the node is.
        role: Role,
    },
    /// The state directory cannot be created.
    #[error("cannot create {dir}")]
    StateDir {
        /// The directory.
        dir: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Enrolment failed.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// A node's certificate and the fleet CA from `state_dir`, enrolling with
/// `token` the first time (the result is saved there).
pub async fn node_identity(
    state_dir: &std::path::Path,
    controller: SocketAddr,
    token: Option<&str>,
    role: Role,
    name: &str,
) -> Result<(super::Identity, super::CaCert), NodeError> {
    std::fs::create_dir_all(state_dir).map_err(|source| NodeError::StateDir {
        dir: state_dir.to_path_buf(),
        source,
    })?;
    if let (Ok(identity), Ok(ca)) = (
        super::Identity::load(state_dir),
        super::CaCert::load(state_dir),
    ) {
        return Ok((identity, ca));
    }
    let token = token.ok_or_else(|| NodeError::NoToken {
        dir: state_dir.to_path_buf(),
        role,
    })?;
    // The controller may be starting or busy: transport failures are retried
    // for a while; a refused token is not.
    let mut backoff =
        crate::backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
    let started = std::time::Instant::now();
    let enrolment = loop {
        match enroll(controller, token, role, name).await {
            Ok(enrolment) => break enrolment,
            Err(
                e @ (WireError::Timeout { .. }
                | WireError::Connect { .. }
                | WireError::Connection(_)),
            ) if started.elapsed() < ENROL_RETRY_FOR => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "cannot reach the controller to enrol");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    enrolment.save(state_dir)?;
    tracing::info!(%role, %name, "enrolled with the fleet");
    Ok((enrolment.identity, enrolment.ca))
}
