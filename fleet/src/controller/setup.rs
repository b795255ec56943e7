//! The controller's state directory: `vt fleet init` creates it, `vt fleet run`
//! reads it. It holds the fleet CA, the join-token secret, the controller's
//! own identity, the API token, the webhook secret, the age identities that
//! open secrets (`age-identities.txt`), `fleet.json` (settings) and
//! `state.redb`.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vt_plan::addresses::{BadNetwork, Pools};
use vt_wire::{FleetCa, Identity, Role, TokenSecret, WireError};

/// Settings file in the state directory.
pub const SETTINGS_FILE: &str = "fleet.json";
/// The redb file in the state directory.
pub const STATE_FILE: &str = "state.redb";
/// How long the controller's own certificate is valid.
const CONTROLLER_CERT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Failures of `init` and of reading the state directory.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `vt fleet init` on a directory that has a fleet already.
    #[error("{0} already holds a fleet")]
    Exists(PathBuf),
    /// `vt fleet run` on a directory without a fleet.
    #[error("{0} holds no fleet: run `vt fleet init` first")]
    NoFleet(PathBuf),
    /// A file could not be read or written.
    #[error("cannot use {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The settings file is not valid.
    #[error("{path} is not valid")]
    Settings {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A setting has a value that cannot work.
    #[error("{0}")]
    Invalid(String),
    /// Certificates or tokens failed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The fleet's secret keys cannot be read or written.
    #[error(transparent)]
    Keys(#[from] vt_repo::secrets::CryptoError),
}

/// `fleet.json`: what `vt fleet run` needs besides the keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The desired-state repository: a path (watched) or a URL (fetched).
    pub repo: String,
    /// The tracked branch.
    pub branch: String,
    /// QUIC address for hosts and edges.
    pub quic: SocketAddr,
    /// HTTP address for the API.
    pub http: SocketAddr,
    /// Bearer token of the HTTP API.
    pub api_token: String,
    /// Shared secret of `POST /v1/hooks/git` (HMAC-SHA256, GitHub style).
    pub webhook_secret: String,
    /// Fetch interval of a remote repository, milliseconds.
    pub fetch_interval_ms: u64,
    /// Safety-net poll of a local repository, milliseconds.
    pub poll_interval_ms: u64,
    /// A host silent this long is lost, milliseconds.
    pub lost_after_ms: u64,
    /// The IPv6 prefix endpoint addresses come from.
    #[serde(default = "default_endpoint_prefix")]
    pub endpoint_prefix: String,
    /// The IPv4 pool of the IPv4 add-on (none: endpoints get no IPv4 address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_pool: Option<String>,
}

fn default_endpoint_prefix() -> String {
    vt_plan::addresses::DEFAULT_V6_PREFIX.to_string()
}

impl Settings {
    /// The endpoint address pools, parsed.
    pub fn pools(&self) -> Result<Pools, SetupError> {
        let bad = |e: BadNetwork| SetupError::Invalid(format!("fleet.json: {e}"));
        Ok(Pools {
            v6: self.endpoint_prefix.parse().map_err(bad)?,
            v4: self
                .ipv4_pool
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(bad)?,
        })
    }
}

fn random_hex(bytes: usize) -> Result<String, SetupError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| SetupError::Io {
        path: PathBuf::from("/dev/urandom"),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(hex::encode(buf))
}

fn write_private(path: &Path, content: &str) -> Result<(), SetupError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| SetupError::Io {
        path: path.into(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(content.as_bytes()).map_err(io)
}

/// Creates a fleet in `dir`: CA, token secret, controller identity, settings.
pub fn init(
    dir: &Path,
    repo: &str,
    branch: &str,
    quic: SocketAddr,
    http: SocketAddr,
) -> Result<Settings, SetupError> {
    if dir.join(SETTINGS_FILE).exists() {
        return Err(SetupError::Exists(dir.into()));
    }
    std::fs::create_dir_all(dir).map_err(|source| SetupError::Io {
        path: dir.into(),
        source,
    })?;
    let ca = FleetCa::create(dir)?;
    TokenSecret::load_or_create(dir)?;
    ca.issue(Role::Controller, "controller", CONTROLLER_CERT_VALIDITY)?
        .save(dir)?;
    new_secrets_key(dir)?;
    let repo = match std::path::Path::new(repo).canonicalize() {
        Ok(path) if !repo.contains("://") => path.display().to_string(),
        _ => repo.to_string(),
    };
    let settings = Settings {
        repo,
        branch: branch.into(),
        quic,
        http,
        api_token: format!("vta_{}", random_hex(24)?),
        webhook_secret: random_hex(24)?,
        fetch_interval_ms: 5_000,
        poll_interval_ms: 30_000,
        lost_after_ms: 10_000,
        endpoint_prefix: default_endpoint_prefix(),
        ipv4_pool: None,
    };
    write_private(&dir.join(SETTINGS_FILE), &settings_json(dir, &settings)?)?;
    Ok(settings)
}

fn settings_json(dir: &Path, settings: &Settings) -> Result<String, SetupError> {
    serde_json::to_string_pretty(settings).map_err(|source| SetupError::Settings {
        path: dir.join(SETTINGS_FILE),
        source,
    })
}

/// Replaces `fleet.json` in `dir` with `settings` (a new file renamed over
/// the old one, private like the first).
pub fn save_settings(dir: &Path, settings: &Settings) -> Result<(), SetupError> {
    let path = dir.join(SETTINGS_FILE);
    let tmp = dir.join(format!("{SETTINGS_FILE}.tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, &settings_json(dir, settings)?)?;
    std::fs::rename(&tmp, &path).map_err(|source| SetupError::Io { path, source })
}

/// Adds a new age identity to the fleet's identity file (the old ones stay,
/// so secrets encrypted to them still open) and returns its recipient.
pub fn new_secrets_key(dir: &Path) -> Result<String, SetupError> {
    let key = vt_repo::secrets::crypto::NewKey::generate();
    let created = vt_repo::secrets::edit::rfc3339(vt_wire::clock::now() / 1000);
    key.append_to(&crate::controller::delivery::identities_path(dir), &created)?;
    Ok(key.recipient)
}

/// Reads `fleet.json`.
pub fn load_settings(dir: &Path) -> Result<Settings, SetupError> {
    let path = dir.join(SETTINGS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SetupError::NoFleet(dir.into()))
        }
        Err(source) => return Err(SetupError::Io { path, source }),
    };
    serde_json::from_str(&text).map_err(|source| SetupError::Settings { path, source })
}

/// The keys `vt fleet run` serves with.
pub struct Keys {
    /// The fleet CA (issues host and edge certificates).
    pub ca: FleetCa,
    /// The join-token secret.
    pub secret: TokenSecret,
    /// The controller's own certificate.
    pub identity: Identity,
}

/// Loads the CA, token secret and controller identity from `dir`.
pub fn load_keys(dir: &Path) -> Result<Keys, SetupError> {
    Ok(Keys {
        ca: FleetCa::load(dir)?,
        secret: TokenSecret::load_or_create(dir)?,
        identity: Identity::load(dir)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_settings_replace_the_file_and_stay_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let any = "127.0.0.1:0".parse().expect("addr");
        let mut settings = init(dir.path(), "worktree:/x", "main", any, any).expect("init");
        settings.endpoint_prefix = "fd76:7400:de:1::/64".into();
        save_settings(dir.path(), &settings).expect("save");
        assert_eq!(load_settings(dir.path()).expect("load"), settings);
        let mode = std::fs::metadata(dir.path().join(SETTINGS_FILE))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
