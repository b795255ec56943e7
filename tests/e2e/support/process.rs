//! Child processes that cannot outlive their test: every one is a [`Proc`],
//! killed (SIGKILL) and reaped when dropped, also when the test panics. Their
//! stdout and stderr go to files, so nothing blocks on a full pipe and the
//! output can be read while they run.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A running (or finished) child process, killed on drop.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// Starts `cmd`, sending its output to files named after `name` in `logs`.
    pub fn spawn(name: &str, mut cmd: Command, logs: &Path) -> Proc {
        cmd.stdin(Stdio::null());
        Proc::spawn_with_stdin(name, cmd, logs)
    }

    /// Like [`Proc::spawn`], but with the stdin `cmd` was given (take a
    /// pipe with [`Proc::stdin`]).
    pub fn spawn_with_stdin(name: &str, mut cmd: Command, logs: &Path) -> Proc {
        std::fs::create_dir_all(logs).expect("create the log directory");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let stdout = logs.join(format!("{n:03}-{name}.out"));
        let stderr = logs.join(format!("{n:03}-{name}.err"));
        cmd.stdout(File::create(&stdout).expect("create the stdout file"))
            .stderr(File::create(&stderr).expect("create the stderr file"));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child,
            status: None,
            stdout,
            stderr,
        }
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The pipe to its stdin, once, if it was spawned with a piped stdin.
    pub fn stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits for it to exit, at most `timeout`; kills it and panics after that.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            if start.elapsed() > timeout {
                self.kill();
                panic!(
                    "{} did not exit within {timeout:?}\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends it SIGINT, as Ctrl-C on its terminal does.
    pub fn interrupt(&mut self) {
        if self.exited().is_none() {
            if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
            }
        }
    }

    /// Asks it to stop with SIGTERM (a host agent then stops its VMs) and
    /// waits up to `timeout` before killing it.
    pub fn terminate(&mut self, timeout: Duration) {
        if self.exited().is_none() {
            if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = std::time::Instant::now() + timeout;
            while self.exited().is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.kill();
    }

    /// Kills it with SIGKILL (no chance to clean up, like a crash) and reaps it.
    pub fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// Its name, stdout and stderr, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- {} stdout ---\n{}--- {} stderr ---\n{}",
            self.name,
            tail(&self.stdout()),
            self.name,
            tail(&self.stderr())
        )
    }
}

/// The last lines of a log: enough to see why, short enough to read.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(40);
    let mut out = lines[from..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

impl Drop for Proc {
    fn drop(&mut self) {
        let was_running = self.exited().is_none();
        if std::thread::panicking() {
            // A failing test: SIGTERM first, so that a host agent stops its
            // VMs instead of leaving them running after the test.
            self.terminate(Duration::from_secs(10));
        } else {
            self.kill();
        }
        if std::thread::panicking() && was_running {
            eprintln!("{}", self.output());
        }
    }
}
