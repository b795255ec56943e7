//! `vt deploy [APP] [--env ENV] [--image REF]`: validate the working tree,
//! pin an image tag to its digest, show what the change will do, commit,
//! push to the tracked branch (never forcing), follow the rollout and print
//! a receipt.

use crate::cli::{Against, DeployArgs, DiffArgs, Global};
use crate::client::Client;
use crate::commands::{diff, follow};
use crate::error::{CliError, ErrorCode, Exit};
use crate::git_ops::{self, GitError};
use crate::output::Style;
use std::path::Path;
use std::time::Instant;
use vt_control::views::matches;
use vt_host::image::{Auth, ImageStore};
use vt_plan::preview::Preview;

/// Runs `vt deploy`.
pub fn run(g: &Global, args: &DeployArgs) -> Result<(), CliError> {
    let started = Instant::now();
    let root = super::find_root(g)?;
    let _span = tracing::info_span!(
        "deploy",
        app = args.app.as_deref().unwrap_or("*"),
        env = args.env.as_deref().unwrap_or("*")
    )
    .entered();
    let repo = git_ops::open(&root)?;
    let up = git_ops::upstream(&repo)?;
    let remote_tip = git_ops::fetch(&repo, &up)?;
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(GitError::from)?
        .id();
    let (_, behind) = git_ops::ahead_behind(&repo, head, remote_tip)?;
    if behind > 0 {
        let missing = git_ops::log_between(&repo, head, remote_tip)?;
        return Err(CliError::new(
            Exit::Conflict,
            ErrorCode::Behind,
            format!(
                "{} is {behind} commit(s) behind {}/{}:\n  {}",
                up.local_branch,
                up.remote,
                up.remote_branch,
                missing.join("\n  ")
            ),
        )
        .hint("run `git pull --rebase`, check the result with `vt diff`, then deploy again"));
    }
    let client = Client::from_api(&args.api)?;

    let mut touched = Vec::new();
    if let Some(image) = &args.image {
        let app = args.app.as_deref().ok_or_else(|| {
            CliError::new(
                Exit::Usage,
                ErrorCode::Usage,
                "--image needs the APP to deploy it to",
            )
        })?;
        touched = pin_image(g, &root, app, args.env.as_deref(), image)?;
    }

    // Validates the working tree too: an invalid one is an error with every diagnostic.
    let report = diff::report(
        g,
        &DiffArgs {
            range: None,
            against: Some(Against::Fleet),
            topology: None,
            api: args.api.clone(),
        },
    )?;
    let plan = only_app(report.plan, args.app.as_deref(), args.env.as_deref());
    if !plan.has_changes() {
        let unchanged = serde_json::json!({"outcome": "unchanged", "commit": null});
        crate::output::print(g.output, &unchanged, |_| {
            "no changes: the fleet already runs this desired state; nothing committed\n".into()
        });
        return Ok(());
    }
    if g.output == crate::cli::Output::Text {
        eprint!("{}", diff::render_plan(&plan, Style::stderr()));
    }

    let paths = changed_paths(&repo, &root, args.app.is_some().then_some(&plan), &touched)?;
    let message = args.message.clone().unwrap_or_else(|| message(&plan));
    let commit = match git_ops::commit_paths(&repo, &message, &paths)? {
        Some(c) => c,
        None => head,
    };
    let after = follow::cursor(&client)?;
    let local_ref = format!("refs/heads/{}", up.local_branch);
    if let Err(e) = git_ops::push(&repo, &up.remote, &local_ref, &up.remote_branch) {
        return Err(rejected(&repo, &up, commit, e));
    }
    tracing::info!(commit = %commit, branch = %up.remote_branch, "pushed");
    let pushed = follow::Pushed {
        commit: commit.to_string(),
        applied: follow::Applied::Commit,
        branch: up.remote_branch.clone(),
        workloads: plan.releases.iter().map(|r| r.name.clone()).collect(),
        started,
        after,
    };
    let receipt = follow::follow(g, &client, &args.wait, &pushed)?;
    follow::finish(g, &receipt)
}

/// Keeps the part of a plan that concerns `app` (and `env`), when given.
fn only_app(mut plan: Preview, app: Option<&str>, env: Option<&str>) -> Preview {
    let Some(app) = app else { return plan };
    plan.releases.retain(|r| matches(&r.name, app, env));
    plan.removed.retain(|name| matches(name, app, env));
    plan
}

/// Resolves `image` to its digest (unless it names one) and writes it into
/// the env files of `app` (`env`, or every env of the app). Returns the
/// files written.
fn pin_image(
    g: &Global,
    root: &Path,
    app: &str,
    env: Option<&str>,
    image: &str,
) -> Result<Vec<String>, CliError> {
    let pinned = if image.contains("@sha256:") {
        image.to_string()
    } else {
        resolve(image)?
    };
    let loaded = super::load(g, None)?;
    let envs: Vec<&vt_repo::Env> = loaded
        .state
        .envs
        .iter()
        .filter(|e| matches(&e.qualified(), app, env))
        .collect();
    if envs.is_empty() {
        return Err(CliError::new(
            Exit::NotFound,
            ErrorCode::NotFound,
            format!(
                "no env of app `{app}`{}",
                env.map(|e| format!(" named `{e}`")).unwrap_or_default()
            ),
        )
        .hint("list them with `vt list env`"));
    }
    let mut written = Vec::new();
    for e in envs {
        let path = root.join(&e.file);
        let text = std::fs::read_to_string(&path).map_err(|err| {
            CliError::new(
                Exit::Failure,
                ErrorCode::Io,
                format!("cannot read {}: {err}", e.file),
            )
        })?;
        let updated = vt_repo::write::set_top_level(&text, "image", &pinned);
        std::fs::write(&path, updated).map_err(|err| {
            CliError::new(
                Exit::Failure,
                ErrorCode::Io,
                format!("cannot write {}: {err}", e.file),
            )
        })?;
        eprintln!("{}: image {pinned}", e.file);
        written.push(e.file.clone());
    }
    Ok(written)
}

/// `registry/repository@sha256:…` for a tag, asking the registry.
fn resolve(image: &str) -> Result<String, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(Exit::Failure, ErrorCode::Io, e.to_string()))?;
    let store = ImageStore::new(std::env::temp_dir().join("vt-resolve"));
    let resolved = runtime
        .block_on(store.resolve(image, &Auth::from_environment()))
        .map_err(|e| {
            CliError::new(
                Exit::NotFound,
                ErrorCode::Image,
                format!("cannot resolve {image}: {}", crate::error::chain(&e)),
            )
            .hint("check the reference and that the registry is reachable (credentials come from ~/.docker/config.json)")
        })?;
    Ok(resolved.pinned())
}

/// The layout files that differ from HEAD (only in the directories of the apps
/// `only` changes, when given), plus the files `vt deploy` wrote.
fn changed_paths(
    repo: &git2::Repository,
    root: &Path,
    only: Option<&Preview>,
    touched: &[String],
) -> Result<Vec<String>, CliError> {
    // `orgs/<org>/<project>/<app>/` of each (app, env) the plan changes.
    let dirs: Option<Vec<String>> = only.map(|plan| {
        plan.releases
            .iter()
            .map(|r| &r.name)
            .chain(&plan.removed)
            .filter_map(|name| name.rsplit_once('/'))
            .map(|(app, _)| format!("orgs/{app}/"))
            .collect()
    });
    let prefix = repo
        .workdir()
        .and_then(|w| root.strip_prefix(w).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut options = git2::StatusOptions::new();
    options.include_untracked(true).recurse_untracked_dirs(true);
    let statuses = repo.statuses(Some(&mut options)).map_err(GitError::from)?;
    let mut paths: Vec<String> = statuses
        .iter()
        .filter_map(|entry| entry.path().map(str::to_string))
        .filter(|p| {
            let rel = p.strip_prefix(&prefix).unwrap_or(p).trim_start_matches('/');
            vt_repo::source::is_layout_file(rel)
                && dirs
                    .as_ref()
                    .is_none_or(|d| d.iter().any(|dir| rel.starts_with(dir.as_str())))
        })
        .collect();
    paths.extend(
        touched
            .iter()
            .map(|t| format!("{prefix}{}{t}", if prefix.is_empty() { "" } else { "/" })),
    );
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// `deploy acme/shop/web/prod: image → …, instances 2 → 3`.
fn message(plan: &Preview) -> String {
    let parts: Vec<String> = plan
        .releases
        .iter()
        .map(|r| {
            let fields: Vec<String> = r
                .fields
                .iter()
                .take(3)
                .map(|f| {
                    let v = f.new.as_ref().map_or("∅".to_string(), |v| {
                        v.as_str().map_or(v.to_string(), str::to_string)
                    });
                    format!("{} {v}", f.path)
                })
                .collect();
            let more = r.fields.len().saturating_sub(3);
            format!(
                "{} release {}{}{}",
                r.name,
                r.to,
                if fields.is_empty() {
                    String::new()
                } else {
                    format!(": {}", fields.join(", "))
                },
                if more > 0 {
                    format!(" (+{more} more)")
                } else {
                    String::new()
                }
            )
        })
        .chain(plan.removed.iter().map(|n| format!("remove {n}")))
        .collect();
    format!("deploy {}", parts.join("; "))
}

/// A rejected push: fetch again and say what the remote has that we have not.
fn rejected(
    repo: &git2::Repository,
    up: &git_ops::Upstream,
    commit: git2::Oid,
    e: GitError,
) -> CliError {
    let GitError::Rejected { .. } = &e else {
        return e.into();
    };
    let moved = git_ops::fetch(repo, up)
        .and_then(|tip| git_ops::log_between(repo, commit, tip))
        .unwrap_or_default();
    CliError::new(
        Exit::Conflict,
        ErrorCode::PushRejected,
        format!(
            "{e}; the remote moved while deploying:\n  {}",
            moved.join("\n  ")
        ),
    )
    .hint("your commit is kept locally: `git pull --rebase`, check it with `vt diff`, then `vt deploy` again (vt never force-pushes)")
}
