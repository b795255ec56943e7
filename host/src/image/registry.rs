//! The distribution API side: which scheme and credentials a registry gets,
//! and fetching manifests and blobs with oci-client.

use super::digest::{Digest, Hashing};
use super::error::{io, ImageError, Result};
use super::spec::MANIFEST_MEDIA_TYPES;
use base64::Engine as _;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to authenticate to registries.
#[derive(Clone, Default)]
pub enum Auth {
    /// No credentials.
    #[default]
    Anonymous,
    /// HTTP basic credentials, for every registry.
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
    /// A `~/.docker/config.json`-style file: per-registry `auths` entries
    /// (`auth` = base64 of `user:password`, or `username` + `password`).
    /// Registries it does not list are accessed anonymously; credential
    /// helpers (`credsStore`, `credHelpers`) are not supported.
    DockerConfig(PathBuf),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Self::DockerConfig(path) => write!(f, "DockerConfig({})", path.display()),
        }
    }
}

impl Auth {
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` when it
    /// exists, else anonymous.
    pub fn from_environment() -> Self {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")));
        match dir.map(|d| d.join("config.json")) {
            Some(path) if path.is_file() => Self::DockerConfig(path),
            _ => Self::Anonymous,
        }
    }

    /// The credentials for `registry` (`host[:port]`).
    pub(crate) fn for_registry(&self, registry: &str) -> Result<RegistryAuth> {
        match self {
            Self::Anonymous => Ok(RegistryAuth::Anonymous),
            Self::Basic { username, password } => {
                Ok(RegistryAuth::Basic(username.clone(), password.clone()))
            }
            Self::DockerConfig(path) => docker_config_auth(path, registry),
        }
    }
}

#[derive(Deserialize)]
struct DockerConfigFile {
    #[serde(default)]
    auths: HashMap<String, DockerAuthEntry>,
}

#[derive(Deserialize)]
struct DockerAuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// `https://host:port/v1/` → `host:port`.
fn registry_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn docker_config_auth(path: &Path, registry: &str) -> Result<RegistryAuth> {
    let bad = |reason: String| ImageError::Credentials {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read(path).map_err(io("read", path))?;
    let file: DockerConfigFile =
        serde_json::from_slice(&text).map_err(|source| ImageError::Json {
            what: format!("the credentials file {}", path.display()),
            source,
        })?;
    let wanted = |k: &str| {
        let k = registry_key(k);
        k == registry
            || (matches!(
                registry,
                "index.docker.io" | "docker.io" | "registry-1.docker.io"
            ) && matches!(k, "index.docker.io" | "docker.io" | "registry-1.docker.io"))
    };
    let Some(entry) = file.auths.iter().find(|(k, _)| wanted(k)).map(|(_, v)| v) else {
        return Ok(RegistryAuth::Anonymous);
    };
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Ok(RegistryAuth::Basic(u.clone(), p.clone()));
    }
    let Some(encoded) = &entry.auth else {
        return Ok(RegistryAuth::Anonymous);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad(format!("the `auth` for {registry} is not base64")))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| bad(format!("the `auth` for {registry} is not UTF-8")))?;
    let (u, p) = decoded
        .split_once(':')
        .ok_or_else(|| bad(format!("the `auth` for {registry} is not `user:password`")))?;
    Ok(RegistryAuth::Basic(u.to_owned(), p.to_owned()))
}

/// Whether `registry` (`host[:port]`) is on the loopback interface, which
/// is spoken to over plain HTTP.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Parses a reference (`host[:port]/repo[:tag][@digest]`, Docker Hub names too).
pub fn parse_reference(reference: &str) -> Result<Reference> {
    reference
        .parse::<Reference>()
        .map_err(|source| ImageError::InvalidReference {
            reference: reference.to_owned(),
            source,
        })
}

/// An oci-client for `registry`: HTTP for loopback, HTTPS (rustls with
/// ring, the system's roots and the CA bundle `ca`, if given) otherwise;
/// certificates are always verified.
pub(crate) fn client_for(registry: &str, ca: Option<&[u8]>) -> Client {
    // reqwest is built without a default crypto provider; use the same ring
    // provider as the rest of vt. An error means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if is_loopback(registry) {
        ClientProtocol::HttpsExcept(vec![registry.to_owned()])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(60)),
        extra_root_certificates: ca
            .map(|pem| Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem.to_vec(),
            })
            .into_iter()
            .collect(),
        ..ClientConfig::default()
    })
}

/// The error and its causes in one line.
fn tls_reason(e: &OciDistributionError) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message = cause.to_string();
        source = cause.source();
    }
    message
}

/// Whether a registry failure is the TLS layer refusing its certificate.
fn is_tls_failure(e: &OciDistributionError) -> bool {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    [
        "invalid peer certificate",
        "UnknownIssuer",
        "certificate verify",
        "self-signed",
        "self signed",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Maps an oci-client error to ours, recognising "not found",
/// "unauthorized" and digest mismatches.
pub(crate) fn registry_error(reference: &str, e: OciDistributionError) -> ImageError {
    let not_found = |code: &OciErrorCode| {
        matches!(
            code,
            OciErrorCode::ManifestUnknown
                | OciErrorCode::NameUnknown
                | OciErrorCode::NotFound
                | OciErrorCode::BlobUnknown
        )
    };
    match e {
        OciDistributionError::RegistryError { ref envelope, .. }
            if envelope.errors.iter().any(|e| not_found(&e.code)) =>
        {
            ImageError::NotFound {
                reference: reference.to_owned(),
            }
        }
        OciDistributionError::ServerError { code: 404, .. }
        | OciDistributionError::ImageManifestNotFoundError(_) => ImageError::NotFound {
            reference: reference.to_owned(),
        },
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => ImageError::Unauthorized {
            reference: reference.to_owned(),
        },
        OciDistributionError::RegistryError { ref envelope, .. }
            if envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)) =>
        {
            ImageError::Unauthorized {
                reference: reference.to_owned(),
            }
        }
        OciDistributionError::DigestError(DigestError::VerificationError { expected, actual }) => {
            match Digest::parse(&expected) {
                Ok(digest) => ImageError::DigestMismatch { digest, actual },
                Err(e) => ImageError::InvalidDigest(e),
            }
        }
        other if is_tls_failure(&other) => ImageError::Tls {
            reference: reference.to_owned(),
            message: tls_reason(&other),
        },
        other => ImageError::Registry {
            reference: reference.to_owned(),
            source: Box::new(other),
        },
    }
}

/// A registry session for one repository.
pub(crate) struct Remote {
    pub(crate) client: Client,
    pub(crate) reference: Reference,
    pub(crate) auth: RegistryAuth,
    /// The reference as the caller wrote it, for messages.
    pub(crate) display: String,
}

impl Remote {
    pub(crate) fn new(reference: &str, auth: &Auth, ca: Option<&[u8]>) -> Result<Self> {
        let parsed = parse_reference(reference)?;
        let registry = parsed.resolve_registry().to_owned();
        Ok(Self {
            client: client_for(&registry, ca),
            auth: auth.for_registry(&registry)?,
            reference: parsed,
            display: reference.to_owned(),
        })
    }

    /// Fetches a manifest or index by the reference's tag or digest (or by
    /// `digest` when given), verifying its digest. Returns the raw bytes and
    /// their digest.
    pub(crate) async fn manifest(&self, digest: Option<&Digest>) -> Result<(Vec<u8>, Digest)> {
        let reference = match digest {
            Some(d) => self.reference.clone_with_digest(d.to_string()),
            None => self.reference.clone(),
        };
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&reference, &self.auth, &MANIFEST_MEDIA_TYPES)
            .await
            .map_err(|e| registry_error(&self.display, e))?;
        let actual = Digest::of(&bytes);
        let expected = match digest {
            Some(d) => Some(d.clone()),
            None => reference.digest().map(Digest::parse).transpose()?,
        };
        if let Some(expected) = expected {
            if expected != actual {
                return Err(ImageError::DigestMismatch {
                    digest: expected,
                    actual: actual.to_string(),
                });
            }
        }
        Ok((bytes.to_vec(), actual))
    }

    /// Downloads blob `digest` into `dest` (a new file), returning the
    /// digest and length of what arrived; the caller verifies and renames.
    pub(crate) async fn blob_to(&self, digest: &Digest, dest: &Path) -> Result<(Digest, u64)> {
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .await
            .map_err(io("create", dest))?;
        let mut out = Hashing::new(file);
        self.client
            .pull_blob(&self.reference, digest.as_str(), &mut out)
            .await
            .map_err(|e| registry_error(&self.display, e))?;
        tokio::io::AsyncWriteExt::flush(&mut out)
            .await
            .map_err(io("write", dest))?;
        out.get_mut().sync_all().await.map_err(io("sync", dest))?;
        let (actual, len, _) = out.finish();
        Ok((actual, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_registry_loopback_detection() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }

    #[test]
    fn image_registry_docker_config_credentials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        let encoded = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let text = serde_json::json!({
            "auths": {
                "https://reg.example.com/v1/": { "auth": encoded },
                "127.0.0.1:5000": { "username": "bob", "password": "pw" },
                "https://index.docker.io/v1/": { "auth": encoded }
            }
        });
        std::fs::write(&path, text.to_string()).expect("write");
        let auth = Auth::DockerConfig(path);
        let basic = |u: &str, p: &str| RegistryAuth::Basic(u.into(), p.into());
        let got = |r: &str| auth.for_registry(r).expect("auth");
        assert_eq!(got("reg.example.com"), basic("alice", "s3cret"));
        assert_eq!(got("127.0.0.1:5000"), basic("bob", "pw"));
        assert_eq!(got("index.docker.io"), basic("alice", "s3cret"));
        assert_eq!(got("other.example.com"), RegistryAuth::Anonymous);
    }
}
