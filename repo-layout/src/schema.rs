//! Schema v1: the files of the desired-state repository, as written by people.
//!
//! Every field is optional at this level so that one bad field never hides the
//! others: the loader reports what is missing or wrong, and
//! [`crate::effective`] turns an app, its env overlay and the repo defaults
//! into the [`crate::EffectiveSpec`] that gets deployed. Unknown fields are not
//! rejected by serde here but reported by the loader, all at once, with a
//! "did you mean" hint (see [`crate::load`]).

use crate::quantity::{ByteSize, Cpu, Duration};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The schema version this crate reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// `vt.yaml` at the root of the repository.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RepoConfig {
    /// Schema version of the repository; `1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Regions that envs may run in. The first is the default region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<Region>,
    /// Spec fields applied beneath every app (app files and env files override them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Spec>,
    /// The fleet's secret encryption keys (public recipients only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<SecretsConfig>,
}

/// `secrets:` in `vt.yaml`: whom secret values are encrypted to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretsConfig {
    /// The fleet's age recipients (`age1...`), written by `vt fleet init` and
    /// `vt fleet rotate-key`; the controller holds the matching identities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
}

/// A region of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Region {
    /// DNS-label name, e.g. `eu-west`.
    pub name: String,
    /// Free text shown in listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `orgs/<org>/org.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrgFile {
    /// Stable ID (`org_...`), minted by `vt org create`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Limits on what the org's envs may use in total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<Quotas>,
    /// How long the controller keeps the org's events and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

/// An organisation's quotas, summed over all its envs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Quotas {
    /// Most apps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_apps: Option<u32>,
    /// Most instances (instances × regions, over all envs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
    /// Most cpu over all instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpu: Option<Cpu>,
    /// Most memory over all instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<ByteSize>,
    /// Most volume space over all instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_volume_size: Option<ByteSize>,
    /// Most endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_endpoints: Option<u32>,
    /// Most endpoints with the IPv4 add-on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ipv4_endpoints: Option<u32>,
}

/// Retention policies of an org.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Retention {
    /// Event retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventRetention>,
    /// Log retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogRetention>,
}

/// How many events to keep, and for how long.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EventRetention {
    /// Drop events older than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Keep at most this many events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u64>,
}

/// How much log to keep, and for how long.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogRetention {
    /// Drop log lines older than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Keep at most this much log per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<ByteSize>,
}

/// `orgs/<org>/<project>/project.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProjectFile {
    /// Stable ID (`prj_...`), minted by `vt project create`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// What to run: the body of `app.yaml`, of `envs/<env>.yaml` (which overrides
/// the app field by field) and of `defaults` in `vt.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Spec {
    /// Stable ID: `app_...` in app.yaml, `env_...` in an env file, absent in defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// OCI image, by tag (`registry.local/web:1`) or digest (`...@sha256:...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Replaces the image's entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Replaces the image's cmd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Environment variables, merged key by key with the app's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Cpu and memory of each instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Instances per region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// Regions to run in (default: the first region of `vt.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<String>>,
    /// TCP ports the app listens on, merged by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<Port>>,
    /// Public endpoints, merged by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<Endpoint>>,
    /// Volumes, merged by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Volume>>,
    /// Secrets delivered as files in the guest, merged by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<SecretRef>>,
    /// Health check gating rollouts and routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// How a new release replaces the old one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
}

/// Cpu and memory of one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Resources {
    /// Cores (`0.5`, `2`, `250m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// Memory (`256Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
}

/// A TCP port the app listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Port {
    /// DNS-label name, referenced by endpoints and health checks.
    pub name: String,
    /// Port number inside the guest.
    pub port: u16,
}

/// A public TCP endpoint on the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Endpoint {
    /// DNS-label name; the endpoint keeps its addresses while its name stays.
    pub name: String,
    /// Public port on the edge.
    pub port: u16,
    /// Name of the app port to forward to (default: the first port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Also give the endpoint an IPv4 address (a billable add-on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<bool>,
    /// Send a PROXY protocol header to the app before the first byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
}

/// PROXY protocol versions the host can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// The binary v2 header.
    V2,
}

/// A persistent volume, kept across restarts and releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Volume {
    /// DNS-label name.
    pub name: String,
    /// Size of the volume (`1Gi`).
    pub size: ByteSize,
    /// Absolute mount path in the guest.
    pub mount: String,
}

/// A secret delivered as a file in the guest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretRef {
    /// Secret name, as in the env's secrets file (`envs/<env>.secrets.yaml`).
    pub name: String,
    /// Absolute path of the file in the guest, in a directory of its own
    /// (e.g. `/run/secrets/db`): the directory becomes a tmpfs.
    pub path: String,
    /// What a new version of the secret does: `restart` (default: a new
    /// release replaces the instances) or `signal` (the file is rewritten in
    /// the running guest and the app gets `signal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_change: Option<OnChange>,
    /// The signal sent with `on_change: signal` (default `SIGHUP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// What a valid value looks like (checked by `vt secrets validate` and the controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<SecretFormat>,
}

/// What a secret's change does to running instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnChange {
    /// A new release: the instances are replaced (rolled).
    #[default]
    Restart,
    /// The file is rewritten in the running guest and the app is signalled.
    Signal,
}

/// The declared shape of a secret's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretFormat {
    /// A regular expression the whole value must match (Rust `regex` syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Fewest bytes the value may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
}

/// A health check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// `tcp` (connect) or `http` (GET `path`, expect `status`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<HealthKind>,
    /// Name of the port to check (default: the first port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// HTTP path (http checks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Expected HTTP status (http checks only, default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Time between checks (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Time a check may take (default 2s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Passing checks in a row to become healthy (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    /// Failing checks in a row to become unhealthy (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    /// Time after start during which failures do not count (default 0s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<Duration>,
}

/// Kinds of health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    /// A TCP connect succeeds.
    Tcp,
    /// An HTTP GET returns the expected status.
    Http,
}

/// How a new release replaces the old one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Rollout {
    /// `rolling` (default) or `immediate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Extra instances a rolling update may start (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<u32>,
    /// Instances a rolling update may take down at once (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<u32>,
    /// A rollout that makes no progress for this long halts (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<Duration>,
}

/// Rollout strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Replace instances a few at a time, gated on health.
    Rolling,
    /// Stop the old instances and start the new ones at once.
    Immediate,
}
