//! Mutual-TLS QUIC endpoints for controller, host and edge traffic.
//!
//! Every endpoint speaks TLS 1.3 only, with ALPN [`ALPN`], trusts the fleet CA alone, and
//! uses a transport tuned for quick dead-peer detection ([`KEEP_ALIVE`],
//! [`IDLE_TIMEOUT`]) and many concurrent streams ([`MAX_STREAMS`]). A server presents its
//! certificate followed by the CA's, so that enrolling nodes can pin the CA (see
//! [`enroll`](super::enroll)). Certificates from another CA, expired ones or ones without
//! the right DNS name are refused during the handshake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Endpoint, IdleTimeout, TransportConfig, VarInt};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use super::ca::{CaCert, Identity};
use super::error::WireError;

/// The ALPN protocol name of the fleet protocol, version 1.
pub const ALPN: &[u8] = b"vt/1";
/// How often an idle connection sends a keep-alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// How long a connection may hear nothing from its peer before it is declared dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How many bidirectional (and unidirectional) streams a peer may have open at once.
pub const MAX_STREAMS: u32 = 10_000;
/// Bytes one stream may have in flight (flow-control window): one tunnelled
/// bulk flow needs more than quinn's default to fill a fast link.
pub const STREAM_WINDOW: u32 = 8 << 20;
/// Bytes all streams of a connection may have in flight.
pub const CONNECTION_WINDOW: u32 = 64 << 20;

/// Whether a server demands a client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present a certificate from the fleet CA.
    Required,
    /// Clients without a certificate are let in, for enrolment; a certificate, if
    /// presented, must still be valid. Check [`peer_of`](super::peer_of) or
    /// [`require_peer`](super::require_peer) on every connection before handling
    /// anything but enrolment.
    Optional,
}

/// A QUIC server on `bind` that presents `identity` and accepts clients whose
/// certificates chain to `ca`. Must be called inside a tokio runtime.
pub fn server_endpoint(
    bind: SocketAddr,
    identity: &Identity,
    ca: &CaCert,
    client_auth: ClientAuth,
) -> Result<Endpoint, WireError> {
    let config = server_config(identity, ca, client_auth)?;
    Endpoint::server(config, bind).map_err(|source| WireError::Bind { addr: bind, source })
}

/// Makes `client` present `identity` from its next connection on, and
/// `server` (with `client_auth`) too: a renewed certificate in use without
/// a restart. Open connections keep the certificate they started with.
pub fn use_identity(
    client: &mut Endpoint,
    server: Option<(&Endpoint, ClientAuth)>,
    identity: &Identity,
    ca: &CaCert,
) -> Result<(), WireError> {
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(vec![identity.cert_der().clone()], identity.private_key())?;
    client.set_default_client_config(client_config(tls)?);
    if let Some((server, client_auth)) = server {
        server.set_server_config(Some(server_config(identity, ca, client_auth)?));
    }
    Ok(())
}

/// The server side of an endpoint presenting `identity`.
fn server_config(
    identity: &Identity,
    ca: &CaCert,
    client_auth: ClientAuth,
) -> Result<quinn::ServerConfig, WireError> {
    let provider = provider();
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider.clone());
    if client_auth == ClientAuth::Optional {
        verifier = verifier.allow_unauthenticated();
    }
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier.build()?)
        .with_single_cert(
            vec![identity.cert_der().clone(), ca.der().clone()],
            identity.private_key(),
        )?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(transport());
    Ok(config)
}

/// A QUIC client on `bind` (port 0 for any) that trusts servers whose certificates chain
/// to `ca`, presenting `identity` if given. Must be called inside a tokio runtime.
pub fn client_endpoint(
    bind: SocketAddr,
    identity: Option<&Identity>,
    ca: &CaCert,
) -> Result<Endpoint, WireError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca)?);
    let tls = match identity {
        Some(id) => builder.with_client_auth_cert(vec![id.cert_der().clone()], id.private_key())?,
        None => builder.with_no_client_auth(),
    };
    client_endpoint_with(bind, tls)
}

/// Opens a connection to `addr`, expecting the server's certificate to name
/// `server_name`: [`CONTROLLER_SERVER_NAME`](super::CONTROLLER_SERVER_NAME) for the
/// controller, [`PeerId::dns_name`](super::PeerId::dns_name) for a host or an edge.
pub async fn connect(
    endpoint: &Endpoint,
    addr: SocketAddr,
    server_name: &str,
) -> Result<quinn::Connection, WireError> {
    let connecting = endpoint
        .connect(addr, server_name)
        .map_err(|source| WireError::Connect { addr, source })?;
    Ok(connecting.await?)
}

/// A client endpoint from a finished TLS configuration (ALPN and transport added here).
pub(crate) fn client_endpoint_with(
    bind: SocketAddr,
    tls: rustls::ClientConfig,
) -> Result<Endpoint, WireError> {
    let config = client_config(tls)?;
    let mut endpoint =
        Endpoint::client(bind).map_err(|source| WireError::Bind { addr: bind, source })?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// The client side of an endpoint with `tls`.
fn client_config(mut tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, WireError> {
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(transport());
    Ok(config)
}

/// The cryptography every endpoint uses: ring.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A root store holding the fleet CA alone.
fn roots(ca: &CaCert) -> Result<RootCertStore, WireError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone())?;
    Ok(roots)
}

/// Keep-alives, idle timeout and stream limits shared by clients and servers.
fn transport() -> Arc<TransportConfig> {
    let mut transport = TransportConfig::default();
    transport
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(
            IDLE_TIMEOUT.as_millis() as u32,
        ))))
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(MAX_STREAMS))
        .stream_receive_window(VarInt::from_u32(STREAM_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_WINDOW))
        .send_window(u64::from(CONNECTION_WINDOW));
    Arc::new(transport)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::IpAddr;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::testkit::{within, Fleet, V4, V6};
    use crate::{peer_of, require_peer, PeerId, Role, CONTROLLER_SERVER_NAME};

    /// Dials `server` from `client`; returns the server's and the client's outcome.
    async fn handshake(
        server: &Endpoint,
        client: &Endpoint,
        addr: SocketAddr,
        server_name: &str,
    ) -> (
        Result<quinn::Connection, quinn::ConnectionError>,
        Result<quinn::Connection, WireError>,
    ) {
        within(async {
            tokio::join!(
                async { server.accept().await.unwrap().await },
                connect(client, addr, server_name),
            )
        })
        .await
    }

    /// The client is refused: at once, or (when the server judges the client's
    /// certificate after the client finished its part of the handshake) soon after.
    async fn assert_client_refused(client: Result<quinn::Connection, WireError>) {
        if let Ok(conn) = client {
            let reason = within(conn.closed()).await;
            assert!(
                !matches!(reason, quinn::ConnectionError::TimedOut),
                "{reason}"
            );
        }
    }

    async fn mutual_tls_on(ip: IpAddr) {
        let fleet = Fleet::new();
        let (server, addr) = fleet.controller(ip, ClientAuth::Required);
        let host = fleet.identity(Role::Host, "node-1");
        let client = fleet.client(ip, Some(&host));
        let (s, c) = handshake(&server, &client, addr, CONTROLLER_SERVER_NAME).await;
        let (s, c) = (s.unwrap(), c.unwrap());
        let host_id = PeerId::new(Role::Host, "node-1").unwrap();
        assert_eq!(peer_of(&s).unwrap(), Some(host_id.clone()));
        assert_eq!(
            peer_of(&c).unwrap(),
            Some(PeerId::new(Role::Controller, "ctl").unwrap())
        );
        assert_eq!(
            require_peer(&s, &[Role::Host, Role::Edge]).unwrap(),
            host_id
        );
        let err = require_peer(&s, &[Role::Edge]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the peer is host node-1, a role not allowed here"
        );
    }

    #[tokio::test]
    async fn mutual_tls_shows_each_side_who_the_other_is_over_ipv4() {
        mutual_tls_on(V4).await;
    }

    #[tokio::test]
    async fn mutual_tls_shows_each_side_who_the_other_is_over_ipv6() {
        mutual_tls_on(V6).await;
    }

    #[tokio::test]
    async fn a_certificate_from_another_ca_is_refused() {
        let fleet = Fleet::new();
        let other = Fleet::new();
        let (server, addr) = fleet.controller(V4, ClientAuth::Required);
        let intruder = other.identity(Role::Host, "node-1");
        let client = client_endpoint((V4, 0).into(), Some(&intruder), fleet.ca.cert()).unwrap();
        let (s, c) = handshake(&server, &client, addr, CONTROLLER_SERVER_NAME).await;
        assert!(
            s.is_err(),
            "the server accepted a foreign client certificate"
        );
        assert_client_refused(c).await;

        // Nor does a node trust a server of another fleet.
        let (server, addr) = other.controller(V4, ClientAuth::Optional);
        let client = fleet.client(V4, None);
        let (_, c) = handshake(&server, &client, addr, CONTROLLER_SERVER_NAME).await;
        assert!(
            c.is_err(),
            "the client accepted a foreign server certificate"
        );
    }

    #[tokio::test]
    async fn an_expired_certificate_is_refused() {
        let fleet = Fleet::new();
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let expired = |role, name| {
            fleet
                .ca
                .issue_between(role, name, now - 2 * day, now - day)
                .unwrap()
        };

        let (server, addr) = fleet.controller(V4, ClientAuth::Required);
        let client = fleet.client(V4, Some(&expired(Role::Host, "old")));
        let (s, c) = handshake(&server, &client, addr, CONTROLLER_SERVER_NAME).await;
        assert!(
            s.is_err(),
            "the server accepted an expired client certificate"
        );
        assert_client_refused(c).await;

        let stale = expired(Role::Controller, "ctl");
        let (server, addr) = fleet.server_as(V4, &stale, ClientAuth::Optional);
        let client = fleet.client(V4, None);
        let (_, c) = handshake(&server, &client, addr, CONTROLLER_SERVER_NAME).await;
        assert!(
            c.is_err(),
            "the client accepted an expired server certificate"
        );
    }

    #[tokio::test]
    async fn anonymous_clients_get_in_only_when_client_auth_is_optional() {
        let fleet = Fleet::new();
        let (server, addr) = fleet.controller(V4, ClientAuth::Required);
        let client = fleet.client(V4, None);
        let (s, c) = handshake(&server, &client, addr, CONTROLLER_SERVER_NAME).await;
        assert!(
            s.is_err(),
            "a required-auth server let in a client without certificate"
        );
        assert_client_refused(c).await;

        let (server, addr) = fleet.controller(V4, ClientAuth::Optional);
        let (s, c) = handshake(&server, &client, addr, CONTROLLER_SERVER_NAME).await;
        let s = s.unwrap();
        c.unwrap();
        assert_eq!(peer_of(&s).unwrap(), None);
        let err = require_peer(&s, &[Role::Host]).unwrap_err();
        assert!(matches!(err, WireError::Unauthenticated), "{err}");
    }

    #[tokio::test]
    async fn a_host_cannot_pose_as_the_controller() {
        let fleet = Fleet::new();
        let host = fleet.identity(Role::Host, "node-1");
        let (server, addr) = fleet.server_as(V4, &host, ClientAuth::Required);
        let edge = fleet.identity(Role::Edge, "edge-1");
        let client = fleet.client(V4, Some(&edge));
        let (_, c) = handshake(&server, &client, addr, CONTROLLER_SERVER_NAME).await;
        assert!(c.is_err(), "a host certificate passed for the controller's");

        let (s, c) = handshake(&server, &client, addr, &host.peer_id().dns_name()).await;
        assert_eq!(peer_of(&s.unwrap()).unwrap(), Some(edge.peer_id().clone()));
        assert_eq!(peer_of(&c.unwrap()).unwrap(), Some(host.peer_id().clone()));
    }
}
