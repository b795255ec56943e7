//! `GET /v1/exec/attach`: an interactive exec session over a WebSocket
//! (`vt exec -i`, `vt exec -it`). The controller bridges the WebSocket to a
//! QUIC stream it opens to the instance's host, like `POST /v1/exec`: it
//! sends an interactive [`ExecCommand`], then the session's input as
//! [`ExecInput`] frames, and turns the host's [`ExecEvent`]s into WebSocket
//! messages.
//!
//! # The upgrade request
//!
//! `GET /v1/exec/attach?app=APP&env=ENV&instance=ID&tty=true&cols=80&rows=24&argv=sh&argv=-l`
//! with `Authorization: Bearer <api token>`, like every route ([`AttachQuery`]):
//!
//! - `app` (required), `env`, `instance`: which instance, as for `POST /v1/exec`
//!   (a healthy one unless `instance` names one);
//! - `argv`: the command and its arguments, one parameter each, in order (at least one);
//! - `tty`: run on a terminal (stdout and stderr merged), `cols` × `rows` big;
//!   without it the process gets pipes.
//!
//! Errors before the upgrade are ordinary answers with an [`ApiError`] body:
//! 400 `E_USAGE` (bad query), 404 `E_NOT_FOUND` (no running instance), 503
//! `E_HOST_UNREACHABLE` (its host is not connected).
//!
//! # Messages
//!
//! Control messages are JSON text frames tagged by `"type"`; data travels in
//! binary frames.
//!
//! Server → client ([`ServerMessage`] and output):
//!
//! - text `{"type":"started","instance":"inst_…","host":"h1"}`: the command
//!   went to the instance's host (first message);
//! - binary: output, its first byte the stream ([`STDOUT`] = 1, [`STDERR`] = 2),
//!   the rest the bytes (a terminal's output is all stdout);
//! - text `{"type":"exited","code":3,"signal":null}`: the process ended
//!   (`signal` set and `code` null when a signal killed it); the server
//!   then closes the WebSocket;
//! - text `{"type":"error","code":"E_EXEC","message":"…"}`: the session
//!   failed (the command could not run, the host went away); then closed.
//!
//! Client → server ([`ClientMessage`] and input):
//!
//! - binary: bytes for the process's stdin (on a terminal: the keys typed);
//! - text `{"type":"eof"}`: end of input (stdin is closed; on a terminal an
//!   end-of-file character is typed);
//! - text `{"type":"resize","cols":120,"rows":40}`: the terminal changed size;
//! - text `{"type":"signal","signal":2}`: send the process a signal;
//! - closing the WebSocket (or losing it) before `exited` hangs the session
//!   up: the process gets SIGHUP.

use crate::controller::perform::{perform, ApiError};
use crate::controller::shared::Shared;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tracing::{info, warn};
use vt_control::operations::{ExecRoute, ExecTarget, Operation};
use vt_wire::codes::ErrorCode;
use vt_wire::frame;
use vt_wire::messages::{ExecCommand, ExecEvent, ExecInput};

/// First byte of a binary output message from stdout (or the terminal).
pub const STDOUT: u8 = 1;
/// First byte of a binary output message from stderr.
pub const STDERR: u8 = 2;

/// The query of the upgrade request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachQuery {
    /// App name or suffix of its qualified name.
    pub app: String,
    /// Env name.
    pub env: Option<String>,
    /// A specific instance (default: a healthy one).
    pub instance: Option<String>,
    /// Command and arguments.
    pub argv: Vec<String>,
    /// Run on a terminal instead of pipes.
    pub tty: bool,
    /// Terminal columns.
    pub cols: u16,
    /// Terminal rows.
    pub rows: u16,
}

impl AttachQuery {
    /// Reads the query's parameters (`argv` repeated, in order).
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<AttachQuery, String> {
        let mut q = AttachQuery::default();
        let mut app = None;
        for (key, value) in pairs {
            let number = |what: &str| {
                value
                    .parse::<u16>()
                    .map_err(|_| format!("`{what}` must be a number up to 65535, not `{value}`"))
            };
            match key.as_str() {
                "app" => app = Some(value.clone()),
                "env" => q.env = Some(value.clone()),
                "instance" => q.instance = Some(value.clone()),
                "argv" => q.argv.push(value.clone()),
                "tty" => {
                    q.tty = match value.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(format!("`tty` must be true or false, not `{value}`")),
                    }
                }
                "cols" => q.cols = number("cols")?,
                "rows" => q.rows = number("rows")?,
                other => return Err(format!("unknown query parameter `{other}`")),
            }
        }
        q.app = app.ok_or("the `app` query parameter is required")?;
        if q.argv.is_empty() {
            return Err("give the command as `argv` parameters, one per argument".into());
        }
        Ok(q)
    }

    /// The query string (without `?`), percent-encoded.
    pub fn to_query_string(&self) -> String {
        let mut pairs = vec![("app", self.app.clone())];
        if let Some(env) = &self.env {
            pairs.push(("env", env.clone()));
        }
        if let Some(instance) = &self.instance {
            pairs.push(("instance", instance.clone()));
        }
        pairs.push(("tty", self.tty.to_string()));
        pairs.push(("cols", self.cols.to_string()));
        pairs.push(("rows", self.rows.to_string()));
        pairs.extend(self.argv.iter().map(|a| ("argv", a.clone())));
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Server → client control messages (JSON text frames).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The command went to the instance's host.
    Started {
        /// The instance it runs in.
        instance: String,
        /// That instance's host.
        host: String,
    },
    /// The process ended; the server closes the WebSocket next.
    Exited {
        /// Exit code, if it exited.
        code: Option<i32>,
        /// Signal, if one killed it.
        signal: Option<i32>,
    },
    /// The session failed; the server closes the WebSocket next.
    Error {
        /// Stable code (`E_EXEC`, `E_HOST_UNREACHABLE`).
        code: ErrorCode,
        /// What went wrong.
        message: String,
    },
}

/// Client → server control messages (JSON text frames).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// End of input.
    Eof,
    /// The terminal changed size.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// Send the process a signal (Linux numbering).
    Signal {
        /// Signal number.
        signal: i32,
    },
}

impl From<ClientMessage> for ExecInput {
    fn from(m: ClientMessage) -> ExecInput {
        match m {
            ClientMessage::Eof => ExecInput::Eof,
            ClientMessage::Resize { cols, rows } => ExecInput::Resize { cols, rows },
            ClientMessage::Signal { signal } => ExecInput::Signal { signal },
        }
    }
}

/// A binary output message: the stream byte, then the bytes.
pub fn output_message(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(stream);
    out.extend_from_slice(data);
    out
}

/// Splits a binary output message into its stream byte and bytes.
pub fn parse_output(message: &[u8]) -> Option<(u8, &[u8])> {
    message.split_first().map(|(stream, data)| (*stream, data))
}

/// The upgrade request's query, and the operation that routes its exec
/// (`400 E_USAGE` for a bad query).
pub fn parse_attach(pairs: &[(String, String)]) -> Result<(Operation, AttachQuery), ApiError> {
    let q = AttachQuery::from_pairs(pairs)
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Usage, message))?;
    let operation = Operation::RouteExec(ExecTarget {
        app: q.app.clone(),
        env: q.env.clone(),
        instance: q.instance.clone(),
    });
    Ok((operation, q))
}

/// The route: checks the query, finds the instance and its host, then upgrades.
pub async fn attach(
    ws: WebSocketUpgrade,
    State(shared): State<Arc<Shared>>,
    axum::Extension(grant): axum::Extension<crate::controller::access::Grant>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let (operation, q) = parse_attach(&pairs)?;
    let (ExecRoute { instance, host, .. }, conn) =
        perform(&shared, &operation, &grant).await?.route()?;
    Ok(ws
        .on_upgrade(move |socket| async move {
            info!(%instance, %host, argv = ?q.argv, tty = q.tty, "exec session attached");
            let command = ExecCommand {
                instance: instance.as_str().into(),
                argv: q.argv,
                stdin: Vec::new(),
                tty: q.tty,
                cols: q.cols,
                rows: q.rows,
                interactive: true,
            };
            let argv = command.argv.clone();
            let started = std::time::Instant::now();
            let outcome = bridge(socket, conn, command, host).await;
            info!(%instance, %outcome, "exec session ended");
            crate::controller::access::audit_exec(
                &shared, &grant, &instance, &argv, &outcome, started,
            );
        })
        .into_response())
}

/// How a session ended.
enum End {
    /// Tell the client this, then close.
    Tell(ServerMessage),
    /// The client went away.
    HungUp,
}

fn error(code: ErrorCode, message: impl Into<String>) -> End {
    End::Tell(ServerMessage::Error {
        code,
        message: message.into(),
    })
}

/// Carries the session both ways until the process exits or either side
/// goes away; says how it ended, for the audit.
async fn bridge(
    mut socket: WebSocket,
    conn: quinn::Connection,
    command: ExecCommand,
    host: String,
) -> String {
    let unreachable = |e: &dyn std::error::Error| {
        error(
            ErrorCode::HostUnreachable,
            format!("exec on host {host}: {}", vt_wire::error_chain(e)),
        )
    };
    let instance = command.instance.to_string();
    let (mut send, mut recv) = match conn.open_bi().await {
        Ok(streams) => streams,
        Err(e) => return finish(socket, unreachable(&e)).await,
    };
    if let Err(e) = frame::send(&mut send, &command).await {
        return finish(socket, unreachable(&e)).await;
    }
    let started = ServerMessage::Started {
        instance,
        host: host.clone(),
    };
    if send_json(&mut socket, &started).await.is_err() {
        let _ = send.finish();
        return End::HungUp.outcome();
    }
    // The host's events are read by a task: `frame::recv` is not cancel-safe.
    let (events_tx, mut events) = tokio::sync::mpsc::channel(16);
    let reader = tokio::spawn(async move {
        loop {
            let event = frame::recv::<ExecEvent>(&mut recv).await;
            let end = !matches!(event, Ok(Some(ExecEvent::Output { .. })));
            if events_tx.send(event).await.is_err() || end {
                return;
            }
        }
    });
    let end = loop {
        tokio::select! {
            message = socket.recv() => {
                let input = match message {
                    Some(Ok(Message::Binary(data))) => ExecInput::Data { data: data.to_vec() },
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ClientMessage>(text.as_str()) {
                        Ok(m) => m.into(),
                        Err(e) => {
                            warn!(error = %e, "ignoring an unreadable exec control message");
                            continue;
                        }
                    },
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break End::HungUp,
                };
                if let Err(e) = frame::send(&mut send, &input).await {
                    break unreachable(&e);
                }
            }
            event = events.recv() => match event {
                Some(Ok(Some(ExecEvent::Output { stream, data }))) => {
                    let stream = match stream {
                        vt_wire::messages::Stream::Stderr => STDERR,
                        vt_wire::messages::Stream::Stdout => STDOUT,
                    };
                    let message = Message::Binary(output_message(stream, &data).into());
                    if socket.send(message).await.is_err() {
                        break End::HungUp;
                    }
                }
                Some(Ok(Some(ExecEvent::Exited { code, signal }))) => {
                    break End::Tell(ServerMessage::Exited { code, signal });
                }
                Some(Ok(Some(ExecEvent::Error { message }))) => break error(ErrorCode::Exec, message),
                Some(Err(e)) => break unreachable(&e),
                Some(Ok(None)) | None => {
                    break error(ErrorCode::Exec, "the host ended the exec without an exit status")
                }
            },
        }
    };
    // Ending the stream hangs the session up if it still runs.
    let _ = send.finish();
    reader.abort();
    let outcome = end.outcome();
    if let End::Tell(_) = end {
        finish(socket, end).await;
    }
    outcome
}

impl End {
    /// How the session ended, in words: `exit 3`, `signal 9`, `hung up`, `error: …`.
    fn outcome(&self) -> String {
        match self {
            End::HungUp => "hung up".into(),
            End::Tell(ServerMessage::Exited { code, signal }) => {
                crate::controller::access::exit_outcome(*code, *signal)
            }
            End::Tell(ServerMessage::Error { message, .. }) => format!("error: {message}"),
            End::Tell(_) => "ended".into(),
        }
    }
}

/// Sends the last message and closes the WebSocket; says how it ended.
async fn finish(mut socket: WebSocket, end: End) -> String {
    let outcome = end.outcome();
    if let End::Tell(message) = end {
        let _ = send_json(&mut socket, &message).await;
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "".into(),
        })))
        .await;
    outcome
}

async fn send_json(socket: &mut WebSocket, message: &ServerMessage) -> Result<(), axum::Error> {
    let text = serde_json::to_string(message).unwrap_or_default();
    socket.send(Message::Text(text.into())).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn control_messages_are_tagged_json() {
        let cases = [
            (ClientMessage::Eof, json!({"type": "eof"})),
            (
                ClientMessage::Resize {
                    cols: 120,
                    rows: 40,
                },
                json!({"type": "resize", "cols": 120, "rows": 40}),
            ),
            (
                ClientMessage::Signal { signal: 2 },
                json!({"type": "signal", "signal": 2}),
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(serde_json::to_value(&message).unwrap(), expected);
            assert_eq!(
                serde_json::from_value::<ClientMessage>(expected).unwrap(),
                message
            );
        }
        let cases = [
            (
                ServerMessage::Started {
                    instance: "inst_1".into(),
                    host: "h1".into(),
                },
                json!({"type": "started", "instance": "inst_1", "host": "h1"}),
            ),
            (
                ServerMessage::Exited {
                    code: Some(3),
                    signal: None,
                },
                json!({"type": "exited", "code": 3, "signal": null}),
            ),
            (
                ServerMessage::Error {
                    code: ErrorCode::Exec,
                    message: "no".into(),
                },
                json!({"type": "error", "code": "E_EXEC", "message": "no"}),
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(serde_json::to_value(&message).unwrap(), expected);
            assert_eq!(
                serde_json::from_value::<ServerMessage>(expected).unwrap(),
                message
            );
        }
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"dance"}"#).is_err());
    }

    #[test]
    fn control_messages_become_exec_input() {
        assert_eq!(ExecInput::from(ClientMessage::Eof), ExecInput::Eof);
        assert_eq!(
            ExecInput::from(ClientMessage::Resize { cols: 1, rows: 2 }),
            ExecInput::Resize { cols: 1, rows: 2 }
        );
        assert_eq!(
            ExecInput::from(ClientMessage::Signal { signal: 15 }),
            ExecInput::Signal { signal: 15 }
        );
    }

    #[test]
    fn output_messages_carry_their_stream_in_the_first_byte() {
        let message = output_message(STDERR, b"oops\n");
        assert_eq!(message, b"\x02oops\n");
        assert_eq!(parse_output(&message), Some((STDERR, &b"oops\n"[..])));
        assert_eq!(parse_output(&[STDOUT]), Some((STDOUT, &b""[..])));
        assert_eq!(parse_output(&[]), None);
    }

    #[test]
    fn the_query_round_trips_through_axum() {
        let q = AttachQuery {
            app: "acme/shop/web".into(),
            env: Some("prod".into()),
            instance: None,
            argv: vec!["sh".into(), "-c".into(), "echo $((6*7)) & ü+%".into()],
            tty: true,
            cols: 132,
            rows: 43,
        };
        let uri: axum::http::Uri = format!("/v1/exec/attach?{}", q.to_query_string())
            .parse()
            .unwrap();
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&uri).unwrap();
        assert_eq!(AttachQuery::from_pairs(&pairs).unwrap(), q);
    }

    #[test]
    fn bad_queries_are_refused() {
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let err = |list: &[(&str, &str)]| AttachQuery::from_pairs(&pairs(list)).unwrap_err();
        assert!(err(&[("argv", "sh")]).contains("`app`"));
        assert!(err(&[("app", "web")]).contains("argv"));
        assert!(err(&[("app", "web"), ("argv", "sh"), ("cols", "wide")]).contains("cols"));
        assert!(err(&[("app", "web"), ("argv", "sh"), ("tty", "maybe")]).contains("tty"));
        assert!(err(&[("app", "web"), ("argv", "sh"), ("color", "1")]).contains("color"));
        let q = AttachQuery::from_pairs(&pairs(&[("app", "web"), ("argv", "sh")])).unwrap();
        assert!(!q.tty);
        assert_eq!(q.argv, ["sh"]);
    }

    #[test]
    fn the_query_parses_into_the_operation_that_routes_the_exec() {
        let pairs: Vec<(String, String)> = [
            ("app", "web"),
            ("env", "prod"),
            ("instance", "inst_1"),
            ("argv", "sh"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (operation, q) = parse_attach(&pairs).unwrap();
        assert_eq!(
            operation,
            Operation::RouteExec(ExecTarget {
                app: "web".into(),
                env: Some("prod".into()),
                instance: Some("inst_1".into()),
            })
        );
        assert_eq!(q.argv, ["sh"]);
        let e = parse_attach(&pairs[..1]).unwrap_err();
        assert_eq!(
            (e.status, e.code, e.message.as_str()),
            (
                400,
                ErrorCode::Usage,
                "give the command as `argv` parameters, one per argument"
            )
        );
    }
}
