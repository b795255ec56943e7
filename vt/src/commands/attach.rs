//! `vt exec -i` / `vt exec -it`: an interactive session in an instance over
//! the controller's WebSocket (`GET /v1/exec/attach`, documented in
//! [`vt_fleet::controller::attach`]). Stdin is streamed as it comes; with
//! `-t` the command runs on a terminal in the guest, the local terminal is
//! put in raw mode (every key goes through as typed) and its size follows
//! SIGWINCH.

use crate::client::Client;
use crate::commands::observe::{exit_code, ExecArgs};
use crate::error::{CliError, ErrorCode, Exit};
use std::io::{IsTerminal, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};
use vt_fleet::controller::attach::{
    parse_output, AttachQuery, ClientMessage, ServerMessage, STDERR,
};

/// How long a read of the WebSocket waits before input gets its turn.
const POLL: Duration = Duration::from_millis(10);

/// Something to send to the session.
enum Input {
    Data(Vec<u8>),
    Eof,
    Resize(u16, u16),
}

/// The local terminal in raw mode while it lives.
struct RawMode;

impl RawMode {
    fn enable() -> Result<RawMode, CliError> {
        crossterm::terminal::enable_raw_mode().map_err(|e| {
            CliError::new(
                Exit::Failure,
                ErrorCode::Terminal,
                format!("cannot put the terminal in raw mode: {e}"),
            )
        })?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Runs the session; returns the command's exit code.
pub fn run(client: &Client, args: ExecArgs) -> Result<u8, CliError> {
    let stdin_is_terminal = std::io::stdin().is_terminal();
    // A terminal that does not know its size (0 × 0) gets the classic one.
    let (cols, rows) = match crossterm::terminal::size() {
        Ok((cols, rows)) if args.tty && cols > 0 && rows > 0 => (cols, rows),
        _ if args.tty => (80, 24),
        _ => (0, 0),
    };
    let query = AttachQuery {
        app: args.app,
        env: args.env,
        instance: args.instance,
        argv: args.argv,
        tty: args.tty,
        cols,
        rows,
    };
    let mut socket = client.websocket("/v1/exec/attach", &query.to_query_string())?;
    // Reads poll, so that input is forwarded while output is awaited.
    let tcp = match socket.get_mut() {
        MaybeTlsStream::Plain(stream) => Some(&*stream),
        MaybeTlsStream::Rustls(stream) => Some(&stream.sock),
        _ => None,
    };
    if let Some(tcp) = tcp {
        tcp.set_read_timeout(Some(POLL)).map_err(|e| broken(&e))?;
    }
    let (tx, rx) = mpsc::channel();
    if args.interactive {
        spawn_stdin(tx.clone());
    }
    if args.tty {
        spawn_resizes(tx)?;
    }
    // Raw only when keys are forwarded: with -t alone, ^C stops vt itself
    // (which hangs the session up).
    let _raw = if args.tty && args.interactive && stdin_is_terminal {
        Some(RawMode::enable()?)
    } else {
        None
    };
    session(&mut socket, &rx)
}

/// The session's loop: send what the input threads queued, then wait a
/// little for output.
fn session(
    socket: &mut WebSocket<MaybeTlsStream<TcpStream>>,
    inputs: &mpsc::Receiver<Input>,
) -> Result<u8, CliError> {
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    loop {
        while let Ok(input) = inputs.try_recv() {
            let message = match input {
                Input::Data(data) => Message::Binary(data.into()),
                Input::Eof => control(&ClientMessage::Eof),
                Input::Resize(cols, rows) => control(&ClientMessage::Resize { cols, rows }),
            };
            // Queued; a flush that is interrupted is retried below.
            if let Err(e) = socket.write(message) {
                if !transient(&e) {
                    return Err(broken(&e));
                }
            }
        }
        if let Err(e) = socket.flush() {
            if !transient(&e) {
                return Err(broken(&e));
            }
        }
        match socket.read() {
            Ok(Message::Binary(data)) => {
                if let Some((stream, bytes)) = parse_output(&data) {
                    let out: &mut dyn Write = if stream == STDERR {
                        &mut stderr
                    } else {
                        &mut stdout
                    };
                    let _ = out.write_all(bytes);
                    let _ = out.flush();
                }
            }
            Ok(Message::Text(text)) => match serde_json::from_str::<ServerMessage>(text.as_str()) {
                Ok(ServerMessage::Exited { code, signal }) => {
                    let _ = socket.close(None);
                    return Ok(exit_code(code, signal));
                }
                Ok(ServerMessage::Error { code, message }) => {
                    let code = match code {
                        ErrorCode::HostUnreachable => ErrorCode::HostUnreachable,
                        _ => ErrorCode::Exec,
                    };
                    return Err(CliError::new(Exit::Failure, code, message));
                }
                Ok(ServerMessage::Started { instance, host }) => {
                    tracing::debug!(%instance, %host, "exec session started");
                }
                Err(e) => tracing::debug!(error = %e, "ignoring an unknown message"),
            },
            Ok(Message::Close(_)) => {
                return Err(CliError::new(
                    Exit::Failure,
                    ErrorCode::Exec,
                    "the controller ended the session without an exit status",
                ))
            }
            Ok(_) => {}
            Err(e) if transient(&e) => {}
            Err(e) => return Err(broken(&e)),
        }
    }
}

/// Whether a socket error only means "not now": the read timed out, or a
/// signal (SIGWINCH) interrupted the call.
fn transient(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e) if matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    ))
}

fn control(message: &ClientMessage) -> Message {
    Message::Text(serde_json::to_string(message).unwrap_or_default().into())
}

fn broken(e: &dyn std::fmt::Display) -> CliError {
    CliError::new(
        Exit::Failure,
        ErrorCode::Unreachable,
        format!("the exec session broke: {e}"),
    )
}

/// Reads stdin as it comes; its end is the session's end of input.
fn spawn_stdin(tx: mpsc::Sender<Input>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 8192];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.send(Input::Data(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(Input::Eof);
    });
}

/// Sends the terminal's new size on every SIGWINCH.
fn spawn_resizes(tx: mpsc::Sender<Input>) -> Result<(), CliError> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH])
        .map_err(|e| {
            CliError::new(
                Exit::Failure,
                ErrorCode::Terminal,
                format!("cannot watch the terminal's size: {e}"),
            )
        })?;
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if let Ok((cols, rows)) = crossterm::terminal::size() {
                if tx.send(Input::Resize(cols, rows)).is_err() {
                    return;
                }
            }
        }
    });
    Ok(())
}
