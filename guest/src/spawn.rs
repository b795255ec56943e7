//! Starting a process inside the app's root filesystem: fork, then in the
//! child only async-signal-safe libc calls on data prepared before the fork
//! (no allocation): reset signals, new session, stdio, chroot, chdir, drop
//! to the user, and try each `PATH` candidate with `execve`, as `execvp`
//! does. A close-on-exec pipe carries the failing step and errno back, so
//! "entrypoint not found" is an error the host can see.

use crate::sys;
use std::ffi::{CString, OsStr};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;

/// `PATH` when neither the image nor the host sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run and as whom.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// Directory to chroot into.
    pub root: &'a str,
    /// Command and arguments.
    pub argv: &'a [String],
    /// Full environment.
    pub env: &'a [(String, String)],
    /// Working directory inside the root.
    pub workdir: &'a str,
    /// User ID.
    pub uid: u32,
    /// Group ID.
    pub gid: u32,
}

/// Where the child's standard streams go.
#[derive(Debug, Clone, Copy)]
pub enum Stdio {
    /// Each stream to its own descriptor.
    Fds {
        /// Standard input.
        stdin: RawFd,
        /// Standard output.
        stdout: RawFd,
        /// Standard error.
        stderr: RawFd,
    },
    /// All three to a terminal, which becomes the controlling terminal.
    Pty {
        /// The terminal's slave side.
        slave: RawFd,
    },
}

/// The step of starting a child that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Preparing arguments (before the fork).
    Prepare = 0,
    /// `fork`.
    Fork = 1,
    /// `setsid`.
    Session = 2,
    /// Controlling terminal.
    Terminal = 3,
    /// Redirecting stdio.
    Stdio = 4,
    /// `chroot`.
    Chroot = 5,
    /// `chdir` to the working directory.
    Chdir = 6,
    /// `setgroups` / `setgid`.
    Group = 7,
    /// `setuid`.
    User = 8,
    /// `execve`.
    Exec = 9,
}

impl Stage {
    fn from_u8(byte: u8) -> Stage {
        match byte {
            1 => Stage::Fork,
            2 => Stage::Session,
            3 => Stage::Terminal,
            4 => Stage::Stdio,
            5 => Stage::Chroot,
            6 => Stage::Chdir,
            7 => Stage::Group,
            8 => Stage::User,
            9 => Stage::Exec,
            _ => Stage::Prepare,
        }
    }
}

/// Why a child did not start.
#[derive(Debug)]
pub struct SpawnError {
    /// The step that failed.
    pub stage: Stage,
    /// What failed.
    pub error: io::Error,
    /// The command.
    pub program: String,
    /// The child, if it was forked (it exits 127 or 126 and must be reaped).
    pub pid: Option<libc::pid_t>,
}

impl SpawnError {
    /// Exit code a shell would give: 127 for not found, else 126.
    pub fn exit_code(&self) -> i32 {
        if self.stage == Stage::Exec && self.error.kind() == io::ErrorKind::NotFound {
            127
        } else {
            126
        }
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let program = &self.program;
        match self.stage {
            Stage::Exec if self.error.kind() == io::ErrorKind::NotFound => {
                write!(f, "`{program}` was not found in the root filesystem")
            }
            Stage::Exec => write!(f, "cannot execute `{program}`: {}", self.error),
            Stage::Chdir => write!(f, "cannot enter the working directory: {}", self.error),
            Stage::Chroot => write!(f, "cannot chroot into the root filesystem: {}", self.error),
            Stage::Group | Stage::User => {
                write!(f, "cannot switch to the app's user: {}", self.error)
            }
            stage => write!(f, "cannot start `{program}` ({stage:?}): {}", self.error),
        }
    }
}

/// The paths `execve` should try for `program`, in order: the program
/// itself when it has a `/`, else each `PATH` entry joined with it (an empty
/// entry means the working directory).
pub fn exec_candidates(program: &str, path: &str) -> Vec<String> {
    if program.contains('/') {
        return vec![program.to_string()];
    }
    path.split(':')
        .map(|dir| {
            if dir.is_empty() {
                program.to_string()
            } else {
                format!("{}/{program}", dir.trim_end_matches('/'))
            }
        })
        .collect()
}

/// The environment of a process: `base`, then `overlay` (later entries of
/// a name win, first-seen order kept), then defaults for `PATH`, `HOME`,
/// `HOSTNAME` (and `TERM` on a terminal) when unset.
pub fn environment(
    base: &[(String, String)],
    overlay: &[(String, String)],
    uid: u32,
    hostname: &str,
    tty: bool,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for (name, value) in base.iter().chain(overlay) {
        match env.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1.clone_from(value),
            None => env.push((name.clone(), value.clone())),
        }
    }
    let home = if uid == 0 { "/root" } else { "/" };
    let mut defaults = vec![("PATH", DEFAULT_PATH), ("HOME", home)];
    if !hostname.is_empty() {
        defaults.push(("HOSTNAME", hostname));
    }
    if tty {
        defaults.push(("TERM", "xterm"));
    }
    for (name, value) in defaults {
        if !env.iter().any(|(n, _)| n == name) {
            env.push((name.to_string(), value.to_string()));
        }
    }
    env
}

/// Everything the child needs, as C strings, made before the fork.
struct Prepared {
    root: CString,
    workdir: CString,
    candidates: Vec<CString>,
    argv: Vec<CString>,
    env: Vec<CString>,
}

fn prepare(spec: &Spec<'_>) -> io::Result<Prepared> {
    let program = spec
        .argv
        .first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let path = spec
        .env
        .iter()
        .rev()
        .find(|(name, _)| name == "PATH")
        .map_or(DEFAULT_PATH, |(_, value)| value.as_str());
    let candidates = exec_candidates(program, path)
        .iter()
        .map(|c| sys::cstring(c))
        .collect::<io::Result<_>>()?;
    Ok(Prepared {
        root: sys::cstring(spec.root)?,
        workdir: sys::cstring(if spec.workdir.is_empty() {
            "/"
        } else {
            spec.workdir
        })?,
        candidates,
        argv: spec
            .argv
            .iter()
            .map(|a| sys::cstring(a))
            .collect::<io::Result<_>>()?,
        env: spec
            .env
            .iter()
            .map(|(n, v)| sys::cstring(&format!("{n}={v}")))
            .collect::<io::Result<_>>()?,
    })
}

fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Forks and execs `spec` with `stdio`; returns the child's PID once it
/// has exec'd. The caller closes its copies of the child's stdio.
pub fn spawn(spec: &Spec<'_>, stdio: Stdio) -> Result<libc::pid_t, SpawnError> {
    let program = spec.argv.first().cloned().unwrap_or_default();
    let fail = |stage, error, pid| SpawnError {
        stage,
        error,
        program: program.clone(),
        pid,
    };
    let prepared = prepare(spec).map_err(|e| fail(Stage::Prepare, e, None))?;
    let argv = pointers(&prepared.argv);
    let envp = pointers(&prepared.env);
    let (err_read, err_write) = sys::pipe().map_err(|e| fail(Stage::Prepare, e, None))?;

    // SAFETY: vt-init is single-threaded, so the child is a full copy with
    // no lock held by another thread; it only runs `child` below, which
    // makes async-signal-safe calls and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(fail(Stage::Fork, io::Error::last_os_error(), None));
    }
    if pid == 0 {
        child(
            &prepared,
            &argv,
            &envp,
            spec.uid,
            spec.gid,
            stdio,
            err_write.as_raw_fd(),
        );
    }
    drop(err_write);
    let mut report = [0u8; 8];
    let mut got = 0;
    while got < report.len() {
        match sys::read(&err_read, report.get_mut(got..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if got < report.len() {
        return Ok(pid); // the pipe closed on exec: it runs
    }
    let stage = Stage::from_u8(report[0]);
    let errno = i32::from_ne_bytes([report[4], report[5], report[6], report[7]]);
    Err(fail(stage, io::Error::from_raw_os_error(errno), Some(pid)))
}

/// The child side of `spawn`. Never returns.
fn child(
    prepared: &Prepared,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    uid: u32,
    gid: u32,
    stdio: Stdio,
    err_fd: RawFd,
) -> ! {
    let die = |stage: Stage, errno: i32| -> ! {
        let mut report = [0u8; 8];
        report[0] = stage as u8;
        report[4..].copy_from_slice(&errno.to_ne_bytes());
        let code = if stage == Stage::Exec && errno == libc::ENOENT {
            127
        } else {
            126
        };
        // SAFETY: write and _exit are async-signal-safe; `report` is a
        // local buffer.
        unsafe {
            libc::write(err_fd, report.as_ptr().cast(), report.len());
            libc::_exit(code)
        }
    };
    let errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };

    // SAFETY (whole block): only async-signal-safe libc calls, on
    // descriptors and C strings prepared before the fork.
    unsafe {
        // The init blocks signals for its signalfd and Rust ignores SIGPIPE;
        // neither must leak into the app.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);

        if libc::setsid() < 0 {
            die(Stage::Session, errno());
        }
        match stdio {
            Stdio::Pty { slave } => {
                if libc::ioctl(slave, libc::TIOCSCTTY, 0) < 0 {
                    die(Stage::Terminal, errno());
                }
                libc::fchown(slave, uid, gid);
                for target in 0..3 {
                    if libc::dup2(slave, target) < 0 {
                        die(Stage::Stdio, errno());
                    }
                }
            }
            Stdio::Fds {
                stdin,
                stdout,
                stderr,
            } => {
                for (source, target) in [(stdin, 0), (stdout, 1), (stderr, 2)] {
                    if libc::dup2(source, target) < 0 {
                        die(Stage::Stdio, errno());
                    }
                }
            }
        }
        if libc::chroot(prepared.root.as_ptr()) < 0 {
            die(Stage::Chroot, errno());
        }
        if libc::chdir(c"/".as_ptr()) < 0 || libc::chdir(prepared.workdir.as_ptr()) < 0 {
            die(Stage::Chdir, errno());
        }
        if libc::setgroups(1, &gid) < 0 || libc::setgid(gid) < 0 {
            die(Stage::Group, errno());
        }
        if libc::setuid(uid) < 0 {
            die(Stage::User, errno());
        }
        // As execvp: try every candidate; report EACCES if one was found but
        // not executable, ENOENT if none was found.
        let mut seen_eacces = false;
        let mut last = libc::ENOENT;
        for candidate in &prepared.candidates {
            libc::execve(candidate.as_ptr(), argv.as_ptr(), envp.as_ptr());
            let e = errno();
            match e {
                libc::EACCES => seen_eacces = true,
                libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG | libc::ELOOP => {}
                other => {
                    last = other;
                    break;
                }
            }
        }
        if seen_eacces && last == libc::ENOENT {
            last = libc::EACCES;
        }
        die(Stage::Exec, last)
    }
}

/// Opens `/dev/null` (close-on-exec) for a child's stdin.
pub fn dev_null() -> io::Result<std::fs::File> {
    std::fs::File::open(OsStr::from_bytes(b"/dev/null"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_path() {
        assert_eq!(exec_candidates("/bin/sh", "/usr/bin"), ["/bin/sh"]);
        assert_eq!(exec_candidates("./run", "/usr/bin"), ["./run"]);
        assert_eq!(
            exec_candidates("node", "/usr/local/bin:/usr/bin/::/bin"),
            ["/usr/local/bin/node", "/usr/bin/node", "node", "/bin/node"]
        );
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_layers_and_defaults() {
        let env = environment(
            &pairs(&[("A", "1"), ("PATH", "/app/bin"), ("A", "2")]),
            &pairs(&[("B", "x"), ("A", "3")]),
            1000,
            "web-1",
            false,
        );
        assert_eq!(
            env,
            pairs(&[
                ("A", "3"),
                ("PATH", "/app/bin"),
                ("B", "x"),
                ("HOME", "/"),
                ("HOSTNAME", "web-1"),
            ])
        );
        let env = environment(&[], &pairs(&[("TERM", "vt100")]), 0, "", true);
        assert_eq!(
            env,
            pairs(&[("TERM", "vt100"), ("PATH", DEFAULT_PATH), ("HOME", "/root")])
        );
    }

    #[test]
    fn prepare_rejects_nul_and_empty() {
        let env = Vec::new();
        let argv = vec!["a\0b".to_string()];
        let spec = Spec {
            root: "/",
            argv: &argv,
            env: &env,
            workdir: "/",
            uid: 0,
            gid: 0,
        };
        assert!(prepare(&spec).is_err());
        let spec = Spec { argv: &[], ..spec };
        assert!(prepare(&spec).is_err());
    }

    fn wait(pid: libc::pid_t) -> crate::reaper::ExitStatus {
        let mut status = 0;
        // SAFETY: waitpid writes one int into our local.
        let got = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(got, pid);
        crate::reaper::ExitStatus::from_wait_status(status)
    }

    /// Forks for real with `/` as the root. Chroot needs root; without it
    /// the failure must come back as a chroot error instead.
    #[test]
    fn spawns_and_reports_exec_failures() {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let null = dev_null().expect("/dev/null");
        let fd = null.as_raw_fd();
        let stdio = Stdio::Fds {
            stdin: fd,
            stdout: fd,
            stderr: fd,
        };
        let env = vec![("PATH".to_string(), "/nonexistent:/usr/bin:/bin".to_string())];
        let argv = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        let spec = Spec {
            root: "/",
            argv: &argv,
            env: &env,
            workdir: "/tmp",
            uid: 0,
            gid: 0,
        };
        if !root {
            let err = spawn(&spec, stdio).expect_err("chroot needs root");
            assert_eq!(err.stage, Stage::Chroot);
            if let Some(pid) = err.pid {
                wait(pid);
            }
            return;
        }
        let pid = spawn(&spec, stdio).expect("sh starts");
        assert_eq!(wait(pid).code, Some(3));

        let argv = vec!["vt-init-no-such-program".to_string()];
        let err = spawn(
            &Spec {
                argv: &argv,
                ..spec.clone()
            },
            stdio,
        )
        .expect_err("not found");
        assert_eq!((err.stage, err.exit_code()), (Stage::Exec, 127));
        assert_eq!(wait(err.pid.expect("forked")).code, Some(127));

        let err = spawn(
            &Spec {
                workdir: "/nonexistent/dir",
                ..spec.clone()
            },
            stdio,
        )
        .expect_err("bad workdir");
        assert_eq!(err.stage, Stage::Chdir);
        assert_eq!(wait(err.pid.expect("forked")).code, Some(126));
    }

    #[test]
    fn spawn_error_messages() {
        let err = SpawnError {
            stage: Stage::Exec,
            error: io::Error::from_raw_os_error(libc::ENOENT),
            program: "nginx".into(),
            pid: Some(5),
        };
        assert_eq!(err.exit_code(), 127);
        assert_eq!(
            err.to_string(),
            "`nginx` was not found in the root filesystem"
        );
        let err = SpawnError {
            stage: Stage::Exec,
            error: io::Error::from_raw_os_error(libc::EACCES),
            ..err
        };
        assert_eq!(err.exit_code(), 126);
        assert_eq!(Stage::from_u8(Stage::Chdir as u8), Stage::Chdir);
    }
}
