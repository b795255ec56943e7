//! What the controller's unit tests share: a desired state loaded from files
//! given inline, and a commit to apply it as.

use crate::releases::CommitInfo;
use vt_repo::{Loaded, Snapshot};

/// Loads `files` (path, content) as a whole repository; they must validate.
pub fn load_files(files: &[(&str, String)]) -> Loaded {
    let loaded = vt_repo::load(&Snapshot {
        files: files
            .iter()
            .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
            .collect(),
        ..Snapshot::default()
    });
    assert_eq!(loaded.diagnostics, []);
    loaded
}

/// A commit `sha` by `a <a@b>` at time 0.
pub fn commit(sha: &str) -> CommitInfo {
    CommitInfo {
        sha: sha.into(),
        author: "a <a@b>".into(),
        message: "m".into(),
        time: 0,
    }
}
