//! What the API answers: status, describe, releases and hosts, computed from
//! the controller's records. These types are the API's JSON and what the CLI
//! renders.

use crate::core::{Controller, HostRecord, InstanceRecord, Pending};
pub use crate::filter::matches;
use crate::store::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use vt_plan::releases::{CommitInfo, Release};
use vt_plan::{
    Backoff, HostStatus, Millis, Phase, ReleaseNo, RolloutState, RolloutStatus, WorkloadKey,
};
use vt_repo::{EffectiveSpec, FieldChange};

/// One instance, for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    /// Instance ID.
    pub id: String,
    /// Release it runs.
    pub release: ReleaseNo,
    /// Host name.
    pub host: String,
    /// Region.
    pub region: String,
    /// Phase.
    pub phase: Phase,
    /// Since when.
    pub since: Millis,
    /// Why it was placed there.
    pub placement: String,
    /// The host's last detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Private address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Image digest it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl From<&InstanceRecord> for InstanceView {
    fn from(r: &InstanceRecord) -> Self {
        InstanceView {
            id: r.instance.id.to_string(),
            release: r.instance.release,
            host: r.instance.host.to_string(),
            region: r.instance.region.clone(),
            phase: r.instance.phase,
            since: r.instance.since,
            placement: r.placement.clone(),
            detail: r.detail.clone(),
            address: r.address.clone(),
            image: r.image.clone(),
        }
    }
}

/// Desired and current state of one (app, env).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadStatus {
    /// Qualified env name, `org/project/app/env`.
    pub name: String,
    /// Stable IDs.
    pub key: WorkloadKey,
    /// Whether the repository still declares it.
    pub active: bool,
    /// Latest release.
    pub desired_release: ReleaseNo,
    /// The release most healthy instances run, if any is healthy.
    pub current_release: Option<ReleaseNo>,
    /// Instances wanted (per region × regions).
    pub wanted: u32,
    /// Healthy instances of the desired release.
    pub ready: u32,
    /// Instances, stopped ones excluded.
    pub instances: Vec<InstanceView>,
    /// The rollout of the desired release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutState>,
    /// Why parts are not placed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Pending>,
    /// Places whose instances of the desired release keep failing before
    /// they become healthy, with their next try.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backoffs: Vec<Backoff>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// The commit the desired state comes from.
    pub commit: Option<CommitInfo>,
    /// The newest commit seen (may be a rejected one).
    pub last_seen: Option<String>,
    /// Every workload.
    pub workloads: Vec<WorkloadStatus>,
    /// Where desired states come from, as the git task last found it (the
    /// daemon fills it in; [`status`] leaves it empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceView>,
}

/// The tracked branch, for `vt status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceView {
    /// The repository (a URL's credentials replaced by `***`), or
    /// `worktree:PATH`.
    pub location: String,
    /// The tracked branch.
    pub branch: String,
    /// Its head commit as last read (kept while the branch is missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Since when the branch is missing: nothing deploys until it returns,
    /// and the last good commit keeps running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_since: Option<Millis>,
    /// Why the last read failed, while reads fail: the last good commit
    /// keeps running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing: Option<SourceFailure>,
}

/// A source whose reads fail, for `vt status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFailure {
    /// `E_GIT_AUTH`, `E_GIT_TLS`, `E_GIT_HOST_KEY` or `E_GIT`.
    pub code: vt_wire::codes::ErrorCode,
    /// What failed, with git's words and a hint.
    pub message: String,
    /// Since when reads fail.
    pub since: Millis,
}

/// `GET /v1/describe`: desired vs current, field by field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DescribeView {
    /// Status of the workload.
    pub status: WorkloadStatus,
    /// The desired release's spec.
    pub desired: EffectiveSpec,
    /// The current release's spec, when it differs from the desired one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<EffectiveSpec>,
    /// Fields that differ between current and desired.
    pub diff: Vec<FieldChange>,
    /// Its endpoints: addresses, instances behind them, traffic.
    #[serde(default)]
    pub endpoints: Vec<crate::endpoint_views::EndpointView>,
}

/// `GET /v1/hosts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostView {
    /// Name (and ID).
    pub name: String,
    /// Region.
    pub region: String,
    /// Ready or lost.
    pub status: HostStatus,
    /// Capacity, millicores.
    pub cpu: u32,
    /// Capacity, bytes.
    pub memory: u64,
    /// Reserved by instances, millicores.
    pub cpu_used: u32,
    /// Reserved by instances, bytes.
    pub memory_used: u64,
    /// Instances holding resources on it.
    pub instances: usize,
    /// Last heard from.
    pub last_seen: Millis,
}

fn status_of(c: &Controller, release: &Release, active: bool) -> WorkloadStatus {
    let instances: Vec<&InstanceRecord> = c
        .instances_of(&release.key)
        .into_iter()
        .filter(|i| !matches!(i.instance.phase, Phase::Stopped))
        .collect();
    let mut healthy_by_release: BTreeMap<ReleaseNo, u32> = BTreeMap::new();
    for i in instances
        .iter()
        .filter(|i| i.instance.phase == Phase::Healthy)
    {
        *healthy_by_release.entry(i.instance.release).or_default() += 1;
    }
    let current_release = healthy_by_release
        .iter()
        .max_by_key(|(r, n)| (**n, **r))
        .map(|(r, _)| *r);
    let regions = u32::try_from(release.spec.regions.len()).unwrap_or(u32::MAX);
    WorkloadStatus {
        name: release.name.clone(),
        key: release.key.clone(),
        active,
        desired_release: release.number,
        current_release,
        wanted: if active {
            release.spec.instances.saturating_mul(regions)
        } else {
            0
        },
        ready: healthy_by_release
            .get(&release.number)
            .copied()
            .unwrap_or(0),
        instances: instances.into_iter().map(InstanceView::from).collect(),
        rollout: c
            .rollout(&release.key)
            .filter(|r| r.release == release.number)
            .cloned(),
        pending: c.pending(&release.key).to_vec(),
        backoffs: c
            .backoffs_of(&release.key, release.number)
            .into_iter()
            .cloned()
            .collect(),
    }
}

/// Status of every workload (or those matching `app`/`env`).
pub fn status(c: &Controller, app: Option<&str>, env: Option<&str>) -> StatusView {
    let workloads = c
        .latest_releases()
        .into_iter()
        .filter(|(r, _)| app.is_none_or(|a| matches(&r.name, a, env)))
        .map(|(r, active)| status_of(c, &r, active))
        .collect();
    StatusView {
        commit: c.meta().last_good.clone(),
        last_seen: c.meta().last_seen.clone(),
        workloads,
        source: None,
    }
}

/// Desired vs current of the workloads matching `app` and `env`.
pub fn describe(
    c: &Controller,
    app: &str,
    env: Option<&str>,
) -> Result<Vec<DescribeView>, StoreError> {
    let mut out = Vec::new();
    for (release, active) in c
        .latest_releases()
        .into_iter()
        .filter(|(r, _)| matches(&r.name, app, env))
    {
        let status = status_of(c, &release, active);
        let current = match status.current_release {
            Some(n) if n != release.number => c
                .releases_of(&release.key)?
                .into_iter()
                .find(|r| r.number == n)
                .map(|r| r.spec),
            _ => None,
        };
        let diff = match (&current, serde_json::to_value(&release.spec)) {
            (Some(cur), Ok(desired)) => serde_json::to_value(cur)
                .map(|cur| vt_repo::diff_values(&cur, &desired))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let endpoints = crate::endpoint_views::endpoints(c, None, None)
            .into_iter()
            .filter(|e| e.workload == release.name)
            .collect();
        out.push(DescribeView {
            status,
            desired: release.spec,
            current,
            diff,
            endpoints,
        });
    }
    Ok(out)
}

/// Every release of the workloads matching `app` and `env`, oldest first.
pub fn releases(
    c: &Controller,
    app: &str,
    env: Option<&str>,
) -> Result<Vec<ReleaseView>, StoreError> {
    let mut out = Vec::new();
    for (latest, active) in c
        .latest_releases()
        .into_iter()
        .filter(|(r, _)| matches(&r.name, app, env))
    {
        let mut serving: BTreeMap<ReleaseNo, usize> = BTreeMap::new();
        for i in c.instances_of(&latest.key) {
            if i.instance.phase == Phase::Healthy {
                *serving.entry(i.instance.release).or_default() += 1;
            }
        }
        let rollout = c
            .rollout(&latest.key)
            .filter(|r| r.release == latest.number);
        for release in c.releases_of(&latest.key)? {
            let healthy = serving.get(&release.number).copied().unwrap_or(0);
            let status = if release.number != latest.number {
                if healthy > 0 {
                    format!("superseded, {healthy} still serving")
                } else {
                    "superseded".to_string()
                }
            } else if !active {
                "removed from the repository".to_string()
            } else {
                match rollout.map(|r| &r.status) {
                    Some(RolloutStatus::Completed) => format!("current, {healthy} serving"),
                    Some(RolloutStatus::Halted { reason }) => format!("halted: {reason}"),
                    Some(RolloutStatus::Progressing) | None => {
                        format!("rolling out, {healthy} healthy")
                    }
                }
            };
            out.push(ReleaseView { release, status });
        }
    }
    Ok(out)
}

/// A release with where it stands now: `GET /v1/releases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseView {
    /// The release.
    #[serde(flatten)]
    pub release: Release,
    /// current, rolling out, halted, superseded (and how many instances serve it).
    pub status: String,
}

/// Every host with what it has reserved.
pub fn hosts(c: &Controller) -> Vec<HostView> {
    let instances = c.instances();
    c.hosts()
        .into_iter()
        .map(
            |HostRecord {
                 host, last_seen, ..
             }| {
                let on: Vec<_> = instances
                    .iter()
                    .filter(|i| i.instance.host == host.id && i.instance.phase.holds_resources())
                    .collect();
                HostView {
                    cpu_used: on.iter().map(|i| i.instance.cpu).sum(),
                    memory_used: on.iter().map(|i| i.instance.memory).sum(),
                    instances: on.len(),
                    name: host.name,
                    region: host.region,
                    status: host.status,
                    cpu: host.cpu,
                    memory: host.memory,
                    last_seen,
                }
            },
        )
        .collect()
}

/// `GET /v1/volumes`: a volume, where it lives and what uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeView {
    /// Stable ID.
    pub id: String,
    /// Qualified env name it belongs to (`acme/shop/web/prod`), or its IDs.
    pub workload: String,
    /// Volume name.
    pub name: String,
    /// Slot.
    pub slot: Option<u32>,
    /// Host that holds it.
    pub host: String,
    /// Whether that host is ready or lost.
    pub host_status: Option<HostStatus>,
    /// Size in bytes.
    pub size: u64,
    /// Bytes used on the host's disk.
    pub used: u64,
    /// Instance it is attached to.
    pub attached: Option<String>,
    /// Path on the host.
    pub path: String,
}

/// Every volume (or those of the workloads matching `app`/`env`).
pub fn volumes(c: &Controller, app: Option<&str>, env: Option<&str>) -> Vec<VolumeView> {
    let hosts = c.hosts();
    c.volumes()
        .into_iter()
        .map(|(host, v)| VolumeView {
            workload: c.workload_name(&v.key).unwrap_or_else(|| v.key.to_string()),
            host_status: hosts
                .iter()
                .find(|h| h.host.id == host)
                .map(|h| h.host.status),
            id: v.id.to_string(),
            name: v.name,
            slot: v.slot,
            host,
            size: v.size,
            used: v.used,
            attached: v.attached.map(String::from),
            path: v.path,
        })
        .filter(|v| app.is_none_or(|a| matches(&v.workload, a, env)))
        .collect()
}

/// The running desired state and what is observed, for `vt diff`.
pub fn baseline(c: &Controller) -> vt_plan::preview::Baseline {
    vt_plan::preview::Baseline {
        commit: c.meta().last_good.clone(),
        releases: c
            .latest_releases()
            .into_iter()
            .filter(|(_, active)| *active)
            .map(|(r, _)| r)
            .collect(),
        observed: c.observed(),
    }
}
