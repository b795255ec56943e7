//! Semantic diff of two desired states: per resource (matched by ID, so a
//! rename is a change of `name`), the fields added, removed or changed, with
//! old and new values, in a stable order. `vt diff` builds on this.

use crate::ids::Kind;
use crate::state::DesiredState;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

/// How a resource changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Only in the new state.
    Added,
    /// Only in the old state.
    Removed,
    /// In both, with different fields.
    Changed,
}

/// One changed field; `old` is absent for an added field, `new` for a removed one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Field path, with named list items by name: `ports[http].port`.
    pub path: String,
    /// Value before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// Value after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// The change to one resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceDiff {
    /// Resource kind.
    pub kind: Kind,
    /// Qualified name (the new one for renames).
    pub name: String,
    /// Stable ID.
    pub id: String,
    /// Added, removed or changed.
    pub change: Change,
    /// The fields that differ (every field for added and removed resources).
    pub fields: Vec<FieldChange>,
}

/// IDs of the apps and envs whose name and content are the same in both
/// states, found without serializing them: most of a big repository.
fn unchanged(old: &DesiredState, new: &DesiredState) -> HashSet<String> {
    let mut same = HashSet::new();
    let apps: HashMap<&str, _> = old.apps.iter().map(|a| (a.id.as_str(), a)).collect();
    for b in &new.apps {
        if apps.get(b.id.as_str()).is_some_and(|a| {
            (&a.org, &a.project, &a.name, &a.spec) == (&b.org, &b.project, &b.name, &b.spec)
        }) {
            same.insert(b.id.clone());
        }
    }
    let envs: HashMap<&str, _> = old.envs.iter().map(|e| (e.id.as_str(), e)).collect();
    for b in &new.envs {
        if envs.get(b.id.as_str()).is_some_and(|a| {
            a.qualified() == b.qualified() && a.effective.is_some() && a.effective == b.effective
        }) {
            same.insert(b.id.clone());
        }
    }
    same.remove("");
    same
}

/// The semantic content of every resource but those in `skip`, keyed by kind
/// and ID (or name when the ID is missing).
fn resources(
    state: &DesiredState,
    skip: &HashSet<String>,
) -> BTreeMap<(Kind, String), (String, Value)> {
    let mut out = BTreeMap::new();
    let mut add = |kind, id: &str, name: String, value: Value| {
        let key = if id.is_empty() {
            format!("name:{name}")
        } else {
            id.to_string()
        };
        out.insert((kind, key), (name, value));
    };
    for o in &state.orgs {
        add(
            Kind::Org,
            &o.id,
            o.name.clone(),
            json!({"name": o.name, "quotas": o.spec.quotas, "retention": o.spec.retention}),
        );
    }
    for p in &state.projects {
        add(
            Kind::Project,
            &p.id,
            p.qualified(),
            json!({"name": p.qualified()}),
        );
    }
    for a in state.apps.iter().filter(|a| !skip.contains(&a.id)) {
        let mut spec = a.spec.clone();
        spec.id = None;
        add(
            Kind::App,
            &a.id,
            a.qualified(),
            json!({"name": a.qualified(), "spec": spec}),
        );
    }
    for e in state.envs.iter().filter(|e| !skip.contains(&e.id)) {
        let spec = match &e.effective {
            Some(effective) => json!(effective),
            None => json!({"unresolved": e.overrides}),
        };
        add(
            Kind::Env,
            &e.id,
            e.qualified(),
            json!({"name": e.qualified(), "spec": spec}),
        );
    }
    out
}

/// Flattens a JSON value into leaf paths. Lists whose items all have a
/// `name` are keyed by it; other lists are compared whole.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    let named = |items: &Vec<Value>| {
        items
            .iter()
            .all(|i| i.get("name").is_some_and(Value::is_string))
    };
    match value {
        // An empty list is no field at all, so filling one shows only its items.
        Value::Null => {}
        Value::Array(items) if items.is_empty() => {}
        Value::Object(map) => {
            for (key, v) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, v, out);
            }
        }
        Value::Array(items) if !items.is_empty() && named(items) => {
            for item in items {
                let name = item["name"].as_str().unwrap_or_default();
                flatten(&format!("{prefix}[{name}]"), item, out);
            }
        }
        leaf => {
            out.insert(prefix.to_string(), leaf.clone());
        }
    }
}

fn field_changes(old: Option<&Value>, new: Option<&Value>) -> Vec<FieldChange> {
    let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
    if let Some(old) = old {
        flatten("", old, &mut before);
    }
    if let Some(new) = new {
        flatten("", new, &mut after);
    }
    let mut paths: Vec<&String> = before.keys().chain(after.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| before.get(*p) != after.get(*p))
        .map(|p| FieldChange {
            path: p.clone(),
            old: before.get(p).cloned(),
            new: after.get(p).cloned(),
        })
        .collect()
}

/// The fields that differ between two JSON values (e.g. two serialized
/// [`crate::EffectiveSpec`]s), with the same paths as [`diff`].
pub fn diff_values(old: &Value, new: &Value) -> Vec<FieldChange> {
    field_changes(Some(old), Some(new))
}

/// Compares two desired states; resources in kind order, then by name.
pub fn diff(old: &DesiredState, new: &DesiredState) -> Vec<ResourceDiff> {
    let skip = unchanged(old, new);
    let before = resources(old, &skip);
    let after = resources(new, &skip);
    let mut keys: Vec<&(Kind, String)> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out: Vec<ResourceDiff> = keys
        .into_iter()
        .filter_map(|key| {
            let (old, new) = (before.get(key), after.get(key));
            let change = match (old, new) {
                (None, Some(_)) => Change::Added,
                (Some(_), None) => Change::Removed,
                (Some(a), Some(b)) if a.1 != b.1 => Change::Changed,
                _ => return None,
            };
            let name = new.or(old).map(|(n, _)| n.clone()).unwrap_or_default();
            Some(ResourceDiff {
                kind: key.0,
                name,
                id: key
                    .1
                    .strip_prefix("name:")
                    .map_or(key.1.clone(), |_| String::new()),
                change,
                fields: field_changes(old.map(|(_, v)| v), new.map(|(_, v)| v)),
            })
        })
        .collect();
    out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load;
    use crate::source::Snapshot;

    fn state(image: &str, port: u16, app_dir: &str) -> DesiredState {
        let files = [
            ("vt.yaml", "version: 1\nregions: [{name: local}]\n".to_string()),
            ("orgs/acme/org.yaml", "id: org_01jdq0000000000000000000aa\n".into()),
            ("orgs/acme/shop/project.yaml", "id: prj_01jdq0000000000000000000aa\n".into()),
            (
                &*format!("orgs/acme/shop/{app_dir}/app.yaml"),
                format!("id: app_01jdq0000000000000000000aa\nimage: {image}\nports: [{{name: http, port: {port}}}]\n"),
            ),
        ];
        let snapshot = Snapshot {
            files: files
                .iter()
                .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
                .collect(),
            ..Snapshot::default()
        };
        load(&snapshot).state
    }

    #[test]
    fn same_state_has_no_diff() {
        assert_eq!(
            diff(&state("web:1", 80, "web"), &state("web:1", 80, "web")),
            []
        );
    }

    #[test]
    fn changed_fields_are_listed_with_old_and_new() {
        let changes = diff(&state("web:1", 80, "web"), &state("web:2", 8080, "www"));
        assert_eq!(changes.len(), 1);
        let c = &changes[0];
        assert_eq!(
            (c.kind, c.name.as_str(), c.change),
            (Kind::App, "acme/shop/www", Change::Changed)
        );
        let paths: Vec<_> = c.fields.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["name", "spec.image", "spec.ports[http].port"]);
        assert_eq!(c.fields[1].old, Some(json!("web:1")));
        assert_eq!(c.fields[1].new, Some(json!("web:2")));
    }

    #[test]
    fn added_and_removed_resources() {
        let changes = diff(&DesiredState::default(), &state("web:1", 80, "web"));
        let kinds: Vec<_> = changes.iter().map(|c| (c.kind, c.change)).collect();
        assert_eq!(
            kinds,
            [
                (Kind::Org, Change::Added),
                (Kind::Project, Change::Added),
                (Kind::App, Change::Added)
            ]
        );
        let back = diff(&state("web:1", 80, "web"), &DesiredState::default());
        assert!(back
            .iter()
            .all(|c| c.change == Change::Removed && c.fields.iter().all(|f| f.new.is_none())));
    }
}
