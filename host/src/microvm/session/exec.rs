//! The exec sessions of one VM: their IDs, whether each is interactive, the
//! frames that start them and carry their input, and what the guest's
//! answers mean for each.

use super::{Event, ExecId};
use std::collections::BTreeMap;
use vt_init::protocol::{ExecRequest, HostToGuest, Stream};
use vt_wire::messages::{ExecCommand, ExecInput};

/// Live exec sessions.
#[derive(Debug, Default)]
pub(super) struct Execs {
    /// The last ID given out.
    last: ExecId,
    /// Live sessions, and whether each is interactive.
    live: BTreeMap<ExecId, bool>,
}

impl Execs {
    /// Opens a session: its ID and the frames that start it (for a session
    /// that is not interactive, its whole input and end of input too).
    pub(super) fn open(
        &mut self,
        command: ExecCommand,
        interactive: bool,
    ) -> (ExecId, Vec<HostToGuest>) {
        self.last += 1;
        let id = self.last;
        let mut frames = vec![HostToGuest::Exec(ExecRequest {
            id,
            argv: command.argv,
            tty: command.tty,
            cols: command.cols,
            rows: command.rows,
            env: Vec::new(),
        })];
        if !interactive {
            if !command.stdin.is_empty() {
                frames.push(HostToGuest::ExecInput {
                    id,
                    data_b64: command.stdin.into(),
                });
            }
            frames.push(HostToGuest::ExecEof { id });
        }
        self.live.insert(id, interactive);
        (id, frames)
    }

    /// The frame for a piece of a live session's input.
    pub(super) fn input(&self, id: ExecId, input: ExecInput) -> Option<HostToGuest> {
        self.live.contains_key(&id).then(|| input_frame(id, input))
    }

    /// Output of a live session.
    pub(super) fn output(&self, id: ExecId, stream: Stream, data: Vec<u8>) -> Option<Event> {
        self.live
            .contains_key(&id)
            .then_some(Event::ExecOutput { id, stream, data })
    }

    /// A live session's process ended.
    pub(super) fn exited(
        &mut self,
        id: ExecId,
        code: Option<i32>,
        signal: Option<i32>,
    ) -> Option<Event> {
        self.live
            .remove(&id)
            .map(|_| Event::ExecExited { id, code, signal })
    }

    /// The guest's error about a session: an interactive one goes on until
    /// its process exits (a failed start is followed by `ExecExited`), so the
    /// message goes to its stderr; any other one fails.
    pub(super) fn error(&mut self, id: ExecId, message: String) -> Option<Event> {
        match self.live.get(&id) {
            Some(true) => Some(Event::ExecOutput {
                id,
                stream: Stream::Stderr,
                data: format!("vt: {message}\r\n").into_bytes(),
            }),
            Some(false) => {
                self.live.remove(&id);
                Some(Event::ExecFailed { id, message })
            }
            None => None,
        }
    }
}

/// The guest frame for one piece of an exec session's input.
fn input_frame(id: ExecId, input: ExecInput) -> HostToGuest {
    match input {
        ExecInput::Data { data } => HostToGuest::ExecInput {
            id,
            data_b64: data.into(),
        },
        ExecInput::Eof => HostToGuest::ExecEof { id },
        ExecInput::Resize { cols, rows } => HostToGuest::ExecResize { id, cols, rows },
        ExecInput::Signal { signal } => HostToGuest::ExecSignal { id, signal },
    }
}
