//! Fetching a remote desired-state repository with the `git` command, one
//! code path for every URL scheme: HTTPS as people use it (the system's
//! roots or a private CA, a token or a credential helper) and SSH (a deploy
//! key; the host's key checked against known hosts, never skipped).
//!
//! What a fetch trusts and presents lives in the controller's state
//! directory, under `git/` ([`GitAccess`]):
//!
//! | file          | used for                                               |
//! |---------------|--------------------------------------------------------|
//! | `ca.pem`      | HTTPS: the CA bundle a private Git host is checked with |
//! | `credentials` | HTTPS: `git credential-store` lines (`https://user:token@host`) |
//! | `deploy_key`  | SSH: the private key presented                          |
//! | `known_hosts` | SSH: the only host keys accepted                        |
//!
//! A failure is classified from what git said ([`classify`]) into
//! `E_GIT_AUTH`, `E_GIT_TLS`, `E_GIT_HOST_KEY` or `E_GIT`, with a hint that
//! names the file to fix.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use vt_wire::codes::ErrorCode;

/// The directory of the state directory holding what fetches use.
pub const GIT_DIR: &str = "git";
/// HTTPS: the CA bundle of a private Git host (replaces the system roots).
pub const CA_FILE: &str = "ca.pem";
/// HTTPS: credentials in `git credential-store` format.
pub const CREDENTIALS_FILE: &str = "credentials";
/// SSH: the deploy key.
pub const DEPLOY_KEY_FILE: &str = "deploy_key";
/// SSH: the accepted host keys.
pub const KNOWN_HOSTS_FILE: &str = "known_hosts";

/// Seconds without progress after which a fetch gives up (HTTP: below
/// 1 kB/s; SSH: connecting, or a silent server).
const STALL_SECS: u32 = 30;

/// What a fetch presents and trusts: the files of `STATE/git/` that exist,
/// and an optional credential helper of the operator's.
#[derive(Clone)]
pub struct GitAccess {
    dir: PathBuf,
    /// A `credential.helper` of the operator's, tried after `credentials`.
    pub credential_helper: Option<String>,
}

impl std::fmt::Debug for GitAccess {
    /// The directory only: never a credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GitAccess({})", self.dir.display())
    }
}

/// A fetch that failed, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailure {
    /// `E_GIT_AUTH`, `E_GIT_TLS`, `E_GIT_HOST_KEY`, or `E_GIT`.
    pub code: ErrorCode,
    /// What git said (its `fatal:`/`error:` lines), credentials redacted.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl std::fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)?;
        if !self.hint.is_empty() {
            write!(f, " (hint: {})", self.hint)?;
        }
        Ok(())
    }
}

impl GitAccess {
    /// The access of the state directory `state_dir` (its `git/` files).
    pub fn in_state_dir(state_dir: &Path, credential_helper: Option<String>) -> GitAccess {
        GitAccess {
            dir: state_dir.join(GIT_DIR),
            credential_helper,
        }
    }

    /// The path of one of the `git/` files (whether or not it exists).
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn existing(&self, file: &str) -> Option<PathBuf> {
        Some(self.path(file)).filter(|p| p.exists())
    }

    /// `git` with this access's configuration: no prompts, TLS verification
    /// forced on, only our credential helpers, and an SSH command that
    /// checks host keys against `known_hosts` alone.
    fn git(&self) -> Command {
        let mut git = Command::new("git");
        git.env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_ASKPASS")
            .env_remove("SSH_ASKPASS")
            .env("GIT_HTTP_LOW_SPEED_LIMIT", "1000")
            .env("GIT_HTTP_LOW_SPEED_TIME", STALL_SECS.to_string())
            .env("GIT_SSH_COMMAND", self.ssh_command())
            .args(["-c", "http.sslVerify=true", "-c", "credential.helper="]);
        if let Some(ca) = self.existing(CA_FILE) {
            git.arg("-c")
                .arg(format!("http.sslCAInfo={}", ca.display()));
        }
        if let Some(store) = self.existing(CREDENTIALS_FILE) {
            git.arg("-c").arg(format!(
                "credential.helper=store --file={}",
                shell_quote(&store.display().to_string())
            ));
        }
        if let Some(helper) = &self.credential_helper {
            git.arg("-c").arg(format!("credential.helper={helper}"));
        }
        git
    }

    /// The `ssh` git runs (through a shell, hence the quoting).
    fn ssh_command(&self) -> String {
        let known_hosts = self.path(KNOWN_HOSTS_FILE);
        let mut ssh = format!(
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} \
             -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout={STALL_SECS} \
             -o ServerAliveInterval=10 -o ServerAliveCountMax=3",
            shell_quote(&known_hosts.display().to_string())
        );
        if let Some(key) = self.existing(DEPLOY_KEY_FILE) {
            ssh.push_str(&format!(
                " -o IdentitiesOnly=yes -i {}",
                shell_quote(&key.display().to_string())
            ));
        }
        ssh
    }

    /// Fetches `refspec` (`+refs/heads/B:refs/heads/B`) of `url` into the
    /// bare repository `git_dir`. A reachable remote without the branch is
    /// `Ok(false)` (the caller deletes its copy); any other failure is
    /// classified.
    pub fn fetch(&self, git_dir: &Path, url: &str, refspec: &str) -> Result<bool, FetchFailure> {
        let output = self
            .git()
            .arg("--git-dir")
            .arg(git_dir)
            .args([
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                "--",
            ])
            .arg(url)
            .arg(refspec)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| FetchFailure {
                code: ErrorCode::Git,
                message: format!("cannot run git: {e}"),
                hint: "install git on the controller's machine".into(),
            })?;
        if output.status.success() {
            return Ok(true);
        }
        let said = String::from_utf8_lossy(&output.stderr);
        if said.contains("couldn't find remote ref") {
            return Ok(false);
        }
        Err(failure(&said, url))
    }
}

/// What `vt fleet init` was given for reaching a remote repository; each
/// part becomes a file of `STATE/git/` ([`GitSetup::install`]).
#[derive(Clone, Default)]
pub struct GitSetup {
    /// HTTPS: a CA bundle file to trust for the Git host.
    pub ca: Option<PathBuf>,
    /// HTTPS: a user name and a token (or password).
    pub token: Option<(String, String)>,
    /// SSH: a private key file to present (default for an SSH repository:
    /// a new ed25519 deploy key).
    pub ssh_key: Option<PathBuf>,
    /// SSH: a known_hosts file of the Git host.
    pub known_hosts: Option<PathBuf>,
}

impl std::fmt::Debug for GitSetup {
    /// Never the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitSetup")
            .field("ca", &self.ca)
            .field("token", &self.token.as_ref().map(|(user, _)| (user, "***")))
            .field("ssh_key", &self.ssh_key)
            .field("known_hosts", &self.known_hosts)
            .finish()
    }
}

/// A `GitSetup` that cannot be installed.
#[derive(Debug, thiserror::Error)]
pub enum GitSetupError {
    /// A given file cannot be read, or one of `STATE/git/` written.
    #[error("cannot use {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The pieces do not fit the repository (a token for an SSH URL...).
    #[error("{0}")]
    Invalid(String),
    /// A file of `STATE/git/` cannot be written.
    #[error(transparent)]
    Write(#[from] vt_wire::WireError),
    /// `ssh-keygen` failed to make the deploy key.
    #[error("cannot make a deploy key with ssh-keygen: {0}")]
    Keygen(String),
}

/// Whether `url` is reached over SSH (`ssh://` or scp-like `user@host:path`).
pub fn is_ssh(url: &str) -> bool {
    url.starts_with("ssh://") || url.starts_with("git+ssh://") || scp_like(url)
}

/// `user@host:path` (git's scp-like SSH syntax): no scheme, a `:` before
/// any `/`, and a user part.
pub fn scp_like(url: &str) -> bool {
    if url.contains("://") {
        return false;
    }
    match url.split_once(':') {
        Some((before, _)) => before.contains('@') && !before.contains('/'),
        None => false,
    }
}

impl GitSetup {
    /// Writes the files of `STATE/git/` for the repository `url` (private,
    /// mode 0600). For an SSH repository without a given key, makes an
    /// ed25519 deploy key. Returns the public half of the SSH key in use, if
    /// any, for the operator to add to the repository's deploy keys.
    pub fn install(&self, state_dir: &Path, url: &str) -> Result<Option<String>, GitSetupError> {
        let access = GitAccess::in_state_dir(state_dir, None);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| GitSetupError::Io { path, source }
        };
        std::fs::create_dir_all(&access.dir).map_err(io(&access.dir))?;
        let ssh = is_ssh(url);
        let https = url.starts_with("https://");
        if self.token.is_some() && !https {
            return Err(GitSetupError::Invalid(format!(
                "a token is for an https:// repository; {url} is not one (SSH uses a deploy key)"
            )));
        }
        if (self.ssh_key.is_some() || self.known_hosts.is_some()) && !ssh {
            return Err(GitSetupError::Invalid(format!(
                "an SSH key and known hosts are for an ssh:// or user@host:path repository; {url} is not one"
            )));
        }
        if let Some(ca) = &self.ca {
            let pem = std::fs::read(ca).map_err(io(ca))?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(GitSetupError::Invalid(format!(
                    "{} holds no PEM certificate",
                    ca.display()
                )));
            }
            vt_wire::write_private(&access.path(CA_FILE), &pem)?;
        }
        if let Some((user, token)) = &self.token {
            let mut line = url::Url::parse(url)
                .map_err(|e| GitSetupError::Invalid(format!("{url} is not a URL: {e}")))?;
            line.set_path("");
            line.set_query(None);
            let bad = |_| GitSetupError::Invalid(format!("{url} cannot carry credentials"));
            line.set_username(user).map_err(bad)?;
            line.set_password(Some(token.trim())).map_err(bad)?;
            let text = format!("{}\n", line.as_str().trim_end_matches('/'));
            vt_wire::write_private(&access.path(CREDENTIALS_FILE), text.as_bytes())?;
        }
        if let Some(known) = &self.known_hosts {
            let text = std::fs::read(known).map_err(io(known))?;
            vt_wire::write_private(&access.path(KNOWN_HOSTS_FILE), &text)?;
        }
        if !ssh {
            return Ok(None);
        }
        let key = access.path(DEPLOY_KEY_FILE);
        match &self.ssh_key {
            Some(given) => {
                let text = std::fs::read(given).map_err(io(given))?;
                vt_wire::write_private(&key, &text)?;
            }
            None => keygen(&key)?,
        }
        public_key(&key).map(Some)
    }
}

/// A new ed25519 key without a passphrase at `key` (and `key.pub`).
fn keygen(key: &Path) -> Result<(), GitSetupError> {
    let output = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "vt-fleet-deploy-key",
            "-f",
        ])
        .arg(key)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| GitSetupError::Keygen(e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(GitSetupError::Keygen(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ))
    }
}

/// The public half of the private key at `key` (`ssh-keygen -y`).
fn public_key(key: &Path) -> Result<String, GitSetupError> {
    let output = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(key)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| GitSetupError::Keygen(e.to_string()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(GitSetupError::Keygen(format!(
            "{} is not a usable private key without a passphrase: {}",
            key.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// The failure git's `stderr` describes, about `url`.
fn failure(stderr: &str, url: &str) -> FetchFailure {
    let code = classify(stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
        .collect();
    let message = lines
        .iter()
        .rev()
        .take(3)
        .rev()
        .copied()
        .collect::<Vec<_>>()
        .join("; ")
        .replace(url, &super::git_source::redacted(url));
    let message = if message.is_empty() {
        "git fetch failed without a message".to_string()
    } else {
        message
    };
    let hint = match code {
        ErrorCode::GitAuth => format!(
            "give the fleet credentials the Git host accepts: an HTTPS token in STATE/{GIT_DIR}/{CREDENTIALS_FILE} \
             (`https://USER:TOKEN@HOST` lines) or a credential helper, or add the public half of \
             STATE/{GIT_DIR}/{DEPLOY_KEY_FILE} to the repository's deploy keys"
        ),
        ErrorCode::GitTls => format!(
            "the Git host's certificate is not trusted: put its CA bundle in STATE/{GIT_DIR}/{CA_FILE}"
        ),
        ErrorCode::GitHostKey => format!(
            "the SSH host key is unknown or changed: add the host's key to STATE/{GIT_DIR}/{KNOWN_HOSTS_FILE} \
             after checking its fingerprint (`ssh-keyscan -p PORT HOST`)"
        ),
        _ => "check the repository URL and that the Git host is reachable".to_string(),
    };
    FetchFailure {
        code,
        message,
        hint,
    }
}

/// What kind of failure git's `stderr` describes: host key first (ssh says
/// little else), then TLS, then credentials; anything else is `E_GIT`.
pub fn classify(stderr: &str) -> ErrorCode {
    let said = stderr.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| said.contains(n));
    if any(&[
        "host key verification failed",
        "remote host identification has changed",
        "host key is known",
    ]) {
        ErrorCode::GitHostKey
    } else if any(&[
        "ssl certificate problem",
        "server certificate verification failed",
        "certificate verify failed",
        "unable to get local issuer certificate",
        "self-signed certificate",
        "self signed certificate",
        "ssl: no alternative certificate subject name",
        "certificate has expired",
    ]) {
        ErrorCode::GitTls
    } else if any(&[
        "authentication failed",
        "permission denied (publickey",
        "could not read username",
        "could not read password",
        "terminal prompts disabled",
        "access denied",
        "returned error: 401",
        "returned error: 403",
        "invalid username or password",
    ]) {
        ErrorCode::GitAuth
    } else {
        ErrorCode::Git
    }
}

/// `text` in single quotes for `sh` (a `'` inside closes, escapes, reopens).
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_git_says_is_classified() {
        let cases = [
            ("Host key verification failed.\r\nfatal: Could not read from remote repository.", ErrorCode::GitHostKey),
            ("No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\nHost key verification failed.", ErrorCode::GitHostKey),
            ("fatal: unable to access 'https://127.0.0.1:8443/r.git/': SSL certificate problem: unable to get local issuer certificate", ErrorCode::GitTls),
            ("fatal: unable to access 'https://x/': server certificate verification failed. CAfile: none CRLfile: none", ErrorCode::GitTls),
            ("remote: Invalid username or password.\nfatal: Authentication failed for 'https://x/r.git/'", ErrorCode::GitAuth),
            ("fatal: could not read Username for 'https://x': terminal prompts disabled", ErrorCode::GitAuth),
            ("git@127.0.0.1: Permission denied (publickey,password).\nfatal: Could not read from remote repository.", ErrorCode::GitAuth),
            ("fatal: unable to access 'https://127.0.0.1:1/': Failed to connect to 127.0.0.1 port 1", ErrorCode::Git),
        ];
        for (said, code) in cases {
            assert_eq!(classify(said), code, "{said}");
        }
    }

    #[test]
    fn a_failure_keeps_gits_last_lines_without_credentials_and_names_the_file_to_fix() {
        let url = "https://ci:s3cret@git.example/r.git";
        let said = "hint: ignored\nremote: HTTP Basic: Access denied\nfatal: Authentication failed for 'https://ci:s3cret@git.example/r.git'\n";
        let failure = failure(said, url);
        assert_eq!(failure.code, ErrorCode::GitAuth);
        assert!(!failure.message.contains("s3cret"), "{}", failure.message);
        assert!(failure.message.contains("Authentication failed"));
        assert!(failure.hint.contains("git/credentials"), "{}", failure.hint);
    }

    #[test]
    fn ssh_urls_are_told_from_the_others() {
        for url in [
            "ssh://git@h:22/r.git",
            "git@github.com:acme/infra.git",
            "me@h:r",
        ] {
            assert!(is_ssh(url), "{url}");
        }
        for url in [
            "https://h/r.git",
            "/srv/r.git",
            "./a:b",
            "dir/x@y:z",
            "file:///r",
        ] {
            assert!(!is_ssh(url), "{url}");
        }
    }

    #[test]
    fn a_token_becomes_a_credential_line_for_its_host_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let setup = GitSetup {
            token: Some(("ci".into(), "t0k:en/\n".into())),
            ..GitSetup::default()
        };
        assert!(!format!("{setup:?}").contains("t0k"));
        let public = setup
            .install(dir.path(), "https://git.example:8443/acme/infra.git")
            .expect("install");
        assert_eq!(public, None);
        let line = std::fs::read_to_string(dir.path().join("git/credentials")).expect("read");
        assert_eq!(line, "https://ci:t0k%3Aen%2F@git.example:8443\n");
        let wrong = GitSetup {
            token: Some(("ci".into(), "t".into())),
            ..GitSetup::default()
        };
        assert!(matches!(
            wrong.install(dir.path(), "git@h:r.git"),
            Err(GitSetupError::Invalid(_))
        ));
    }

    #[test]
    fn paths_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
        let access = GitAccess::in_state_dir(Path::new("/state dir"), Some("secret-helper".into()));
        let ssh = access.ssh_command();
        assert!(
            ssh.contains("UserKnownHostsFile='/state dir/git/known_hosts'"),
            "{ssh}"
        );
        assert!(ssh.contains("StrictHostKeyChecking=yes"));
        assert_eq!(format!("{access:?}"), "GitAccess(/state dir/git)");
    }
}
