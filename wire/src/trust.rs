//! The one TLS client setup of every outbound HTTPS call vt makes: forge
//! APIs, OCI registries, webhooks. Certificates are always verified, against
//! the system's roots (read by `rustls-native-certs`, which honours
//! `SSL_CERT_FILE` and `SSL_CERT_DIR`) plus, when given, an operator's CA
//! bundle (a private forge or registry). There is no switch to skip
//! verification.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use super::error::WireError;

/// The certificates of the PEM bundle `path` (at least one).
pub fn read_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, WireError> {
    let bytes = std::fs::read(path).map_err(|source| WireError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let pem = |source| WireError::Pem {
        what: format!("the CA bundle {}", path.display()),
        source,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(pem(rustls::pki_types::pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// The roots a client trusts: the system's, and the bundle `extra` if given
/// (all of its certificates must parse).
pub fn roots(extra: Option<&Path>) -> Result<RootCertStore, WireError> {
    let mut store = RootCertStore::empty();
    // Unreadable system certificates are skipped (as every TLS client does):
    // an extra bundle still works on a machine without any.
    let system = rustls_native_certs::load_native_certs();
    for error in &system.errors {
        tracing::debug!(%error, "a system certificate cannot be read");
    }
    store.add_parsable_certificates(system.certs);
    if let Some(path) = extra {
        for cert in read_bundle(path)? {
            store.add(cert)?;
        }
    }
    Ok(store)
}

/// The server configuration of the controller's HTTPS API: `identity`'s
/// certificate (from the fleet CA, or the operator's own chain), no client
/// certificates, HTTP/2 and HTTP/1.1.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, WireError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The server configuration of an identity the fleet CA issued.
pub fn identity_server_config(
    identity: &crate::Identity,
) -> Result<Arc<rustls::ServerConfig>, WireError> {
    server_config(vec![identity.cert_der().clone()], identity.private_key())
}

/// The server configuration of an operator's certificate chain and key
/// (PEM files).
pub fn pem_server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, WireError> {
    let chain = read_bundle(cert)?;
    let bytes = std::fs::read(key).map_err(|source| WireError::ReadFile {
        path: key.to_path_buf(),
        source,
    })?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&bytes).map_err(|source| {
        WireError::Pem {
            what: format!("the private key {}", key.display()),
            source,
        }
    })?;
    server_config(chain, key)
}

/// The client configuration of outbound HTTPS (ring provider, TLS 1.2 and
/// 1.3, verified against [`roots`]).
pub fn client_config(extra: Option<&Path>) -> Result<Arc<ClientConfig>, WireError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(extra)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_adds_to_the_system_roots_and_bad_bundles_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::FleetCa::create(dir.path()).unwrap();
        let bundle = dir.path().join("bundle.pem");
        std::fs::write(&bundle, ca.cert().pem()).unwrap();
        let system = roots(None).unwrap().len();
        assert_eq!(roots(Some(&bundle)).unwrap().len(), system + 1);
        client_config(Some(&bundle)).unwrap();

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let refused = roots(Some(&empty)).unwrap_err();
        assert!(refused.to_string().contains("empty.pem"), "{refused}");
        assert!(roots(Some(&dir.path().join("missing.pem"))).is_err());
    }
}
