//! The app: started once from `Setup`, its stdout and stderr forwarded line
//! by line, its end reported with a best-effort OOM flag.

use crate::mounts::ROOT;
use crate::reaper::ExitStatus;
use crate::spawn::{self, SpawnError, Spec, Stdio};
use crate::sys;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use vt_init::protocol::{GuestToHost, Setup, Stream, MAX_LOG_LINE};

/// Cuts output into lines of at most `max` bytes, without their newline.
/// Overlong lines are split, at a UTF-8 character boundary when there is one
/// near the limit; invalid UTF-8 is replaced.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    /// A splitter producing lines of at most `max` bytes (at least 4).
    pub fn new(max: usize) -> Self {
        LineSplitter {
            buf: Vec::new(),
            max: max.max(4),
        }
    }

    /// Appends output; returns the lines it completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &byte in bytes {
            if byte == b'\n' {
                lines.push(String::from_utf8_lossy(&self.buf).into_owned());
                self.buf.clear();
                continue;
            }
            self.buf.push(byte);
            if self.buf.len() > self.max {
                let cut = utf8_cut(&self.buf, self.max);
                let rest = self.buf.split_off(cut);
                lines.push(String::from_utf8_lossy(&self.buf).into_owned());
                self.buf = rest;
            }
        }
        lines
    }

    /// The unterminated last line at end of output, if any.
    pub fn finish(&mut self) -> Option<String> {
        if self.buf.is_empty() {
            return None;
        }
        let line = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        Some(line)
    }
}

/// Where to cut `bytes` to keep at most `max` of them: before a UTF-8
/// continuation sequence if it starts within 3 bytes of the limit.
fn utf8_cut(bytes: &[u8], max: usize) -> usize {
    let is_continuation = |i: usize| bytes.get(i).is_some_and(|b| b & 0xC0 == 0x80);
    let mut cut = max;
    while cut > max.saturating_sub(3) && cut > 0 && is_continuation(cut) {
        cut -= 1;
    }
    if is_continuation(cut) {
        max
    } else {
        cut
    }
}

/// The `oom_kill` counter of `/proc/vmstat` (kernel 4.13+).
pub fn parse_oom_kills(vmstat: &str) -> Option<u64> {
    vmstat.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("oom_kill"), Some(count)) => count.parse().ok(),
            _ => None,
        }
    })
}

fn oom_kills() -> Option<u64> {
    parse_oom_kills(&std::fs::read_to_string("/proc/vmstat").ok()?)
}

/// One of the app's output pipes.
#[derive(Debug)]
struct Output {
    fd: OwnedFd,
    lines: LineSplitter,
}

/// Why the app did not start, and the forked child if there was one: it
/// exits 127 or 126 on its own, and its `Exited` is reported once reaped.
#[derive(Debug)]
pub struct StartFailure {
    /// What failed.
    pub error: SpawnError,
    /// The child that failed to exec, if it was forked.
    pub child: Option<App>,
}

/// The running (or finished) app.
#[derive(Debug)]
pub struct App {
    /// Its PID.
    pub pid: libc::pid_t,
    stdout: Option<Output>,
    stderr: Option<Output>,
    oom_kills_at_start: Option<u64>,
    /// How it ended, once it has.
    pub exited: Option<GuestToHost>,
}

impl App {
    /// Starts the app described by `setup` (whose root filesystem is
    /// mounted).
    pub fn start(setup: &Setup, env: &[(String, String)]) -> Result<App, Box<StartFailure>> {
        let pipes = (|| -> io::Result<_> {
            let stdin = spawn::dev_null()?;
            let (out_r, out_w) = sys::pipe()?;
            let (err_r, err_w) = sys::pipe()?;
            sys::set_nonblocking(out_r.as_raw_fd())?;
            sys::set_nonblocking(err_r.as_raw_fd())?;
            Ok((stdin, out_r, out_w, err_r, err_w))
        })();
        let (stdin, out_r, out_w, err_r, err_w) = pipes.map_err(|error| {
            Box::new(StartFailure {
                error: SpawnError {
                    stage: spawn::Stage::Prepare,
                    error,
                    program: setup.argv.first().cloned().unwrap_or_default(),
                    pid: None,
                },
                child: None,
            })
        })?;
        let spec = Spec {
            root: ROOT,
            argv: &setup.argv,
            env,
            workdir: &setup.workdir,
            uid: setup.uid,
            gid: setup.gid,
        };
        let stdio = Stdio::Fds {
            stdin: stdin.as_raw_fd(),
            stdout: out_w.as_raw_fd(),
            stderr: err_w.as_raw_fd(),
        };
        let oom_kills_at_start = oom_kills();
        let result = spawn::spawn(&spec, stdio);
        drop((stdin, out_w, err_w));
        let app = |pid| App {
            pid,
            stdout: Some(Output {
                fd: out_r,
                lines: LineSplitter::new(MAX_LOG_LINE),
            }),
            stderr: Some(Output {
                fd: err_r,
                lines: LineSplitter::new(MAX_LOG_LINE),
            }),
            oom_kills_at_start,
            exited: None,
        };
        match result {
            Ok(pid) => Ok(app(pid)),
            Err(error) => {
                let child = error.pid.map(app);
                Err(Box::new(StartFailure { error, child }))
            }
        }
    }

    /// The open output pipes, for polling.
    pub fn fds(&self) -> Vec<(Stream, i32)> {
        [
            (Stream::Stdout, &self.stdout),
            (Stream::Stderr, &self.stderr),
        ]
        .into_iter()
        .filter_map(|(stream, out)| out.as_ref().map(|o| (stream, o.fd.as_raw_fd())))
        .collect()
    }

    /// Reads what is available on one stream and turns it into `Log`
    /// frames; at end of file, closes it and flushes its last line.
    pub fn read(&mut self, stream: Stream, frames: &mut Vec<GuestToHost>) {
        let slot = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        let Some(out) = slot else { return };
        let mut buf = [0u8; 8192];
        let mut lines = Vec::new();
        let mut closed = false;
        // Bounded, so one chatty stream cannot starve the rest of the loop.
        for _ in 0..16 {
            match sys::read(&out.fd, &mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => lines.extend(out.lines.push(buf.get(..n).unwrap_or_default())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            lines.extend(out.lines.finish());
            *slot = None;
        }
        let time_ms = sys::now_ms();
        frames.extend(lines.into_iter().map(|line| GuestToHost::Log {
            stream,
            line,
            time_ms,
        }));
    }

    /// Records the app's end: drains what its pipes hold now, then returns
    /// the `Exited` frame (also kept in [`App::exited`]). The pipes stay
    /// open while the app's own children still write to them.
    pub fn finish(&mut self, status: ExitStatus, frames: &mut Vec<GuestToHost>) {
        self.read(Stream::Stdout, frames);
        self.read(Stream::Stderr, frames);
        let oom = match (self.oom_kills_at_start, oom_kills()) {
            (Some(before), Some(after)) => after > before,
            _ => false,
        };
        let exited = GuestToHost::Exited {
            code: status.code,
            signal: status.signal,
            oom,
        };
        self.exited = Some(exited.clone());
        frames.push(exited);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines() {
        let mut s = LineSplitter::new(16);
        assert_eq!(s.push(b"hello\nwor"), ["hello"]);
        assert_eq!(s.push(b"ld\n\n"), ["world", ""]);
        assert_eq!(s.push(b"tail"), Vec::<String>::new());
        assert_eq!(s.finish().as_deref(), Some("tail"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn splits_long_lines_at_the_limit() {
        let mut s = LineSplitter::new(4);
        assert_eq!(s.push(b"abcdefghij\n"), ["abcd", "efgh", "ij"]);
        let mut s = LineSplitter::new(4);
        assert_eq!(s.push(b"abcd\n"), ["abcd"], "exactly the limit is one line");
    }

    #[test]
    fn splits_long_lines_between_characters() {
        // "aé" is 3 bytes; "€" is 3 bytes: "aé€" = 6 bytes; limit 4 must not
        // cut the euro sign.
        let mut s = LineSplitter::new(4);
        assert_eq!(s.push("aé€b\n".as_bytes()), ["aé", "€b"]);
        // Invalid UTF-8 is replaced, not dropped.
        let mut s = LineSplitter::new(16);
        assert_eq!(s.push(b"a\xffb\n"), ["a\u{fffd}b"]);
    }

    #[test]
    fn max_log_line_is_respected() {
        let mut s = LineSplitter::new(MAX_LOG_LINE);
        let long = vec![b'x'; MAX_LOG_LINE * 2 + 5];
        let lines = s.push(&long);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == MAX_LOG_LINE));
        assert_eq!(s.finish().map(|l| l.len()), Some(5));
    }

    #[test]
    fn utf8_cuts() {
        assert_eq!(utf8_cut(b"abcdef", 4), 4);
        assert_eq!(utf8_cut("ab€".as_bytes(), 3), 2);
        // All continuation bytes: cut at the limit anyway.
        assert_eq!(utf8_cut(&[0x80; 8], 4), 4);
    }

    #[test]
    fn parses_vmstat() {
        let vmstat = "nr_free_pages 1234\noom_kill 2\nnr_zone_active_anon 5\n";
        assert_eq!(parse_oom_kills(vmstat), Some(2));
        assert_eq!(parse_oom_kills("nr_free_pages 1\n"), None);
    }
}
