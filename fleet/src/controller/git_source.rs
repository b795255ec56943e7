//! Where commits come from: a local repository (watched) or a remote one
//! (fetched into a bare mirror in the state dir). Either way the controller
//! reads the tracked branch's head commit from git objects, never a checkout.

use crate::controller::releases::CommitInfo;
use std::path::{Path, PathBuf};
use vt_repo::{Snapshot, SourceError};

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
    /// Reading the commit failed.
    #[error("cannot read the commit")]
    Read(#[from] SourceError),
    /// Any other git failure.
    #[error("git failed")]
    Git(#[from] git2::Error),
}

/// A local path or a remote URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A repository on this machine, watched for ref changes.
    Local(PathBuf),
    /// A remote (`git://`, `file://`, a bare path), fetched on an interval.
    Remote(String),
}

impl Location {
    /// `file://`, `git://`, `ssh://`, `http(s)://` URLs are remote; anything
    /// else is a local path.
    pub fn parse(text: &str) -> Location {
        if text.contains("://") {
            Location::Remote(text.to_string())
        } else {
            Location::Local(PathBuf::from(text))
        }
    }
}

/// The tracked branch of a repository.
pub struct GitSource {
    location: Location,
    branch: String,
    repo: git2::Repository,
}

impl std::fmt::Debug for GitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GitSource({:?}, {})", self.location, self.branch)
    }
}

impl GitSource {
    /// Opens the source; a remote is mirrored into `state_dir/mirror.git`.
    pub fn open(
        location: Location,
        branch: &str,
        state_dir: &Path,
    ) -> Result<GitSource, GitSourceError> {
        let repo = match &location {
            Location::Local(path) => {
                git2::Repository::open(path).map_err(|source| GitSourceError::Open {
                    path: path.clone(),
                    source,
                })?
            }
            Location::Remote(_) => {
                let mirror = state_dir.join("mirror.git");
                match git2::Repository::open_bare(&mirror) {
                    Ok(repo) => repo,
                    Err(_) => git2::Repository::init_bare(&mirror)?,
                }
            }
        };
        Ok(GitSource {
            location,
            branch: branch.to_string(),
            repo,
        })
    }

    /// Paths whose changes mean the branch may have moved (local sources only).
    pub fn watch_paths(&self) -> Vec<PathBuf> {
        match self.location {
            Location::Local(_) => {
                let git_dir = self.repo.path();
                vec![
                    git_dir.join("refs").join("heads"),
                    git_dir.join("packed-refs"),
                    git_dir.to_path_buf(),
                ]
            }
            Location::Remote(_) => Vec::new(),
        }
    }

    /// Whether this is a remote that must be fetched.
    pub fn is_remote(&self) -> bool {
        matches!(self.location, Location::Remote(_))
    }

    /// Fetches a remote (no-op for a local repository), then returns the
    /// branch's head commit.
    pub fn refresh(&mut self) -> Result<CommitInfo, GitSourceError> {
        if let Location::Remote(url) = &self.location {
            let refspec = format!("+refs/heads/{0}:refs/heads/{0}", self.branch);
            let mut remote = self.repo.remote_anonymous(url)?;
            remote
                .fetch(&[refspec.as_str()], None, None)
                .map_err(|e| GitSourceError::Fetch {
                    url: url.clone(),
                    message: e.message().to_string(),
                })?;
        }
        let reference = self
            .repo
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

    /// The layout files at `sha`.
    pub fn snapshot(&self, sha: &str) -> Result<Snapshot, GitSourceError> {
        let oid = git2::Oid::from_str(sha)?;
        let commit = self.repo.find_commit(oid)?;
        Ok(Snapshot::from_commit(&self.repo, &commit, &self.branch)?)
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
}
