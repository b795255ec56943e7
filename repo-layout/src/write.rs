//! Creating resources: `vt init` and the `create` commands. A create writes all
//! of its files or none of them, and never overwrites an existing file.

use crate::ids::{self, Kind};
use crate::schema::{
    OrgFile, ProjectFile, Region, RepoConfig, Resources, Rollout, Spec, Strategy, SCHEMA_VERSION,
};
use crate::state::{DesiredState, ResourceRef};
use crate::validate::is_dns_label;
use crate::{ByteSize, Cpu};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Why a create failed; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file to be written exists already.
    #[error("{0} already exists")]
    Exists(PathBuf),
    /// The name is not a DNS label.
    #[error("`{0}` is not a valid name: use 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'")]
    InvalidName(String),
    /// The parent named does not exist.
    #[error("no {kind} named `{name}`")]
    NoParent {
        /// Parent kind.
        kind: Kind,
        /// Name given.
        name: String,
    },
    /// There is no parent of the needed kind at all.
    #[error("there is no {0} yet: create one first")]
    NoParentYet(Kind),
    /// The parent was not named and there are several candidates, or the name
    /// given matches several.
    #[error("which {kind}? {} match: {}", candidates.len(), candidates.join(", "))]
    Ambiguous {
        /// Parent kind.
        kind: Kind,
        /// Qualified names that match.
        candidates: Vec<String>,
    },
    /// Writing a file failed.
    #[error("cannot write {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A git operation failed.
    #[error("git failed")]
    Git(#[from] git2::Error),
}

/// What a create made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Created {
    /// Resource kind.
    pub kind: Kind,
    /// Qualified name.
    pub name: String,
    /// The newly minted ID.
    pub id: String,
    /// Files written, relative to the repository root.
    pub files: Vec<String>,
}

/// The content of a new repository's `vt.yaml`.
pub fn initial_config() -> RepoConfig {
    RepoConfig {
        version: Some(SCHEMA_VERSION),
        regions: vec![Region {
            name: "local".into(),
            description: Some("the machine `vt dev` runs on".into()),
        }],
        defaults: Some(Spec {
            resources: Some(Resources {
                cpu: Some(Cpu(250)),
                memory: Some(ByteSize(256 << 20)),
            }),
            rollout: Some(Rollout {
                strategy: Some(Strategy::Rolling),
                max_surge: Some(1),
                max_unavailable: Some(0),
                progress_deadline: None,
            }),
            ..Spec::default()
        }),
        secrets: None,
    }
}

/// What `vt init` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Initialized {
    /// The repository root.
    pub root: String,
    /// The first commit.
    pub commit: String,
}

/// Makes `dir` a desired-state repository: `git init` (branch `main`) unless
/// it is one already, writes `vt.yaml` and commits it.
pub fn init(dir: &Path) -> Result<Initialized, WriteError> {
    init_with(
        dir,
        vec![("vt.yaml".into(), to_yaml(&initial_config()))],
        "vt: initialize desired-state repository",
    )
}

/// What a template's resource files hold in place of their IDs;
/// [`init_from_template`] mints one of the file's kind for each.
pub const TEMPLATE_ID: &str = "<minted by vt init>";

/// Like [`init`], but writes the files of template `name` (path →
/// content, `vt.yaml` among them) and commits them all. Every
/// [`TEMPLATE_ID`] in a resource file becomes a new ID of that resource's
/// kind, so each repository made from a template has IDs of its own.
pub fn init_from_template(
    dir: &Path,
    name: &str,
    files: &[(&str, &str)],
) -> Result<Initialized, WriteError> {
    let files = files
        .iter()
        .map(|(path, content)| {
            let content = match crate::load::resource_kind(path) {
                Some(kind) => content.replace(TEMPLATE_ID, &ids::mint(kind)),
                None => content.to_string(),
            };
            (path.to_string(), content)
        })
        .collect();
    init_with(
        dir,
        files,
        &format!("vt: initialize desired-state repository from template {name}"),
    )
}

fn init_with(
    dir: &Path,
    files: Vec<(String, String)>,
    message: &str,
) -> Result<Initialized, WriteError> {
    let config = dir.join("vt.yaml");
    if config.exists() {
        return Err(WriteError::Exists(config));
    }
    std::fs::create_dir_all(dir).map_err(|source| WriteError::Io {
        path: dir.into(),
        source,
    })?;
    let repo = match git2::Repository::open(dir) {
        Ok(repo) => repo,
        Err(_) => git2::Repository::init_opts(
            dir,
            git2::RepositoryInitOptions::new().initial_head("main"),
        )?,
    };
    write_all(dir, &files)?;
    let paths: Vec<&Path> = files.iter().map(|(path, _)| Path::new(path)).collect();
    let commit = commit(&repo, &paths, message)?;
    Ok(Initialized {
        root: dir.display().to_string(),
        commit: commit.to_string(),
    })
}

/// Stages `paths` and commits them on HEAD with `message`.
pub fn commit(
    repo: &git2::Repository,
    paths: &[&Path],
    message: &str,
) -> Result<git2::Oid, git2::Error> {
    let mut index = repo.index()?;
    for path in paths {
        index.add_path(path)?;
    }
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let signature = repo
        .signature()
        .or_else(|_| git2::Signature::now("vt", "vt@localhost"))?;
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(
        Some("HEAD"),
        &signature,
        &signature,
        message,
        &tree,
        &parents,
    )
}

fn to_yaml<T: Serialize>(value: &T) -> String {
    serde_yaml::to_string(value).unwrap_or_else(|e| unreachable!("schema types serialize: {e}"))
}

/// Writes every file or none: all go to temporary files first, then are
/// renamed into place. Refuses to overwrite.
pub fn write_all(root: &Path, files: &[(String, String)]) -> Result<(), WriteError> {
    for (rel, _) in files {
        let path = root.join(rel);
        if path.exists() {
            return Err(WriteError::Exists(path));
        }
    }
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let discard = |staged: &[(PathBuf, PathBuf)]| {
        for (tmp, _) in staged {
            let _ = std::fs::remove_file(tmp);
        }
    };
    for (rel, content) in files {
        let path = root.join(rel);
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let result = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&tmp, content));
        if let Err(source) = result {
            discard(&staged);
            return Err(WriteError::Io { path, source });
        }
        staged.push((tmp, path));
    }
    for (tmp, path) in &staged {
        if let Err(source) = std::fs::rename(tmp, path) {
            discard(&staged);
            return Err(WriteError::Io {
                path: path.clone(),
                source,
            });
        }
    }
    Ok(())
}

/// Finds the parent of a new resource: the one named, or the only one there is.
pub fn resolve_parent(
    state: &DesiredState,
    kind: Kind,
    name: Option<&str>,
) -> Result<ResourceRef, WriteError> {
    let mut found = match name {
        Some(name) => state.find(kind, name),
        None => state
            .resources()
            .into_iter()
            .filter(|r| r.kind == kind)
            .collect(),
    };
    match (found.len(), name) {
        (1, _) => Ok(found.remove(0)),
        (0, Some(name)) => Err(WriteError::NoParent {
            kind,
            name: name.into(),
        }),
        (0, None) => Err(WriteError::NoParentYet(kind)),
        _ => Err(WriteError::Ambiguous {
            kind,
            candidates: found.into_iter().map(|r| r.name).collect(),
        }),
    }
}

fn check_name(name: &str) -> Result<(), WriteError> {
    if is_dns_label(name) {
        Ok(())
    } else {
        Err(WriteError::InvalidName(name.into()))
    }
}

/// The directory of a resource, from the path of its file.
fn dir_of(parent: &ResourceRef) -> &str {
    parent.file.rsplit_once('/').map_or("", |(dir, _)| dir)
}

fn create(
    root: &Path,
    kind: Kind,
    name: String,
    file: String,
    content: impl FnOnce(String) -> String,
) -> Result<Created, WriteError> {
    let id = ids::mint(kind);
    write_all(root, &[(file.clone(), content(id.clone()))])?;
    Ok(Created {
        kind,
        name,
        id,
        files: vec![file],
    })
}

/// Creates `orgs/<name>/org.yaml`.
pub fn create_org(root: &Path, name: &str) -> Result<Created, WriteError> {
    check_name(name)?;
    create(
        root,
        Kind::Org,
        name.into(),
        format!("orgs/{name}/org.yaml"),
        |id| {
            to_yaml(&OrgFile {
                id: Some(id),
                ..OrgFile::default()
            })
        },
    )
}

/// Creates `<org>/<name>/project.yaml` in the org named (or the only one).
pub fn create_project(
    root: &Path,
    state: &DesiredState,
    name: &str,
    org: Option<&str>,
) -> Result<Created, WriteError> {
    check_name(name)?;
    let org = resolve_parent(state, Kind::Org, org)?;
    create(
        root,
        Kind::Project,
        format!("{}/{name}", org.name),
        format!("{}/{name}/project.yaml", dir_of(&org)),
        |id| to_yaml(&ProjectFile { id: Some(id) }),
    )
}

/// Creates `<project>/<name>/app.yaml` with `spec` in the project named (or the only one).
pub fn create_app(
    root: &Path,
    state: &DesiredState,
    name: &str,
    project: Option<&str>,
    spec: Spec,
) -> Result<Created, WriteError> {
    check_name(name)?;
    let project = resolve_parent(state, Kind::Project, project)?;
    create(
        root,
        Kind::App,
        format!("{}/{name}", project.name),
        format!("{}/{name}/app.yaml", dir_of(&project)),
        |id| {
            to_yaml(&Spec {
                id: Some(id),
                ..spec
            })
        },
    )
}

/// Creates `<app>/envs/<name>.yaml` with `overrides` for the app named (or the only one).
pub fn create_env(
    root: &Path,
    state: &DesiredState,
    name: &str,
    app: Option<&str>,
    overrides: Spec,
) -> Result<Created, WriteError> {
    check_name(name)?;
    let app = resolve_parent(state, Kind::App, app)?;
    create(
        root,
        Kind::Env,
        format!("{}/{name}", app.name),
        format!("{}/envs/{name}.yaml", dir_of(&app)),
        |id| {
            to_yaml(&Spec {
                id: Some(id),
                ..overrides
            })
        },
    )
}

/// `text` (a YAML mapping) with the top-level `key` set to `value`: its
/// line replaced (comments and every other line kept), or appended. A
/// leading byte order mark is kept.
pub fn set_top_level(text: &str, key: &str, value: &str) -> String {
    let (bom, text) = crate::parse::split_bom(text);
    let prefix = format!("{key}:");
    let line = format!("{key}: {value}");
    let mut found = false;
    let mut out: Vec<&str> = Vec::new();
    for l in text.lines() {
        if !found && l.starts_with(&prefix) {
            found = true;
            out.push(&line);
        } else {
            out.push(l);
        }
    }
    if !found {
        out.push(&line);
    }
    format!("{bom}{}\n", out.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_gets_ids_of_its_own_and_is_committed() {
        let files = [
            ("vt.yaml", "version: 1\nregions:\n- name: local\n"),
            ("orgs/a/org.yaml", "id: <minted by vt init>\n"),
            ("orgs/a/p/project.yaml", "id: <minted by vt init>\n"),
            ("images/x/rootfs/index.html", "<minted by vt init>"),
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let one = dir.path().join("one");
        let done = init_from_template(&one, "t", &files).expect("init");
        let org = std::fs::read_to_string(one.join("orgs/a/org.yaml")).expect("org");
        assert!(org.starts_with("id: org_"), "{org}");
        let project = std::fs::read_to_string(one.join("orgs/a/p/project.yaml")).expect("prj");
        assert!(project.starts_with("id: prj_"), "{project}");
        assert_eq!(
            std::fs::read_to_string(one.join("images/x/rootfs/index.html")).expect("page"),
            TEMPLATE_ID,
            "only resource files get IDs"
        );
        let loaded = crate::load(&crate::Snapshot::from_git(&one, "HEAD").expect("HEAD"));
        assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);
        assert_eq!(loaded.state.resources().len(), 2, "committed");
        let repo = git2::Repository::open(&one).expect("repo");
        assert!(
            repo.statuses(None).expect("status").is_empty(),
            "a clean tree"
        );
        assert_eq!(done.commit.len(), 40);

        let two = dir.path().join("two");
        init_from_template(&two, "t", &files).expect("init");
        let other = std::fs::read_to_string(two.join("orgs/a/org.yaml")).expect("org");
        assert_ne!(org, other, "fresh IDs per repository");
        assert!(matches!(
            init_from_template(&two, "t", &files),
            Err(WriteError::Exists(_))
        ));
    }

    #[test]
    fn write_all_refuses_to_overwrite_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("b.yaml"), "keep").expect("write");
        let files = [
            ("a/a.yaml".to_string(), "a".to_string()),
            ("b.yaml".to_string(), "b".to_string()),
        ];
        assert!(matches!(
            write_all(dir.path(), &files),
            Err(WriteError::Exists(_))
        ));
        assert!(!dir.path().join("a/a.yaml").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("b.yaml")).expect("read"),
            "keep"
        );
    }

    #[test]
    fn set_top_level_replaces_or_appends_and_keeps_the_rest() {
        let text = "id: env_1\n# pinned by vt deploy\nimage: web:1\ninstances: 2\n";
        assert_eq!(
            set_top_level(text, "image", "r/web@sha256:ab"),
            "id: env_1\n# pinned by vt deploy\nimage: r/web@sha256:ab\ninstances: 2\n"
        );
        assert_eq!(
            set_top_level("id: env_1\nenv:\n  image: x\n", "image", "r/web@sha256:ab"),
            "id: env_1\nenv:\n  image: x\nimage: r/web@sha256:ab\n"
        );
        // A byte order mark does not hide the first line, and stays.
        assert_eq!(
            set_top_level("\u{feff}image: web:1\nid: env_1\n", "image", "web:2"),
            "\u{feff}image: web:2\nid: env_1\n"
        );
    }
}
