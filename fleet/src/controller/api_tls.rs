//! The API over HTTPS: which certificate it serves ([`server_config`], from
//! `fleet.json`'s `api_tls`) and a listener that hands axum connections whose
//! TLS handshake finished ([`TlsListener`]; each handshake runs in its own
//! task with a deadline, so a slow or silent client holds up nobody).

use crate::controller::setup::{ApiTls, SetupError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};
use vt_wire::FleetCa;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the fleet CA's API certificate is valid; a new one is made at
/// every start.
const API_CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);

/// The TLS configuration of the API listening on `listen`: `None` for plain
/// HTTP (refused unless `listen` is loopback), the operator's certificate,
/// or a new one from the fleet CA naming `listen`'s address (unless a
/// wildcard), `localhost`, loopback and `api_tls.names`.
pub fn server_config(
    api_tls: &ApiTls,
    ca: &FleetCa,
    listen: SocketAddr,
) -> Result<Option<Arc<rustls::ServerConfig>>, SetupError> {
    if api_tls.plain_http {
        if !listen.ip().is_loopback() {
            return Err(SetupError::Invalid(format!(
                "fleet.json: api_tls.plain_http serves the API unencrypted, which is allowed on \
                 loopback only, not on {listen}: remove it (HTTPS is the default)"
            )));
        }
        return Ok(None);
    }
    let config = match (&api_tls.cert, &api_tls.key) {
        (Some(cert), Some(key)) => vt_wire::trust::pem_server_config(cert, key)?,
        (None, None) => {
            let mut names = api_tls.names.clone();
            if !listen.ip().is_unspecified() {
                names.push(listen.ip().to_string());
            }
            let identity = ca.issue_api(&names, API_CERT_VALIDITY)?;
            vt_wire::trust::identity_server_config(&identity)?
        }
        _ => {
            return Err(SetupError::Invalid(
                "fleet.json: api_tls needs both `cert` and `key`, or neither".into(),
            ))
        }
    };
    Ok(Some(config))
}

/// Accepts TCP connections and does their TLS handshakes in the background;
/// axum gets the finished ones.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Serves TLS with `config` on `listener`.
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let tls = tokio_rustls::TlsAcceptor::from(config);
        let acceptor = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        warn!(error = %e, "cannot accept an API connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "API TLS handshake failed"),
                        Err(_) => debug!(%peer, "API TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            local,
            ready,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The acceptor only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
