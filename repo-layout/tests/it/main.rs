//! Integration tests of the desired-state repository crate, by concern.

mod git;
mod quotas;
mod roundtrip;
mod validation;

use vt_repo::Snapshot;

/// An org ID that passes validation, for hand-written fixtures.
pub const ORG_ID: &str = "org_01jdq0000000000000000000aa";
/// A project ID.
pub const PRJ_ID: &str = "prj_01jdq0000000000000000000aa";
/// An app ID.
pub const APP_ID: &str = "app_01jdq0000000000000000000aa";
/// An env ID.
pub const ENV_ID: &str = "env_01jdq0000000000000000000aa";

/// A valid repository: one org, project, app and env.
pub fn valid_files() -> Vec<(String, String)> {
    [
        ("vt.yaml", "version: 1\nregions:\n  - name: local\n  - name: eu-west\n".to_string()),
        ("orgs/acme/org.yaml", format!("id: {ORG_ID}\n")),
        ("orgs/acme/shop/project.yaml", format!("id: {PRJ_ID}\n")),
        (
            "orgs/acme/shop/web/app.yaml",
            format!("id: {APP_ID}\nimage: registry.local/web:1\nports:\n  - name: http\n    port: 8080\n"),
        ),
        ("orgs/acme/shop/web/envs/prod.yaml", format!("id: {ENV_ID}\ninstances: 2\n")),
    ]
    .into_iter()
    .map(|(p, c)| (p.to_string(), c))
    .collect()
}

/// A snapshot of `files`.
pub fn snapshot(files: &[(String, String)]) -> Snapshot {
    Snapshot {
        files: files
            .iter()
            .map(|(p, c)| (p.clone(), c.as_bytes().to_vec()))
            .collect(),
        ..Snapshot::default()
    }
}
