//! JSON Schema of each file kind, for editors (`vt schema`).

use crate::schema::{OrgFile, ProjectFile, RepoConfig, Spec};
use serde_json::Value;

/// The file kinds that have a schema, as named on the command line.
pub const KINDS: [&str; 5] = ["config", "org", "project", "app", "env"];

/// The JSON Schema of a file kind (`config` is `vt.yaml`; `app` and `env`
/// share the spec schema), or `None` for an unknown kind.
pub fn schema(kind: &str) -> Option<Value> {
    let schema = match kind {
        "config" => schemars::schema_for!(RepoConfig),
        "org" => schemars::schema_for!(OrgFile),
        "project" => schemars::schema_for!(ProjectFile),
        "app" | "env" => schemars::schema_for!(Spec),
        _ => return None,
    };
    Some(schema.to_value())
}
