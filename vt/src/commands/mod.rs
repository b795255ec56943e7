//! One module per group of commands. Each command parses nothing and decides
//! nothing itself: it calls the libraries and renders what they return.

pub mod attach;
pub mod create;
pub mod deploy;
pub mod dev;
pub mod diff;
pub mod endpoints;
pub mod fleet;
pub mod follow;
pub mod init;
pub mod login;
pub mod observe;
pub mod read;
pub mod rollback;
pub mod schema;
pub mod secrets;
pub mod tokens;
pub mod volumes;

use crate::cli::Global;
use crate::error::{CliError, ErrorCode, Exit};
use std::path::PathBuf;
use vt_repo::{Loaded, Snapshot};

/// The repository root: `--repo`, else the nearest directory upwards with a
/// `vt.yaml`, else the enclosing git work tree (where validation will report
/// the missing `vt.yaml`).
pub fn find_root(global: &Global) -> Result<PathBuf, CliError> {
    if let Some(dir) = &global.repo {
        return Ok(dir.clone());
    }
    let cwd = std::env::current_dir().map_err(|e| {
        CliError::new(
            Exit::Failure,
            ErrorCode::Io,
            format!("cannot read the current directory: {e}"),
        )
    })?;
    if let Some(dir) = cwd.ancestors().find(|d| d.join("vt.yaml").is_file()) {
        return Ok(dir.to_path_buf());
    }
    if let Some(workdir) = git2::Repository::discover(&cwd)
        .ok()
        .and_then(|r| r.workdir().map(PathBuf::from))
    {
        return Ok(workdir);
    }
    Err(CliError::new(
        Exit::Failure,
        ErrorCode::NoRepo,
        format!("no vt.yaml in {} or any parent directory", cwd.display()),
    )
    .hint("run `vt init DIR` to create a desired-state repository, or pass --repo DIR"))
}

/// Loads the desired state from the working tree, or from git at `at`.
pub fn load(global: &Global, at: Option<&str>) -> Result<Loaded, CliError> {
    let root = find_root(global)?;
    let snapshot = match at {
        Some(rev) => Snapshot::from_git(&root, rev)?,
        None => Snapshot::from_dir(&root)?,
    };
    let loaded = vt_repo::load(&snapshot);
    tracing::debug!(origin = %snapshot.origin, files = snapshot.files.len(), problems = loaded.diagnostics.len(), "loaded desired state");
    Ok(loaded)
}
