//! Pull requests through a forge's HTTP API: GitHub, and Gitea/Forgejo
//! (which share an API). The request is built apart from sending it, so
//! what is sent can be checked without a forge.

use crate::error::{CliError, ErrorCode, Exit};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The forges vt knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// github.com or GitHub Enterprise.
    GitHub,
    /// Gitea or Forgejo.
    Gitea,
}

/// Forge failures.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// `--forge` names no forge vt knows.
    #[error("unknown forge `{0}`: expected github, gitea or forgejo")]
    UnknownKind(String),
    /// No `--forge-repo`, and the remote's URL does not name one.
    #[error("cannot tell the repository on the forge from the remote URL `{0}`")]
    NoRepo(String),
    /// `--forge-repo` is not `OWNER/NAME`.
    #[error("`{0}` is not OWNER/NAME")]
    BadRepo(String),
    /// A Gitea forge without `--forge-url` and no host in the remote's URL.
    #[error("no API URL for the gitea forge")]
    NoUrl,
    /// No token.
    #[error("no token for the forge's API")]
    NoToken,
    /// The forge answered, refusing.
    #[error("the forge answered HTTP {status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The forge's message.
        message: String,
    },
    /// The forge cannot be reached.
    #[error("cannot reach the forge at {url}: {message}")]
    Unreachable {
        /// The request's URL.
        url: String,
        /// Why.
        message: String,
    },
    /// The forge accepted but its answer has no `html_url`.
    #[error("the forge's answer has no html_url: {0}")]
    BadAnswer(String),
    /// The CA bundle given for the forge cannot be used.
    #[error("cannot use the forge's CA bundle: {0}")]
    Trust(String),
}

impl ForgeError {
    /// Whether the request was never sent because the settings are incomplete.
    pub fn is_settings(&self) -> bool {
        !matches!(
            self,
            ForgeError::Refused { .. }
                | ForgeError::Unreachable { .. }
                | ForgeError::BadAnswer(_)
                | ForgeError::Trust(_)
        )
    }
}

impl From<ForgeError> for CliError {
    fn from(e: ForgeError) -> Self {
        let exit = if e.is_settings() {
            Exit::Usage
        } else {
            Exit::Failure
        };
        let hint = match &e {
            ForgeError::NoRepo(_) | ForgeError::BadRepo(_) => {
                "pass --forge-repo OWNER/NAME (or set VT_FORGE_REPO)"
            }
            ForgeError::NoUrl => "pass --forge-url https://HOST (or set VT_FORGE_URL)",
            ForgeError::NoToken => "pass --forge-token TOKEN (or set VT_FORGE_TOKEN)",
            ForgeError::UnknownKind(_) => "pass --forge github or --forge gitea",
            ForgeError::Trust(_) => "pass --forge-ca with a PEM file of the forge's CA",
            ForgeError::Unreachable { message, .. } if message.contains("certificate") => {
                "the forge's certificate is not trusted: pass --forge-ca with its CA bundle (PEM)"
            }
            _ => "check --forge-url and the token's permissions",
        };
        CliError::new(exit, ErrorCode::Forge, e.to_string()).hint(hint)
    }
}

/// How to reach the forge: the command line's `--forge*` flags.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// `github`, `gitea` or `forgejo`.
    pub kind: &'a str,
    /// The API's base URL.
    pub url: Option<&'a str>,
    /// `OWNER/NAME`.
    pub repo: Option<&'a str>,
    /// The API token.
    pub token: Option<&'a str>,
    /// A CA bundle to trust besides the system's roots (a private forge).
    pub ca: Option<&'a Path>,
}

/// A repository on a forge, as a remote's URL names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRepo {
    /// The forge's web address: `https://HOST[/PREFIX]`.
    pub web: String,
    /// Owner (user or organisation).
    pub owner: String,
    /// Repository name, without `.git`.
    pub name: String,
}

/// Reads `git@host:o/r.git`, `ssh://git@host[:port]/o/r.git` and
/// `http(s)://host/[prefix/]o/r[.git]`; `None` for anything else (local paths).
pub fn parse_remote(url: &str) -> Option<RemoteRepo> {
    let (scheme, host, path) = match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/')?;
            let host = authority.rsplit('@').next()?;
            let host = match scheme {
                "http" | "https" => host,
                _ => host.split(':').next()?,
            };
            (scheme, host, path)
        }
        None => {
            let (authority, path) = url.split_once(':')?;
            if authority.contains('/') || path.starts_with("//") {
                return None;
            }
            ("ssh", authority.rsplit('@').next()?, path)
        }
    };
    if !matches!(scheme, "http" | "https" | "ssh" | "git") || host.is_empty() {
        return None;
    }
    let web_scheme = if scheme == "http" { "http" } else { "https" };
    let parts: Vec<&str> = path
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let [prefix @ .., owner, name] = parts.as_slice() else {
        return None;
    };
    // Only http(s) URLs can carry a path prefix to the forge's web address.
    let prefix = if matches!(scheme, "http" | "https") {
        prefix.iter().map(|p| format!("/{p}")).collect::<String>()
    } else {
        String::new()
    };
    Some(RemoteRepo {
        web: format!("{web_scheme}://{host}{prefix}"),
        owner: owner.to_string(),
        name: name.to_string(),
    })
}

/// A pull request to open.
#[derive(Debug, Clone, Copy)]
pub struct PullRequest<'a> {
    /// Its title.
    pub title: &'a str,
    /// The branch with the change.
    pub head: &'a str,
    /// The branch to merge it into.
    pub base: &'a str,
    /// Its description.
    pub body: &'a str,
}

/// An HTTP POST, built but not sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Where to.
    pub url: String,
    /// Headers besides `Content-Type: application/json`.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Value,
}

/// A repository on a forge, with the token to use its API.
#[derive(Clone)]
pub struct Forge {
    kind: Kind,
    api: String,
    owner: String,
    name: String,
    token: String,
    ca: Option<PathBuf>,
}

impl std::fmt::Debug for Forge {
    /// Everything but the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forge")
            .field("kind", &self.kind)
            .field("api", &self.api)
            .field("repo", &format_args!("{}/{}", self.owner, self.name))
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl Forge {
    /// The forge from its settings; what they leave out comes from the
    /// remote's URL (`remote_url`): the repository and, for Gitea, the host.
    pub fn new(settings: Settings<'_>, remote_url: &str) -> Result<Forge, ForgeError> {
        let kind = match settings.kind.to_ascii_lowercase().as_str() {
            "github" => Kind::GitHub,
            "gitea" | "forgejo" => Kind::Gitea,
            other => return Err(ForgeError::UnknownKind(other.to_string())),
        };
        let remote = parse_remote(remote_url);
        let (owner, name) = match settings.repo {
            Some(repo) => match repo.split_once('/') {
                Some((o, n)) if !o.is_empty() && !n.is_empty() && !n.contains('/') => {
                    (o.to_string(), n.to_string())
                }
                _ => return Err(ForgeError::BadRepo(repo.to_string())),
            },
            None => remote
                .as_ref()
                .map(|r| (r.owner.clone(), r.name.clone()))
                .ok_or_else(|| ForgeError::NoRepo(remote_url.to_string()))?,
        };
        let api = match (settings.url, kind) {
            (Some(url), _) => url.to_string(),
            (None, Kind::GitHub) => "https://api.github.com".to_string(),
            (None, Kind::Gitea) => remote.map(|r| r.web).ok_or(ForgeError::NoUrl)?,
        };
        let token = settings
            .token
            .filter(|t| !t.is_empty())
            .ok_or(ForgeError::NoToken)?;
        Ok(Forge {
            kind,
            api: api.trim_end_matches('/').to_string(),
            owner,
            name,
            token: token.to_string(),
            ca: settings.ca.map(Path::to_path_buf),
        })
    }

    /// The request that opens `pr`.
    pub fn pull_request(&self, pr: &PullRequest<'_>) -> Request {
        let Forge {
            api, owner, name, ..
        } = self;
        let (url, auth) = match self.kind {
            Kind::GitHub => (
                format!("{api}/repos/{owner}/{name}/pulls"),
                format!("Bearer {}", self.token),
            ),
            Kind::Gitea => (
                format!("{api}/api/v1/repos/{owner}/{name}/pulls"),
                format!("token {}", self.token),
            ),
        };
        let mut headers = vec![("Authorization", auth), ("User-Agent", "vt".to_string())];
        if self.kind == Kind::GitHub {
            headers.push(("Accept", "application/vnd.github+json".to_string()));
        }
        Request {
            url,
            headers,
            body: json!({"title": pr.title, "head": pr.head, "base": pr.base, "body": pr.body}),
        }
    }

    /// Opens `pr`; returns its web address (`html_url`).
    pub fn open_pull_request(&self, pr: &PullRequest<'_>) -> Result<String, ForgeError> {
        let request = self.pull_request(pr);
        let _span = tracing::debug_span!("forge", url = %request.url).entered();
        let tls = vt_wire::trust::client_config(self.ca.as_deref())
            .map_err(|e| ForgeError::Trust(vt_wire::error_chain(&e)))?;
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .tls_config(tls)
            .build();
        let mut call = agent.post(&request.url);
        for (name, value) in &request.headers {
            call = call.set(name, value);
        }
        let answer: Value = match call.send_json(&request.body) {
            Ok(response) => response.into_json().unwrap_or_default(),
            Err(ureq::Error::Status(status, response)) => {
                let reason = response.status_text().to_string();
                let body: Value = response.into_json().unwrap_or_default();
                return Err(ForgeError::Refused {
                    status,
                    message: refusal(&body).unwrap_or(reason),
                });
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(ForgeError::Unreachable {
                    url: request.url,
                    message: t.to_string(),
                })
            }
        };
        match answer["html_url"].as_str() {
            Some(url) => Ok(url.to_string()),
            None => Err(ForgeError::BadAnswer(answer.to_string())),
        }
    }
}

/// The forge's reason for refusing: `message`, and the `errors` GitHub details.
fn refusal(body: &Value) -> Option<String> {
    let message = body["message"].as_str()?;
    let details: Vec<&str> = body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["message"].as_str())
                .collect()
        })
        .unwrap_or_default();
    Some(if details.is_empty() {
        message.to_string()
    } else {
        format!("{message} ({})", details.join("; "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(web: &str, owner: &str, name: &str) -> Option<RemoteRepo> {
        Some(RemoteRepo {
            web: web.into(),
            owner: owner.into(),
            name: name.into(),
        })
    }

    #[test]
    fn remote_urls_name_the_repository() {
        let gh = repo("https://github.com", "o", "r");
        assert_eq!(parse_remote("git@github.com:o/r.git"), gh);
        assert_eq!(parse_remote("git@github.com:o/r"), gh);
        assert_eq!(parse_remote("https://github.com/o/r.git"), gh);
        assert_eq!(parse_remote("https://github.com/o/r"), gh);
        assert_eq!(parse_remote("https://user:pw@github.com/o/r/"), gh);
        assert_eq!(
            parse_remote("ssh://git@git.example.com:2222/o/r.git"),
            repo("https://git.example.com", "o", "r")
        );
        assert_eq!(
            parse_remote("http://127.0.0.1:3000/gitea/o/r.git"),
            repo("http://127.0.0.1:3000/gitea", "o", "r")
        );
        assert_eq!(parse_remote("/srv/git/origin.git"), None);
        assert_eq!(parse_remote("file:///srv/git/o/r.git"), None);
        assert_eq!(parse_remote("https://github.com/r"), None);
    }

    fn settings<'a>(kind: &'a str, url: Option<&'a str>, repo: Option<&'a str>) -> Settings<'a> {
        Settings {
            kind,
            url,
            repo,
            token: Some("T"),
            ca: None,
        }
    }

    const PR: PullRequest<'static> = PullRequest {
        title: "rollback",
        head: "vt/rollback/web-prod-to-1",
        base: "main",
        body: "why",
    };

    #[test]
    fn github_requests() {
        let forge =
            Forge::new(settings("github", None, None), "git@github.com:o/r.git").expect("forge");
        let request = forge.pull_request(&PR);
        assert_eq!(request.url, "https://api.github.com/repos/o/r/pulls");
        assert_eq!(
            request.headers,
            [
                ("Authorization", "Bearer T".to_string()),
                ("User-Agent", "vt".to_string()),
                ("Accept", "application/vnd.github+json".to_string()),
            ]
        );
        assert_eq!(
            request.body,
            json!({"title": "rollback", "head": "vt/rollback/web-prod-to-1", "base": "main", "body": "why"})
        );
    }

    #[test]
    fn gitea_requests_default_to_the_remotes_host() {
        let forge = Forge::new(
            settings("forgejo", None, Some("acme/config")),
            "https://git.example.com/o/r.git",
        )
        .expect("forge");
        let request = forge.pull_request(&PR);
        assert_eq!(
            request.url,
            "https://git.example.com/api/v1/repos/acme/config/pulls"
        );
        assert_eq!(request.headers[0], ("Authorization", "token T".to_string()));
        let forge = Forge::new(
            settings("gitea", Some("http://127.0.0.1:3000/"), None),
            "git@h:o/r.git",
        )
        .expect("forge");
        assert_eq!(
            forge.pull_request(&PR).url,
            "http://127.0.0.1:3000/api/v1/repos/o/r/pulls"
        );
    }

    #[test]
    fn incomplete_settings_are_refused_before_any_request() {
        let local = "/srv/origin.git";
        for (settings, want) in [
            (settings("gitlab", None, None), "unknown forge"),
            (settings("github", None, None), "cannot tell"),
            (settings("github", None, Some("nope")), "not OWNER/NAME"),
            (settings("gitea", None, Some("o/r")), "no API URL"),
        ] {
            let e = Forge::new(settings, local).expect_err("refused");
            assert!(e.is_settings());
            assert!(e.to_string().contains(want), "{e}");
        }
        let no_token = Settings {
            token: None,
            ..settings("github", None, Some("o/r"))
        };
        assert!(matches!(
            Forge::new(no_token, local),
            Err(ForgeError::NoToken)
        ));
    }

    #[test]
    fn refusals_carry_the_forges_reasons() {
        let body = json!({"message": "Validation Failed", "errors": [{"message": "A pull request already exists"}]});
        assert_eq!(
            refusal(&body).as_deref(),
            Some("Validation Failed (A pull request already exists)")
        );
        assert_eq!(
            refusal(&json!({"message": "Bad credentials"})).as_deref(),
            Some("Bad credentials")
        );
        assert_eq!(refusal(&json!("<html>")), None);
    }
}
