//! The harness: the built `vt` binary, a sandbox per test (temporary
//! directory, HOME, logs) with commands that cannot leak the developer's
//! environment, bounded polling, and the fleet pieces in the submodules.

pub mod api;
pub mod attach;
pub mod cluster;
pub mod fleet;
pub mod microvm;
pub mod netns;
pub mod process;
pub mod repo;
pub mod servers;
pub mod status;

use process::Proc;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The `vt` binary under test: `<target>/debug/vt`, next to this test's own
/// `<target>/debug/deps/e2e-*`. The justfile builds it before `cargo test`.
pub fn vt_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let candidates = [
        exe.parent()
            .and_then(Path::parent)
            .map(|debug| debug.join("vt")),
        Some(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
                .join("debug")
                .join("vt"),
        ),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the vt binary is not built (looked next to {}): run `cargo build -p vt` first \
                 (`just test` does it)",
                exe.display()
            )
        })
}

/// Calls `check` every 50 ms until it returns `Some`, for at most `timeout`;
/// `None` after that.
pub fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Like [`poll`], but panics naming `what` when the time is up.
pub fn wait_until<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    poll(timeout, check)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting until {what}"))
}

/// A finished command.
#[derive(Debug, Clone)]
pub struct Out {
    /// What it ran, for messages.
    pub what: String,
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Out {
    /// Stdout as JSON (commands run with `-o json` print errors there too).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("`{}` did not print JSON ({e}):\n{self}", self.what))
    }

    /// Panics unless it exited 0.
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "`{}` failed:\n{self}", self.what);
        self
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The environment every process of a sandbox runs in: nothing of the
/// developer's (no VT_* variables, no ~/.config/vt, no git config).
#[derive(Debug, Clone)]
pub struct Env {
    home: PathBuf,
    logs: PathBuf,
}

/// How long a short command (not a daemon) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

impl Env {
    fn base(&self, program: &Path, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "1")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t");
        cmd
    }

    /// `PROGRAM` in `cwd` with the sandbox's environment, not started yet.
    pub fn command(&self, program: &Path, cwd: &Path) -> Command {
        self.base(program, cwd)
    }

    /// Starts a command whose stdin the test writes ([`Proc::stdin`]).
    pub fn spawn_piped(&self, name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(std::process::Stdio::piped());
        Proc::spawn_with_stdin(name, cmd, &self.logs)
    }

    /// `vt ARGS` in `cwd`, not started yet.
    pub fn vt_command(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut cmd = self.base(&vt_bin(), cwd);
        cmd.args(args);
        cmd
    }

    /// Runs a command to completion (at most 30 s).
    pub fn run(&self, name: &str, cmd: Command) -> Out {
        let what = format!("{cmd:?}");
        let mut proc = Proc::spawn(name, cmd, &self.logs);
        let status = proc.wait(COMMAND_TIMEOUT);
        Out {
            what,
            code: status.code().unwrap_or(-1),
            stdout: proc.stdout(),
            stderr: proc.stderr(),
        }
    }

    /// Starts a long-running command with the sandbox's logs.
    pub fn spawn(&self, name: &str, cmd: Command) -> Proc {
        Proc::spawn(name, cmd, &self.logs)
    }

    /// Runs `vt ARGS` in `cwd`.
    pub fn vt(&self, cwd: &Path, args: &[&str]) -> Out {
        self.run("vt", self.vt_command(cwd, args))
    }

    /// Starts a long-running `vt ARGS` (a daemon) with info logs on stderr.
    pub fn spawn_vt(&self, name: &str, cwd: &Path, args: &[&str]) -> Proc {
        self.spawn_vt_with(name, cwd, args, &[])
    }

    /// [`Env::spawn_vt`] with extra environment variables.
    pub fn spawn_vt_with(
        &self,
        name: &str,
        cwd: &Path,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> Proc {
        let mut cmd = self.vt_command(cwd, args);
        cmd.env("VT_LOG", "info");
        cmd.envs(vars.iter().copied());
        Proc::spawn(name, cmd, &self.logs)
    }

    /// Runs `git ARGS` in `cwd` as user `t <t@t>`; panics if it fails.
    pub fn git(&self, cwd: &Path, args: &[&str]) -> String {
        let mut cmd = self.base(Path::new("git"), cwd);
        cmd.args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args);
        let out = self.run("git", cmd).ok();
        out.stdout.trim().to_string()
    }
}

/// One test's world: a temporary directory (removed last, after every
/// process holding files in it is killed) and the [`Env`] to run things in.
pub struct Sandbox {
    env: Env,
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// A fresh sandbox; kept after the test when `VT_E2E_KEEP` is set, to
    /// read its logs (`logs/`) and state directories.
    pub fn new() -> Sandbox {
        let keep = std::env::var_os("VT_E2E_KEEP").is_some();
        let dir = tempfile::Builder::new()
            .prefix("vt-e2e-")
            .disable_cleanup(keep)
            .tempdir()
            .expect("create a temporary directory");
        if keep {
            eprintln!("sandbox kept at {}", dir.path().display());
        }
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".config")).expect("create HOME");
        let env = Env {
            home,
            logs: dir.path().join("logs"),
        };
        Sandbox { env, dir }
    }

    /// Its directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The environment its processes run in.
    pub fn env(&self) -> &Env {
        &self.env
    }
}
