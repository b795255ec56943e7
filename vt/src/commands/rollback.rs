//! `vt rollback APP [--env ENV] [--to N] [--merge]`: a commit on top of the
//! tracked branch's remote tip that restores one (app, env)'s files to those
//! of release N's commit, pushed to a new branch; then a pull request on the
//! forge, or with `--merge` a fast-forward of the tracked branch. Merged, it
//! makes release N+1 with release N's spec: history is only ever added to.

use crate::cli::{Global, RollbackArgs};
use crate::client::Client;
use crate::commands::{find_root, follow};
use crate::error::{CliError, ErrorCode, Exit};
use crate::forge::{self, Forge, ForgeError, PullRequest};
use crate::git_ops::{self, short, FastForward, GitError, Upstream};
use crate::output::{self, Style};
use git2::{Commit, Oid, Repository, Tree};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;
use vt_plan::releases::{spec_hash, Release};
use vt_plan::{ReleaseNo, WorkloadKey};
use vt_repo::{DesiredState, Snapshot};

/// A pull request that was opened.
#[derive(Debug, Serialize)]
pub struct PullRequestRef {
    /// Its web address.
    pub url: String,
}

/// What `vt rollback` did (its `--output json`).
#[derive(Debug, Serialize)]
pub struct Outcome {
    /// Qualified app name (`acme/shop/web`).
    pub app: String,
    /// Env name.
    pub env: String,
    /// The release that was current (the latest).
    pub from_release: ReleaseNo,
    /// The release restored.
    pub to_release: ReleaseNo,
    /// False when the files already were release N's: nothing was committed.
    pub changed: bool,
    /// The rollback commit.
    pub commit: Option<String>,
    /// The remote it was pushed to.
    pub remote: String,
    /// The tracked branch on the remote.
    pub base: String,
    /// The branch holding the rollback commit.
    pub branch: Option<String>,
    /// Whether the branch was pushed.
    pub pushed: bool,
    /// The pull request opened on the forge.
    pub pull_request: Option<PullRequestRef>,
    /// Whether the commit is on the tracked branch (`--merge`).
    pub merged: bool,
    /// Whether the local branch was fast-forwarded to it too.
    pub fast_forwarded: bool,
    /// What the user should know: spec drift, files left alone, a local branch not updated.
    pub warnings: Vec<String>,
    /// Release N's spec hash: merged, the rollback makes a release with it.
    pub spec_hash: String,
}

/// Runs `vt rollback`.
pub fn run(g: &Global, args: &RollbackArgs) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    // With --merge the rollout is followed unless --no-wait; a pull request
    // only with --wait (until it is merged).
    let follows = (args.merge && !args.wait.no_wait) || args.wait.wait;
    let client = Client::from_api(&args.api)?;
    let cursor = if follows {
        Some(follow::cursor(&client)?)
    } else {
        None
    };
    let outcome = rollback(g, args, &client)?;
    let (Some(after), Some(commit), true) = (cursor, &outcome.commit, outcome.pushed) else {
        output::print(g.output, &outcome, |s| text(&outcome, s));
        return Ok(());
    };
    if !outcome.merged && g.output == crate::cli::Output::Text {
        eprint!("{}", text(&outcome, Style::stderr()));
        eprintln!(
            "waiting for the pull request to be merged (--timeout {})",
            args.wait.timeout
        );
    }
    let applied = if outcome.merged {
        follow::Applied::Commit
    } else {
        follow::Applied::Release {
            after: outcome.from_release,
            spec_hash: outcome.spec_hash.clone(),
        }
    };
    let pushed = follow::Pushed {
        commit: commit.clone(),
        applied,
        branch: outcome.base.clone(),
        workloads: vec![format!("{}/{}", outcome.app, outcome.env)],
        started,
        after,
    };
    let receipt = follow::follow(g, &client, &args.wait, &pushed)?;
    output::print(
        g.output,
        &serde_json::json!({"rollback": &outcome, "receipt": &receipt}),
        // A pull request's outcome was printed before waiting for its merge.
        |s| match outcome.merged {
            true => text(&outcome, s) + &follow::render(&receipt, s),
            false => follow::render(&receipt, s),
        },
    );
    follow::result(&receipt)
}

/// Builds and pushes the rollback, then opens its pull request or (with
/// `--merge`) pushes it to the tracked branch. When `merged`,
/// `Outcome::commit` is the tracked branch's new tip: following the rollout
/// of the release it makes starts from there.
fn rollback(g: &Global, args: &RollbackArgs, client: &Client) -> Result<Outcome, CliError> {
    let span = tracing::info_span!(
        "rollback",
        app = %args.app,
        env = tracing::field::Empty,
        release = tracing::field::Empty
    );
    let _entered = span.enter();
    let repo = git_ops::open(&find_root(g)?)?;
    let up = git_ops::upstream(&repo)?;
    let forge = forge_of(&repo, &up, args)?;
    let (latest, target) = pick(&releases(client, args)?, args.to.map(ReleaseNo::new))?;
    span.record("env", split_name(&target.name).1);
    span.record("release", target.number.get());
    let tip = git_ops::fetch(&repo, &up)?;
    let (built, warnings) = build(&repo, &up, tip, &latest, &target)?;
    let mut outcome = Outcome::new(&up, &latest, &target, warnings);
    let Some(built) = built else {
        return Ok(outcome);
    };
    outcome.changed = true;
    outcome.commit = Some(built.commit.to_string());
    let branch = branch_name(&repo, &up.remote, &target)?;
    git_ops::push(&repo, &up.remote, &built.commit.to_string(), &branch)?;
    tracing::info!(%branch, commit = %built.commit, "rollback branch pushed");
    outcome.branch = Some(branch.clone());
    outcome.pushed = true;
    if args.merge {
        let ff = merge(&repo, &up, tip, built.commit, &branch, &rerun(&outcome))?;
        outcome.merged = true;
        outcome.fast_forwarded = ff == FastForward::Done;
        outcome.warnings.extend(local_warning(ff, &up));
    } else if let Some(forge) = forge {
        let pr = PullRequest {
            title: &built.title,
            head: &branch,
            base: &up.remote_branch,
            body: &built.body,
        };
        let url = forge
            .open_pull_request(&pr)
            .map_err(|e| forge_failed(e, &up, &branch))?;
        outcome.pull_request = Some(PullRequestRef { url });
    }
    Ok(outcome)
}

impl Outcome {
    /// Nothing done yet: no commit, nothing pushed.
    fn new(up: &Upstream, latest: &Release, target: &Release, warnings: Vec<String>) -> Self {
        let (app, env) = split_name(&target.name);
        Outcome {
            app: app.to_string(),
            env: env.to_string(),
            from_release: latest.number,
            to_release: target.number,
            changed: false,
            commit: None,
            remote: up.remote.clone(),
            base: up.remote_branch.clone(),
            branch: None,
            pushed: false,
            pull_request: None,
            merged: false,
            fast_forwarded: false,
            warnings,
            spec_hash: target.spec_hash.clone(),
        }
    }
}

/// The forge to open the pull request with: none with `--merge` or without `--forge`.
fn forge_of(
    repo: &Repository,
    up: &Upstream,
    args: &RollbackArgs,
) -> Result<Option<Forge>, CliError> {
    let Some(kind) = args
        .forge
        .as_deref()
        .filter(|k| !k.is_empty() && !args.merge)
    else {
        return Ok(None);
    };
    let remote = repo.find_remote(&up.remote).map_err(GitError::from)?;
    let settings = forge::Settings {
        kind,
        url: args.forge_url.as_deref(),
        repo: args.forge_repo.as_deref(),
        token: args.forge_token.as_deref(),
        ca: args.forge_ca.as_deref(),
    };
    Ok(Some(Forge::new(
        settings,
        remote.url().unwrap_or_default(),
    )?))
}

/// The releases of the one (app, env) APP and `--env` name, oldest first.
fn releases(client: &Client, args: &RollbackArgs) -> Result<Vec<Release>, CliError> {
    let all: Vec<Release> = client.get(
        "/v1/releases",
        &[("app", Some(args.app.clone())), ("env", args.env.clone())],
    )?;
    let names: BTreeSet<&str> = all.iter().map(|r| r.name.as_str()).collect();
    match names.len() {
        0 => {
            let what = match &args.env {
                Some(env) => format!("{} (env {env})", args.app),
                None => args.app.clone(),
            };
            Err(CliError::new(
                Exit::NotFound,
                ErrorCode::NotFound,
                format!("the controller has no releases of {what}"),
            )
            .hint("see what it runs with `vt status`"))
        }
        1 => Ok(all),
        _ => Err(CliError::new(
            Exit::Usage,
            ErrorCode::Ambiguous,
            format!(
                "{} names several envs: {}",
                args.app,
                names.into_iter().collect::<Vec<_>>().join(", ")
            ),
        )
        .hint("pass --env ENV (and the app's qualified name if several apps share its name)")),
    }
}

/// The latest release and the one to restore: `--to N`, else the one before the latest.
fn pick(releases: &[Release], to: Option<ReleaseNo>) -> Result<(Release, Release), CliError> {
    let latest = releases
        .iter()
        .max_by_key(|r| r.number)
        .ok_or_else(|| CliError::new(Exit::NotFound, ErrorCode::NoRelease, "no releases"))?;
    let wanted = to.unwrap_or(ReleaseNo::new(latest.number.get().saturating_sub(1)));
    let numbers: Vec<String> = releases.iter().map(|r| r.number.to_string()).collect();
    let target = releases
        .iter()
        .find(|r| r.number == wanted)
        .ok_or_else(|| {
            let message = match to {
                Some(n) => format!("{} has no release {n}", latest.name),
                None => format!(
                    "{} has only release {}: there is nothing earlier to roll back to",
                    latest.name, latest.number
                ),
            };
            CliError::new(
                Exit::NotFound,
                ErrorCode::NoRelease,
                format!("{message} (its releases: {})", numbers.join(", ")),
            )
            .hint(format!(
                "list them with `vt releases {}`",
                latest.name.rsplit_once('/').map_or("", |(app, _)| app)
            ))
        })?;
    Ok((latest.clone(), target.clone()))
}

/// `org/project/app/env` → (`org/project/app`, `env`).
fn split_name(name: &str) -> (&str, &str) {
    name.rsplit_once('/').unwrap_or((name, ""))
}

/// The rollback commit and its message.
struct Rollback {
    commit: Oid,
    title: String,
    body: String,
}

/// The rollback commit on top of `tip` (`None` when `tip` already has
/// release `target`'s files), and the warnings about it.
fn build(
    repo: &Repository,
    up: &Upstream,
    tip: Oid,
    latest: &Release,
    target: &Release,
) -> Result<(Option<Rollback>, Vec<String>), CliError> {
    let old = release_commit(repo, up, target)?;
    let current = repo.find_commit(tip).map_err(GitError::from)?;
    let (old_tree, tip_tree) = (tree_of(&old)?, tree_of(&current)?);
    let (paths, mut warnings) = paths_to_restore(repo, &old, &current, target)?;
    let tree = restore(repo, &tip_tree, &old_tree, &paths).map_err(GitError::from)?;
    if tree == tip_tree.id() {
        warnings.extend(spec_drift(&state_at(repo, &current)?, target));
        return Ok((None, warnings));
    }
    let title = format!(
        "rollback {} to release {} (commit {})",
        target.name,
        target.number,
        short(old.id())
    );
    let body = format!(
        "Restores the files of {} as they were at release {} (commit {}: {}).\n\
         The current release is {} (commit {}: {}).\n\nMade by `vt rollback`.",
        target.name,
        target.number,
        target.commit.sha,
        target.commit.message,
        latest.number,
        latest.commit.sha,
        latest.commit.message,
    );
    let commit = git_ops::commit_tree(repo, &format!("{title}\n\n{body}\n"), tree, tip)?;
    warnings.extend(verify(repo, commit, target)?);
    let rollback = Rollback {
        commit,
        title,
        body,
    };
    Ok((Some(rollback), warnings))
}

fn tree_of<'r>(commit: &Commit<'r>) -> Result<Tree<'r>, CliError> {
    Ok(commit.tree().map_err(GitError::from)?)
}

/// Release `target`'s commit, which fetching the tracked branch must have brought.
fn release_commit<'r>(
    repo: &'r Repository,
    up: &Upstream,
    target: &Release,
) -> Result<Commit<'r>, CliError> {
    Oid::from_str(&target.commit.sha)
        .and_then(|oid| repo.find_commit(oid))
        .map_err(|_| {
            CliError::new(
                Exit::NotFound,
                ErrorCode::NoCommit,
                format!(
                    "commit {} of release {} is not in this repository, even after fetching {}/{}",
                    target.commit.sha.get(..12).unwrap_or(&target.commit.sha),
                    target.number,
                    up.remote,
                    up.remote_branch
                ),
            )
            .hint("run vt rollback in a clone of the repository the controller tracks, on the branch it tracks")
        })
}

/// The desired state at `commit`.
fn state_at(repo: &Repository, commit: &Commit<'_>) -> Result<DesiredState, CliError> {
    let snapshot = Snapshot::from_commit(repo, commit, &short(commit.id()))?;
    Ok(vt_repo::load(&snapshot).state)
}

/// An (app, env)'s files in one state.
struct Files {
    /// The env file and its secrets file (which may not exist).
    env: [String; 2],
    /// The app file.
    app: String,
    /// The app's qualified name.
    app_name: String,
}

fn files_of(state: &DesiredState, key: &WorkloadKey) -> Option<Files> {
    let env = state.envs.iter().find(|e| e.id == key.env_id)?;
    let app = state.apps.iter().find(|a| a.id == key.app_id)?;
    Some(Files {
        env: [env.file.clone(), vt_repo::secrets::file_of(env)],
        app: app.file.clone(),
        app_name: app.qualified(),
    })
}

/// The paths whose content at `old` replaces the tip's: the env's files,
/// and the app file unless other envs share it (then a warning if it changed).
fn paths_to_restore(
    repo: &Repository,
    old: &Commit<'_>,
    current: &Commit<'_>,
    target: &Release,
) -> Result<(BTreeSet<String>, Vec<String>), CliError> {
    let key = &target.key;
    let old_files = files_of(&state_at(repo, old)?, key).ok_or_else(|| {
        CliError::new(
            Exit::Failure,
            ErrorCode::Rollback,
            format!(
                "commit {} of release {} has no files for {}",
                short(old.id()),
                target.number,
                target.name
            ),
        )
    })?;
    let tip_state = state_at(repo, current)?;
    let tip_files = files_of(&tip_state, key);
    let mut paths: BTreeSet<String> = old_files.env.iter().cloned().collect();
    let mut warnings = Vec::new();
    if let Some(tip_files) = &tip_files {
        paths.extend(tip_files.env.iter().cloned());
        let others: Vec<String> = tip_state
            .envs
            .iter()
            .filter(|e| e.app_qualified() == tip_files.app_name && e.id != key.env_id)
            .map(|e| e.name.clone())
            .collect();
        if !others.is_empty() {
            let changed =
                blob(&tree_of(old)?, &old_files.app) != blob(&tree_of(current)?, &tip_files.app);
            if changed {
                warnings.push(format!(
                    "{} changed since release {} but is shared with env(s) {}: left as it is",
                    tip_files.app,
                    target.number,
                    others.join(", ")
                ));
            }
            return Ok((paths, warnings));
        }
        paths.insert(tip_files.app.clone());
    }
    paths.insert(old_files.app);
    Ok((paths, warnings))
}

fn blob(tree: &Tree<'_>, path: &str) -> Option<Oid> {
    tree.get_path(Path::new(path)).ok().map(|e| e.id())
}

/// `base` with every path in `paths` as it is in `from`: added, replaced,
/// or removed when `from` has no such file.
fn restore(
    repo: &Repository,
    base: &Tree<'_>,
    from: &Tree<'_>,
    paths: &BTreeSet<String>,
) -> Result<Oid, git2::Error> {
    let mut update = git2::build::TreeUpdateBuilder::new();
    for path in paths {
        match from.get_path(Path::new(path)) {
            Ok(entry) => {
                let mode = if entry.filemode() == i32::from(git2::FileMode::BlobExecutable) {
                    git2::FileMode::BlobExecutable
                } else {
                    git2::FileMode::Blob
                };
                update.upsert(path, entry.id(), mode);
            }
            Err(_) if blob(base, path).is_some() => {
                update.remove(path);
            }
            Err(_) => {}
        }
    }
    update.create_updated(repo, base)
}

/// Checks the rollback commit: it must validate (else the controller would
/// reject it); a spec that differs from release `target`'s is a warning.
fn verify(repo: &Repository, commit: Oid, target: &Release) -> Result<Vec<String>, CliError> {
    let commit = repo.find_commit(commit).map_err(GitError::from)?;
    let loaded = vt_repo::load(&Snapshot::from_commit(repo, &commit, "rollback")?);
    if !loaded.is_valid() {
        return Err(CliError::invalid(loaded.diagnostics).hint(
            "the rollback commit would not validate, so the controller would reject it; \
             nothing was pushed: fix the tracked branch first",
        ));
    }
    Ok(spec_drift(&loaded.state, target).into_iter().collect())
}

/// A warning when the (app, env)'s effective spec in `state` is not release `target`'s.
fn spec_drift(state: &DesiredState, target: &Release) -> Option<String> {
    let spec = state
        .envs
        .iter()
        .find(|e| e.id == target.key.env_id)
        .and_then(|e| e.effective.as_ref());
    let Some(spec) = spec else {
        return Some(format!(
            "{} has no valid spec after the rollback: it will not restore release {}",
            target.name, target.number
        ));
    };
    if spec_hash(spec) == target.spec_hash {
        return None;
    }
    let fields = match (
        serde_json::to_value(&target.spec),
        serde_json::to_value(spec),
    ) {
        (Ok(old), Ok(new)) => vt_repo::diff_values(&old, &new)
            .into_iter()
            .map(|c| c.path)
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    };
    Some(format!(
        "the spec differs from release {}'s in: {fields} (vt.yaml or the shared app file \
         changed since); a release made from it keeps today's values of those",
        target.number
    ))
}

/// `vt/rollback/<app>-<env>-to-<N>`, with `-2`, `-3`... when the remote has it already.
fn branch_name(repo: &Repository, remote: &str, target: &Release) -> Result<String, CliError> {
    let (app, env) = split_name(&target.name);
    let app = app.rsplit('/').next().unwrap_or(app);
    let base = format!("vt/rollback/{app}-{env}-to-{}", target.number);
    let taken = git_ops::remote_branches(repo, remote)?;
    let name = std::iter::once(base.clone())
        .chain((2..).map(|n| format!("{base}-{n}")))
        .find(|name| !taken.contains(name))
        .unwrap_or(base);
    Ok(name)
}

/// The command that does the rollback again with `--merge`.
fn rerun(o: &Outcome) -> String {
    format!(
        "vt rollback {} --env {} --to {} --merge",
        o.app, o.env, o.to_release
    )
}

/// Pushes `commit` to the tracked branch (a fast-forward of `tip`), then the
/// local branch too when it can. If the remote moved meanwhile: what changed,
/// and nothing forced.
fn merge(
    repo: &Repository,
    up: &Upstream,
    tip: Oid,
    commit: Oid,
    branch: &str,
    rerun: &str,
) -> Result<FastForward, CliError> {
    match git_ops::push(repo, &up.remote, &commit.to_string(), &up.remote_branch) {
        Ok(()) => Ok(git_ops::fast_forward(repo, &up.local_branch, commit)?),
        Err(GitError::Rejected { message, .. }) => {
            let changes =
                git_ops::fetch(repo, up).and_then(|now| git_ops::log_between(repo, tip, now));
            let what = match changes {
                Ok(lines) => format!(
                    ", it has {} new commit(s):\n  {}",
                    lines.len(),
                    lines.join("\n  ")
                ),
                Err(e) => format!(" ({message}; cannot fetch to show what changed: {e})"),
            };
            Err(CliError::new(
                Exit::Failure,
                ErrorCode::PushRejected,
                format!(
                    "{}/{} moved while rolling back{what}",
                    up.remote, up.remote_branch
                ),
            )
            .hint(format!(
                "nothing was forced; branch {branch} holds the rollback on the previous tip. \
                 Run `{rerun}` again to build it on the new one"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Why the local branch was not fast-forwarded, if it was not.
fn local_warning(ff: FastForward, up: &Upstream) -> Option<String> {
    let (local, remote) = (
        &up.local_branch,
        format!("{}/{}", up.remote, up.remote_branch),
    );
    match ff {
        FastForward::Done => None,
        FastForward::NotOnBranch => Some(format!("{local} is not checked out: `git pull` it to get the rollback")),
        FastForward::Dirty => Some(format!(
            "{local} has uncommitted changes, so it was not updated: `git pull` when they are committed"
        )),
        FastForward::Diverged => Some(format!(
            "{local} has commits that {remote} has not, so it was not updated: `git pull --rebase`"
        )),
    }
}

/// The error when the forge did not open the pull request: the branch is pushed.
fn forge_failed(e: ForgeError, up: &Upstream, branch: &str) -> CliError {
    let mut error = CliError::from(e);
    error.message = format!(
        "{}; branch {branch} is pushed to {}",
        error.message, up.remote
    );
    error.hint(format!(
        "open the pull request by hand from {branch} into {}, or check the forge's token \
         (--forge-token / VT_FORGE_TOKEN), its permissions and --forge-url, then merge it",
        up.remote_branch
    ))
}

fn text(o: &Outcome, s: Style) -> String {
    let name = format!("{}/{}", o.app, o.env);
    let (Some(commit), Some(branch)) = (&o.commit, &o.branch) else {
        let mut out = format!(
            "{name}: its files on {}/{} already are release {}'s: nothing to commit\n",
            o.remote, o.base, o.to_release
        );
        out.push_str(&warnings_text(o, s));
        return out;
    };
    let (done, verb) = if o.merged {
        ("rolled back", "")
    } else {
        ("rollback of", " is ready")
    };
    let mut out = format!(
        "{}\n",
        s.bold(&format!(
            "{done} {name} to release {} (from release {}){verb}",
            o.to_release, o.from_release
        ))
    );
    out.push_str(&format!(
        "  commit        {}\n",
        commit.get(..12).unwrap_or(commit)
    ));
    out.push_str(&format!(
        "  branch        {branch} (pushed to {})\n",
        o.remote
    ));
    if let Some(pr) = &o.pull_request {
        out.push_str(&format!("  pull request  {}\n", pr.url));
    }
    if o.merged {
        out.push_str(&format!("  merged        into {}/{}\n", o.remote, o.base));
    }
    out.push_str(&warnings_text(o, s));
    if !o.merged && o.pull_request.is_none() {
        out.push_str(&format!(
            "to apply it: git fetch {remote} && git merge --ff-only {remote}/{branch} && \
             git push {remote} HEAD:{base}\n  or run: {}\n",
            rerun(o),
            remote = o.remote,
            base = o.base,
        ));
    }
    out
}

fn warnings_text(o: &Outcome, s: Style) -> String {
    o.warnings
        .iter()
        .map(|w| format!("{} {w}\n", s.red("warning:")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git_ops::testing::{origin_main, someone_pushes, world};

    #[test]
    fn a_merge_into_a_branch_that_moved_shows_what_changed_and_forces_nothing() {
        let w = world();
        let up = git_ops::upstream(&w.clone).expect("upstream");
        let tip = git_ops::fetch(&w.clone, &up).expect("fetch");
        let tree = w.clone.find_commit(tip).expect("tip").tree_id();
        let commit = git_ops::commit_tree(&w.clone, "rollback", tree, tip).expect("commit");
        let theirs = someone_pushes(&w, "their change");

        let rerun = "vt rollback web --env prod --to 1 --merge";
        let e = merge(
            &w.clone,
            &up,
            tip,
            commit,
            "vt/rollback/web-prod-to-1",
            rerun,
        )
        .expect_err("rejected");
        assert_eq!(e.code, "E_PUSH_REJECTED");
        assert!(
            e.message.contains("origin/main moved")
                && e.message
                    .contains(&format!("{} their change (t)", short(theirs))),
            "{}",
            e.message
        );
        let hint = e.hint.unwrap_or_default();
        assert!(
            hint.contains(rerun) && hint.contains("nothing was forced"),
            "{hint}"
        );
        assert_eq!(origin_main(&w), theirs, "nothing forced");
    }

    #[test]
    fn a_merge_fast_forwards_the_tracked_branch_and_the_clean_local_one() {
        let w = world();
        let up = git_ops::upstream(&w.clone).expect("upstream");
        let tip = git_ops::fetch(&w.clone, &up).expect("fetch");
        let tree = w.clone.find_commit(tip).expect("tip").tree_id();
        let commit = git_ops::commit_tree(&w.clone, "rollback", tree, tip).expect("commit");
        let ff = merge(&w.clone, &up, tip, commit, "b", "vt rollback").expect("merged");
        assert_eq!(ff, FastForward::Done);
        assert_eq!(origin_main(&w), commit);
        assert_eq!(w.clone.head().expect("head").target(), Some(commit));
        assert_eq!(local_warning(ff, &up), None);
    }
}
