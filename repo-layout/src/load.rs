//! Loading a snapshot of the repository into a [`DesiredState`] plus every
//! diagnostic found: per-file parse problems first, then the cross-file checks
//! of [`crate::validate`].

use crate::diagnostic::{self, Code, Diagnostic};
use crate::effective;
use crate::ids::Kind;
use crate::parse::{parse_file, Parsed};
use crate::schema::{OrgFile, ProjectFile, RepoConfig, Spec};
use crate::secrets::{self, SecretsFile};
use crate::source::Snapshot;
use crate::state::{App, DesiredState, Env, EnvSecrets, Org, Project};
use crate::validate::{self, Checker};
use crate::yaml_pos::PositionIndex;
use serde::Serialize;
use std::collections::HashMap;

/// The result of loading: what could be read, and what is wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Loaded {
    /// The resources that parsed.
    pub state: DesiredState,
    /// Every problem found, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// Whether the repository is valid (no diagnostics at all).
    pub fn is_valid(&self) -> bool {
        self.diagnostics.is_empty()
    }
}

/// What a path in the layout is.
enum Entry<'a> {
    Config,
    Org {
        org: &'a str,
    },
    Project {
        org: &'a str,
        project: &'a str,
    },
    App {
        org: &'a str,
        project: &'a str,
        app: &'a str,
    },
    Env {
        org: &'a str,
        project: &'a str,
        app: &'a str,
        env: &'a str,
    },
    Secrets {
        org: &'a str,
        project: &'a str,
        app: &'a str,
        env: &'a str,
    },
    Unexpected,
}

fn classify(path: &str) -> Entry<'_> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["vt.yaml"] => Entry::Config,
        ["orgs", org, "org.yaml"] => Entry::Org { org },
        ["orgs", org, project, "project.yaml"] => Entry::Project { org, project },
        ["orgs", org, project, app, "app.yaml"] => Entry::App { org, project, app },
        ["orgs", org, project, app, "envs", file] if file.ends_with(".secrets.yaml") => {
            match file.strip_suffix(".secrets.yaml") {
                Some(env) => Entry::Secrets {
                    org,
                    project,
                    app,
                    env,
                },
                None => Entry::Unexpected,
            }
        }
        ["orgs", org, project, app, "envs", file] => match file.strip_suffix(".yaml") {
            Some(env) => Entry::Env {
                org,
                project,
                app,
                env,
            },
            None => Entry::Unexpected,
        },
        _ => Entry::Unexpected,
    }
}

/// The kind of resource the layout file at `path` holds (`orgs/a/org.yaml`
/// → org), if it holds one.
pub fn resource_kind(path: &str) -> Option<Kind> {
    match classify(path) {
        Entry::Org { .. } => Some(Kind::Org),
        Entry::Project { .. } => Some(Kind::Project),
        Entry::App { .. } => Some(Kind::App),
        Entry::Env { .. } => Some(Kind::Env),
        Entry::Config | Entry::Secrets { .. } | Entry::Unexpected => None,
    }
}

/// The layout, for hints.
pub const LAYOUT: &str = "vt.yaml, orgs/<org>/org.yaml, orgs/<org>/<project>/project.yaml, \
orgs/<org>/<project>/<app>/app.yaml, orgs/<org>/<project>/<app>/envs/<env>.yaml, \
orgs/<org>/<project>/<app>/envs/<env>.secrets.yaml";

/// Loads and validates a snapshot. Never fails: problems become diagnostics.
pub fn load(snapshot: &Snapshot) -> Loaded {
    let mut diagnostics = Vec::new();
    let mut indexes: HashMap<String, PositionIndex> = HashMap::new();
    let mut state = DesiredState::default();
    let mut has_config = false;

    for (file, bytes) in &snapshot.files {
        let Ok(text) = std::str::from_utf8(bytes) else {
            diagnostics.push(Diagnostic::file(
                Code::Syntax,
                file,
                "the file is not UTF-8 text",
            ));
            continue;
        };
        let mut parse = |diagnostics: &mut Vec<Diagnostic>| -> Option<Spec> {
            let Parsed { value, index } = parse_file::<Spec>(file, text, diagnostics)?;
            indexes.insert(file.clone(), index);
            Some(value)
        };
        match classify(file) {
            Entry::Config => {
                has_config = true;
                if let Some(Parsed { value, index }) =
                    parse_file::<RepoConfig>(file, text, &mut diagnostics)
                {
                    state.config = value;
                    indexes.insert(file.clone(), index);
                }
            }
            Entry::Org { org } => {
                if let Some(Parsed { value, index }) =
                    parse_file::<OrgFile>(file, text, &mut diagnostics)
                {
                    indexes.insert(file.clone(), index);
                    state.orgs.push(Org {
                        name: org.into(),
                        id: value.id.clone().unwrap_or_default(),
                        file: file.clone(),
                        spec: value,
                    });
                }
            }
            Entry::Project { org, project } => {
                if let Some(Parsed { value, index }) =
                    parse_file::<ProjectFile>(file, text, &mut diagnostics)
                {
                    indexes.insert(file.clone(), index);
                    state.projects.push(Project {
                        org: org.into(),
                        name: project.into(),
                        id: value.id.unwrap_or_default(),
                        file: file.clone(),
                    });
                }
            }
            Entry::App { org, project, app } => {
                if let Some(spec) = parse(&mut diagnostics) {
                    state.apps.push(App {
                        org: org.into(),
                        project: project.into(),
                        name: app.into(),
                        id: spec.id.clone().unwrap_or_default(),
                        file: file.clone(),
                        spec,
                    });
                }
            }
            Entry::Env {
                org,
                project,
                app,
                env,
            } => {
                if let Some(overrides) = parse(&mut diagnostics) {
                    state.envs.push(Env {
                        org: org.into(),
                        project: project.into(),
                        app: app.into(),
                        name: env.into(),
                        id: overrides.id.clone().unwrap_or_default(),
                        file: file.clone(),
                        overrides,
                        effective: None,
                    });
                }
            }
            Entry::Secrets {
                org,
                project,
                app,
                env,
            } => {
                if let Some(Parsed { value, index }) =
                    parse_file::<SecretsFile>(file, text, &mut diagnostics)
                {
                    indexes.insert(file.clone(), index);
                    state.secrets.push(EnvSecrets {
                        org: org.into(),
                        project: project.into(),
                        app: app.into(),
                        env: env.into(),
                        file: file.clone(),
                        content: value,
                    });
                }
            }
            Entry::Unexpected => diagnostics.push(
                Diagnostic::file(
                    Code::UnexpectedFile,
                    file,
                    "this file is not part of the repository layout",
                )
                .with_hint(format!("the layout is: {LAYOUT}")),
            ),
        }
    }
    if !has_config {
        diagnostics.push(
            Diagnostic::file(Code::NoConfig, "vt.yaml", "the repository has no vt.yaml")
                .with_hint("run `vt init` to create a desired-state repository"),
        );
    }

    // Every file that parsed has an index: the others are present but
    // unreadable, and already diagnosed.
    let unreadable = snapshot
        .files
        .keys()
        .filter(|file| !indexes.contains_key(*file))
        .cloned();
    let mut checker = Checker::new(&indexes, &mut diagnostics).with_unreadable(unreadable);
    validate::check(&mut checker, &state);
    resolve_envs(&mut checker, &mut state);
    secrets::check_files(&mut checker, &state);
    secrets::resolve_versions(&mut checker, &mut state);
    validate::check_quotas(&mut checker, &state);

    diagnostic::sort(&mut diagnostics);
    Loaded { state, diagnostics }
}

/// Computes each env's effective spec: defaults, then app, then env. Not
/// when `vt.yaml` does not parse: without its defaults and regions no spec
/// would be the real one, and each env would report what vt.yaml lacks.
fn resolve_envs(checker: &mut Checker<'_>, state: &mut DesiredState) {
    if checker.is_unreadable("vt.yaml") {
        return;
    }
    let defaults = state.config.defaults.clone().unwrap_or_default();
    let default_region = state.config.regions.first().map(|r| r.name.clone());
    let apps: std::collections::HashMap<String, &crate::App> =
        state.apps.iter().map(|a| (a.qualified(), a)).collect();
    for env in &mut state.envs {
        let Some(app) = apps.get(&env.app_qualified()) else {
            continue;
        };
        let merged = effective::overlay(&effective::overlay(&defaults, &app.spec), &env.overrides);
        match effective::resolve(&merged, default_region.as_deref()) {
            Ok(spec) => env.effective = Some(spec),
            Err(errors) => {
                for e in errors {
                    let file = if !checker.contains(&env.file, &e.path)
                        && checker.contains(&app.file, &e.path)
                    {
                        &app.file
                    } else {
                        &env.file
                    };
                    checker.value(e.code, file, &e.path, e.message, e.hint);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(files: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            files: files
                .iter()
                .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
                .collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn loads_a_layout_and_resolves_envs() {
        let loaded = load(&snapshot(&[
            (
                "vt.yaml",
                "version: 1\nregions: [{name: local}]\ndefaults: {resources: {memory: 512Mi}}\n",
            ),
            ("orgs/acme/org.yaml", "id: org_01jdq0000000000000000000aa\n"),
            (
                "orgs/acme/shop/project.yaml",
                "id: prj_01jdq0000000000000000000aa\n",
            ),
            (
                "orgs/acme/shop/web/app.yaml",
                "id: app_01jdq0000000000000000000aa\nimage: web:1\n",
            ),
            (
                "orgs/acme/shop/web/envs/prod.yaml",
                "id: env_01jdq0000000000000000000aa\ninstances: 3\n",
            ),
        ]));
        assert_eq!(loaded.diagnostics, []);
        let env = &loaded.state.envs[0];
        assert_eq!(env.qualified(), "acme/shop/web/prod");
        let spec = env.effective.as_ref().expect("resolved");
        assert_eq!(
            (spec.instances, spec.memory.mib(), spec.regions.clone()),
            (3, 512, vec!["local".to_string()])
        );
    }
}
