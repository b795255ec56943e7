//! Git plumbing shared by `vt deploy` and `vt rollback` (git2): the branch
//! HEAD is on and where it pushes, fetching it, committing paths, pushing
//! without ever forcing, and what a rejected push missed.
//!
//! Remotes given as a path go through libgit2. Remotes given as a URL
//! (`https://`, `ssh://`, `git@host:path`, `file://`) go through the `git`
//! command, so the user's own transports, ssh keys and credential helpers
//! apply exactly as for `git push` (libgit2 is built here without ssh/TLS).

use crate::error::{CliError, ErrorCode as Code, Exit};
use git2::{Cred, CredentialType, ErrorClass, ErrorCode, Oid, Repository};
use std::cell::RefCell;
use std::path::Path;

/// The branch HEAD is on and where it pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The remote's name (`origin`).
    pub remote: String,
    /// HEAD's branch (`main`).
    pub local_branch: String,
    /// The branch it tracks on the remote.
    pub remote_branch: String,
}

impl Upstream {
    /// `refs/remotes/<remote>/<remote_branch>`, where [`fetch`] leaves the remote's tip.
    pub fn tracking_ref(&self) -> String {
        format!("refs/remotes/{}/{}", self.remote, self.remote_branch)
    }
}

/// Git failures, each with what to do about it once it is a [`CliError`].
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// HEAD is not on a branch.
    #[error("HEAD is not on a branch (detached HEAD)")]
    Detached,
    /// HEAD's branch has no upstream and there is no `origin`.
    #[error("branch `{branch}` has no upstream and the repository has no remote `origin`")]
    NoRemote {
        /// HEAD's branch.
        branch: String,
    },
    /// The remote has no such branch.
    #[error("remote `{remote}` has no branch `{branch}`")]
    NoRemoteBranch {
        /// The remote.
        remote: String,
        /// The branch.
        branch: String,
    },
    /// The push is not a fast-forward of the remote's branch: it moved.
    #[error("{remote} rejected the push to `{branch}`: {message}")]
    Rejected {
        /// The remote.
        remote: String,
        /// The remote branch.
        branch: String,
        /// What git or the remote said.
        message: String,
    },
    /// The remote refused the push for another reason (a hook, a protected branch).
    #[error("{remote} refused the push to `{branch}`: {message}")]
    Refused {
        /// The remote.
        remote: String,
        /// The remote branch.
        branch: String,
        /// What the remote said.
        message: String,
    },
    /// Any other git failure.
    #[error("{}", .0.message())]
    Git(#[from] git2::Error),
    /// The `git` command failed.
    #[error("`git {args}` failed: {message}")]
    Command {
        /// Its arguments.
        args: String,
        /// What it printed on stderr.
        message: String,
    },
}

impl From<GitError> for CliError {
    fn from(e: GitError) -> Self {
        let message = e.to_string();
        let error = |code: Code| CliError::new(Exit::Failure, code, message.clone());
        match &e {
            GitError::Detached => {
                error(Code::Detached).hint("check out the branch to change (`git switch main`)")
            }
            GitError::NoRemote { branch } => error(Code::NoRemote).hint(format!(
                "add a remote (`git remote add origin URL`) or set the upstream of {branch} \
                 (`git branch --set-upstream-to REMOTE/BRANCH`)"
            )),
            GitError::NoRemoteBranch { remote, branch } => error(Code::NoRemoteBranch)
                .hint(format!("push it first (`git push -u {remote} {branch}`)")),
            GitError::Rejected { remote, branch, .. } => error(Code::PushRejected).hint(format!(
                "{remote}/{branch} has commits you do not have: `git pull --rebase`, then run \
                 the command again (vt never force-pushes)"
            )),
            GitError::Refused { .. } => error(Code::PushRefused)
                .hint("check your permissions and the branch's protection rules on the remote"),
            GitError::Git(g) if g.class() == ErrorClass::Net => {
                error(Code::Git).hint("check the remote's URL and that `git fetch` works here")
            }
            GitError::Git(_) => error(Code::Git),
            GitError::Command { .. } => error(Code::Git)
                .hint("check the remote's URL and your credentials: `git fetch` must work here"),
        }
    }
}

/// HEAD's branch and its configured upstream (`branch.<b>.remote` and
/// `branch.<b>.merge`); without one, remote `origin` and the same branch name.
pub fn upstream(repo: &Repository) -> Result<Upstream, GitError> {
    let head = repo.find_reference("HEAD")?;
    let local_branch = head
        .symbolic_target()
        .and_then(|target| target.strip_prefix("refs/heads/"))
        .ok_or(GitError::Detached)?
        .to_string();
    let config = repo.config()?.snapshot()?;
    let configured = |key: &str| {
        config
            .get_string(&format!("branch.{local_branch}.{key}"))
            .ok()
    };
    let remote = match configured("remote") {
        Some(remote) => remote,
        None if repo.find_remote("origin").is_ok() => "origin".to_string(),
        None => {
            return Err(GitError::NoRemote {
                branch: local_branch,
            })
        }
    };
    let remote_branch = configured("merge")
        .and_then(|merge| merge.strip_prefix("refs/heads/").map(str::to_string))
        .unwrap_or_else(|| local_branch.clone());
    Ok(Upstream {
        remote,
        local_branch,
        remote_branch,
    })
}

/// What the credential callback has tried so far: each method once.
#[derive(Default)]
struct Tried {
    agent: bool,
    helper: bool,
    default: bool,
}

/// Callbacks asking for credentials: ssh-agent, then the credential helpers, then default.
fn callbacks<'a>(repo: &Repository) -> git2::RemoteCallbacks<'a> {
    let config = repo.config().ok();
    let mut tried = Tried::default();
    let mut callbacks = git2::RemoteCallbacks::new();
    callbacks.credentials(move |url, username, allowed| {
        let user = username.unwrap_or("git");
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(user);
        }
        if allowed.contains(CredentialType::SSH_KEY) && !tried.agent {
            tried.agent = true;
            return Cred::ssh_key_from_agent(user);
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) && !tried.helper {
            tried.helper = true;
            if let Some(cred) = config
                .as_ref()
                .and_then(|c| Cred::credential_helper(c, url, username).ok())
            {
                return Ok(cred);
            }
        }
        if allowed.contains(CredentialType::DEFAULT) && !tried.default {
            tried.default = true;
            return Cred::default();
        }
        Err(git2::Error::from_str(&format!(
            "no credentials for {url} were accepted (tried the ssh-agent, git's credential \
             helpers and the default credentials)"
        )))
    });
    callbacks
}

/// The branch names (`refs/heads/*`) of `remote`, as the remote lists them now.
pub fn remote_branches(repo: &Repository, remote: &str) -> Result<Vec<String>, GitError> {
    if by_command(repo, remote)? {
        let listed = git(repo, &["ls-remote", "--heads", remote])?;
        return Ok(listed
            .lines()
            .filter_map(|l| l.split('\t').nth(1)?.strip_prefix("refs/heads/"))
            .map(str::to_string)
            .collect());
    }
    let mut remote = repo.find_remote(remote)?;
    let connection = remote.connect_auth(git2::Direction::Fetch, Some(callbacks(repo)), None)?;
    let heads = connection.list()?;
    Ok(heads
        .iter()
        .filter_map(|head| head.name().strip_prefix("refs/heads/"))
        .map(str::to_string)
        .collect())
}

/// Fetches `up.remote_branch` into `refs/remotes/<remote>/<branch>`; returns the remote's tip.
pub fn fetch(repo: &Repository, up: &Upstream) -> Result<Oid, GitError> {
    let _span =
        tracing::debug_span!("fetch", remote = %up.remote, branch = %up.remote_branch).entered();
    let refspec = format!("+refs/heads/{}:{}", up.remote_branch, up.tracking_ref());
    if by_command(repo, &up.remote)? {
        // One round trip: git names a missing branch in its error.
        return match git(repo, &["fetch", "--quiet", &up.remote, &refspec]) {
            Err(GitError::Command { message, .. })
                if message.contains("couldn't find remote ref") =>
            {
                Err(GitError::NoRemoteBranch {
                    remote: up.remote.clone(),
                    branch: up.remote_branch.clone(),
                })
            }
            Err(e) => Err(e),
            Ok(_) => Ok(repo.refname_to_id(&up.tracking_ref())?),
        };
    }
    let mut remote = repo.find_remote(&up.remote)?;
    let mut options = git2::FetchOptions::new();
    options.remote_callbacks(callbacks(repo));
    remote.fetch(&[refspec.as_str()], Some(&mut options), None)?;
    let wanted = format!("refs/heads/{}", up.remote_branch);
    if !remote.list()?.iter().any(|head| head.name() == wanted) {
        return Err(GitError::NoRemoteBranch {
            remote: up.remote.clone(),
            branch: up.remote_branch.clone(),
        });
    }
    let tip = repo.refname_to_id(&up.tracking_ref())?;
    tracing::debug!(%tip, "fetched");
    Ok(tip)
}

/// How many commits `local` has that `remote` has not, and the other way round.
pub fn ahead_behind(
    repo: &Repository,
    local: Oid,
    remote: Oid,
) -> Result<(usize, usize), GitError> {
    Ok(repo.graph_ahead_behind(local, remote)?)
}

/// The author and committer: `user.name`/`user.email` from git's config, else `vt <vt@localhost>`.
pub fn signature(repo: &Repository) -> Result<git2::Signature<'static>, GitError> {
    Ok(repo
        .signature()
        .or_else(|_| git2::Signature::now("vt", "vt@localhost"))?)
}

/// Like `git add -- PATHS && git commit -m MESSAGE` on HEAD's branch (paths
/// relative to the work tree; deleted files leave the index). `None` when
/// the commit would change nothing: no empty commits.
pub fn commit_paths(
    repo: &Repository,
    message: &str,
    paths: &[String],
) -> Result<Option<Oid>, GitError> {
    let mut index = repo.index()?;
    index.add_all(paths, git2::IndexAddOption::DEFAULT, None)?;
    index.update_all(paths, None)?;
    let tree = index.write_tree()?;
    let parent = match repo.head() {
        Ok(head) => Some(head.peel_to_commit()?),
        Err(e) if e.code() == ErrorCode::UnbornBranch => None,
        Err(e) => return Err(e.into()),
    };
    if parent.as_ref().is_some_and(|p| p.tree_id() == tree) {
        return Ok(None);
    }
    index.write()?;
    let sig = signature(repo)?;
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    let commit = repo.commit(
        Some("HEAD"),
        &sig,
        &sig,
        message,
        &repo.find_tree(tree)?,
        &parents,
    )?;
    Ok(Some(commit))
}

/// A commit of `tree` on top of `parent`, moving no reference.
pub fn commit_tree(
    repo: &Repository,
    message: &str,
    tree: Oid,
    parent: Oid,
) -> Result<Oid, GitError> {
    let sig = signature(repo)?;
    let tree = repo.find_tree(tree)?;
    let parent = repo.find_commit(parent)?;
    Ok(repo.commit(None, &sig, &sig, message, &tree, &[&parent])?)
}

/// Whether a remote's status for a refused reference means "not a fast-forward".
fn is_non_fast_forward(status: &str) -> bool {
    ["non-fast-forward", "fetch first", "stale info"]
        .iter()
        .any(|s| status.contains(s))
}

/// Pushes `local_ref` (a reference or a commit) to `refs/heads/<remote_branch>`
/// of `remote`, never forcing. A push that is not a fast-forward (seen by
/// libgit2 before sending, or refused by the remote) is [`GitError::Rejected`].
pub fn push(
    repo: &Repository,
    remote: &str,
    local_ref: &str,
    remote_branch: &str,
) -> Result<(), GitError> {
    let _span = tracing::debug_span!("push", remote, branch = remote_branch).entered();
    if by_command(repo, remote)? {
        return push_by_command(repo, remote, local_ref, remote_branch);
    }
    let refused = RefCell::new(None::<String>);
    let mut handle = repo.find_remote(remote)?;
    let mut callbacks = callbacks(repo);
    callbacks.push_update_reference(|_, status| {
        if let Some(status) = status {
            *refused.borrow_mut() = Some(status.to_string());
        }
        Ok(())
    });
    let mut options = git2::PushOptions::new();
    options.remote_callbacks(callbacks);
    let refspec = format!("{local_ref}:refs/heads/{remote_branch}");
    let result = handle.push(&[refspec.as_str()], Some(&mut options));
    drop(options);
    let (remote, branch) = (remote.to_string(), remote_branch.to_string());
    match (result, refused.into_inner()) {
        (Err(e), _) if e.code() == ErrorCode::NotFastForward => Err(GitError::Rejected {
            remote,
            branch,
            message: e.message().to_string(),
        }),
        (Err(e), _) => Err(e.into()),
        (Ok(()), Some(message)) if is_non_fast_forward(&message) => Err(GitError::Rejected {
            remote,
            branch,
            message,
        }),
        (Ok(()), Some(message)) => Err(GitError::Refused {
            remote,
            branch,
            message,
        }),
        (Ok(()), None) => {
            tracing::debug!("pushed");
            Ok(())
        }
    }
}

/// Whether `remote` is a URL, reached with the `git` command.
fn by_command(repo: &Repository, remote: &str) -> Result<bool, GitError> {
    let handle = repo.find_remote(remote)?;
    let url = handle.pushurl().or(handle.url()).unwrap_or_default();
    let scp_like = url
        .split_once(':')
        .is_some_and(|(host, _)| host.contains('@') && !host.contains('/'));
    Ok(url.contains("://") || scp_like)
}

/// Runs `git ARGS` in the repository, never prompting.
fn run_git(repo: &Repository, args: &[&str]) -> Result<std::process::Output, GitError> {
    let dir = repo.workdir().unwrap_or_else(|| repo.path());
    std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| GitError::Command {
            args: args.join(" "),
            message: format!("cannot run git: {e}"),
        })
}

/// Runs `git ARGS` in the repository, which must succeed; its stdout.
fn git(repo: &Repository, args: &[&str]) -> Result<String, GitError> {
    let out = run_git(repo, args)?;
    if !out.status.success() {
        return Err(GitError::Command {
            args: args.join(" "),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// [`push`] through `git push --porcelain`: a `!` line is a refused
/// reference, rejected when it says the remote moved.
fn push_by_command(
    repo: &Repository,
    remote: &str,
    local_ref: &str,
    remote_branch: &str,
) -> Result<(), GitError> {
    let refspec = format!("{local_ref}:refs/heads/{remote_branch}");
    let args = ["push", "--porcelain", remote, refspec.as_str()];
    let out = run_git(repo, &args)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (remote, branch) = (remote.to_string(), remote_branch.to_string());
    if let Some(line) = stdout.lines().find(|l| l.starts_with('!')) {
        let message = line.split('\t').nth(2).unwrap_or(line).to_string();
        return Err(if is_non_fast_forward(&message) {
            GitError::Rejected {
                remote,
                branch,
                message,
            }
        } else {
            GitError::Refused {
                remote,
                branch,
                message,
            }
        });
    }
    if !out.status.success() {
        return Err(GitError::Command {
            args: args.join(" "),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// The first 7 hex digits of a commit's ID.
pub fn short(oid: Oid) -> String {
    oid.to_string().chars().take(7).collect()
}

/// One line per commit that `to` has and `from` has not, newest first:
/// `abc1234 subject (author)`.
pub fn log_between(repo: &Repository, from: Oid, to: Oid) -> Result<Vec<String>, GitError> {
    let mut walk = repo.revwalk()?;
    walk.push(to)?;
    walk.hide(from)?;
    walk.map(|oid| {
        let commit = repo.find_commit(oid?)?;
        Ok(format!(
            "{} {} ({})",
            short(commit.id()),
            commit.summary().unwrap_or_default(),
            commit.author().name().unwrap_or("?")
        ))
    })
    .collect()
}

/// What [`fast_forward`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastForward {
    /// The branch (and the work tree) are at the commit now.
    Done,
    /// HEAD is not on that branch: nothing changed.
    NotOnBranch,
    /// The work tree or the index has changes: nothing changed.
    Dirty,
    /// The branch has commits the target has not: nothing changed.
    Diverged,
}

/// Fast-forwards `branch` and the work tree to `to`, only when HEAD is on
/// `branch`, nothing is modified or staged and `to` contains the branch.
pub fn fast_forward(repo: &Repository, branch: &str, to: Oid) -> Result<FastForward, GitError> {
    let refname = format!("refs/heads/{branch}");
    let head = repo.find_reference("HEAD")?;
    if head.symbolic_target() != Some(refname.as_str()) {
        return Ok(FastForward::NotOnBranch);
    }
    let mut options = git2::StatusOptions::new();
    options.include_untracked(false).include_ignored(false);
    if !repo.statuses(Some(&mut options))?.is_empty() {
        return Ok(FastForward::Dirty);
    }
    let local = repo.refname_to_id(&refname)?;
    if ahead_behind(repo, local, to)?.0 > 0 {
        return Ok(FastForward::Diverged);
    }
    let target = repo.find_commit(to)?;
    repo.checkout_tree(
        target.as_object(),
        Some(git2::build::CheckoutBuilder::new().safe()),
    )?;
    repo.find_reference(&refname)?
        .set_target(to, "vt: fast-forward")?;
    Ok(FastForward::Done)
}

/// The git repository containing `dir`.
pub fn open(dir: &Path) -> Result<Repository, vt_repo::SourceError> {
    Repository::discover(dir).map_err(|source| vt_repo::SourceError::NotARepo {
        path: dir.to_path_buf(),
        source,
    })
}

/// Repositories for tests: a bare origin and a clone.
#[cfg(test)]
pub mod testing {
    use super::*;
    use tempfile::TempDir;

    /// A bare "origin" with one commit on `main`, and a clone of it.
    pub struct World {
        /// Holds every repository.
        pub dir: TempDir,
        /// The bare origin.
        pub origin: Repository,
        /// A clone of it, on `main`.
        pub clone: Repository,
    }

    /// Writes a file of `repo`'s work tree.
    pub fn write(repo: &Repository, path: &str, content: &str) {
        let workdir = repo.workdir().expect("a work tree");
        std::fs::write(workdir.join(path), content).expect("write");
    }

    /// A clone of `origin` in `into`, with a user configured.
    pub fn clone_of(origin: &Path, into: &Path) -> Repository {
        let repo = Repository::clone(&origin.display().to_string(), into).expect("clone");
        let mut config = repo.config().expect("config");
        config.set_str("user.name", "t").expect("name");
        config.set_str("user.email", "t@t").expect("email");
        repo
    }

    /// A new world.
    pub fn world() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let origin_path = dir.path().join("origin.git");
        let origin = Repository::init_opts(
            &origin_path,
            git2::RepositoryInitOptions::new()
                .bare(true)
                .initial_head("main"),
        )
        .expect("init origin");
        let seed = Repository::init_opts(
            dir.path().join("seed"),
            git2::RepositoryInitOptions::new().initial_head("main"),
        )
        .expect("init seed");
        seed.remote("origin", &origin_path.display().to_string())
            .expect("remote");
        write(&seed, "a.txt", "a\n");
        commit_paths(&seed, "first", &["a.txt".into()])
            .expect("commit")
            .expect("a first commit");
        push(&seed, "origin", "HEAD", "main").expect("push the first commit");
        let clone = clone_of(&origin_path, &dir.path().join("clone"));
        World { dir, origin, clone }
    }

    /// The origin's `main`.
    pub fn origin_main(w: &World) -> Oid {
        w.origin.refname_to_id("refs/heads/main").expect("main")
    }

    /// Someone else pushes a commit `subject` to the origin's `main`; returns it.
    pub fn someone_pushes(w: &World, subject: &str) -> Oid {
        let other = clone_of(w.origin.path(), &w.dir.path().join("other"));
        write(&other, "a.txt", "theirs\n");
        commit_paths(&other, subject, &["a.txt".into()])
            .expect("commit")
            .expect("a commit");
        push(&other, "origin", "HEAD", "main").expect("their push");
        origin_main(w)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{origin_main, someone_pushes, world, write};
    use super::*;

    #[test]
    fn upstream_is_the_configured_one_and_detached_head_is_an_error() {
        let w = world();
        let up = upstream(&w.clone).expect("upstream");
        assert_eq!(
            up,
            Upstream {
                remote: "origin".into(),
                local_branch: "main".into(),
                remote_branch: "main".into(),
            }
        );
        assert_eq!(up.tracking_ref(), "refs/remotes/origin/main");
        let head = w.clone.head().expect("head").target().expect("oid");
        w.clone.set_head_detached(head).expect("detach");
        assert!(matches!(upstream(&w.clone), Err(GitError::Detached)));
    }

    #[test]
    fn commit_paths_commits_changes_and_deletions_and_nothing_else() {
        let w = world();
        assert_eq!(
            commit_paths(&w.clone, "nothing", &["a.txt".into()]).expect("commit"),
            None,
            "no empty commit"
        );
        write(&w.clone, "a.txt", "changed\n");
        write(&w.clone, "b.txt", "b\n");
        write(&w.clone, "c.txt", "not asked for\n");
        // Commits `paths` and returns whether each of `probe` is in the new tree.
        let commit_and_probe = |message: &str, paths: &[String], probe: &[&str]| {
            let oid = commit_paths(&w.clone, message, paths)
                .expect("commit")
                .expect("a commit");
            let tree = w
                .clone
                .find_commit(oid)
                .expect("commit")
                .tree()
                .expect("tree");
            let found: Vec<bool> = probe
                .iter()
                .map(|p| tree.get_path(Path::new(p)).is_ok())
                .collect();
            (oid, found)
        };
        let (_, found) = commit_and_probe(
            "change",
            &["a.txt".into(), "b.txt".into()],
            &["b.txt", "c.txt"],
        );
        assert!(found[0]);
        assert!(!found[1], "only the paths");
        std::fs::remove_file(w.clone.workdir().expect("workdir").join("b.txt")).expect("rm");
        let (oid, found) = commit_and_probe("delete", &["b.txt".into()], &["b.txt"]);
        assert!(!found[0], "deleted");
        assert_eq!(w.clone.head().expect("head").target(), Some(oid));
    }

    #[test]
    fn push_is_rejected_when_the_remote_moved_and_fetch_shows_what_changed() {
        let w = world();
        let up = upstream(&w.clone).expect("upstream");
        let base = fetch(&w.clone, &up).expect("fetch");
        let theirs = someone_pushes(&w, "their change");

        write(&w.clone, "a.txt", "mine\n");
        let mine = commit_paths(&w.clone, "my change", &["a.txt".into()])
            .expect("commit")
            .expect("a commit");
        match push(&w.clone, "origin", "refs/heads/main", "main") {
            Err(GitError::Rejected { remote, branch, .. }) => {
                assert_eq!((remote.as_str(), branch.as_str()), ("origin", "main"));
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert_eq!(origin_main(&w), theirs, "nothing forced");

        let tip = fetch(&w.clone, &up).expect("fetch");
        assert_eq!(tip, theirs);
        assert_eq!(ahead_behind(&w.clone, mine, tip).expect("graph"), (1, 1));
        let log = log_between(&w.clone, base, tip).expect("log");
        assert_eq!(log, [format!("{} their change (t)", short(theirs))]);
        // Still rejected once fetched: the local non-fast-forward check.
        assert!(matches!(
            push(&w.clone, "origin", "refs/heads/main", "main"),
            Err(GitError::Rejected { .. })
        ));
    }

    #[test]
    fn a_commit_is_pushed_by_id_to_a_new_branch_and_fast_forwarded_locally() {
        let w = world();
        let up = upstream(&w.clone).expect("upstream");
        let tip = fetch(&w.clone, &up).expect("fetch");
        let tree = w.clone.find_commit(tip).expect("tip").tree_id();
        let commit = commit_tree(&w.clone, "same tree", tree, tip).expect("commit");
        assert_eq!(ahead_behind(&w.clone, commit, tip).expect("graph"), (1, 0));
        push(&w.clone, "origin", &commit.to_string(), "topic").expect("push");
        let branches = remote_branches(&w.clone, "origin").expect("ls-remote");
        assert!(branches.contains(&"topic".to_string()), "{branches:?}");
        push(&w.clone, "origin", &commit.to_string(), "main").expect("fast-forward");
        assert_eq!(origin_main(&w), commit);

        write(&w.clone, "a.txt", "local edit\n");
        assert_eq!(
            fast_forward(&w.clone, "main", commit).expect("ff"),
            FastForward::Dirty
        );
        write(&w.clone, "a.txt", "a\n");
        assert_eq!(
            fast_forward(&w.clone, "other", commit).expect("ff"),
            FastForward::NotOnBranch
        );
        assert_eq!(
            fast_forward(&w.clone, "main", commit).expect("ff"),
            FastForward::Done
        );
        assert_eq!(w.clone.head().expect("head").target(), Some(commit));
    }

    #[test]
    fn a_missing_remote_branch_is_named() {
        let w = world();
        let up = Upstream {
            remote: "origin".into(),
            local_branch: "main".into(),
            remote_branch: "nope".into(),
        };
        assert!(matches!(
            fetch(&w.clone, &up),
            Err(GitError::NoRemoteBranch { branch, .. }) if branch == "nope"
        ));
    }

    #[test]
    fn url_remotes_go_through_the_git_command_with_the_same_rules() {
        let w = world();
        let url = format!("file://{}", w.origin.path().display());
        w.clone.remote_set_url("origin", &url).expect("set url");
        assert!(by_command(&w.clone, "origin").expect("remote"));
        let up = upstream(&w.clone).expect("upstream");
        assert_eq!(
            remote_branches(&w.clone, "origin").expect("ls-remote"),
            ["main"]
        );
        let base = fetch(&w.clone, &up).expect("fetch");
        assert_eq!(base, origin_main(&w));

        write(&w.clone, "a.txt", "mine\n");
        commit_paths(&w.clone, "mine", &["a.txt".into()])
            .expect("commit")
            .expect("a commit");
        push(&w.clone, "origin", "refs/heads/main", "main").expect("a fast-forward");
        let mine = origin_main(&w);

        let theirs = someone_pushes(&w, "theirs");
        write(&w.clone, "a.txt", "mine again\n");
        commit_paths(&w.clone, "mine again", &["a.txt".into()])
            .expect("commit")
            .expect("a commit");
        match push(&w.clone, "origin", "refs/heads/main", "main") {
            Err(GitError::Rejected { .. }) => {}
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert_eq!(origin_main(&w), theirs, "nothing forced");
        assert_ne!(mine, theirs);
        let up = upstream(&w.clone).expect("upstream");
        let missing = Upstream {
            remote_branch: "nope".into(),
            ..up
        };
        assert!(matches!(
            fetch(&w.clone, &missing),
            Err(GitError::NoRemoteBranch { .. })
        ));
    }
}
