//! Where a snapshot of the repository comes from: a working tree on disk or a
//! commit in git (read from the commit's tree, never from the checkout).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Failures that stop loading before any file is read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The directory cannot be read.
    #[error("cannot read {path}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The directory is not inside a git repository.
    #[error("{path} is not a git repository")]
    NotARepo {
        /// The directory.
        path: PathBuf,
        /// What git said.
        #[source]
        source: git2::Error,
    },
    /// The revision does not name a commit.
    #[error("revision `{rev}` does not exist")]
    NoSuchRevision {
        /// The revision asked for.
        rev: String,
        /// What git said.
        #[source]
        source: git2::Error,
    },
    /// Any other git failure.
    #[error("git failed while reading the repository")]
    Git(#[from] git2::Error),
}

/// The layout files of the repository at one point in time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// What was read: a directory, or `rev (sha)`.
    pub origin: String,
    /// The commit it was read from, if any.
    pub commit: Option<String>,
    /// Path relative to the root, with `/` separators → content.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Whether a repository path belongs to the layout (`vt.yaml` and YAML
/// files under `orgs/`); everything else in the repo is left alone.
pub fn is_layout_file(path: &str) -> bool {
    path == "vt.yaml"
        || (path.starts_with("orgs/") && (path.ends_with(".yaml") || path.ends_with(".yml")))
}

impl Snapshot {
    /// Reads the layout files of the working tree at `root`, uncommitted changes included.
    pub fn from_dir(root: &Path) -> Result<Snapshot, SourceError> {
        let mut files = BTreeMap::new();
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| SourceError::Io {
                path: path.into(),
                source,
            })
        };
        let config = root.join("vt.yaml");
        if config.is_file() {
            files.insert("vt.yaml".to_string(), read(&config)?);
        } else if !root.is_dir() {
            return Err(SourceError::Io {
                path: root.into(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
            });
        }
        let mut pending = vec![root.join("orgs")];
        while let Some(dir) = pending.pop() {
            if !dir.is_dir() {
                continue;
            }
            let entries = std::fs::read_dir(&dir).map_err(|source| SourceError::Io {
                path: dir.clone(),
                source,
            })?;
            for entry in entries {
                let path = entry
                    .map_err(|source| SourceError::Io {
                        path: dir.clone(),
                        source,
                    })?
                    .path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let relative = path
                    .strip_prefix(root)
                    .map(|p| {
                        p.components()
                            .map(|c| c.as_os_str().to_string_lossy())
                            .collect::<Vec<_>>()
                            .join("/")
                    })
                    .unwrap_or_default();
                if is_layout_file(&relative) {
                    files.insert(relative, read(&path)?);
                }
            }
        }
        Ok(Snapshot {
            origin: root.display().to_string(),
            commit: None,
            files,
        })
    }

    /// Reads the layout files of the commit `rev` names in the git repository at `root`.
    pub fn from_git(root: &Path, rev: &str) -> Result<Snapshot, SourceError> {
        let repo = git2::Repository::discover(root).map_err(|source| SourceError::NotARepo {
            path: root.into(),
            source,
        })?;
        let commit = repo
            .revparse_single(rev)
            .and_then(|object| object.peel_to_commit())
            .map_err(|source| SourceError::NoSuchRevision {
                rev: rev.into(),
                source,
            })?;
        Self::from_commit(&repo, &commit, rev)
    }

    /// Reads the layout files of `commit`.
    pub fn from_commit(
        repo: &git2::Repository,
        commit: &git2::Commit<'_>,
        label: &str,
    ) -> Result<Snapshot, SourceError> {
        let tree = commit.tree()?;
        let mut files = BTreeMap::new();
        let mut failure = None;
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            let path = format!("{dir}{}", entry.name().unwrap_or_default());
            if entry.kind() == Some(git2::ObjectType::Tree) {
                return if path == "orgs" || path.starts_with("orgs/") {
                    git2::TreeWalkResult::Ok
                } else {
                    git2::TreeWalkResult::Skip
                };
            }
            if is_layout_file(&path) {
                match repo.find_blob(entry.id()) {
                    Ok(blob) => {
                        files.insert(path, blob.content().to_vec());
                    }
                    Err(e) => {
                        failure = Some(e);
                        return git2::TreeWalkResult::Abort;
                    }
                }
            }
            git2::TreeWalkResult::Ok
        })?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        let sha = commit.id().to_string();
        Ok(Snapshot {
            origin: format!("{label} ({})", &sha[..12]),
            commit: Some(sha),
            files,
        })
    }
}
