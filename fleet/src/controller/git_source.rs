//! Where commits come from: a local repository (watched) or a remote one
//! (fetched into a bare mirror in the state dir), read from git objects,
//! never a checkout; or, for `vt dev`, a working tree itself (watched),
//! uncommitted changes included, named by a hash of its content.
//!
//! Between refreshes a git source remembers the tracked branch's head and
//! whether it is missing ([`BranchState`], kept in the state directory), so
//! that a refresh can tell what the branch did: moved to a commit that does
//! not contain the previous head (a force-push or a reset), disappeared, or
//! came back ([`BranchChange`]).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vt_plan::events::{kind, Event};
use vt_plan::releases::CommitInfo;
use vt_plan::Millis;
use vt_repo::{Snapshot, SourceError};
use vt_wire::codes::ErrorCode;

use super::git_fetch::{FetchFailure, GitAccess};

/// How `fleet.json`'s `repo` names a working tree: `worktree:/abs/path`.
pub const WORKTREE_PREFIX: &str = "worktree:";

/// Image pins of a working-tree source, in the controller's state directory:
/// `{"REF": "sha256:..."}`. `vt dev` writes it after pushing an image it
/// built; every `REF` in the layout files is then read as `REF@sha256:...`,
/// so a rebuilt image is a new release, as a pinned digest in a commit is.
pub const IMAGE_PINS_FILE: &str = "image-pins.json";

/// The synthetic commit ID of a working tree's content starts with this.
pub const WORKTREE_ID_PREFIX: &str = "wt-";

/// The file in the state directory keeping the tracked branch's last head
/// and since when it is missing ([`BranchState`]), across restarts.
pub const BRANCH_STATE_FILE: &str = "branch-state.json";

/// How long a working tree is left to settle after a change is noticed
/// before it is read (an editor's write is often several events).
const WORKTREE_SETTLE: Duration = Duration::from_millis(50);

/// Git source failures.
#[derive(Debug, thiserror::Error)]
pub enum GitSourceError {
    /// The local repository cannot be opened.
    #[error("cannot open the repository at {path}")]
    Open {
        /// The path.
        path: PathBuf,
        /// What git said.
        #[source]
        source: git2::Error,
    },
    /// The remote cannot be fetched (unreachable, credentials refused, an
    /// untrusted certificate or host key).
    #[error("cannot fetch {url}: {failure}")]
    Fetch {
        /// The remote, credentials redacted.
        url: String,
        /// What failed, classified.
        failure: FetchFailure,
    },
    /// A working tree's content was asked for by an ID it no longer has.
    #[error("the working tree no longer has content {0}")]
    Gone(String),
    /// The image pins file cannot be read.
    #[error("cannot read the image pins {path}")]
    Pins {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading the commit failed.
    #[error("cannot read the commit")]
    Read(#[from] SourceError),
    /// The branch state file cannot be written.
    #[error("cannot write the branch state {path}")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Any other git failure.
    #[error("git failed")]
    Git(#[from] git2::Error),
}

/// A local path, a remote URL, or a working tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A repository on this machine, watched for ref changes.
    Local(PathBuf),
    /// A remote (`https://`, `ssh://`, `user@host:path`, `git://`,
    /// `file://`), fetched on an interval.
    Remote(String),
    /// The files of a directory as they are now, uncommitted changes
    /// included, watched for changes (`vt dev`).
    WorkingTree(PathBuf),
}

impl Location {
    /// `worktree:PATH` is a working tree; `file://`, `git://`, `ssh://`,
    /// `http(s)://` URLs and scp-like `user@host:path` are remote; anything
    /// else is a local path.
    pub fn parse(text: &str) -> Location {
        if let Some(path) = text.strip_prefix(WORKTREE_PREFIX) {
            Location::WorkingTree(PathBuf::from(path))
        } else if text.contains("://") || super::git_fetch::scp_like(text) {
            Location::Remote(text.to_string())
        } else {
            Location::Local(PathBuf::from(text))
        }
    }
}

impl std::fmt::Display for Location {
    /// As `fleet.json` names it (a remote URL as given, credentials included:
    /// see [`redacted`] before showing it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::Remote(url) => f.write_str(url),
            Location::WorkingTree(path) => write!(f, "{WORKTREE_PREFIX}{}", path.display()),
        }
    }
}

/// A location for people: the user information of a URL
/// (`https://user:token@host/...`) replaced by `***`.
pub fn redacted(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else {
        return location.to_string();
    };
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{}", &rest[authority.len()..]),
        None => location.to_string(),
    }
}

/// What a git source remembers of its branch between refreshes (and, in
/// [`BRANCH_STATE_FILE`], across restarts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchState {
    /// The location and branch it is about (`LOCATION#BRANCH`): a state of
    /// another source is not used.
    pub source: String,
    /// The head the last refresh found; kept while the branch is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Since when the branch is missing, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_since: Option<Millis>,
}

/// What the tracked branch did since the previous refresh, besides moving
/// forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BranchChange {
    /// The branch moved to a commit that does not contain the previous head.
    Rewound {
        /// The previous head.
        from: String,
        /// The new head.
        to: String,
        /// The newest commit both contain, if any.
        base: Option<String>,
        /// Commits reachable from the previous head and no longer from the
        /// branch; `None` when the previous head is no longer in the
        /// repository (garbage-collected).
        dropped: Option<usize>,
    },
    /// The branch was found missing (the first refresh that finds it so).
    Missing {
        /// Its last head, if it ever had one.
        last_head: Option<String>,
    },
    /// The branch exists again after missing.
    Restored {
        /// Its head now.
        head: String,
        /// Since when it was missing.
        missing_since: Millis,
    },
}

/// The first 12 hex digits of a commit ID.
fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

impl BranchChange {
    /// The event recording it (`commit.rewound`, `branch.missing`,
    /// `branch.restored`), at `now`.
    pub fn event(&self, branch: &str, now: Millis) -> Event {
        match self {
            BranchChange::Rewound {
                from,
                to,
                base,
                dropped,
            } => {
                let lost = match dropped {
                    Some(n) => format!("{n} commit(s) no longer on the branch"),
                    None => "the previous head is no longer in the repository".to_string(),
                };
                Event::new(
                    kind::COMMIT_REWOUND,
                    now,
                    format!(
                        "branch {branch} was rewound from {} to {} (force-push or reset): {lost}",
                        short(from),
                        short(to)
                    ),
                )
                .fields(serde_json::json!({
                    "branch": branch, "from": from, "to": to, "base": base, "dropped": dropped,
                }))
            }
            BranchChange::Missing { last_head } => {
                let message = match last_head {
                    Some(head) => format!(
                        "branch {branch} is missing (deleted, last at {}): nothing deploys until \
                         it returns; the last good commit keeps running",
                        short(head)
                    ),
                    None => {
                        format!("branch {branch} does not exist yet: nothing deploys until it does")
                    }
                };
                Event::new(kind::BRANCH_MISSING, now, message).fields(serde_json::json!({
                    "branch": branch, "last_head": last_head,
                }))
            }
            BranchChange::Restored {
                head,
                missing_since,
            } => Event::new(
                kind::BRANCH_RESTORED,
                now,
                format!(
                    "branch {branch} is back at {} after {} s missing",
                    short(head),
                    now.saturating_sub(*missing_since) / 1000
                ),
            )
            .fields(serde_json::json!({
                "branch": branch, "head": head, "missing_since": missing_since,
            })),
        }
    }
}

/// What a refresh found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    /// The branch's head commit; `None` while the branch is missing.
    pub head: Option<CommitInfo>,
    /// What the branch did since the previous refresh, in order.
    pub changes: Vec<BranchChange>,
}

/// What a source reads from.
enum Backend {
    /// Git objects: a local repository or the mirror of a remote.
    Git(git2::Repository),
    /// A working tree, with the content read last.
    Tree {
        /// The root.
        root: PathBuf,
        /// The pins file.
        pins: PathBuf,
        /// The last content read: its commit info and snapshot.
        last: Option<(CommitInfo, Snapshot)>,
    },
}

/// The tracked branch of a repository, or a working tree.
pub struct GitSource {
    location: Location,
    branch: String,
    backend: Backend,
    /// The branch as the last refresh left it.
    state: BranchState,
    /// Where `state` is kept (none for a working tree).
    state_file: Option<PathBuf>,
    /// `state` as last read from or written to `state_file`.
    saved: BranchState,
    /// What a remote's fetch presents and trusts.
    access: GitAccess,
}

impl std::fmt::Debug for GitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GitSource({:?}, {})", self.location, self.branch)
    }
}

impl GitSource {
    /// Opens the source; a remote is mirrored into `state_dir/mirror.git`;
    /// a working tree's image pins are read from `state_dir`. What the last
    /// run knew of the branch is read from [`BRANCH_STATE_FILE`] (an
    /// unreadable file, or one about another source, is a fresh start).
    pub fn open(
        location: Location,
        branch: &str,
        state_dir: &Path,
    ) -> Result<GitSource, GitSourceError> {
        let backend = match &location {
            Location::Local(path) => {
                Backend::Git(git2::Repository::open(path).map_err(|source| {
                    GitSourceError::Open {
                        path: path.clone(),
                        source,
                    }
                })?)
            }
            Location::Remote(_) => {
                let mirror = state_dir.join("mirror.git");
                Backend::Git(match git2::Repository::open_bare(&mirror) {
                    Ok(repo) => repo,
                    Err(_) => git2::Repository::init_bare(&mirror)?,
                })
            }
            Location::WorkingTree(root) => {
                if !root.is_dir() {
                    return Err(GitSourceError::Read(SourceError::Io {
                        path: root.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "no such directory",
                        ),
                    }));
                }
                Backend::Tree {
                    root: root.clone(),
                    pins: state_dir.join(IMAGE_PINS_FILE),
                    last: None,
                }
            }
        };
        let key = format!("{location}#{branch}");
        let state_file = match backend {
            Backend::Git(_) => Some(state_dir.join(BRANCH_STATE_FILE)),
            Backend::Tree { .. } => None,
        };
        let state = state_file
            .as_ref()
            .and_then(|file| std::fs::read(file).ok())
            .and_then(|bytes| serde_json::from_slice::<BranchState>(&bytes).ok())
            .filter(|state| state.source == key)
            .unwrap_or(BranchState {
                source: key,
                ..BranchState::default()
            });
        Ok(GitSource {
            location,
            branch: branch.to_string(),
            backend,
            saved: state.clone(),
            state,
            state_file,
            access: GitAccess::in_state_dir(state_dir, None),
        })
    }

    /// Fetches with an operator's credential helper too (`fleet.json`'s
    /// `git_credential_helper`), besides the files of `STATE/git/`.
    pub fn with_credential_helper(mut self, helper: Option<String>) -> GitSource {
        self.access.credential_helper = helper;
        self
    }

    /// Where it reads from.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The tracked branch.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// What it knows of the branch since the last refresh.
    pub fn state(&self) -> &BranchState {
        &self.state
    }

    /// Writes [`BranchState`] to the state directory if it changed (a
    /// temporary file, then a rename), so a restarted controller neither
    /// repeats `branch.missing` nor misses a rewind that happened while it
    /// was down.
    pub fn save_state(&mut self) -> Result<(), GitSourceError> {
        let Some(file) = &self.state_file else {
            return Ok(());
        };
        if self.state == self.saved {
            return Ok(());
        }
        let failed = |source| GitSourceError::State {
            path: file.clone(),
            source,
        };
        let bytes =
            serde_json::to_vec_pretty(&self.state).map_err(|e| failed(std::io::Error::other(e)))?;
        let temp = file.with_extension("json.tmp");
        std::fs::write(&temp, bytes).map_err(failed)?;
        std::fs::rename(&temp, file).map_err(failed)?;
        self.saved = self.state.clone();
        Ok(())
    }

    /// Paths whose changes mean the source may have changed (local sources
    /// only); the first is watched recursively, the others not.
    pub fn watch_paths(&self) -> Vec<PathBuf> {
        match &self.backend {
            Backend::Git(_) if self.is_remote() => Vec::new(),
            Backend::Git(repo) => {
                let git_dir = repo.path();
                vec![
                    git_dir.join("refs").join("heads"),
                    git_dir.join("packed-refs"),
                    git_dir.to_path_buf(),
                ]
            }
            // The layout is vt.yaml and orgs/: the root itself is watched
            // without recursion, so `.git`, `.vt` and the rest stay quiet.
            Backend::Tree { root, .. } => vec![root.join("orgs"), root.clone()],
        }
    }

    /// How long to wait after a watched path changed before reading.
    pub fn settle_delay(&self) -> Duration {
        match self.backend {
            Backend::Git(_) => Duration::ZERO,
            Backend::Tree { .. } => WORKTREE_SETTLE,
        }
    }

    /// Whether this is a remote that must be fetched.
    pub fn is_remote(&self) -> bool {
        matches!(self.location, Location::Remote(_))
    }

    /// Fetches a remote (no-op for a local repository), then returns the
    /// branch's head commit, or none while the branch is missing, and what
    /// the branch did since the previous refresh; for a working tree, reads
    /// it and returns its content's synthetic commit ([`worktree_commit`]).
    ///
    /// An unreachable remote is an error; a reachable one without the
    /// branch is a missing branch (and the mirror's copy of it is deleted).
    pub fn refresh(&mut self, now: Millis) -> Result<Refresh, GitSourceError> {
        let repo = match &mut self.backend {
            Backend::Git(repo) => repo,
            Backend::Tree { root, pins, last } => {
                let snapshot = pinned(Snapshot::from_dir(root)?, &read_pins(pins)?);
                let id = content_id(&snapshot);
                if let Some((commit, _)) = last.as_ref().filter(|(c, _)| c.sha == id) {
                    return Ok(Refresh {
                        head: Some(commit.clone()),
                        changes: Vec::new(),
                    });
                }
                let commit = worktree_commit(root, id, now);
                *last = Some((commit.clone(), snapshot));
                // For `vt status` only: content IDs are never compared.
                self.state.head = Some(commit.sha.clone());
                return Ok(Refresh {
                    head: Some(commit),
                    changes: Vec::new(),
                });
            }
        };
        let name = format!("refs/heads/{}", self.branch);
        if let Location::Remote(url) = &self.location {
            fetch(repo, &self.access, url, &name)?;
        }
        let found = match repo.find_reference(&name) {
            Ok(reference) => Some(reference.peel_to_commit()?),
            Err(e) if e.code() == git2::ErrorCode::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let mut changes = Vec::new();
        let Some(commit) = found else {
            if self.state.missing_since.is_none() {
                self.state.missing_since = Some(now);
                changes.push(BranchChange::Missing {
                    last_head: self.state.head.clone(),
                });
            }
            return Ok(Refresh {
                head: None,
                changes,
            });
        };
        let sha = commit.id().to_string();
        if let Some(missing_since) = self.state.missing_since {
            changes.push(BranchChange::Restored {
                head: sha.clone(),
                missing_since,
            });
        }
        if let Some(previous) = self.state.head.as_deref().filter(|p| *p != sha) {
            changes.extend(rewind(repo, previous, commit.id())?);
        }
        // Only once nothing can fail: a failed refresh changes nothing.
        self.state.missing_since = None;
        self.state.head = Some(sha.clone());
        let author = commit.author();
        Ok(Refresh {
            head: Some(CommitInfo {
                sha,
                author: format!(
                    "{} <{}>",
                    author.name().unwrap_or("?"),
                    author.email().unwrap_or("?")
                ),
                message: commit.summary().unwrap_or_default().to_string(),
                time: u64::try_from(commit.time().seconds()).unwrap_or(0) * 1000,
            }),
            changes,
        })
    }

    /// The layout files at `sha` (for a working tree: as last read, if
    /// `sha` names that content).
    pub fn snapshot(&self, sha: &str) -> Result<Snapshot, GitSourceError> {
        match &self.backend {
            Backend::Git(repo) => {
                let oid = git2::Oid::from_str(sha)?;
                let commit = repo.find_commit(oid)?;
                Ok(Snapshot::from_commit(repo, &commit, &self.branch)?)
            }
            Backend::Tree { last, .. } => last
                .as_ref()
                .filter(|(c, _)| c.sha == sha)
                .map(|(_, s)| s.clone())
                .ok_or_else(|| GitSourceError::Gone(sha.to_string())),
        }
    }
}

/// Fetches `name` (`refs/heads/BRANCH`) of `url` into the same ref of the
/// mirror, forced (the remote's branch is the truth, rewinds included), and
/// pruned: a branch the remote no longer has is deleted from the mirror too
/// (the forced refspec alone would keep the stale copy, hiding the deletion).
/// An unreachable remote, or one that refuses us, is [`GitSourceError::Fetch`].
fn fetch(
    repo: &git2::Repository,
    access: &GitAccess,
    url: &str,
    name: &str,
) -> Result<(), GitSourceError> {
    let found = access
        .fetch(repo.path(), url, &format!("+{name}:{name}"))
        .map_err(|failure| GitSourceError::Fetch {
            url: redacted(url),
            failure,
        })?;
    if !found {
        match repo.find_reference(name) {
            Ok(mut stale) => stale.delete()?,
            Err(e) if e.code() == git2::ErrorCode::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl GitSourceError {
    /// The stable code of this failure (`E_GIT_AUTH`, `E_GIT_TLS`,
    /// `E_GIT_HOST_KEY` for fetches that say so; `E_GIT` otherwise).
    pub fn code(&self) -> ErrorCode {
        match self {
            GitSourceError::Fetch { failure, .. } => failure.code.clone(),
            _ => ErrorCode::Git,
        }
    }
}

/// Whether the branch moving from `previous` to `now` is a rewind: `now`
/// does not contain `previous`. A previous head that is no longer in the
/// repository is not contained either; one that is not a commit ID at all
/// (a working tree's content ID) says nothing.
fn rewind(
    repo: &git2::Repository,
    previous: &str,
    now: git2::Oid,
) -> Result<Option<BranchChange>, GitSourceError> {
    let Ok(old) = git2::Oid::from_str(previous) else {
        return Ok(None);
    };
    let change = |base: Option<git2::Oid>, dropped| BranchChange::Rewound {
        from: previous.to_string(),
        to: now.to_string(),
        base: base.map(|b| b.to_string()),
        dropped,
    };
    if repo.find_commit(old).is_err() {
        return Ok(Some(change(None, None)));
    }
    if repo.graph_descendant_of(now, old)? {
        return Ok(None);
    }
    let base = match repo.merge_base(now, old) {
        Ok(base) => Some(base),
        Err(e) if e.code() == git2::ErrorCode::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let mut walk = repo.revwalk()?;
    walk.push(old)?;
    walk.hide(now)?;
    let dropped = walk.collect::<Result<Vec<_>, _>>()?.len();
    Ok(Some(change(base, Some(dropped))))
}

/// Reads the pins file; none is no pins.
fn read_pins(path: &Path) -> Result<BTreeMap<String, String>, GitSourceError> {
    let bad = |source| GitSourceError::Pins {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| bad(std::io::Error::other(e))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(bad(e)),
    }
}

/// `snapshot` with every whole-word occurrence of a pinned reference
/// followed by `@digest`. A reference ends at whitespace, a quote, a comma,
/// a bracket or the end of the text; one already pinned is left alone.
fn pinned(mut snapshot: Snapshot, pins: &BTreeMap<String, String>) -> Snapshot {
    if pins.is_empty() {
        return snapshot;
    }
    let ends = |c: Option<char>| {
        c.is_none_or(|c| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ']' | '}' | '#'))
    };
    for bytes in snapshot.files.values_mut() {
        let Ok(text) = std::str::from_utf8(bytes) else {
            continue;
        };
        let mut out = text.to_string();
        for (reference, digest) in pins {
            let mut result = String::with_capacity(out.len());
            let mut rest = out.as_str();
            while let Some(at) = rest.find(reference.as_str()) {
                let end = at + reference.len();
                let before = rest[..at].chars().next_back();
                result.push_str(&rest[..end]);
                if ends(rest[end..].chars().next())
                    && before.is_none_or(|c| {
                        c.is_whitespace() || matches!(c, '"' | '\'' | ':' | '[' | ',')
                    })
                {
                    result.push('@');
                    result.push_str(digest);
                }
                rest = &rest[end..];
            }
            result.push_str(rest);
            out = result;
        }
        *bytes = out.into_bytes();
    }
    snapshot
}

/// The synthetic commit ID of a snapshot's content: `wt-` and 17 hex
/// digits of the SHA-256 of its paths and contents. The same content always
/// has the same ID, so an unchanged tree makes no new release.
fn content_id(snapshot: &Snapshot) -> String {
    let mut hash = Sha256::new();
    for (path, bytes) in &snapshot.files {
        hash.update((path.len() as u64).to_le_bytes());
        hash.update(path.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    }
    let hex = hex::encode(hash.finalize());
    format!("{WORKTREE_ID_PREFIX}{}", &hex[..17])
}

/// The commit a working tree's content stands for: its ID, the author from
/// git's configuration (the repository's, else the user's), if any, and `now`.
fn worktree_commit(root: &Path, id: String, now: vt_plan::Millis) -> CommitInfo {
    let config = git2::Repository::discover(root)
        .and_then(|r| r.config())
        .or_else(|_| git2::Config::open_default());
    let get = |key: &str| config.as_ref().ok().and_then(|c| c.get_string(key).ok());
    let author = match (get("user.name"), get("user.email")) {
        (Some(name), Some(email)) => format!("{name} <{email}>"),
        (Some(name), None) => name,
        _ => "working tree".to_string(),
    };
    CommitInfo {
        sha: id,
        author,
        message: "working tree (uncommitted changes included)".to_string(),
        time: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head a refresh found, which must exist.
    fn head(source: &mut GitSource, now: Millis) -> (CommitInfo, Vec<BranchChange>) {
        let refresh = source.refresh(now).expect("refresh");
        (refresh.head.expect("the branch exists"), refresh.changes)
    }

    /// A commit on top of `parent` (a file `notes.txt` saying `message`),
    /// set as `main`'s head whether or not that is a fast-forward.
    fn commit_on(repo: &git2::Repository, parent: git2::Oid, message: &str) -> git2::Oid {
        let parent = repo.find_commit(parent).expect("parent");
        let blob = repo.blob(message.as_bytes()).expect("blob");
        let mut tree = repo
            .treebuilder(Some(&parent.tree().expect("tree")))
            .expect("treebuilder");
        tree.insert("notes.txt", blob, 0o100644).expect("insert");
        let tree = repo.find_tree(tree.write().expect("tree")).expect("tree");
        let sig = git2::Signature::new("t", "t@t", &git2::Time::new(0, 0)).expect("signature");
        let oid = repo
            .commit(None, &sig, &sig, message, &tree, &[&parent])
            .expect("commit");
        set_main(repo, oid);
        oid
    }

    /// Points `main` at `oid` (a push, a force-push, a reset).
    fn set_main(repo: &git2::Repository, oid: git2::Oid) {
        repo.reference("refs/heads/main", oid, true, "test")
            .expect("set main");
    }

    /// `main`'s head.
    fn main_of(repo: &git2::Repository) -> git2::Oid {
        repo.refname_to_id("refs/heads/main").expect("main")
    }

    fn delete_main(repo: &git2::Repository) {
        repo.find_reference("refs/heads/main")
            .expect("main")
            .delete()
            .expect("delete main");
    }

    #[test]
    fn reads_the_branch_head_locally_and_through_a_mirror() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo_dir = dir.path().join("repo");
        vt_repo::write::init(&repo_dir).expect("init");
        let mut local =
            GitSource::open(Location::Local(repo_dir.clone()), "main", dir.path()).expect("open");
        let (first, changes) = head(&mut local, 0);
        assert_eq!(changes, []);
        assert_eq!(first.message, "vt: initialize desired-state repository");
        assert!(local
            .snapshot(&first.sha)
            .expect("snapshot")
            .files
            .contains_key("vt.yaml"));

        let url = format!("file://{}", repo_dir.display());
        let mirror_state = dir.path().join("remote-state");
        let mut remote =
            GitSource::open(Location::parse(&url), "main", &mirror_state).expect("open remote");
        assert_eq!(head(&mut remote, 0).0.sha, first.sha);
        assert!(matches!(
            GitSource::open(Location::Local(dir.path().join("nope")), "main", dir.path()),
            Err(GitSourceError::Open { .. })
        ));
        // A branch that never existed is missing (not an error), once.
        let mut wrong =
            GitSource::open(Location::Local(repo_dir), "release", dir.path()).expect("open");
        let refresh = wrong.refresh(5).expect("refresh");
        assert_eq!(refresh.head, None);
        assert_eq!(refresh.changes, [BranchChange::Missing { last_head: None }]);
        assert_eq!(wrong.state().missing_since, Some(5));
        assert_eq!(wrong.refresh(6).expect("again").changes, []);
        let event = refresh.changes[0].event("release", 5);
        assert_eq!(event.kind, kind::BRANCH_MISSING);
        assert!(
            event.message.contains("does not exist yet"),
            "{}",
            event.message
        );
    }

    #[test]
    fn a_rewind_is_told_from_a_fast_forward() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("repo");
        vt_repo::write::init(&root).expect("init");
        let repo = git2::Repository::open(&root).expect("open");
        let mut source =
            GitSource::open(Location::Local(root.clone()), "main", dir.path()).expect("open");
        let c0 = main_of(&repo);
        assert_eq!(head(&mut source, 1).1, []);

        // Two pushes seen at once: a fast-forward, no change to report.
        let c1 = commit_on(&repo, c0, "one");
        let c2 = commit_on(&repo, c1, "two");
        let (seen, changes) = head(&mut source, 2);
        assert_eq!((seen.sha, changes), (c2.to_string(), vec![]));

        // A force-push back to the first commit drops two.
        set_main(&repo, c0);
        let (seen, changes) = head(&mut source, 3);
        assert_eq!(seen.sha, c0.to_string());
        let rewound = BranchChange::Rewound {
            from: c2.to_string(),
            to: c0.to_string(),
            base: Some(c0.to_string()),
            dropped: Some(2),
        };
        assert_eq!(changes, std::slice::from_ref(&rewound));
        let event = rewound.event("main", 3);
        assert_eq!(event.kind, kind::COMMIT_REWOUND);
        assert_eq!(
            event.message,
            format!(
                "branch main was rewound from {} to {} (force-push or reset): 2 commit(s) no \
                 longer on the branch",
                &c2.to_string()[..12],
                &c0.to_string()[..12]
            )
        );
        assert_eq!(event.fields["dropped"], 2);
        assert_eq!(event.fields["from"], c2.to_string());
        assert_eq!(head(&mut source, 4).1, [], "told once");

        // A rewritten commit (amend and force-push): a sibling of the old head.
        let c3 = commit_on(&repo, c0, "three");
        assert_eq!(head(&mut source, 5).1, []);
        let c3b = commit_on(&repo, c0, "three, amended");
        assert_eq!(
            head(&mut source, 6).1,
            [BranchChange::Rewound {
                from: c3.to_string(),
                to: c3b.to_string(),
                base: Some(c0.to_string()),
                dropped: Some(1),
            }]
        );

        // A previous head that is not in the repository is not on the branch.
        source.state.head = Some("1".repeat(40));
        let (_, changes) = head(&mut source, 7);
        assert!(
            matches!(
                &changes[..],
                [BranchChange::Rewound {
                    dropped: None,
                    base: None,
                    ..
                }]
            ),
            "{changes:?}"
        );
        let event = changes[0].event("main", 7);
        assert!(event
            .message
            .ends_with("the previous head is no longer in the repository"));
    }

    #[test]
    fn a_deleted_branch_is_missing_once_and_restored_when_it_returns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("repo");
        vt_repo::write::init(&root).expect("init");
        let repo = git2::Repository::open(&root).expect("open");
        let mut source =
            GitSource::open(Location::Local(root.clone()), "main", dir.path()).expect("open");
        let c0 = main_of(&repo);
        let c1 = commit_on(&repo, c0, "one");
        head(&mut source, 1);

        delete_main(&repo);
        let refresh = source.refresh(1_000).expect("refresh");
        assert_eq!(refresh.head, None);
        let missing = BranchChange::Missing {
            last_head: Some(c1.to_string()),
        };
        assert_eq!(refresh.changes, std::slice::from_ref(&missing));
        let event = missing.event("main", 1_000);
        assert_eq!(event.kind, kind::BRANCH_MISSING);
        assert!(
            event.message.contains("nothing deploys until it returns"),
            "{}",
            event.message
        );
        for now in [2_000, 3_000] {
            assert_eq!(source.refresh(now).expect("refresh").changes, [], "once");
        }
        assert_eq!(source.state().missing_since, Some(1_000));
        assert_eq!(source.state().head, Some(c1.to_string()), "kept");

        // Back where it was: restored, nothing rewound.
        set_main(&repo, c1);
        let (seen, changes) = head(&mut source, 13_000);
        assert_eq!(seen.sha, c1.to_string());
        let restored = BranchChange::Restored {
            head: c1.to_string(),
            missing_since: 1_000,
        };
        assert_eq!(changes, std::slice::from_ref(&restored));
        let event = restored.event("main", 13_000);
        assert_eq!(event.kind, kind::BRANCH_RESTORED);
        assert!(
            event.message.ends_with("after 12 s missing"),
            "{}",
            event.message
        );
        assert_eq!(source.state().missing_since, None);

        // Back at an older commit: restored and rewound.
        delete_main(&repo);
        assert_eq!(source.refresh(14_000).expect("refresh").changes.len(), 1);
        set_main(&repo, c0);
        let (_, changes) = head(&mut source, 15_000);
        assert!(
            matches!(
                &changes[..],
                [
                    BranchChange::Restored { .. },
                    BranchChange::Rewound {
                        dropped: Some(1),
                        ..
                    }
                ]
            ),
            "{changes:?}"
        );
    }

    #[test]
    fn a_mirror_sees_force_pushes_and_deletions_and_tells_them_from_an_unreachable_remote() {
        let dir = tempfile::tempdir().expect("tempdir");
        let origin = dir.path().join("origin");
        vt_repo::write::init(&origin).expect("init");
        let repo = git2::Repository::open(&origin).expect("open");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        let url = format!("file://{}", origin.display());
        let mut source = GitSource::open(Location::parse(&url), "main", &state).expect("open");
        let c0 = main_of(&repo);
        let c1 = commit_on(&repo, c0, "one");
        let c2 = commit_on(&repo, c1, "two");
        let (seen, changes) = head(&mut source, 1);
        assert_eq!((seen.sha, changes), (c2.to_string(), vec![]));

        // The forced fetch moves the mirror back; the old head is still there
        // to compare with.
        set_main(&repo, c1);
        assert_eq!(
            head(&mut source, 2).1,
            [BranchChange::Rewound {
                from: c2.to_string(),
                to: c1.to_string(),
                base: Some(c1.to_string()),
                dropped: Some(1),
            }]
        );

        // Deleted on the remote: missing, and gone from the mirror too.
        delete_main(&repo);
        let refresh = source
            .refresh(3)
            .expect("a reachable remote without the branch");
        assert_eq!(
            (refresh.head, refresh.changes),
            (
                None,
                vec![BranchChange::Missing {
                    last_head: Some(c1.to_string())
                }]
            )
        );
        let mirror = git2::Repository::open_bare(state.join("mirror.git")).expect("mirror");
        assert!(
            mirror.find_reference("refs/heads/main").is_err(),
            "no stale copy"
        );
        assert_eq!(source.refresh(4).expect("again").changes, []);

        // An unreachable remote is an error, not a missing branch.
        let mut gone = GitSource::open(
            Location::parse(&format!("file://{}", dir.path().join("nope").display())),
            "main",
            &dir.path().join("other-state"),
        )
        .expect("open");
        assert!(
            matches!(gone.refresh(5), Err(GitSourceError::Fetch { .. })),
            "unreachable"
        );

        // Pushed again.
        set_main(&repo, c2);
        let (seen, changes) = head(&mut source, 6);
        assert_eq!(seen.sha, c2.to_string());
        assert!(
            matches!(
                &changes[..],
                [BranchChange::Restored {
                    missing_since: 3,
                    ..
                }]
            ),
            "c2 contains c1: {changes:?}"
        );
    }

    #[test]
    fn the_branch_state_survives_a_restart_of_the_same_source_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("repo");
        vt_repo::write::init(&root).expect("init");
        let repo = git2::Repository::open(&root).expect("open");
        let c0 = main_of(&repo);
        let open = |branch: &str| {
            GitSource::open(Location::Local(root.clone()), branch, dir.path()).expect("open")
        };
        let mut source = open("main");
        head(&mut source, 1);
        delete_main(&repo);
        assert_eq!(source.refresh(2).expect("refresh").changes.len(), 1);
        source.save_state().expect("save");

        // Restarted while still missing: not told again.
        let mut again = open("main");
        assert_eq!(again.state(), source.state());
        assert_eq!(again.refresh(3).expect("refresh").changes, []);
        // Another branch starts afresh.
        assert_eq!(open("other").state().head, None);

        // A rewind while the controller was down is seen after the restart.
        let c1 = commit_on(&repo, c0, "one");
        let (_, changes) = head(&mut again, 4);
        assert_eq!(changes.len(), 1, "restored: {changes:?}");
        again.save_state().expect("save");
        set_main(&repo, c0);
        let mut third = open("main");
        assert_eq!(third.state().head, Some(c1.to_string()));
        assert!(matches!(
            &head(&mut third, 5).1[..],
            [BranchChange::Rewound {
                dropped: Some(1),
                ..
            }]
        ));
    }

    #[test]
    fn credentials_in_a_location_are_redacted() {
        assert_eq!(
            redacted("https://user:tok@example.com/a/b.git"),
            "https://***@example.com/a/b.git"
        );
        assert_eq!(
            redacted("https://example.com/a@b"),
            "https://example.com/a@b"
        );
        assert_eq!(redacted("/srv/repo"), "/srv/repo");
        assert_eq!(redacted("ssh://git@host"), "ssh://***@host");
    }

    #[test]
    fn a_working_tree_is_read_as_it_is_named_by_its_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("repo");
        vt_repo::write::init(&root).expect("init");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        let text = format!("{WORKTREE_PREFIX}{}", root.display());
        let mut tree =
            GitSource::open(Location::parse(&text), "main", &state).expect("open the tree");
        assert_eq!(
            tree.watch_paths(),
            vec![root.join("orgs"), root.clone()],
            "orgs/ recursively, the root alone"
        );
        assert_eq!(tree.settle_delay(), WORKTREE_SETTLE);

        let read = |tree: &mut GitSource| {
            let refresh = tree.refresh(0).expect("read");
            assert_eq!(refresh.changes, []);
            refresh.head.expect("content")
        };
        let first = read(&mut tree);
        assert!(first.sha.starts_with(WORKTREE_ID_PREFIX), "{}", first.sha);
        assert_eq!(first.sha.len(), 20);
        assert!(first.message.contains("uncommitted"), "{}", first.message);
        assert_eq!(read(&mut tree), first, "unchanged: same ID");

        // An uncommitted edit is a new ID with the new content; undoing it
        // brings the first ID back. Files outside the layout do not count.
        std::fs::write(root.join("notes.txt"), "not the layout").expect("write");
        assert_eq!(read(&mut tree).sha, first.sha);
        let config = std::fs::read_to_string(root.join("vt.yaml")).expect("read");
        std::fs::write(root.join("vt.yaml"), format!("{config}# edited\n")).expect("edit");
        let edited = read(&mut tree);
        assert_ne!(edited.sha, first.sha);
        let snapshot = tree.snapshot(&edited.sha).expect("snapshot");
        assert!(String::from_utf8_lossy(&snapshot.files["vt.yaml"]).ends_with("# edited\n"));
        assert!(matches!(
            tree.snapshot(&first.sha),
            Err(GitSourceError::Gone(_))
        ));
        std::fs::write(root.join("vt.yaml"), &config).expect("undo");
        assert_eq!(read(&mut tree).sha, first.sha);

        // Pins rewrite the references they name, and change the ID.
        std::fs::write(
            root.join("vt.yaml"),
            format!("{config}# image: 127.0.0.1:5055/hello:dev\n"),
        )
        .expect("edit");
        let unpinned = read(&mut tree).sha;
        std::fs::write(
            state.join(IMAGE_PINS_FILE),
            r#"{"127.0.0.1:5055/hello:dev": "sha256:abc"}"#,
        )
        .expect("pins");
        let pinned_id = read(&mut tree).sha;
        assert_ne!(pinned_id, unpinned);
        let snapshot = tree.snapshot(&pinned_id).expect("snapshot");
        assert!(String::from_utf8_lossy(&snapshot.files["vt.yaml"])
            .ends_with("# image: 127.0.0.1:5055/hello:dev@sha256:abc\n"));
        std::fs::write(state.join(IMAGE_PINS_FILE), "not json").expect("pins");
        assert!(matches!(tree.refresh(0), Err(GitSourceError::Pins { .. })));

        assert!(matches!(
            GitSource::open(
                Location::WorkingTree(dir.path().join("nope")),
                "main",
                &state
            ),
            Err(GitSourceError::Read(_))
        ));
    }

    #[test]
    fn pins_rewrite_whole_references_only() {
        let pins = BTreeMap::from([("r.local/a:dev".to_string(), "sha256:1".to_string())]);
        let snapshot = Snapshot {
            files: BTreeMap::from([(
                "x.yaml".to_string(),
                b"image: r.local/a:dev\nb: \"r.local/a:dev\"\nc: r.local/a:dev2\nd: xr.local/a:dev\ne: [r.local/a:dev]\nf: r.local/a:dev@sha256:0\n".to_vec(),
            )]),
            ..Snapshot::default()
        };
        let out = pinned(snapshot, &pins);
        assert_eq!(
            String::from_utf8_lossy(&out.files["x.yaml"]),
            "image: r.local/a:dev@sha256:1\nb: \"r.local/a:dev@sha256:1\"\nc: r.local/a:dev2\nd: xr.local/a:dev\ne: [r.local/a:dev@sha256:1]\nf: r.local/a:dev@sha256:0\n"
        );
    }

    #[test]
    fn the_author_comes_from_git_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = git2::Repository::init(dir.path()).expect("git init");
        let mut config = repo.config().expect("config");
        config.set_str("user.name", "Ada").expect("name");
        config
            .set_str("user.email", "ada@example.com")
            .expect("email");
        let commit = worktree_commit(dir.path(), "wt-1".into(), 7);
        assert_eq!(commit.author, "Ada <ada@example.com>");
        assert_eq!((commit.sha.as_str(), commit.time), ("wt-1", 7));
    }
}
