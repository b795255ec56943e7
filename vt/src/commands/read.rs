//! `vt validate`, `vt list` and `vt get`: read the desired state from the
//! working tree or any git revision.

use crate::cli::Global;
use crate::commands::load;
use crate::error::{CliError, ErrorCode, Exit};
use crate::output::{self, Style, Table};
use serde::Serialize;
use serde_json::{json, Value};
use vt_repo::{DesiredState, Kind, Loaded, ResourceRef};

/// What `vt validate` prints when the state is valid.
#[derive(Serialize)]
struct Valid {
    valid: bool,
    resources: usize,
}

/// `vt validate [--at REV]`: exit 0 when valid, 3 with every diagnostic otherwise.
pub fn validate(global: &Global, at: Option<&str>) -> Result<(), CliError> {
    let loaded = load(global, at)?;
    if !loaded.is_valid() {
        return Err(CliError::invalid(loaded.diagnostics));
    }
    let result = Valid {
        valid: true,
        resources: loaded.state.resources().len(),
    };
    output::print(global.output, &result, |s| {
        format!("{} {} resources\n", s.green("valid:"), result.resources)
    });
    Ok(())
}

/// Tells on stderr that the listing comes from a repository with errors.
fn warn_if_invalid(loaded: &Loaded) {
    if !loaded.is_valid() {
        let s = Style::stderr();
        eprintln!(
            "{} the desired state has {} error(s); run `vt validate` to see them",
            s.red("warning:"),
            loaded.diagnostics.len()
        );
    }
}

fn parse_kind(kind: &str) -> Result<Kind, CliError> {
    Kind::parse(kind).ok_or_else(|| {
        CliError::new(
            Exit::Usage,
            ErrorCode::Usage,
            format!("`{kind}` is not a kind of resource"),
        )
        .hint("use org, project, app or env")
    })
}

/// `vt list [KIND] [--at REV]`.
pub fn list(global: &Global, kind: Option<&str>, at: Option<&str>) -> Result<(), CliError> {
    let kind = kind.map(parse_kind).transpose()?;
    let loaded = load(global, at)?;
    warn_if_invalid(&loaded);
    let resources: Vec<ResourceRef> = loaded
        .state
        .resources()
        .into_iter()
        .filter(|r| kind.is_none_or(|k| r.kind == k))
        .collect();
    output::print(global.output, &resources, |s| {
        let mut table = Table::new(&["KIND", "NAME", "ID", "FILE"]);
        for r in &resources {
            table.row(vec![
                r.kind.to_string(),
                r.name.clone(),
                r.id.clone(),
                r.file.clone(),
            ]);
        }
        table.render(s)
    });
    Ok(())
}

/// The details `vt get` shows for a resource.
fn details(state: &DesiredState, r: &ResourceRef) -> Value {
    let base = json!({"kind": r.kind, "name": r.name, "id": r.id, "file": r.file});
    let extra = match r.kind {
        Kind::Org => state
            .orgs
            .iter()
            .find(|o| o.name == r.name)
            .map(|o| json!({"spec": o.spec})),
        Kind::Project => Some(json!({
            "apps": state.apps.iter().filter(|a| format!("{}/{}", a.org, a.project) == r.name).map(|a| a.qualified()).collect::<Vec<_>>()
        })),
        Kind::App => state
            .apps
            .iter()
            .find(|a| a.qualified() == r.name)
            .map(|a| {
                let envs: Vec<String> = state
                    .envs
                    .iter()
                    .filter(|e| e.app_qualified() == r.name)
                    .map(|e| e.name.clone())
                    .collect();
                json!({"spec": a.spec, "envs": envs})
            }),
        Kind::Env => state
            .envs
            .iter()
            .find(|e| e.qualified() == r.name)
            .map(|e| json!({"overrides": e.overrides, "effective": e.effective})),
    };
    match (base, extra) {
        (Value::Object(mut base), Some(Value::Object(extra))) => {
            base.extend(extra);
            Value::Object(base)
        }
        (base, _) => base,
    }
}

/// `vt get KIND NAME [--app APP] [--at REV]`.
pub fn get(
    global: &Global,
    kind: &str,
    name: &str,
    app: Option<&str>,
    at: Option<&str>,
) -> Result<(), CliError> {
    let kind = parse_kind(kind)?;
    let loaded = load(global, at)?;
    warn_if_invalid(&loaded);
    let wanted = match (kind, app) {
        (Kind::Env, Some(app)) => format!("{app}/{name}"),
        _ => name.to_string(),
    };
    let mut found = loaded.state.find(kind, &wanted);
    let resource = match found.len() {
        1 => found.remove(0),
        0 => {
            return Err(CliError::new(
                Exit::NotFound,
                ErrorCode::NotFound,
                format!("no {kind} named `{wanted}`"),
            )
            .hint(format!("list them with `vt list {kind}`")))
        }
        _ => {
            let names: Vec<String> = found.into_iter().map(|r| r.name).collect();
            return Err(CliError::new(
                Exit::Usage,
                ErrorCode::Ambiguous,
                format!("`{wanted}` matches {}", names.join(", ")),
            )
            .hint("use the qualified name, e.g. org/project/app"));
        }
    };
    let value = details(&loaded.state, &resource);
    output::print(global.output, &value, |s| render_details(&value, s));
    Ok(())
}

fn render_details(value: &Value, s: Style) -> String {
    let mut out = String::new();
    let Value::Object(map) = value else {
        return out;
    };
    for (key, v) in map {
        match v {
            Value::String(text) => {
                out.push_str(&format!("{}{text}\n", s.bold(&format!("{key:<10}"))))
            }
            Value::Null => {}
            other => {
                out.push_str(&format!("{}\n", s.bold(&format!("{key}:"))));
                let yaml = serde_yaml::to_string(other).unwrap_or_default();
                for line in yaml.lines() {
                    out.push_str(&format!("  {line}\n"));
                }
            }
        }
    }
    out
}
