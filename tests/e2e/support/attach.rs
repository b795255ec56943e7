//! An interactive exec session driven programmatically: the controller's
//! WebSocket (`GET /v1/exec/attach`) opened the way `vt exec -it` opens it,
//! speaking the documented messages as raw JSON and bytes.

use super::fleet::Controller;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// An attached session and everything it printed so far.
pub struct Attach {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    /// Bytes from stdout (or the terminal).
    pub stdout: Vec<u8>,
    /// Bytes from stderr.
    pub stderr: Vec<u8>,
    /// Control messages received (`started`, `exited`, `error`).
    pub messages: Vec<Value>,
}

impl Attach {
    /// Opens `/v1/exec/attach?QUERY` on `controller` (over TLS, trusting the fleet CA).
    pub fn open(controller: &Controller, token: &str, query: &str) -> Attach {
        let base = controller.url();
        let url = format!(
            "{}/v1/exec/attach?{query}",
            base.replacen("https://", "wss://", 1)
                .replacen("http://", "ws://", 1)
        );
        let mut request = url.into_client_request().expect("a WebSocket request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("a header value"),
        );
        let tcp = TcpStream::connect(controller.http).expect("connect to the API");
        let tls = vt_wire::trust::client_config(Some(controller.ca())).expect("the fleet CA");
        let connector = tungstenite::Connector::Rustls(tls);
        let (mut socket, _) =
            tungstenite::client_tls_with_config(request, tcp, None, Some(connector))
                .unwrap_or_else(|e| panic!("cannot attach with {query}: {e}"));
        // Reads poll: a short timeout once the handshakes are done.
        let tcp = match socket.get_mut() {
            MaybeTlsStream::Rustls(stream) => &stream.sock,
            MaybeTlsStream::Plain(stream) => &*stream,
            _ => panic!("an unexpected stream kind"),
        };
        tcp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set a read timeout");
        Attach {
            socket,
            stdout: Vec::new(),
            stderr: Vec::new(),
            messages: Vec::new(),
        }
    }

    /// Types bytes (a binary message).
    pub fn send(&mut self, data: &[u8]) {
        self.socket
            .send(Message::Binary(data.to_vec().into()))
            .expect("send input");
    }

    /// Sends a control message.
    pub fn control(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .expect("send a control message");
    }

    /// Stdout so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The `exited` or `error` message, once received.
    pub fn end(&self) -> Option<&Value> {
        self.messages
            .iter()
            .find(|m| m["type"] == "exited" || m["type"] == "error")
    }

    /// Reads messages until `done` holds, or panics after `timeout`.
    pub fn wait(&mut self, what: &str, timeout: Duration, done: impl Fn(&Attach) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting until {what}; stdout so far: {:?}, messages: {:?}",
                self.text(),
                self.messages
            );
            match self.socket.read() {
                Ok(Message::Binary(data)) => match data.split_first() {
                    Some((2, bytes)) => self.stderr.extend_from_slice(bytes),
                    Some((1, bytes)) => self.stdout.extend_from_slice(bytes),
                    other => panic!("an output message without a known stream byte: {other:?}"),
                },
                Ok(Message::Text(text)) => self
                    .messages
                    .push(serde_json::from_str(text.as_str()).expect("control messages are JSON")),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!(
                    "the session broke while waiting until {what}: {e}; stdout so far: {:?}, messages: {:?}",
                    self.text(),
                    self.messages
                ),
            }
        }
    }

    /// Waits for the `exited` message and returns it.
    pub fn wait_exit(&mut self, timeout: Duration) -> Value {
        self.wait("the session ends", timeout, |s| s.end().is_some());
        let end = self.end().cloned().unwrap_or_default();
        assert_eq!(end["type"], "exited", "{end}; stdout: {:?}", self.text());
        end
    }
}

/// A resize control message.
pub fn resize(cols: u16, rows: u16) -> Value {
    json!({"type": "resize", "cols": cols, "rows": rows})
}
