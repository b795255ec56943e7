//! Exec sessions: processes started on the host's request next to the app,
//! chrooted and running as the same user, on pipes or on a terminal.

use crate::mounts::ROOT;
use crate::reaper::ExitStatus;
use crate::spawn::{self, Spec, Stdio};
use crate::sys;
use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use vt_init::protocol::{Bytes, ExecRequest, GuestToHost, Stream};

/// Largest chunk read from a session's output into one frame.
const CHUNK: usize = 16 * 1024;

/// Most input buffered for a session that does not read it.
const MAX_PENDING_INPUT: usize = 4 << 20;

/// End-of-file character on a terminal in canonical mode (Ctrl-D).
const VEOF: u8 = 0x04;

/// What exec sessions inherit from the app's setup.
#[derive(Debug, Clone)]
pub struct Context {
    /// The app's environment.
    pub env: Vec<(String, String)>,
    /// The app's working directory.
    pub workdir: String,
    /// The app's user.
    pub uid: u32,
    /// The app's group.
    pub gid: u32,
    /// The VM's hostname.
    pub hostname: String,
}

#[derive(Debug)]
struct Session {
    pid: libc::pid_t,
    tty: bool,
    /// Where input goes: the stdin pipe, or the terminal's master side.
    input: Option<OwnedFd>,
    pending: Vec<u8>,
    eof_requested: bool,
    /// Output streams still open: pipes, or the master side (as stdout).
    outputs: Vec<(Stream, OwnedFd)>,
}

/// A poll registration for one session descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Output to read.
    Read(Stream),
    /// Input to write.
    Write,
}

/// All live exec sessions.
#[derive(Debug, Default)]
pub struct Execs {
    sessions: BTreeMap<u64, Session>,
}

fn error(id: u64, message: String) -> GuestToHost {
    GuestToHost::Error {
        message,
        id: Some(id),
    }
}

fn exited(id: u64, code: Option<i32>, signal: Option<i32>) -> GuestToHost {
    GuestToHost::ExecExited { id, code, signal }
}

impl Execs {
    /// Starts a session; failures come back as `Error` plus `ExecExited`.
    pub fn start(&mut self, req: &ExecRequest, ctx: &Context, frames: &mut Vec<GuestToHost>) {
        let id = req.id;
        if self.sessions.contains_key(&id) {
            frames.push(error(id, format!("exec session {id} already exists")));
            return;
        }
        if req.argv.is_empty() {
            frames.push(error(id, "exec needs a command".into()));
            frames.push(exited(id, Some(126), None));
            return;
        }
        let env = spawn::environment(&ctx.env, &req.env, ctx.uid, &ctx.hostname, req.tty);
        let spec = Spec {
            root: ROOT,
            argv: &req.argv,
            env: &env,
            workdir: &ctx.workdir,
            uid: ctx.uid,
            gid: ctx.gid,
        };
        let started = if req.tty {
            start_tty(&spec, req.cols, req.rows)
        } else {
            start_pipes(&spec)
        };
        match started {
            Ok(session) => {
                self.sessions.insert(id, session);
            }
            Err(StartError::Io(e)) => {
                frames.push(error(id, format!("cannot start exec session: {e}")));
                frames.push(exited(id, Some(126), None));
            }
            Err(StartError::Spawn(e)) => {
                // A forked child that failed exits on its own; the reaper
                // collects it as an unknown PID.
                frames.push(error(id, e.to_string()));
                frames.push(exited(id, Some(e.exit_code()), None));
            }
        }
    }

    /// Queues input for a session.
    pub fn input(&mut self, id: u64, data: Bytes) -> Option<GuestToHost> {
        let Some(session) = self.sessions.get_mut(&id) else {
            return Some(error(id, format!("no exec session {id}")));
        };
        if session.input.is_none() || session.eof_requested {
            return Some(error(id, format!("exec session {id}'s input is closed")));
        }
        if session.pending.len() + data.0.len() > MAX_PENDING_INPUT {
            return Some(error(
                id,
                format!(
                    "exec session {id} is not reading its input; dropped {} bytes",
                    data.0.len()
                ),
            ));
        }
        session.pending.extend_from_slice(&data.0);
        None
    }

    /// Ends a session's input once what is queued is written.
    pub fn eof(&mut self, id: u64) -> Option<GuestToHost> {
        let Some(session) = self.sessions.get_mut(&id) else {
            return Some(error(id, format!("no exec session {id}")));
        };
        if !session.eof_requested {
            session.eof_requested = true;
            if session.tty {
                session.pending.push(VEOF);
            }
        }
        session.close_input_if_done();
        None
    }

    /// Resizes a session's terminal.
    pub fn resize(&mut self, id: u64, cols: u16, rows: u16) -> Option<GuestToHost> {
        let Some(session) = self.sessions.get(&id) else {
            return Some(error(id, format!("no exec session {id}")));
        };
        if !session.tty {
            return Some(error(id, format!("exec session {id} has no terminal")));
        }
        let master = session
            .outputs
            .first()
            .map(|(_, fd)| fd)
            .or(session.input.as_ref())?;
        sys::set_window_size(master, cols, rows)
            .err()
            .map(|e| error(id, format!("cannot resize the terminal: {e}")))
    }

    /// Signals a session's process.
    pub fn signal(&mut self, id: u64, signal: i32) -> Option<GuestToHost> {
        let Some(session) = self.sessions.get(&id) else {
            return Some(error(id, format!("no exec session {id}")));
        };
        sys::kill(session.pid, signal)
            .err()
            .map(|e| error(id, format!("cannot send signal {signal}: {e}")))
    }

    /// Signals every session's process group (each session is its own).
    pub fn signal_all(&self, signal: i32) {
        for session in self.sessions.values() {
            let _ = sys::kill(-session.pid, signal);
        }
    }

    /// The descriptors to poll: output unless `throttled`, input when some
    /// is pending.
    pub fn interests(&self, throttled: bool) -> Vec<(u64, Interest, i32)> {
        let mut out = Vec::new();
        for (&id, session) in &self.sessions {
            if !throttled {
                for (stream, fd) in &session.outputs {
                    out.push((id, Interest::Read(*stream), fd.as_raw_fd()));
                }
            }
            if let (Some(fd), false) = (&session.input, session.pending.is_empty()) {
                out.push((id, Interest::Write, fd.as_raw_fd()));
            }
        }
        out
    }

    /// Reads one chunk of a session's output into an `ExecOutput` frame.
    pub fn read(&mut self, id: u64, stream: Stream, frames: &mut Vec<GuestToHost>) {
        if let Some(session) = self.sessions.get_mut(&id) {
            session.read(id, stream, frames);
        }
    }

    /// Writes pending input of a session.
    pub fn write(&mut self, id: u64) {
        if let Some(session) = self.sessions.get_mut(&id) {
            session.write();
        }
    }

    /// If `pid` is a session's process: forwards the output it left, ends
    /// the session with `ExecExited`, and returns true.
    pub fn reaped(
        &mut self,
        pid: libc::pid_t,
        status: ExitStatus,
        frames: &mut Vec<GuestToHost>,
    ) -> bool {
        let Some(id) = self
            .sessions
            .iter()
            .find_map(|(&id, s)| (s.pid == pid).then_some(id))
        else {
            return false;
        };
        if let Some(mut session) = self.sessions.remove(&id) {
            let streams: Vec<Stream> = session.outputs.iter().map(|(s, _)| *s).collect();
            for stream in streams {
                // Drain what is there now; background children holding the
                // pipes do not keep the session open.
                for _ in 0..64 {
                    let before = frames.len();
                    session.read(id, stream, frames);
                    if frames.len() == before {
                        break;
                    }
                }
            }
        }
        frames.push(exited(id, status.code, status.signal));
        true
    }
}

impl Session {
    fn read(&mut self, id: u64, stream: Stream, frames: &mut Vec<GuestToHost>) {
        let Some(index) = self.outputs.iter().position(|(s, _)| *s == stream) else {
            return;
        };
        let Some((_, fd)) = self.outputs.get(index) else {
            return;
        };
        let mut buf = vec![0u8; CHUNK];
        match sys::read(fd, &mut buf) {
            Ok(0) => {
                self.outputs.remove(index);
            }
            Ok(n) => {
                buf.truncate(n);
                frames.push(GuestToHost::ExecOutput {
                    id,
                    stream,
                    data_b64: Bytes(buf),
                });
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted => {}
            // EIO: a terminal whose last slave user is gone.
            Err(_) => {
                self.outputs.remove(index);
            }
        }
    }

    fn write(&mut self) {
        let Some(fd) = &self.input else {
            self.pending.clear();
            return;
        };
        match sys::write(fd, &self.pending) {
            Ok(n) => {
                self.pending.drain(..n.min(self.pending.len()));
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                // The reader is gone (EPIPE): input has nowhere to go.
                self.pending.clear();
                if !self.tty {
                    self.input = None;
                }
            }
        }
        self.close_input_if_done();
    }

    fn close_input_if_done(&mut self) {
        if self.eof_requested && self.pending.is_empty() && !self.tty {
            self.input = None;
        }
    }
}

enum StartError {
    Io(io::Error),
    Spawn(spawn::SpawnError),
}

fn start_pipes(spec: &Spec<'_>) -> Result<Session, StartError> {
    let pipes = (|| -> io::Result<_> {
        let (in_r, in_w) = sys::pipe()?;
        let (out_r, out_w) = sys::pipe()?;
        let (err_r, err_w) = sys::pipe()?;
        for fd in [&in_w, &out_r, &err_r] {
            sys::set_nonblocking(fd.as_raw_fd())?;
        }
        Ok((in_r, in_w, out_r, out_w, err_r, err_w))
    })();
    let (in_r, in_w, out_r, out_w, err_r, err_w) = pipes.map_err(StartError::Io)?;
    let stdio = Stdio::Fds {
        stdin: in_r.as_raw_fd(),
        stdout: out_w.as_raw_fd(),
        stderr: err_w.as_raw_fd(),
    };
    let pid = spawn::spawn(spec, stdio).map_err(StartError::Spawn)?;
    Ok(Session {
        pid,
        tty: false,
        input: Some(in_w),
        pending: Vec::new(),
        eof_requested: false,
        outputs: vec![(Stream::Stdout, out_r), (Stream::Stderr, err_r)],
    })
}

fn start_tty(spec: &Spec<'_>, cols: u16, rows: u16) -> Result<Session, StartError> {
    let (master, slave) = sys::open_pty(cols, rows).map_err(StartError::Io)?;
    sys::set_nonblocking(master.as_raw_fd()).map_err(StartError::Io)?;
    let input = master.try_clone().map_err(StartError::Io)?;
    let pid = spawn::spawn(
        spec,
        Stdio::Pty {
            slave: slave.as_raw_fd(),
        },
    )
    .map_err(StartError::Spawn)?;
    drop(slave);
    Ok(Session {
        pid,
        tty: true,
        input: Some(input),
        pending: Vec::new(),
        eof_requested: false,
        outputs: vec![(Stream::Stdout, master)],
    })
}
