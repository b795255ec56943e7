//! PID 1's duty: collect every child that ended, ours or orphaned, so no
//! zombie lingers; the caller matches the PIDs it cares about.

use std::io;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// Signal number, if a signal killed it.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// Decodes a `waitpid` status word.
    pub fn from_wait_status(status: libc::c_int) -> Self {
        if libc::WIFEXITED(status) {
            ExitStatus {
                code: Some(libc::WEXITSTATUS(status)),
                signal: None,
            }
        } else if libc::WIFSIGNALED(status) {
            ExitStatus {
                code: None,
                signal: Some(libc::WTERMSIG(status)),
            }
        } else {
            ExitStatus {
                code: None,
                signal: None,
            }
        }
    }
}

/// What one pass of the reaper found.
#[derive(Debug, Default)]
pub struct Reaped {
    /// Children that ended, with how.
    pub exited: Vec<(libc::pid_t, ExitStatus)>,
    /// No child is left at all.
    pub none_left: bool,
}

/// Collects every child that has ended, without blocking.
pub fn reap() -> Reaped {
    let mut reaped = Reaped::default();
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes one int into our local.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            reaped
                .exited
                .push((pid, ExitStatus::from_wait_status(status)));
            continue;
        }
        if pid < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => reaped.none_left = true,
                _ => crate::sys::log(format_args!("waitpid: {err}")),
            }
        }
        return reaped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_wait_statuses() {
        assert_eq!(
            ExitStatus::from_wait_status(0),
            ExitStatus {
                code: Some(0),
                signal: None
            }
        );
        assert_eq!(
            ExitStatus::from_wait_status(3 << 8),
            ExitStatus {
                code: Some(3),
                signal: None
            }
        );
        assert_eq!(
            ExitStatus::from_wait_status(9),
            ExitStatus {
                code: None,
                signal: Some(9)
            }
        );
        // Killed by SIGSEGV with a core dump.
        assert_eq!(
            ExitStatus::from_wait_status(0x80 | 11),
            ExitStatus {
                code: None,
                signal: Some(11)
            }
        );
    }
}
