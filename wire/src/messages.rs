//! What the controller, hosts and edges say to each other, framed as JSON
//! (see [`super::frame`]). A host keeps one bidirectional stream open: it sends
//! [`HostMessage`]s (a registration, then reports that double as heartbeats)
//! and receives [`ControllerMessage`]s. Assignments are level-triggered: each
//! one is the whole list of instances the host should have.

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
pub use vt_init::protocol::Stream;
use vt_plan::{HostId, InstanceId, Phase, ReleaseNo, VolumeId, WorkloadKey};
use vt_repo::EffectiveSpec;

/// What a host is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRegistration {
    /// Host name (also its ID), as in its certificate.
    pub name: String,
    /// Region it is in.
    pub region: String,
    /// Cpu it offers to instances, in millicores.
    pub cpu: u32,
    /// Memory it offers to instances, in bytes.
    pub memory: u64,
    /// Where edges open tunnel streams to it (QUIC), if it accepts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<SocketAddr>,
}

/// A host's report of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceReport {
    /// Instance ID.
    pub id: InstanceId,
    /// Where it is.
    pub phase: Phase,
    /// Why, for failures and unhealthy instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// How often the host restarted it in place after its app ended.
    #[serde(default)]
    pub restarts: u32,
    /// The instance's private address, once it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The image's manifest digest, once pulled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// Host → controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMessage {
    /// First message on the session stream.
    Register(HostRegistration),
    /// Every instance the host has, sent on every change and as a heartbeat.
    Report {
        /// All instances on the host.
        instances: Vec<InstanceReport>,
        /// All volumes on the host.
        #[serde(default)]
        volumes: Vec<VolumeReport>,
    },
    /// Log lines of the host's instances, in the order they were read.
    Logs {
        /// The lines.
        lines: Vec<LogLine>,
    },
    /// Its certificate is due for renewal: a request (PEM) for a new key.
    Renew {
        /// The certificate request.
        csr_pem: String,
    },
}

/// One line an app wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Instance ID.
    pub instance: InstanceId,
    /// Qualified env name (`acme/shop/web/prod`).
    pub name: String,
    /// `stdout` or `stderr`.
    pub stream: Stream,
    /// When it was written (Unix milliseconds).
    pub time: u64,
    /// The line, without its newline.
    pub line: String,
}

/// Whether an assigned instance should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desire {
    /// Start it (if not running) and keep it running.
    Run,
    /// Stop it (gracefully) and report it stopped.
    Stop,
}

/// One instance a host should have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Instance ID.
    pub id: InstanceId,
    /// Workload.
    pub key: WorkloadKey,
    /// Qualified env name, for logs.
    pub name: String,
    /// Release.
    pub release: ReleaseNo,
    /// What to run.
    pub spec: EffectiveSpec,
    /// Volume slot, for a workload with volumes.
    pub slot: Option<u32>,
    /// Run or stop.
    pub desire: Desire,
    /// The secret files of the release, decrypted by the controller's session
    /// layer when it sends the assignment (the controller's records hold
    /// none); the host hands them to the guest and writes none to its disk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<DeliveredSecret>,
}

/// A secret file for an instance, in clear, on the mutual-TLS session only.
/// `Debug` shows no content (see [`vt_init::protocol::Bytes`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredSecret {
    /// Secret name.
    pub name: String,
    /// Version.
    pub version: u64,
    /// Absolute path in the guest.
    pub path: String,
    /// The value.
    pub content: vt_init::protocol::Bytes,
}

/// Controller → host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControllerMessage {
    /// Registration accepted; report at least this often.
    Welcome {
        /// Heartbeat interval in milliseconds.
        heartbeat_ms: u64,
    },
    /// The whole list of instances the host should have.
    Assign {
        /// Instances; any instance the host has that is not listed must stop.
        instances: Vec<Assignment>,
    },
    /// Delete a volume (the controller checked it is not attached; the host
    /// checks again). The next report shows it gone.
    DestroyVolume {
        /// Volume ID.
        id: VolumeId,
    },
    /// The renewed certificate (PEM) for the key of the host's `Renew`.
    Renewed {
        /// The certificate.
        cert_pem: String,
    },
    /// The edge's routing table changed.
    Routes {
        /// Every endpoint and its healthy backends.
        routes: Vec<Route>,
    },
}

/// An endpoint and the healthy instances behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Qualified env name.
    pub name: String,
    /// Workload.
    pub key: WorkloadKey,
    /// Endpoint name.
    pub endpoint: String,
    /// Public port.
    pub port: u16,
    /// Whether the endpoint has the IPv4 add-on.
    pub ipv4: bool,
    /// Whether to send a PROXY v2 header.
    pub proxy_protocol: bool,
    /// The addresses to listen on: the endpoint's IPv6 address, and its IPv4
    /// one with the add-on. Empty until the controller allocated them.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// Healthy backends.
    pub backends: Vec<Backend>,
}

/// One healthy instance behind an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// Instance ID.
    pub instance: InstanceId,
    /// Host ID.
    pub host: HostId,
    /// Port inside the guest.
    pub port: u16,
    /// The host's tunnel address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<SocketAddr>,
}

/// Edge → controller, on the stream the edge opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EdgeMessage {
    /// First message: who is there.
    Hello {
        /// Edge name, as in its certificate.
        name: String,
    },
    /// What the edge serves, sent on change and every few seconds.
    Stats {
        /// One entry per endpoint the edge knows.
        endpoints: Vec<EndpointStats>,
    },
    /// Its certificate is due for renewal: a request (PEM) for a new key.
    Renew {
        /// The certificate request.
        csr_pem: String,
    },
}

/// One endpoint as one edge serves it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStats {
    /// Workload.
    pub key: WorkloadKey,
    /// Endpoint name.
    pub endpoint: String,
    /// Addresses (with port) the edge listens on.
    pub listening: Vec<String>,
    /// Why a listener could not be bound, if one could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_error: Option<String>,
    /// Connections that found no instance to go to.
    pub refused: u64,
    /// Per instance behind the endpoint.
    pub backends: Vec<BackendStats>,
}

/// Traffic to one instance through one edge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStats {
    /// Instance ID.
    pub instance: InstanceId,
    /// Host ID.
    pub host: HostId,
    /// Connections open now.
    pub open: u64,
    /// Connections since the edge started.
    pub total: u64,
    /// Bytes from clients to the instance.
    pub bytes_in: u64,
    /// Bytes from the instance to clients.
    pub bytes_out: u64,
    /// Tunnel streams that failed (host unreachable, refused, reset).
    pub errors: u64,
}

/// Controller → host, on a stream the controller opens: run a command in an
/// instance. The host answers with [`ExecEvent`]s on the same stream. An
/// `interactive` command's input follows on the stream as [`ExecInput`]
/// frames; the stream ending before the command exits hangs it up (SIGHUP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecCommand {
    /// Instance ID.
    pub instance: InstanceId,
    /// Command and arguments.
    pub argv: Vec<String>,
    /// Bytes for the command's stdin (closed after them; unused when `interactive`).
    #[serde(default)]
    pub stdin: Vec<u8>,
    /// Run on a terminal (stdout and stderr merged) instead of pipes.
    #[serde(default)]
    pub tty: bool,
    /// Terminal columns (`tty` only).
    #[serde(default)]
    pub cols: u16,
    /// Terminal rows (`tty` only).
    #[serde(default)]
    pub rows: u16,
    /// Input is streamed as [`ExecInput`] frames after this one.
    #[serde(default)]
    pub interactive: bool,
}

/// Controller → host, after an interactive [`ExecCommand`] on its stream:
/// the session's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExecInput {
    /// Bytes for stdin (or the terminal).
    Data {
        /// The bytes.
        data: Vec<u8>,
    },
    /// End of input: stdin is closed (on a terminal, an end-of-file
    /// character is typed).
    Eof,
    /// The terminal changed size.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// Send a signal to the process (Linux numbering: 1 SIGHUP, 2 SIGINT, 15 SIGTERM).
    Signal {
        /// Signal number.
        signal: i32,
    },
}

/// Host → controller: what an exec produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExecEvent {
    /// Output bytes.
    Output {
        /// `stdout` or `stderr`.
        stream: Stream,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The command ended.
    Exited {
        /// Exit code, if it exited.
        code: Option<i32>,
        /// Signal, if one killed it.
        signal: Option<i32>,
    },
    /// The command could not run.
    Error {
        /// Why.
        message: String,
    },
}

/// A volume as its host reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeReport {
    /// Stable ID (`vol_...`), from the workload, the volume name and the slot.
    pub id: VolumeId,
    /// Workload it belongs to.
    pub key: WorkloadKey,
    /// Volume name in the manifest.
    pub name: String,
    /// Volume slot.
    pub slot: Option<u32>,
    /// Size in bytes.
    pub size: u64,
    /// Bytes it occupies on the host's disk (sparse).
    pub used: u64,
    /// Instance it is attached to, if any.
    pub attached: Option<InstanceId>,
    /// Where it is on the host.
    pub path: String,
}

/// The stable ID of a volume.
pub fn volume_id(key: &WorkloadKey, name: &str, slot: Option<u32>) -> VolumeId {
    use sha2::Digest;
    let text = format!(
        "{}/{}/{name}/{}",
        key.app_id,
        key.env_id,
        slot.map_or(String::new(), |s| s.to_string())
    );
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!("vol_{}", hex::encode(&digest[..8])).into()
}
