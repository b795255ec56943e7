//! Where commits come from: a local repository (watched) or a remote one
//! (fetched into a bare mirror in the state dir), read from git objects,
//! never a checkout; or, for `vt dev`, a working tree itself (watched),
//! uncommitted changes included, named by a hash of its content.

use crate::controller::releases::CommitInfo;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vt_repo::{Snapshot, SourceError};

/// How `fleet.json`'s `repo` names a working tree: `worktree:/abs/path`.
pub const WORKTREE_PREFIX: &str = "worktree:";

/// Image pins of a working-tree source, in the controller's state directory:
/// `{"REF": "sha256:..."}`. `vt dev` writes it after pushing an image it
/// built; every `REF` in the layout files is then read as `REF@sha256:...`,
/// so a rebuilt image is a new release, as a pinned digest in a commit is.
pub const IMAGE_PINS_FILE: &str = "image-pins.json";

/// The synthetic commit ID of a working tree's content starts with this.
pub const WORKTREE_ID_PREFIX: &str = "wt-";

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
    /// The remote cannot be fetched.
    #[error("cannot fetch {url}: {message}")]
    Fetch {
        /// The remote.
        url: String,
        /// What git said.
        message: String,
    },
    /// The tracked branch does not exist (yet).
    #[error("branch `{0}` does not exist")]
    NoBranch(String),
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
    /// Any other git failure.
    #[error("git failed")]
    Git(#[from] git2::Error),
}

/// A local path, a remote URL, or a working tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A repository on this machine, watched for ref changes.
    Local(PathBuf),
    /// A remote (`git://`, `file://`, a bare path), fetched on an interval.
    Remote(String),
    /// The files of a directory as they are now, uncommitted changes
    /// included, watched for changes (`vt dev`).
    WorkingTree(PathBuf),
}

impl Location {
    /// `worktree:PATH` is a working tree; `file://`, `git://`, `ssh://`,
    /// `http(s)://` URLs are remote; anything else is a local path.
    pub fn parse(text: &str) -> Location {
        if let Some(path) = text.strip_prefix(WORKTREE_PREFIX) {
            Location::WorkingTree(PathBuf::from(path))
        } else if text.contains("://") {
            Location::Remote(text.to_string())
        } else {
            Location::Local(PathBuf::from(text))
        }
    }
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
}

impl std::fmt::Debug for GitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GitSource({:?}, {})", self.location, self.branch)
    }
}

impl GitSource {
    /// Opens the source; a remote is mirrored into `state_dir/mirror.git`;
    /// a working tree's image pins are read from `state_dir`.
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
        Ok(GitSource {
            location,
            branch: branch.to_string(),
            backend,
        })
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
    /// branch's head commit; for a working tree, reads it and returns its
    /// content's synthetic commit ([`worktree_commit`]).
    pub fn refresh(&mut self) -> Result<CommitInfo, GitSourceError> {
        let repo = match &mut self.backend {
            Backend::Git(repo) => repo,
            Backend::Tree { root, pins, last } => {
                let snapshot = pinned(Snapshot::from_dir(root)?, &read_pins(pins)?);
                let id = content_id(&snapshot);
                if let Some((commit, _)) = last.as_ref().filter(|(c, _)| c.sha == id) {
                    return Ok(commit.clone());
                }
                let commit = worktree_commit(root, id, crate::controller::daemon::now());
                *last = Some((commit.clone(), snapshot));
                return Ok(commit);
            }
        };
        if let Location::Remote(url) = &self.location {
            let refspec = format!("+refs/heads/{0}:refs/heads/{0}", self.branch);
            let mut remote = repo.remote_anonymous(url)?;
            remote
                .fetch(&[refspec.as_str()], None, None)
                .map_err(|e| GitSourceError::Fetch {
                    url: url.clone(),
                    message: e.message().to_string(),
                })?;
        }
        let reference = repo
            .find_reference(&format!("refs/heads/{}", self.branch))
            .map_err(|_| GitSourceError::NoBranch(self.branch.clone()))?;
        let commit = reference.peel_to_commit()?;
        let author = commit.author();
        Ok(CommitInfo {
            sha: commit.id().to_string(),
            author: format!(
                "{} <{}>",
                author.name().unwrap_or("?"),
                author.email().unwrap_or("?")
            ),
            message: commit.summary().unwrap_or_default().to_string(),
            time: u64::try_from(commit.time().seconds()).unwrap_or(0) * 1000,
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
    let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("{WORKTREE_ID_PREFIX}{}", &hex[..17])
}

/// The commit a working tree's content stands for: its ID, the author from
/// git's configuration (the repository's, else the user's), if any, and `now`.
fn worktree_commit(root: &Path, id: String, now: crate::plan::Millis) -> CommitInfo {
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

    #[test]
    fn reads_the_branch_head_locally_and_through_a_mirror() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo_dir = dir.path().join("repo");
        vt_repo::write::init(&repo_dir).expect("init");
        let mut local =
            GitSource::open(Location::Local(repo_dir.clone()), "main", dir.path()).expect("open");
        let head = local.refresh().expect("head");
        assert_eq!(head.message, "vt: initialize desired-state repository");
        assert!(local
            .snapshot(&head.sha)
            .expect("snapshot")
            .files
            .contains_key("vt.yaml"));

        let url = format!("file://{}", repo_dir.display());
        let mut remote =
            GitSource::open(Location::parse(&url), "main", dir.path()).expect("open remote");
        assert_eq!(remote.refresh().expect("fetched").sha, head.sha);
        assert!(matches!(
            GitSource::open(Location::Local(dir.path().join("nope")), "main", dir.path()),
            Err(GitSourceError::Open { .. })
        ));
        let mut wrong =
            GitSource::open(Location::Local(repo_dir), "release", dir.path()).expect("open");
        assert!(matches!(wrong.refresh(), Err(GitSourceError::NoBranch(_))));
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

        let first = tree.refresh().expect("read");
        assert!(first.sha.starts_with(WORKTREE_ID_PREFIX), "{}", first.sha);
        assert_eq!(first.sha.len(), 20);
        assert!(first.message.contains("uncommitted"), "{}", first.message);
        assert_eq!(tree.refresh().expect("again"), first, "unchanged: same ID");

        // An uncommitted edit is a new ID with the new content; undoing it
        // brings the first ID back. Files outside the layout do not count.
        std::fs::write(root.join("notes.txt"), "not the layout").expect("write");
        assert_eq!(tree.refresh().expect("unrelated").sha, first.sha);
        let config = std::fs::read_to_string(root.join("vt.yaml")).expect("read");
        std::fs::write(root.join("vt.yaml"), format!("{config}# edited\n")).expect("edit");
        let edited = tree.refresh().expect("edited");
        assert_ne!(edited.sha, first.sha);
        let snapshot = tree.snapshot(&edited.sha).expect("snapshot");
        assert!(String::from_utf8_lossy(&snapshot.files["vt.yaml"]).ends_with("# edited\n"));
        assert!(matches!(
            tree.snapshot(&first.sha),
            Err(GitSourceError::Gone(_))
        ));
        std::fs::write(root.join("vt.yaml"), &config).expect("undo");
        assert_eq!(tree.refresh().expect("undone").sha, first.sha);

        // Pins rewrite the references they name, and change the ID.
        std::fs::write(
            root.join("vt.yaml"),
            format!("{config}# image: 127.0.0.1:5055/hello:dev\n"),
        )
        .expect("edit");
        let unpinned = tree.refresh().expect("read").sha;
        std::fs::write(
            state.join(IMAGE_PINS_FILE),
            r#"{"127.0.0.1:5055/hello:dev": "sha256:abc"}"#,
        )
        .expect("pins");
        let pinned_id = tree.refresh().expect("pinned").sha;
        assert_ne!(pinned_id, unpinned);
        let snapshot = tree.snapshot(&pinned_id).expect("snapshot");
        assert!(String::from_utf8_lossy(&snapshot.files["vt.yaml"])
            .ends_with("# image: 127.0.0.1:5055/hello:dev@sha256:abc\n"));
        std::fs::write(state.join(IMAGE_PINS_FILE), "not json").expect("pins");
        assert!(matches!(tree.refresh(), Err(GitSourceError::Pins { .. })));

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
