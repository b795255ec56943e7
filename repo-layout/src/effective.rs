//! The effective spec: repo defaults, then the app file, then the env file,
//! merged field by field, with defaults filled in. This is what gets deployed.

use crate::quantity::{ByteSize, Cpu, Duration};
use crate::schema::{
    HealthKind, OnChange, Port, ProxyProtocol, SecretFormat, Spec, Strategy, Volume,
};
use crate::Code;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Default cpu of an instance when no layer sets one.
pub const DEFAULT_CPU: Cpu = Cpu(250);
/// Default memory of an instance when no layer sets one.
pub const DEFAULT_MEMORY: ByteSize = ByteSize(256 << 20);

/// A fully resolved app/env spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EffectiveSpec {
    /// OCI image reference (tag or digest).
    pub image: String,
    /// Entrypoint override (empty: the image's).
    pub command: Vec<String>,
    /// Cmd override (empty: the image's).
    pub args: Vec<String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Cpu of each instance.
    pub cpu: Cpu,
    /// Memory of each instance.
    pub memory: ByteSize,
    /// Instances per region.
    pub instances: u32,
    /// Regions to run in.
    pub regions: Vec<String>,
    /// Ports the app listens on.
    pub ports: Vec<Port>,
    /// Public endpoints.
    pub endpoints: Vec<EffectiveEndpoint>,
    /// Volumes.
    pub volumes: Vec<Volume>,
    /// Secret files, with the version of each secret from the env's secrets file.
    pub secrets: Vec<EffectiveSecret>,
    /// Health check, if any.
    pub health: Option<HealthCheck>,
    /// Rollout policy.
    pub rollout: RolloutPolicy,
}

impl EffectiveSpec {
    /// The number of the app port named `name`, if the spec declares one.
    pub fn port_number(&self, name: &str) -> Option<u16> {
        self.ports.iter().find(|p| p.name == name).map(|p| p.port)
    }
}

/// A secret file of the effective spec. Its `version` comes from the env's
/// secrets file, so a new version of a secret is a new spec (a new release),
/// and a commit restoring an old secrets file restores the old version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EffectiveSecret {
    /// Secret name.
    pub name: String,
    /// Absolute path in the guest.
    pub path: String,
    /// Version in the env's secrets file (0 when it has none).
    #[serde(default)]
    pub version: u64,
    /// Restart (a new release) or signal (rewrite in place) on change.
    #[serde(default, skip_serializing_if = "is_restart")]
    pub on_change: OnChange,
    /// Signal name for `on_change: signal` (`SIGHUP` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Declared format of the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<SecretFormat>,
}

fn is_restart(on_change: &OnChange) -> bool {
    *on_change == OnChange::Restart
}

/// An endpoint with its target port resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EffectiveEndpoint {
    /// Endpoint name.
    pub name: String,
    /// Public port.
    pub port: u16,
    /// Name of the app port it forwards to.
    pub target: String,
    /// Whether it has the IPv4 add-on.
    pub ipv4: bool,
    /// PROXY protocol header to send, if any.
    pub proxy_protocol: Option<ProxyProtocol>,
}

/// A health check with its defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HealthCheck {
    /// TCP connect or HTTP GET.
    pub kind: HealthKind,
    /// Name of the checked port.
    pub port: String,
    /// HTTP path (http only).
    pub path: Option<String>,
    /// Expected HTTP status (http only).
    pub status: Option<u16>,
    /// Time between checks.
    pub interval: Duration,
    /// Time a check may take.
    pub timeout: Duration,
    /// Passes in a row to become healthy.
    pub healthy_threshold: u32,
    /// Failures in a row to become unhealthy.
    pub unhealthy_threshold: u32,
    /// Time after start during which failures do not count.
    pub grace_period: Duration,
}

/// A rollout policy with its defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RolloutPolicy {
    /// Rolling or immediate.
    pub strategy: Strategy,
    /// Extra instances a rolling update may start.
    pub max_surge: u32,
    /// Instances a rolling update may take down at once.
    pub max_unavailable: u32,
    /// A rollout with no progress for this long halts.
    pub progress_deadline: Duration,
}

/// Something that keeps a merged spec from resolving; the loader places it in
/// the env file (or the app file, where the field came from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveError {
    /// Error class.
    pub code: Code,
    /// Field path in the spec.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

/// Lays `top` over `base` field by field: maps merge key by key, lists of
/// named items merge by `name`, everything else in `top` replaces `base`.
/// The result never carries an `id`.
pub fn overlay(base: &Spec, top: &Spec) -> Spec {
    let (Ok(mut merged), Ok(top)) = (serde_json::to_value(base), serde_json::to_value(top)) else {
        unreachable!("specs always serialize to JSON");
    };
    merge_values(&mut merged, top);
    let mut spec: Spec = serde_json::from_value(merged).unwrap_or_else(|_| base.clone());
    spec.id = None;
    spec
}

fn merge_values(base: &mut Value, top: Value) {
    match (base, top) {
        (Value::Object(b), Value::Object(t)) => {
            for (key, value) in t {
                match b.get_mut(&key) {
                    Some(existing) => merge_values(existing, value),
                    None => {
                        b.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(t)) if is_named_list(b) && is_named_list(&t) => {
            for item in t {
                match b
                    .iter_mut()
                    .find(|existing| existing["name"] == item["name"])
                {
                    Some(existing) => merge_values(existing, item),
                    None => b.push(item),
                }
            }
        }
        (b, t) => *b = t,
    }
}

fn is_named_list(items: &[Value]) -> bool {
    items
        .iter()
        .all(|item| item.get("name").is_some_and(Value::is_string))
}

/// Resolves a merged spec into an [`EffectiveSpec`], filling in defaults.
/// `default_region` is the first region of `vt.yaml`, if any.
pub fn resolve(
    spec: &Spec,
    default_region: Option<&str>,
) -> Result<EffectiveSpec, Vec<ResolveError>> {
    let mut errors = Vec::new();
    let mut fail = |code, path: &str, message: String, hint: Option<&str>| {
        errors.push(ResolveError {
            code,
            path: path.to_string(),
            message,
            hint: hint.map(str::to_string),
        })
    };
    let ports = spec.ports.clone().unwrap_or_default();
    let port_exists = |name: &str| ports.iter().any(|p| p.name == name);
    let first_port = ports.first().map(|p| p.name.clone());

    let image = spec.image.clone().unwrap_or_else(|| {
        fail(
            Code::MissingField,
            "image",
            "no image is set for this env".into(),
            Some("set `image:` in app.yaml or in the env file"),
        );
        String::new()
    });
    let regions = match (&spec.regions, default_region) {
        (Some(regions), _) => regions.clone(),
        (None, Some(region)) => vec![region.to_string()],
        (None, None) => {
            fail(
                Code::MissingField,
                "regions",
                "no region is set and vt.yaml declares none".into(),
                Some("declare `regions:` in vt.yaml"),
            );
            Vec::new()
        }
    };

    let mut endpoints = Vec::new();
    for (i, ep) in spec.endpoints.iter().flatten().enumerate() {
        let target = ep.target.clone().or_else(|| first_port.clone());
        match target {
            Some(target) if port_exists(&target) => endpoints.push(EffectiveEndpoint {
                name: ep.name.clone(),
                port: ep.port,
                target,
                ipv4: ep.ipv4.unwrap_or(false),
                proxy_protocol: ep.proxy_protocol,
            }),
            Some(target) => fail(
                Code::DanglingReference,
                &format!("endpoints[{i}].target"),
                format!(
                    "endpoint `{}` targets port `{target}`, which is not declared",
                    ep.name
                ),
                Some("name a port from `ports:`"),
            ),
            None => fail(
                Code::DanglingReference,
                &format!("endpoints[{i}]"),
                format!("endpoint `{}` has no port to forward to", ep.name),
                Some("declare a port in `ports:`"),
            ),
        }
    }

    let health = spec.health.as_ref().and_then(|h| {
        let kind = h.kind.unwrap_or(if h.path.is_some() {
            HealthKind::Http
        } else {
            HealthKind::Tcp
        });
        let Some(port) = h.port.clone().or_else(|| first_port.clone()) else {
            fail(
                Code::DanglingReference,
                "health",
                "the health check has no port to check".into(),
                Some("declare a port in `ports:`"),
            );
            return None;
        };
        if !port_exists(&port) {
            fail(
                Code::DanglingReference,
                "health.port",
                format!("the health check names port `{port}`, which is not declared"),
                Some("name a port from `ports:`"),
            );
        }
        if kind == HealthKind::Http && h.path.is_none() {
            fail(
                Code::MissingField,
                "health.path",
                "an http health check needs a path".into(),
                Some("add `path: /healthz` or use `type: tcp`"),
            );
        }
        let http = kind == HealthKind::Http;
        Some(HealthCheck {
            kind,
            port,
            path: h.path.clone().filter(|_| http),
            status: http.then(|| h.status.unwrap_or(200)),
            interval: h.interval.unwrap_or(Duration(10_000)),
            timeout: h.timeout.unwrap_or(Duration(2_000)),
            healthy_threshold: h.healthy_threshold.unwrap_or(1),
            unhealthy_threshold: h.unhealthy_threshold.unwrap_or(3),
            grace_period: h.grace_period.unwrap_or(Duration(0)),
        })
    });

    let rollout = spec.rollout.clone().unwrap_or_default();
    let rollout = RolloutPolicy {
        strategy: rollout.strategy.unwrap_or(Strategy::Rolling),
        max_surge: rollout.max_surge.unwrap_or(1),
        max_unavailable: rollout.max_unavailable.unwrap_or(0),
        progress_deadline: rollout.progress_deadline.unwrap_or(Duration(300_000)),
    };
    if rollout.strategy == Strategy::Rolling
        && rollout.max_surge == 0
        && rollout.max_unavailable == 0
    {
        fail(
            Code::InvalidValue,
            "rollout",
            "a rolling update with max_surge 0 and max_unavailable 0 can never make progress"
                .into(),
            Some("set max_surge or max_unavailable to at least 1"),
        );
    }

    let resources = spec.resources.clone().unwrap_or_default();
    let effective = EffectiveSpec {
        image,
        command: spec.command.clone().unwrap_or_default(),
        args: spec.args.clone().unwrap_or_default(),
        env: spec.env.clone().unwrap_or_default(),
        cpu: resources.cpu.unwrap_or(DEFAULT_CPU),
        memory: resources.memory.unwrap_or(DEFAULT_MEMORY),
        instances: spec.instances.unwrap_or(1),
        regions,
        ports,
        endpoints,
        volumes: spec.volumes.clone().unwrap_or_default(),
        secrets: spec
            .secrets
            .iter()
            .flatten()
            .map(|r| EffectiveSecret {
                name: r.name.clone(),
                path: r.path.clone(),
                version: 0,
                on_change: r.on_change.unwrap_or_default(),
                signal: r.signal.clone(),
                format: r.format.clone(),
            })
            .collect(),
        health,
        rollout,
    };
    if errors.is_empty() {
        Ok(effective)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Resources;

    fn spec(yaml: &str) -> Spec {
        serde_yaml::from_str(yaml).expect("test spec parses")
    }

    #[test]
    fn env_overrides_app_field_by_field() {
        let app = spec(
            "image: web:1\nenv: {A: '1', B: '2'}\nresources: {cpu: 0.5, memory: 512Mi}\n\
             ports: [{name: http, port: 8080}, {name: admin, port: 9000}]",
        );
        let env = spec("image: web:2\nenv: {B: '3'}\nresources: {memory: 1Gi}\nports: [{name: admin, port: 9100}]");
        let merged = overlay(&app, &env);
        assert_eq!(merged.image.as_deref(), Some("web:2"));
        assert_eq!(merged.env.as_ref().map(|e| e.len()), Some(2));
        assert_eq!(
            merged
                .env
                .as_ref()
                .and_then(|e| e.get("B"))
                .map(String::as_str),
            Some("3")
        );
        assert_eq!(
            merged.resources,
            Some(Resources {
                cpu: Some(Cpu(500)),
                memory: Some(ByteSize(1 << 30))
            })
        );
        let ports: Vec<_> = merged
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.as_str(), p.port))
            .collect();
        assert_eq!(ports, [("http", 8080), ("admin", 9100)]);
    }

    #[test]
    fn resolve_fills_defaults() {
        let eff = resolve(&spec("image: web:1\nports: [{name: http, port: 80}]\nendpoints: [{name: public, port: 443}]\nhealth: {path: /healthz}"), Some("local"))
            .expect("resolves");
        assert_eq!(eff.regions, ["local"]);
        assert_eq!(eff.cpu, DEFAULT_CPU);
        assert_eq!(eff.endpoints[0].target, "http");
        let health = eff.health.expect("health");
        assert_eq!((health.kind, health.status), (HealthKind::Http, Some(200)));
        assert_eq!(eff.rollout.strategy, Strategy::Rolling);
    }

    #[test]
    fn resolve_reports_every_problem() {
        let errors = resolve(
            &spec("endpoints: [{name: public, port: 443, target: nope}]\nrollout: {max_surge: 0}\nhealth: {port: x}"),
            None,
        )
        .expect_err("invalid");
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "image",
                "regions",
                "endpoints[0].target",
                "health.port",
                "rollout"
            ]
        );
    }
}
