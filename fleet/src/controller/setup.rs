//! The controller's state directory: `vt fleet init` creates it, `vt fleet run`
//! reads it. It holds the fleet CA, the join-token secret, the controller's
//! own identity, the API token, the webhook secret, the age identities that
//! open secrets (`age-identities.txt`), what fetches of a remote repository
//! present and trust (`git/`, see `git_fetch`), `fleet.json` (settings) and
//! `state.redb`.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vt_plan::addresses::{BadNetwork, Pools};
use vt_wire::{FleetCa, Identity, Role, TokenSecret, WireError};

use super::git_fetch::{GitSetup, GitSetupError};

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
    /// What fetches of the repository need cannot be set up.
    #[error(transparent)]
    Git(#[from] GitSetupError),
}

/// `fleet.json`: what `vt fleet run` needs besides the keys. Its `Debug`
/// shows neither the API token nor the webhook secret, nor a URL's
/// credentials.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// A git credential helper for an HTTPS repository (`git config
    /// credential.helper` syntax), tried after `git/credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_credential_helper: Option<String>,
    /// How the API is served: HTTPS by default.
    #[serde(default, skip_serializing_if = "ApiTls::is_default")]
    pub api_tls: ApiTls,
    /// How long a host's or an edge's certificate is valid, milliseconds;
    /// nodes renew theirs over their session with a third of it left.
    #[serde(default = "default_node_cert_validity")]
    pub node_cert_validity_ms: u64,
}

/// Seven days: a stolen certificate is worth little for long.
fn default_node_cert_validity() -> u64 {
    7 * 24 * 3_600_000
}

/// How the API is served: HTTPS with a certificate from the fleet CA (the
/// default: it names the listen address, `localhost` and loopback, and
/// `names`), or with the operator's own certificate, or plain HTTP, which is
/// refused unless the API listens on loopback.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTls {
    /// Serve plain HTTP (loopback only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plain_http: bool,
    /// The operator's certificate chain (PEM) instead of one from the fleet CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// More names (DNS names or IP addresses) for the fleet CA's certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

impl ApiTls {
    fn is_default(&self) -> bool {
        *self == ApiTls::default()
    }

    /// The URL scheme the API is served with.
    pub fn scheme(&self) -> &'static str {
        if self.plain_http {
            "http"
        } else {
            "https"
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("repo", &super::git_source::redacted(&self.repo))
            .field("branch", &self.branch)
            .field("quic", &self.quic)
            .field("http", &self.http)
            .field("api_token", &"***")
            .field("webhook_secret", &"***")
            .field("fetch_interval_ms", &self.fetch_interval_ms)
            .field("poll_interval_ms", &self.poll_interval_ms)
            .field("lost_after_ms", &self.lost_after_ms)
            .field("endpoint_prefix", &self.endpoint_prefix)
            .field("ipv4_pool", &self.ipv4_pool)
            .field("git_credential_helper", &self.git_credential_helper)
            .field("api_tls", &self.api_tls)
            .field("node_cert_validity_ms", &self.node_cert_validity_ms)
            .finish()
    }
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

/// What `vt fleet init` made.
#[derive(Debug)]
pub struct Initialized {
    /// `fleet.json` as written.
    pub settings: Settings,
    /// The public half of the SSH key fetches present (an SSH repository).
    pub deploy_key: Option<String>,
}

/// A directory `init` made, removed again unless kept (a failed step
/// leaves nothing behind).
struct MadeDir(Option<PathBuf>);

impl MadeDir {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for MadeDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Creates a fleet in `dir`: how it reaches the repository (`git/`), CA,
/// token secret, controller identity, settings. A directory it created is
/// removed again when a step fails.
pub fn init(
    dir: &Path,
    repo: &str,
    branch: &str,
    (quic, http): (SocketAddr, SocketAddr),
    git: &GitSetup,
) -> Result<Initialized, SetupError> {
    if dir.join(SETTINGS_FILE).exists() {
        return Err(SetupError::Exists(dir.into()));
    }
    let made = MadeDir((!dir.exists()).then(|| dir.to_path_buf()));
    std::fs::create_dir_all(dir).map_err(|source| SetupError::Io {
        path: dir.into(),
        source,
    })?;
    let deploy_key = git.install(dir, repo)?;
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
        api_token: format!("vta_{}", vt_wire::random_hex(24)?),
        webhook_secret: vt_wire::random_hex(24)?,
        fetch_interval_ms: 5_000,
        poll_interval_ms: 30_000,
        lost_after_ms: 10_000,
        endpoint_prefix: default_endpoint_prefix(),
        ipv4_pool: None,
        git_credential_helper: None,
        api_tls: ApiTls::default(),
        node_cert_validity_ms: default_node_cert_validity(),
    };
    write_private(&dir.join(SETTINGS_FILE), &settings_json(dir, &settings)?)?;
    made.keep();
    Ok(Initialized {
        settings,
        deploy_key,
    })
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

    /// The settings of a new fleet in `dir` (a working tree, any ports).
    fn fresh(dir: &Path) -> Settings {
        let any = "127.0.0.1:0".parse().expect("addr");
        init(dir, "worktree:/x", "main", (any, any), &GitSetup::default())
            .expect("init")
            .settings
    }

    #[test]
    fn saved_settings_replace_the_file_and_stay_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = fresh(dir.path());
        settings.endpoint_prefix = "fd76:7400:de:1::/64".into();
        save_settings(dir.path(), &settings).expect("save");
        assert_eq!(load_settings(dir.path()).expect("load"), settings);
        let mode = std::fs::metadata(dir.path().join(SETTINGS_FILE))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn debug_shows_no_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = fresh(dir.path());
        settings.repo = "https://ci:hunter2@git.example/r.git".into();
        let shown = format!("{settings:?}");
        for secret in [&settings.api_token, &settings.webhook_secret, "hunter2"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("git.example"), "{shown}");
    }
}
