//! The desired state as loaded from one snapshot of the repository.

use crate::effective::EffectiveSpec;
use crate::ids::Kind;
use crate::schema::{OrgFile, RepoConfig, Spec};
use serde::Serialize;

/// Everything the repository declares. Resources whose files failed to parse
/// are absent; see the diagnostics that came with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DesiredState {
    /// `vt.yaml`.
    pub config: RepoConfig,
    /// Organisations, sorted by name.
    pub orgs: Vec<Org>,
    /// Projects, sorted by qualified name.
    pub projects: Vec<Project>,
    /// Apps, sorted by qualified name.
    pub apps: Vec<App>,
    /// Envs, sorted by qualified name.
    pub envs: Vec<Env>,
    /// Secrets files (`envs/<env>.secrets.yaml`): names and versions in
    /// clear, values encrypted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<EnvSecrets>,
}

/// The secrets file of one env.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvSecrets {
    /// Org name.
    pub org: String,
    /// Project name.
    pub project: String,
    /// App name.
    pub app: String,
    /// Env name.
    pub env: String,
    /// Path of the file.
    pub file: String,
    /// The file's content (values still encrypted).
    pub content: crate::secrets::format::SecretsFile,
}

impl EnvSecrets {
    /// `org/project/app/env`.
    pub fn qualified(&self) -> String {
        format!("{}/{}/{}/{}", self.org, self.project, self.app, self.env)
    }
}

/// An organisation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Org {
    /// Directory name.
    pub name: String,
    /// Stable ID (empty when the file has none).
    pub id: String,
    /// Path of `org.yaml`.
    pub file: String,
    /// The file's content.
    pub spec: OrgFile,
}

/// A project of an org.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Project {
    /// Org name.
    pub org: String,
    /// Directory name.
    pub name: String,
    /// Stable ID.
    pub id: String,
    /// Path of `project.yaml`.
    pub file: String,
}

/// An app of a project.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct App {
    /// Org name.
    pub org: String,
    /// Project name.
    pub project: String,
    /// Directory name.
    pub name: String,
    /// Stable ID.
    pub id: String,
    /// Path of `app.yaml`.
    pub file: String,
    /// The file's content (without defaults).
    pub spec: Spec,
}

/// An environment of an app: what actually gets deployed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Env {
    /// Org name.
    pub org: String,
    /// Project name.
    pub project: String,
    /// App name.
    pub app: String,
    /// File stem (`prod` for `envs/prod.yaml`).
    pub name: String,
    /// Stable ID.
    pub id: String,
    /// Path of the env file.
    pub file: String,
    /// The env file's overrides.
    pub overrides: Spec,
    /// Defaults, app and env merged, or `None` when that does not resolve.
    pub effective: Option<EffectiveSpec>,
}

/// A kind-independent view of one resource, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceRef {
    /// Resource kind.
    pub kind: Kind,
    /// Qualified name: `acme`, `acme/shop`, `acme/shop/web`, `acme/shop/web/prod`.
    pub name: String,
    /// Stable ID.
    pub id: String,
    /// Path of its file.
    pub file: String,
}

impl Project {
    /// `org/project`.
    pub fn qualified(&self) -> String {
        format!("{}/{}", self.org, self.name)
    }
}

impl App {
    /// `org/project/app`.
    pub fn qualified(&self) -> String {
        format!("{}/{}/{}", self.org, self.project, self.name)
    }
}

impl Env {
    /// `org/project/app/env`.
    pub fn qualified(&self) -> String {
        format!("{}/{}/{}/{}", self.org, self.project, self.app, self.name)
    }

    /// `org/project/app`, the app this env belongs to.
    pub fn app_qualified(&self) -> String {
        format!("{}/{}/{}", self.org, self.project, self.app)
    }
}

impl DesiredState {
    /// The secrets file of an env, if it has one.
    pub fn secrets_of(&self, env: &Env) -> Option<&EnvSecrets> {
        self.secrets
            .iter()
            .find(|s| s.qualified() == env.qualified())
    }

    /// Every resource, parents first, in a stable order.
    pub fn resources(&self) -> Vec<ResourceRef> {
        let orgs = self
            .orgs
            .iter()
            .map(|o| (Kind::Org, o.name.clone(), &o.id, &o.file));
        let projects = self
            .projects
            .iter()
            .map(|p| (Kind::Project, p.qualified(), &p.id, &p.file));
        let apps = self
            .apps
            .iter()
            .map(|a| (Kind::App, a.qualified(), &a.id, &a.file));
        let envs = self
            .envs
            .iter()
            .map(|e| (Kind::Env, e.qualified(), &e.id, &e.file));
        orgs.chain(projects)
            .chain(apps)
            .chain(envs)
            .map(|(kind, name, id, file)| ResourceRef {
                kind,
                name,
                id: id.clone(),
                file: file.clone(),
            })
            .collect()
    }

    /// Resources of `kind` whose qualified name is `name` or ends with `/name`.
    pub fn find(&self, kind: Kind, name: &str) -> Vec<ResourceRef> {
        let suffix = format!("/{name}");
        self.resources()
            .into_iter()
            .filter(|r| {
                r.kind == kind && (r.name == name || r.name.ends_with(&suffix) || r.id == name)
            })
            .collect()
    }
}
