//! The stack's processes: this same `vt` binary as `vt fleet run`,
//! `vt host run` and `vt edge run`, each in its own process group (so a
//! Ctrl-C on the terminal reaches only `vt dev`, which stops them in order)
//! with its output in a log file. Each also stops by itself if `vt dev` is
//! killed (`VT_DEV_PARENT`), so no VM outlives it.

use super::state::{self, ChildProcess};
use crate::error::{CliError, ErrorCode, Exit};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// What a process is, which decides when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `vt fleet run`: stops last.
    Controller,
    /// `vt host run`: stops its VMs gracefully first (volumes stay).
    Host,
    /// `vt edge run`: stops first, so no new connection reaches a stopping host.
    Edge,
}

impl Role {
    /// How long it may take to stop after SIGTERM before it is killed.
    fn grace(self) -> Duration {
        match self {
            Role::Host => Duration::from_secs(60),
            Role::Controller | Role::Edge => Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
struct Child {
    name: String,
    role: Role,
    child: std::process::Child,
    log: PathBuf,
}

/// A process that ended while the stack was running.
#[derive(Debug)]
pub struct Exited {
    /// Its name.
    pub name: String,
    /// How it ended.
    pub status: ExitStatus,
    /// Its log.
    pub log: PathBuf,
}

/// The running processes; stopped on drop, in order.
#[derive(Debug)]
pub struct Stack {
    vt: PathBuf,
    children: Vec<Child>,
}

impl Stack {
    /// A stack of children of this very binary.
    pub fn new() -> Result<Stack, CliError> {
        let vt = std::env::current_exe().map_err(|e| {
            CliError::new(
                Exit::Failure,
                ErrorCode::Io,
                format!("cannot find the vt binary: {e}"),
            )
        })?;
        Ok(Stack {
            vt,
            children: Vec::new(),
        })
    }

    /// Starts `vt ARGS` as `name`, its output in `log` (info logs unless
    /// `VT_LOG` says otherwise).
    pub fn spawn(
        &mut self,
        name: &str,
        role: Role,
        args: &[String],
        log: &Path,
    ) -> Result<(), CliError> {
        let io = |e: std::io::Error| {
            CliError::new(
                Exit::Failure,
                ErrorCode::Io,
                format!("cannot start {name} (log {}): {e}", log.display()),
            )
        };
        let out = std::fs::File::create(log).map_err(io)?;
        let err = out.try_clone().map_err(io)?;
        let mut cmd = Command::new(&self.vt);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        if std::env::var_os("VT_LOG").is_none() {
            cmd.env("VT_LOG", "info");
        }
        // Should this process be killed, the daemons stop on their own.
        cmd.env(
            crate::commands::fleet::DEV_PARENT_ENV,
            std::process::id().to_string(),
        );
        let child = cmd.spawn().map_err(io)?;
        tracing::info!(name, pid = child.id(), "started");
        self.children.push(Child {
            name: name.to_string(),
            role,
            child,
            log: log.to_path_buf(),
        });
        Ok(())
    }

    /// Every process, for `dev.json`.
    pub fn processes(&self) -> Vec<ChildProcess> {
        self.children
            .iter()
            .map(|c| ChildProcess {
                name: c.name.clone(),
                pid: c.child.id(),
                log: c.log.clone(),
            })
            .collect()
    }

    /// The first process found to have ended, if any.
    pub fn exited(&mut self) -> Option<Exited> {
        self.children.iter_mut().find_map(|c| {
            let status = c.child.try_wait().ok().flatten()?;
            Some(Exited {
                name: c.name.clone(),
                status,
                log: c.log.clone(),
            })
        })
    }

    /// Stops the edge, then the hosts (which stop their VMs), then the
    /// controller: SIGTERM, then SIGKILL after the role's grace period.
    /// `say` hears about each step.
    pub fn stop(&mut self, say: &dyn Fn(&str)) {
        for role in [Role::Edge, Role::Host, Role::Controller] {
            let group: Vec<&mut Child> = self
                .children
                .iter_mut()
                .filter(|c| c.role == role)
                .filter_map(|c| matches!(c.child.try_wait(), Ok(None)).then_some(c))
                .collect();
            if group.is_empty() {
                continue;
            }
            let names: Vec<&str> = group.iter().map(|c| c.name.as_str()).collect();
            say(&format!("stopping {}", names.join(", ")));
            // Hosts stop together: each stops its own VMs.
            let killed: Vec<String> = std::thread::scope(|scope| {
                let waits: Vec<_> = group
                    .into_iter()
                    .map(|c| {
                        scope.spawn(move || {
                            let killed = state::terminate(c.child.id(), role.grace());
                            let _ = c.child.wait();
                            killed.then(|| c.name.clone())
                        })
                    })
                    .collect();
                waits
                    .into_iter()
                    .filter_map(|w| w.join().ok().flatten())
                    .collect()
            });
            for name in killed {
                say(&format!(
                    "{name} did not stop within {:?}: killed",
                    role.grace()
                ));
            }
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop(&|_| {});
    }
}

/// The last `lines` lines of a log file, for an error message.
pub fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
