//! The host↔guest protocol: newline-delimited JSON frames, one object per
//! line, tagged by `"type"` (snake_case). Binary data travels as standard
//! base64 (with padding) in fields named `*_b64`.
//!
//! # Conversation
//!
//! 1. The guest sends [`GuestToHost::Hello`] as soon as its channel opens
//!    (and again after the host reconnects, followed by `Started` and
//!    `Exited` if those happened, so a restarted host agent can re-attach;
//!    the host treats them idempotently and skips any line before the first
//!    `Hello` it can parse).
//! 2. The host sends [`HostToGuest::Setup`] once. The guest answers
//!    [`GuestToHost::Started`] when the app runs, or [`GuestToHost::Error`]
//!    when setup failed (nothing runs then; the host should send `Stop`).
//!    An entrypoint that cannot be executed gives an `Error` followed by
//!    `Exited { code: Some(127) }` (126 for other exec failures).
//! 3. The app's output arrives as [`GuestToHost::Log`] lines; its end as
//!    [`GuestToHost::Exited`]. The guest keeps serving exec after that.
//! 4. [`HostToGuest::Stop`] (or SIGTERM to the guest's PID 1) stops the app:
//!    SIGTERM, `grace_ms`, SIGKILL to everything, sync, power off.
//!
//! Exec sessions ([`HostToGuest::Exec`]) are identified by an `id` the host
//! chooses; several may run at once. Each ends with exactly one
//! [`GuestToHost::ExecExited`], sent after the output that was available
//! when the process exited.
//!
//! Unknown fields are ignored (a newer peer may add optional fields); an
//! unknown `type` is a decode error, which the guest answers with `Error`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::Ipv6Addr;

/// Protocol version the guest announces in [`GuestToHost::Hello`]. Bumped on
/// any change a peer of the previous version would misunderstand.
pub const PROTOCOL_VERSION: u32 = 2;

/// Longest log line, in bytes; longer lines are split into several
/// [`GuestToHost::Log`] frames.
pub const MAX_LOG_LINE: usize = 16 * 1024;

/// Longest frame either side accepts, in bytes (secrets travel in `Setup`).
pub const MAX_FRAME: usize = 32 << 20;

/// Bytes that serialize as a standard base64 string.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets travel in these; never print the content.
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes(bytes)
    }
}

impl From<&[u8]> for Bytes {
    fn from(bytes: &[u8]) -> Self {
        Bytes(bytes.to_vec())
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map(Bytes)
            .map_err(|e| serde::de::Error::custom(format_args!("invalid base64: {e}")))
    }
}

/// Host → guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostToGuest {
    /// Everything the guest needs to start the app; sent once.
    Setup(Box<Setup>),
    /// Stop the app and power the VM off.
    Stop {
        /// Time between SIGTERM and SIGKILL, in milliseconds.
        grace_ms: u64,
    },
    /// Start an exec session.
    Exec(ExecRequest),
    /// Bytes for an exec session's stdin (or terminal).
    ExecInput {
        /// Session ID.
        id: u64,
        /// The bytes.
        data_b64: Bytes,
    },
    /// End of an exec session's input: its stdin is closed (on a terminal,
    /// an end-of-file character is typed).
    ExecEof {
        /// Session ID.
        id: u64,
    },
    /// The exec session's terminal changed size (terminal sessions only).
    ExecResize {
        /// Session ID.
        id: u64,
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// Send a signal to an exec session's process.
    ExecSignal {
        /// Session ID.
        id: u64,
        /// Signal number (Linux x86_64 numbering, e.g. 2 for SIGINT).
        signal: i32,
    },
    /// New versions of secret files for the running app (protocol 2): each
    /// file is replaced atomically (its tmpfs directory is mounted if it was
    /// not), then the app gets each of `signals`. Answered by
    /// [`GuestToHost::SecretsUpdated`] or an `Error`.
    UpdateSecrets {
        /// The files to write (all of the app's, or only the changed ones).
        secrets: Vec<SecretFile>,
        /// Signals for the app, in order (e.g. 1 for SIGHUP); may be empty.
        #[serde(default)]
        signals: Vec<i32>,
    },
}

/// How to set the instance up and what to run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setup {
    /// Hostname of the VM.
    pub hostname: String,
    /// The VM's IPv6 address on `eth0`, if it has network.
    #[serde(default)]
    pub ipv6: Option<Ipv6Config>,
    /// Environment of the app, in order; later entries win.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// What to run: the image's entrypoint and cmd as resolved by the host.
    /// A first word without `/` is looked up in the app's `PATH`.
    pub argv: Vec<String>,
    /// Working directory inside the root filesystem (created if missing).
    #[serde(default = "default_workdir")]
    pub workdir: String,
    /// User the app runs as.
    #[serde(default)]
    pub uid: u32,
    /// Group the app runs as (also its only supplementary group).
    #[serde(default)]
    pub gid: u32,
    /// Secret files, written to memory (tmpfs), never to disk.
    #[serde(default)]
    pub secrets: Vec<SecretFile>,
    /// Block devices to mount inside the root filesystem.
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    /// Time between SIGTERM and SIGKILL when the VM is stopped by a signal
    /// rather than by [`HostToGuest::Stop`], in milliseconds.
    #[serde(default = "default_grace_ms")]
    pub grace_ms: u64,
}

fn default_workdir() -> String {
    "/".to_string()
}

fn default_grace_ms() -> u64 {
    10_000
}

/// A static IPv6 configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Config {
    /// The VM's address.
    pub address: Ipv6Addr,
    /// Prefix length of the on-link network, e.g. 64.
    pub prefix_len: u8,
    /// Default gateway, if any (on-link or link-local).
    #[serde(default)]
    pub gateway: Option<Ipv6Addr>,
}

/// A secret file. Its directory becomes a tmpfs inside the root filesystem,
/// hiding whatever the image had there: use dedicated directories such as
/// `/run/secrets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretFile {
    /// Absolute path inside the root filesystem; not directly under `/`.
    pub path: String,
    /// Content.
    pub content_b64: Bytes,
    /// Permission bits, e.g. `0o400` (JSON: 256).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// A block device holding an ext4 filesystem, mounted for the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    /// Device path in the guest, e.g. `/dev/vdb`.
    pub device: String,
    /// Absolute mount path inside the root filesystem, e.g. `/data`.
    pub mount: String,
}

/// Start an exec session: a process chrooted, and running as the same user,
/// like the app, with the app's environment plus `env`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Session ID, chosen by the host, unique among live sessions.
    pub id: u64,
    /// Command and arguments; a first word without `/` is looked up in `PATH`.
    pub argv: Vec<String>,
    /// Run on a terminal (stdout and stderr merged) instead of pipes.
    #[serde(default)]
    pub tty: bool,
    /// Terminal columns (terminal sessions).
    #[serde(default)]
    pub cols: u16,
    /// Terminal rows (terminal sessions).
    #[serde(default)]
    pub rows: u16,
    /// Extra environment, laid over the app's.
    #[serde(default)]
    pub env: Vec<(String, String)>,
}

/// Which output stream bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output (and a terminal's output).
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The stream's name, as on the wire and in the host's log files:
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Guest → host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GuestToHost {
    /// The guest is up; first frame on the channel.
    Hello {
        /// [`PROTOCOL_VERSION`] of the guest.
        version: u32,
    },
    /// The app is running.
    Started {
        /// Its process ID in the guest.
        pid: u32,
    },
    /// One line of the app's output, without its newline (at most
    /// [`MAX_LOG_LINE`] bytes; invalid UTF-8 is replaced).
    Log {
        /// Stream it came from.
        stream: Stream,
        /// The line.
        line: String,
        /// When the guest read it: guest clock, ms since the Unix epoch.
        time_ms: u64,
    },
    /// The app ended.
    Exited {
        /// Exit code, if it exited.
        code: Option<i32>,
        /// Signal number, if a signal killed it.
        signal: Option<i32>,
        /// The kernel's OOM killer killed a process in the VM while the app
        /// ran (best effort: from `/proc/vmstat`'s `oom_kill` counter).
        oom: bool,
    },
    /// Output of an exec session.
    ExecOutput {
        /// Session ID.
        id: u64,
        /// Stream it came from (always stdout for terminal sessions).
        stream: Stream,
        /// The bytes.
        data_b64: Bytes,
    },
    /// An exec session's process ended (or could not start: code 127 when
    /// the command was not found, 126 for other failures).
    ExecExited {
        /// Session ID.
        id: u64,
        /// Exit code, if it exited.
        code: Option<i32>,
        /// Signal number, if a signal killed it.
        signal: Option<i32>,
    },
    /// The secret files of an [`HostToGuest::UpdateSecrets`] are written and
    /// the app was signalled.
    SecretsUpdated {
        /// Files written.
        files: u32,
        /// Signals sent to the app (none when it was not running).
        signalled: Vec<i32>,
    },
    /// Something went wrong: a bad frame, a volume that did not mount, an
    /// entrypoint that was not found.
    Error {
        /// What went wrong, as a sentence.
        message: String,
        /// The exec session it concerns, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
}

impl GuestToHost {
    /// An `Error` frame not tied to an exec session.
    pub fn error(message: impl Into<String>) -> Self {
        GuestToHost::Error {
            message: message.into(),
            id: None,
        }
    }
}

/// Why a frame could not be encoded or decoded.
#[derive(Debug)]
pub enum FrameError {
    /// The line is not a valid frame.
    Json(serde_json::Error),
    /// The line is longer than the limit, in bytes.
    TooLong(usize),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Json(e) => write!(f, "invalid frame: {e}"),
            FrameError::TooLong(limit) => write!(f, "frame longer than {limit} bytes"),
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Json(e) => Some(e),
            FrameError::TooLong(_) => None,
        }
    }
}

/// Encodes a frame as one JSON line, newline included.
pub fn encode<T: Serialize>(frame: &T) -> Result<Vec<u8>, FrameError> {
    let mut line = serde_json::to_vec(frame).map_err(FrameError::Json)?;
    line.push(b'\n');
    Ok(line)
}

/// Decodes one line (with or without its newline) into a frame.
pub fn decode<T: DeserializeOwned>(line: &[u8]) -> Result<T, FrameError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    serde_json::from_slice(line).map_err(FrameError::Json)
}

/// Cuts a byte stream into lines, for either side's reader. Lines longer than
/// the limit are skipped up to their newline and reported once as
/// [`FrameError::TooLong`].
#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    limit: usize,
    discarding: bool,
}

impl LineBuffer {
    /// A buffer accepting lines of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        LineBuffer {
            buf: Vec::new(),
            limit,
            discarding: false,
        }
    }

    /// Appends bytes read from the stream and returns the complete lines
    /// (without newlines) they finished, in order.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    let (head, rest) = bytes.split_at(end);
                    if self.discarding {
                        self.discarding = false;
                    } else if self.buf.len() + head.len() > self.limit {
                        self.buf.clear();
                        out.push(Err(FrameError::TooLong(self.limit)));
                    } else {
                        self.buf.extend_from_slice(head);
                        out.push(Ok(std::mem::take(&mut self.buf)));
                    }
                    bytes = rest.get(1..).unwrap_or_default();
                }
                None => {
                    if !self.discarding {
                        if self.buf.len() + bytes.len() > self.limit {
                            self.buf.clear();
                            self.discarding = true;
                            out.push(Err(FrameError::TooLong(self.limit)));
                        } else {
                            self.buf.extend_from_slice(bytes);
                        }
                    }
                    bytes = &[];
                }
            }
        }
        out
    }

    /// Forgets a partial line (after the peer disconnected).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.discarding = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip_host(frame: HostToGuest) {
        let line = encode(&frame).expect("encodes");
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        let back: HostToGuest = decode(&line).expect("decodes");
        assert_eq!(back, frame);
    }

    fn roundtrip_guest(frame: GuestToHost) {
        let line = encode(&frame).expect("encodes");
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        let back: GuestToHost = decode(&line).expect("decodes");
        assert_eq!(back, frame);
    }

    fn sample_setup() -> Setup {
        Setup {
            hostname: "web-1".into(),
            ipv6: Some(Ipv6Config {
                address: "fd00:1::2".parse().expect("addr"),
                prefix_len: 64,
                gateway: Some("fd00:1::1".parse().expect("addr")),
            }),
            env: vec![("PORT".into(), "8080".into())],
            argv: vec!["/usr/bin/app".into(), "--serve".into()],
            workdir: "/srv".into(),
            uid: 1000,
            gid: 1000,
            secrets: vec![SecretFile {
                path: "/run/secrets/db".into(),
                content_b64: Bytes(b"hunter2\n\x00\xff".to_vec()),
                mode: 0o400,
                uid: 1000,
                gid: 1000,
            }],
            volumes: vec![VolumeMount {
                device: "/dev/vdb".into(),
                mount: "/data".into(),
            }],
            grace_ms: 5000,
        }
    }

    #[test]
    fn every_host_frame_roundtrips() {
        roundtrip_host(HostToGuest::Setup(Box::new(sample_setup())));
        roundtrip_host(HostToGuest::Stop { grace_ms: 3 });
        roundtrip_host(HostToGuest::Exec(ExecRequest {
            id: 7,
            argv: vec!["sh".into()],
            tty: true,
            cols: 80,
            rows: 24,
            env: vec![("TERM".into(), "xterm".into())],
        }));
        roundtrip_host(HostToGuest::ExecInput {
            id: 7,
            data_b64: Bytes(b"ls\n".to_vec()),
        });
        roundtrip_host(HostToGuest::ExecEof { id: 7 });
        roundtrip_host(HostToGuest::ExecResize {
            id: 7,
            cols: 100,
            rows: 40,
        });
        roundtrip_host(HostToGuest::ExecSignal { id: 7, signal: 2 });
        roundtrip_host(HostToGuest::UpdateSecrets {
            secrets: sample_setup().secrets,
            signals: vec![1],
        });
    }

    #[test]
    fn every_guest_frame_roundtrips() {
        roundtrip_guest(GuestToHost::Hello {
            version: PROTOCOL_VERSION,
        });
        roundtrip_guest(GuestToHost::Started { pid: 42 });
        roundtrip_guest(GuestToHost::Log {
            stream: Stream::Stderr,
            line: "multi\nline \"quoted\"".into(),
            time_ms: 1_700_000_000_000,
        });
        roundtrip_guest(GuestToHost::Exited {
            code: None,
            signal: Some(9),
            oom: true,
        });
        roundtrip_guest(GuestToHost::ExecOutput {
            id: 1,
            stream: Stream::Stdout,
            data_b64: Bytes((0..=255).collect()),
        });
        roundtrip_guest(GuestToHost::ExecExited {
            id: 1,
            code: Some(0),
            signal: None,
        });
        roundtrip_guest(GuestToHost::SecretsUpdated {
            files: 1,
            signalled: vec![1],
        });
        roundtrip_guest(GuestToHost::error("no such volume"));
        roundtrip_guest(GuestToHost::Error {
            message: "not found".into(),
            id: Some(3),
        });
    }

    #[test]
    fn wire_shape_is_stable() {
        let line = encode(&GuestToHost::ExecOutput {
            id: 1,
            stream: Stream::Stdout,
            data_b64: Bytes(b"hi".to_vec()),
        })
        .expect("encodes");
        assert_eq!(
            line,
            b"{\"type\":\"exec_output\",\"id\":1,\"stream\":\"stdout\",\"data_b64\":\"aGk=\"}\n"
        );
        let line = encode(&GuestToHost::error("x")).expect("encodes");
        assert_eq!(line, b"{\"type\":\"error\",\"message\":\"x\"}\n");
        let line = encode(&HostToGuest::Stop { grace_ms: 10 }).expect("encodes");
        assert_eq!(line, b"{\"type\":\"stop\",\"grace_ms\":10}\n");
    }

    #[test]
    fn stream_names_match_the_wire() {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let json = serde_json::to_string(&stream).expect("encodes");
            assert_eq!(json, format!("\"{}\"", stream.as_str()));
        }
    }

    #[test]
    fn setup_fields_are_flat_and_defaults_apply() {
        let frame: HostToGuest =
            decode(br#"{"type":"setup","hostname":"h","argv":["/bin/true"],"future":1}"#)
                .expect("decodes");
        let HostToGuest::Setup(setup) = frame else {
            panic!("not a setup: {frame:?}");
        };
        assert_eq!(setup.workdir, "/");
        assert_eq!(setup.grace_ms, 10_000);
        assert_eq!(setup.ipv6, None);
        assert!(setup.env.is_empty() && setup.secrets.is_empty() && setup.volumes.is_empty());

        let json = String::from_utf8(
            encode(&HostToGuest::Setup(Box::new(sample_setup()))).expect("encodes"),
        )
        .expect("utf8");
        assert!(json.starts_with(r#"{"type":"setup","hostname":"web-1","ipv6":{"address":"fd00:1::2","prefix_len":64,"gateway":"fd00:1::1"},"env":[["PORT","8080"]]"#), "{json}");
        assert!(
            json.contains(r#""content_b64":"aHVudGVyMgoA/w==""#),
            "{json}"
        );
    }

    #[test]
    fn bad_frames_are_errors() {
        assert!(decode::<HostToGuest>(b"{\"type\":\"reboot\"}").is_err());
        assert!(decode::<HostToGuest>(b"not json").is_err());
        let err = decode::<HostToGuest>(br#"{"type":"exec_input","id":1,"data_b64":"!!"}"#)
            .expect_err("bad base64");
        assert!(err.to_string().contains("invalid base64"), "{err}");
    }

    #[test]
    fn decode_accepts_crlf() {
        let frame: HostToGuest = decode(b"{\"type\":\"exec_eof\",\"id\":2}\r\n").expect("decodes");
        assert_eq!(frame, HostToGuest::ExecEof { id: 2 });
    }

    #[test]
    fn bytes_debug_hides_content() {
        assert_eq!(format!("{:?}", Bytes(b"secret".to_vec())), "Bytes(6 bytes)");
    }

    fn oks(results: Vec<Result<Vec<u8>, FrameError>>) -> Vec<String> {
        results
            .into_iter()
            .map(|r| match r {
                Ok(line) => String::from_utf8_lossy(&line).into_owned(),
                Err(e) => format!("ERR {e}"),
            })
            .collect()
    }

    #[test]
    fn line_buffer_joins_and_splits() {
        let mut lines = LineBuffer::new(100);
        assert!(lines.push(b"ab").is_empty());
        assert_eq!(oks(lines.push(b"c\nde\n\nf")), ["abc", "de", ""]);
        assert_eq!(oks(lines.push(b"\n")), ["f"]);
        assert!(lines.push(b"").is_empty());
    }

    #[test]
    fn line_buffer_skips_long_lines_once() {
        let mut lines = LineBuffer::new(4);
        assert_eq!(oks(lines.push(b"1234")), Vec::<String>::new());
        assert_eq!(oks(lines.push(b"5")), ["ERR frame longer than 4 bytes"]);
        assert!(lines.push(b"678").is_empty());
        assert_eq!(oks(lines.push(b"9\nok\n")), ["ok"]);
        assert_eq!(
            oks(lines.push(b"toolong\nx\n")),
            ["ERR frame longer than 4 bytes", "x"]
        );
        lines.push(b"par");
        lines.reset();
        assert_eq!(oks(lines.push(b"y\n")), ["y"]);
    }
}
