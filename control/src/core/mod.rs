//! The controller's core: what it does with a commit, a host's message and
//! the passing of time. No sockets, no tasks, no clock: the daemon
//! (`super::daemon`) and the simulator drive the same [`Controller`], passing
//! `now` in. State lives in memory and is written through to the [`Store`].

use crate::store::{Batch, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use tracing::{info, info_span, warn};
use vt_plan::addresses::{EndpointAddress, Pools};
use vt_plan::events::{self, kind, AggregationKey, Event, EventFilter, Retention};
use vt_plan::releases::{plan_releases, CommitInfo, Release};
use vt_plan::{
    self as plan, Action, Desired, Host, HostStatus, Instance, Millis, Observed, Phase,
    RolloutState, RolloutStatus, Workload, WorkloadKey,
};
use vt_plan::{Backoff, VolumePlacement};
use vt_repo::Loaded;
use vt_wire::messages::{Assignment, Desire, HostRegistration, InstanceReport};

mod endpoints;
mod failures;
mod secrets;
pub use endpoints::EdgeState;
use failures::Retry;
pub use secrets::{SealedSecret, SECRETS_SIGNALLED};

/// Settings of the controller's core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// A host silent for this long is lost.
    pub lost_after: Millis,
    /// How often hosts report.
    pub heartbeat: Millis,
    /// Stopped and failed instances are forgotten after this long.
    pub forget_after: Millis,
    /// Where endpoint addresses come from.
    pub pools: Pools,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lost_after: 10_000,
            heartbeat: 1_000,
            forget_after: 600_000,
            pools: Pools::default(),
        }
    }
}

/// A host as the controller records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Capacity and status, as the planner sees it.
    pub host: Host,
    /// When it registered first.
    pub registered: Millis,
    /// When it was last heard from.
    pub last_seen: Millis,
    /// Where edges reach it with tunnel streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<std::net::SocketAddr>,
}

/// An instance as the controller records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// What the planner sees.
    pub instance: Instance,
    /// Qualified env name.
    pub name: String,
    /// Why it was placed where it is.
    pub placement: String,
    /// The host's last detail (failure reason, ...).
    pub detail: Option<String>,
    /// In-place restarts the host reported.
    #[serde(default)]
    pub restarts: u32,
    /// The instance's private address, as its host reports it.
    #[serde(default)]
    pub address: Option<String>,
    /// The image digest it runs, as its host reports it.
    #[serde(default)]
    pub image: Option<String>,
    /// When the controller placed it.
    #[serde(default)]
    pub placed: Millis,
    /// Whether it was ever healthy: a failure before that counts towards
    /// its place's backoff.
    #[serde(default)]
    pub healthy_once: bool,
    /// Placed while its place backed off: a retry in a failure loop, whose
    /// events count as repeats across the loop's instances.
    #[serde(default)]
    pub retry: bool,
}

/// Controller-wide facts kept across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The commit the desired state comes from.
    pub last_good: Option<CommitInfo>,
    /// The newest commit seen, valid or not.
    pub last_seen: Option<String>,
    /// Next instance number.
    pub next_instance: u64,
}

/// Why a workload, or part of it, is not where it should be: the latest
/// `Unplaceable`/`Waiting` reasons, for `describe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Region concerned.
    pub region: String,
    /// The planner's explanation.
    pub reason: String,
}

/// What happened to a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Already the desired state.
    Unchanged,
    /// Accepted, with the numbers of the releases it made.
    Accepted(Vec<(String, u64)>),
    /// Did not validate; the previous state stays.
    Rejected(usize),
}

/// The controller's state machine.
#[derive(Debug)]
pub struct Controller {
    store: Store,
    config: Config,
    meta: Meta,
    hosts: BTreeMap<String, HostRecord>,
    instances: BTreeMap<String, InstanceRecord>,
    rollouts: BTreeMap<WorkloadKey, RolloutState>,
    releases: BTreeMap<WorkloadKey, Release>,
    active: BTreeSet<WorkloadKey>,
    retention: BTreeMap<String, Retention>,
    /// Where each volume slot's volumes live; never forgotten implicitly.
    volumes: BTreeMap<String, VolumePlacement>,
    pending: BTreeMap<WorkloadKey, Vec<Pending>>,
    next_event: u64,
    /// When retention last ran (it reads the whole event log).
    last_retention: Option<Millis>,
    /// Log age limit per org (`retention.logs.max_age`), from the last good commit.
    log_retention: BTreeMap<String, Millis>,
    /// Volumes each host reports, by host name.
    host_volumes: BTreeMap<String, Vec<vt_wire::messages::VolumeReport>>,
    /// Unknown instances already reported, so each gets one event.
    unknown_seen: BTreeSet<String>,
    /// Endpoint addresses, by `<app id>/<env id>/<endpoint>`.
    addresses: BTreeMap<String, EndpointAddress>,
    /// Sequence number of the next IPv4 usage record.
    next_usage: u64,
    /// Edges connected now.
    edges: BTreeMap<String, EdgeState>,
    /// Places backing off, by store key (`backoff/…`).
    backoffs: BTreeMap<String, Backoff>,
    /// The last occurrence of recent events, for counting repeats: its
    /// sequence number, first time, count and time.
    repeats: BTreeMap<AggregationKey, (u64, Millis, u32, Millis)>,
    batch: Batch,
    new_events: Vec<Event>,
}

const META: &str = "meta";
const LOG_RETENTION: &str = "logretention";
/// Log age limit of orgs without a policy.
const DEFAULT_LOG_AGE: Millis = 7 * 24 * 3_600_000;
/// How often event retention runs.
const RETENTION_EVERY: Millis = 60_000;
const ACTIVE: &str = "active";
const RETENTION: &str = "retention";

/// What repeats of a crash share: the host's reason without its
/// "restarting in 4s (restart 3): " prefix, which changes each time.
fn crash_reason(detail: &str) -> String {
    match detail.strip_prefix("restarting in ") {
        Some(rest) => rest
            .split_once("): ")
            .map_or(detail, |(_, why)| why)
            .to_string(),
        None => detail.to_string(),
    }
}

/// A phase as people read it: `starting`, `healthy`.
pub fn phase_name(phase: Phase) -> String {
    format!("{phase:?}").to_lowercase()
}

fn key_path(key: &WorkloadKey) -> String {
    format!("{}/{}", key.app_id, key.env_id)
}

impl Controller {
    /// Loads the controller's memory from `store`.
    pub fn open(store: Store, config: Config) -> Result<Controller, StoreError> {
        let hosts = store
            .scan::<HostRecord>("host/")?
            .into_iter()
            .map(|(_, h)| (h.host.id.clone(), h))
            .collect();
        let instances = store
            .scan::<InstanceRecord>("inst/")?
            .into_iter()
            .map(|(_, i)| (i.instance.id.clone(), i))
            .collect();
        let rollouts = store
            .scan::<RolloutState>("rollout/")?
            .into_iter()
            .map(|(_, r)| (r.key.clone(), r))
            .collect();
        let releases = store
            .scan::<Release>("latest/")?
            .into_iter()
            .map(|(_, r)| (r.key.clone(), r))
            .collect();
        let active = store
            .get::<BTreeSet<WorkloadKey>>(ACTIVE)?
            .unwrap_or_default();
        let retention: BTreeMap<String, (Option<Millis>, Option<u64>)> =
            store.get(RETENTION)?.unwrap_or_default();
        let meta = store.get::<Meta>(META)?.unwrap_or_default();
        let volumes = store
            .scan::<VolumePlacement>("volume/")?
            .into_iter()
            .collect();
        let next_event = store.last_event_seq()? + 1;
        let log_retention = store.get(LOG_RETENTION)?.unwrap_or_default();
        let host_volumes = store
            .scan::<(String, Vec<vt_wire::messages::VolumeReport>)>("hostvol/")?
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        let addresses: BTreeMap<String, EndpointAddress> = store
            .scan::<EndpointAddress>("addr/")?
            .into_iter()
            .map(|(_, a)| (a.id(), a))
            .collect();
        let backoffs = store.scan::<Backoff>("backoff/")?.into_iter().collect();
        let next_usage = store
            .scan::<vt_plan::addresses::UsageRecord>("usage/")?
            .len() as u64;
        Ok(Controller {
            backoffs,
            repeats: BTreeMap::new(),
            addresses,
            next_usage,
            edges: BTreeMap::new(),
            store,
            config,
            meta,
            hosts,
            instances,
            rollouts,
            releases,
            active,
            retention: retention
                .into_iter()
                .map(|(org, (max_age, max_count))| (org, Retention { max_age, max_count }))
                .collect(),
            volumes,
            pending: BTreeMap::new(),
            next_event,
            last_retention: None,
            unknown_seen: BTreeSet::new(),
            host_volumes,
            log_retention,
            batch: Batch::default(),
            new_events: Vec::new(),
        })
    }

    /// Gives the store back, as a process exit would (unflushed changes are lost).
    pub fn into_store(self) -> Store {
        self.store
    }

    /// The store, for queries.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Settings.
    pub fn config(&self) -> Config {
        self.config
    }

    /// Records an event from outside the core (the git source failing, ...).
    pub fn record(&mut self, event: Event) {
        self.emit(event);
    }

    /// Records an event. A repeat of a recent one (same
    /// [`Event::aggregation_key`], within [`events::AGGREGATE_WINDOW`] of its
    /// last occurrence) replaces it: the new event carries the count and the
    /// first time, under a new sequence number, so followers see it again.
    fn emit(&mut self, mut event: Event) {
        event.seq = self.next_event;
        event.id = format!("evt_{}", self.next_event);
        self.next_event += 1;
        let key = event.aggregation_key();
        if let Some(&(seq, first, count, last)) = self.repeats.get(&key) {
            if event.time.saturating_sub(last) <= events::AGGREGATE_WINDOW {
                event.count = count.saturating_add(1);
                event.first_time = Some(first);
                if self.batch.unsend_event(seq) {
                    self.new_events.retain(|e| e.seq != seq);
                } else {
                    self.batch.expire(vec![seq]);
                }
            }
        }
        let first = event.first_time.unwrap_or(event.time);
        self.repeats
            .insert(key, (event.seq, first, event.count, event.time));
        info!(kind = %event.kind, app = event.app.as_deref(), env = event.env.as_deref(), release = event.release, instance = event.instance.as_deref(), host = event.host.as_deref(), count = event.count, "{}", event.message);
        self.batch.event(event.clone());
        self.new_events.push(event);
    }

    /// Writes what changed since the last flush, in one transaction, and
    /// returns the events it recorded.
    pub fn flush(&mut self) -> Result<Vec<Event>, StoreError> {
        self.batch.put(META, &self.meta);
        self.store.write(std::mem::take(&mut self.batch))?;
        Ok(std::mem::take(&mut self.new_events))
    }

    /// The commit the desired state comes from.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Takes in a new commit of the tracked branch, loaded and validated.
    pub fn apply_commit(
        &mut self,
        commit: &CommitInfo,
        loaded: &Loaded,
        now: Millis,
    ) -> CommitOutcome {
        let short = commit.sha.get(..12).unwrap_or(&commit.sha).to_string();
        let _span = info_span!("commit", commit = %short).entered();
        if self.meta.last_seen.as_deref() == Some(commit.sha.as_str()) {
            return CommitOutcome::Unchanged;
        }
        self.meta.last_seen = Some(commit.sha.clone());
        if !loaded.is_valid() {
            let n = loaded.diagnostics.len();
            let first = loaded
                .diagnostics
                .first()
                .map(ToString::to_string)
                .unwrap_or_default();
            let kept = self
                .meta
                .last_good
                .as_ref()
                .map_or("nothing".to_string(), |c| {
                    c.sha.get(..12).unwrap_or(&c.sha).to_string()
                });
            warn!(errors = n, "commit rejected");
            self.emit(
                Event::new(
                    kind::COMMIT_REJECTED,
                    now,
                    format!("commit {short} rejected with {n} error(s), keeping {kept}: {first}"),
                )
                .fields(json!({"commit": commit, "errors": loaded.diagnostics})),
            );
            return CommitOutcome::Rejected(n);
        }
        let plan = plan_releases(&self.releases, &loaded.state, commit, now);
        let mut made = Vec::new();
        for release in plan.releases {
            let path = key_path(&release.key);
            self.batch
                .put(format!("release/{path}/{:010}", release.number), &release);
            self.batch.put(format!("latest/{path}"), &release);
            let changed: Vec<&str> = release.diff.iter().map(|d| d.path.as_str()).collect();
            let message = if release.number == 1 {
                format!("release 1 of {} from {short}", release.name)
            } else {
                format!(
                    "release {} of {} from {short}: {}",
                    release.number,
                    release.name,
                    changed.join(", ")
                )
            };
            self.emit(
                Event::new(kind::RELEASE_CREATED, now, message)
                    .for_workload(&release.name)
                    .release(release.number)
                    .fields(json!({"commit": commit.sha, "spec_hash": release.spec_hash, "diff": release.diff})),
            );
            made.push((release.name.clone(), release.number));
            self.keep_sealed(&release, loaded);
            self.adopt_on_scale(&release, now);
            self.releases.insert(release.key.clone(), release);
        }
        for key in &plan.removed {
            if self.active.contains(key) {
                let name = self
                    .releases
                    .get(key)
                    .map(|r| r.name.clone())
                    .unwrap_or_default();
                self.emit(
                    Event::new(
                        kind::WORKLOAD_REMOVED,
                        now,
                        format!("{name} was removed from the repository"),
                    )
                    .for_workload(&name),
                );
            }
        }
        self.active = self
            .releases
            .keys()
            .filter(|k| !plan.removed.contains(k))
            .cloned()
            .collect();
        self.batch.put(ACTIVE, &self.active);
        self.reconcile_addresses(now);
        self.retention = loaded
            .state
            .orgs
            .iter()
            .filter_map(|org| {
                let events = org.spec.retention.as_ref()?.events.as_ref()?;
                Some((
                    org.name.clone(),
                    Retention {
                        max_age: events.max_age.map(|d| d.0),
                        max_count: events.max_count,
                    },
                ))
            })
            .collect();
        let stored: BTreeMap<&String, (Option<Millis>, Option<u64>)> = self
            .retention
            .iter()
            .map(|(org, r)| (org, (r.max_age, r.max_count)))
            .collect();
        self.batch.put(RETENTION, &stored);
        self.log_retention = loaded
            .state
            .orgs
            .iter()
            .filter_map(|org| {
                Some((
                    org.name.clone(),
                    org.spec.retention.as_ref()?.logs.as_ref()?.max_age?.0,
                ))
            })
            .collect();
        self.batch.put(LOG_RETENTION, &self.log_retention);
        self.meta.last_good = Some(commit.clone());
        self.emit(
            Event::new(
                kind::COMMIT_ACCEPTED,
                now,
                format!("commit {short} accepted: {} new release(s)", made.len()),
            )
            .fields(json!({"commit": commit})),
        );
        CommitOutcome::Accepted(made)
    }

    /// A release that only changes `instances` runs the same thing as the one
    /// before: its live instances move to it instead of being replaced.
    /// (The same for a release that only changes versions of secrets
    /// declared `on_change: signal`: see [`Controller::runs_in_place`].)
    fn adopt_on_scale(&mut self, release: &Release, now: Millis) {
        if !self.runs_in_place(release, now) {
            return;
        }
        let previous = release.number - 1;
        let adopted: Vec<String> = self
            .instances
            .values()
            .filter(|i| {
                i.instance.key == release.key
                    && i.instance.release == previous
                    && i.instance.phase.holds_resources()
            })
            .map(|i| i.instance.id.clone())
            .collect();
        for id in adopted {
            if let Some(rec) = self.instances.get_mut(&id) {
                rec.instance.release = release.number;
                let rec = rec.clone();
                self.batch.put(format!("inst/{id}"), &rec);
            }
        }
    }

    /// A host (re)registers.
    pub fn register_host(&mut self, reg: &HostRegistration, now: Millis) {
        let returning = self.hosts.get(&reg.name);
        let registered = returning.map_or(now, |h| h.registered);
        let was = returning.map(|h| h.host.status);
        let record = HostRecord {
            host: Host {
                id: reg.name.clone(),
                name: reg.name.clone(),
                region: reg.region.clone(),
                cpu: reg.cpu,
                memory: reg.memory,
                status: HostStatus::Ready,
            },
            registered,
            last_seen: now,
            tunnel: reg.tunnel,
        };
        self.batch.put(format!("host/{}", reg.name), &record);
        self.hosts.insert(reg.name.clone(), record);
        let how = match was {
            None => "registered",
            Some(HostStatus::Lost) => "came back",
            Some(HostStatus::Ready) => "reconnected",
        };
        self.emit(
            Event::new(
                kind::HOST_REGISTERED,
                now,
                format!(
                    "host {} {how} in region {} with {} cpu, {} memory",
                    reg.name,
                    reg.region,
                    vt_repo::Cpu(reg.cpu),
                    vt_repo::ByteSize(reg.memory)
                ),
            )
            .host(&reg.name),
        );
    }

    /// A host's report: the phase of every instance it has. Returns the IDs of
    /// instances the host should not have (it is told to stop them by the
    /// next assignment, which does not list them).
    pub fn report(&mut self, host: &str, reports: &[InstanceReport], now: Millis) -> Vec<String> {
        let Some(record) = self.hosts.get_mut(host) else {
            return Vec::new();
        };
        record.last_seen = now;
        if record.host.status == HostStatus::Lost {
            record.host.status = HostStatus::Ready;
        }
        let record = record.clone();
        self.batch.put(format!("host/{host}"), &record);
        let mut unknown = Vec::new();
        let mut reported = BTreeSet::new();
        for r in reports {
            reported.insert(r.id.as_str());
            match self.instances.get_mut(&r.id) {
                Some(rec) if rec.instance.host == host => {
                    if r.restarts > rec.restarts {
                        rec.restarts = r.restarts;
                        let (name, release) = (rec.name.clone(), rec.instance.release);
                        let before_healthy = !rec.healthy_once;
                        let why = r.detail.clone().unwrap_or_default();
                        self.emit(
                            Event::new(
                                kind::INSTANCE_CRASHED,
                                now,
                                format!(
                                    "instance {} on {host} crashed (restart {}): {why}",
                                    r.id, r.restarts
                                ),
                            )
                            .reason(crash_reason(&why))
                            .for_workload(&name)
                            .release(release)
                            .instance(&r.id)
                            .host(host),
                        );
                        if before_healthy {
                            self.note_failure(&r.id, &crash_reason(&why), Retry::InPlace, now);
                        }
                    }
                    let Some(rec) = self.instances.get_mut(&r.id) else {
                        continue;
                    };
                    if (r.address.is_some() && rec.address != r.address)
                        || (r.image.is_some() && rec.image != r.image)
                    {
                        rec.address = r.address.clone().or(rec.address.clone());
                        rec.image = r.image.clone().or(rec.image.clone());
                        let rec = rec.clone();
                        self.batch.put(format!("inst/{}", r.id), &rec);
                    }
                    let Some(rec) = self.instances.get_mut(&r.id) else {
                        continue;
                    };
                    let stopping = rec.instance.phase == Phase::Stopping && r.phase.is_live();
                    if rec.instance.phase != r.phase && !stopping {
                        let (name, release) = (rec.name.clone(), rec.instance.release);
                        let from = rec.instance.phase;
                        let failed_early = r.phase == Phase::Failed
                            && !rec.healthy_once
                            && from != Phase::Stopping;
                        let in_loop = rec.retry || failed_early;
                        rec.healthy_once |= r.phase == Phase::Healthy;
                        rec.instance.phase = r.phase;
                        rec.instance.since = now;
                        rec.detail = r.detail.clone();
                        let rec = rec.clone();
                        self.batch.put(format!("inst/{}", r.id), &rec);
                        let detail = r
                            .detail
                            .as_ref()
                            .map(|d| format!(": {d}"))
                            .unwrap_or_default();
                        let (from, to) = (phase_name(from), phase_name(r.phase));
                        self.emit(
                            Event::new(
                                kind::INSTANCE_PHASE,
                                now,
                                format!("instance {} on {host}: {from} → {to}{detail}", r.id),
                            )
                            .for_workload(&name)
                            .release(release)
                            .instance(&r.id)
                            .host(host)
                            .across_instances(in_loop),
                        );
                        if r.phase == Phase::Healthy {
                            self.note_healthy(&r.id);
                        } else if failed_early {
                            let why = r.detail.clone().unwrap_or_else(|| "failed".into());
                            self.note_failure(&r.id, &why, Retry::NewInstance, now);
                        }
                    } else if rec.instance.phase == r.phase && rec.detail != r.detail {
                        // Progress within a phase (pulling, booting, ...): shown by
                        // `status`, not worth an event each.
                        rec.detail = r.detail.clone();
                        let rec = rec.clone();
                        self.batch.put(format!("inst/{}", r.id), &rec);
                    }
                }
                _ if matches!(r.phase, Phase::Stopped | Phase::Failed) => {}
                _ if self.unknown_seen.contains(&r.id) => unknown.push(r.id.clone()),
                _ => {
                    unknown.push(r.id.clone());
                    self.unknown_seen.insert(r.id.clone());
                    self.emit(
                        Event::new(
                            kind::INSTANCE_UNKNOWN,
                            now,
                            format!(
                                "host {host} runs unknown instance {}: told to stop it",
                                r.id
                            ),
                        )
                        .instance(&r.id)
                        .host(host),
                    );
                }
            }
        }
        // Instances the host no longer has: a stopping one is done, a running one is gone.
        let missing: Vec<String> = self
            .instances
            .values()
            .filter(|i| i.instance.host == host && !reported.contains(i.instance.id.as_str()))
            .filter(|i| {
                matches!(
                    i.instance.phase,
                    Phase::Stopping | Phase::Starting | Phase::Healthy | Phase::Unhealthy
                )
            })
            .map(|i| i.instance.id.clone())
            .collect();
        for id in missing {
            if let Some(rec) = self.instances.get_mut(&id) {
                let phase = if rec.instance.phase == Phase::Stopping {
                    Phase::Stopped
                } else {
                    Phase::Failed
                };
                rec.instance.phase = phase;
                rec.instance.since = now;
                if phase == Phase::Failed {
                    rec.detail = Some("the host no longer reports it".into());
                }
                let rec = rec.clone();
                self.batch.put(format!("inst/{id}"), &rec);
                self.emit(
                    Event::new(
                        kind::INSTANCE_PHASE,
                        now,
                        format!("instance {id} on {host}: {}", phase_name(phase)),
                    )
                    .for_workload(&rec.name)
                    .release(rec.instance.release)
                    .instance(&id)
                    .host(host),
                );
            }
        }
        unknown
    }

    /// What should run now, from the latest release of each active workload.
    pub fn desired(&self) -> Desired {
        Desired {
            workloads: self
                .active
                .iter()
                .filter_map(|k| self.releases.get(k))
                .map(|r| Workload {
                    key: r.key.clone(),
                    name: r.name.clone(),
                    release: r.number,
                    spec: r.spec.clone(),
                })
                .collect(),
        }
    }

    /// What the controller knows of the fleet, as the planner sees it.
    pub fn observed(&self) -> Observed {
        Observed {
            hosts: self.hosts.values().map(|h| h.host.clone()).collect(),
            instances: self
                .instances
                .values()
                .map(|i| i.instance.clone())
                .collect(),
            rollouts: self.rollouts.values().cloned().collect(),
            volumes: self.volumes.values().cloned().collect(),
            backoffs: self.backoffs.values().cloned().collect(),
        }
    }

    /// Marks silent hosts lost, plans, and applies the plan to the records.
    /// Returns the actions taken.
    pub fn tick(&mut self, now: Millis) -> Vec<Action> {
        self.mark_lost_hosts(now);
        self.forget_old_instances(now);
        let desired = self.desired();
        let actions = plan::plan(&desired, &self.observed(), now);
        let names: BTreeMap<WorkloadKey, String> = desired
            .workloads
            .iter()
            .map(|w| (w.key.clone(), w.name.clone()))
            .collect();
        let mut pending: BTreeMap<WorkloadKey, Vec<Pending>> = BTreeMap::new();
        for action in &actions {
            self.apply(action, &names, &mut pending, now);
        }
        self.pending = pending;
        if self
            .last_retention
            .is_none_or(|t| now.saturating_sub(t) >= RETENTION_EVERY)
        {
            self.last_retention = Some(now);
            let all = self
                .store
                .events(&EventFilter::default(), usize::MAX)
                .unwrap_or_default();
            self.batch
                .expire(events::expired(&all, &self.retention, now));
            let ages = &self.log_retention;
            let pruned = self.store.prune_logs(|line| {
                let org = line.name.split('/').next().unwrap_or_default();
                let age = ages.get(org).copied().unwrap_or(DEFAULT_LOG_AGE);
                now.saturating_sub(line.time) > age
            });
            if let Err(e) = pruned {
                warn!(error = %e, "cannot prune old log lines");
            }
        }
        actions
    }

    fn mark_lost_hosts(&mut self, now: Millis) {
        self.repeats
            .retain(|_, r| now.saturating_sub(r.3) <= events::AGGREGATE_WINDOW);
        let lost: Vec<String> = self
            .hosts
            .values()
            .filter(|h| {
                h.host.status == HostStatus::Ready
                    && now.saturating_sub(h.last_seen) > self.config.lost_after
            })
            .map(|h| h.host.id.clone())
            .collect();
        for id in lost {
            if let Some(h) = self.hosts.get_mut(&id) {
                h.host.status = HostStatus::Lost;
                let record = h.clone();
                self.batch.put(format!("host/{id}"), &record);
                let silent = now.saturating_sub(record.last_seen) / 1000;
                self.emit(
                    Event::new(
                        kind::HOST_LOST,
                        now,
                        format!("host {id} lost: silent for {silent}s"),
                    )
                    .host(&id),
                );
            }
        }
    }

    fn forget_old_instances(&mut self, now: Millis) {
        let mut old: Vec<String> = self
            .instances
            .values()
            .filter(|i| matches!(i.instance.phase, Phase::Stopped | Phase::Failed))
            .filter(|i| now.saturating_sub(i.instance.since) > self.config.forget_after)
            .map(|i| i.instance.id.clone())
            .collect();
        old.extend(self.failed_beyond_keep());
        old.sort_unstable();
        old.dedup();
        self.prune_backoffs();
        for id in old {
            self.instances.remove(&id);
            self.batch.delete(format!("inst/{id}"));
        }
    }

    fn apply(
        &mut self,
        action: &Action,
        names: &BTreeMap<WorkloadKey, String>,
        pending: &mut BTreeMap<WorkloadKey, Vec<Pending>>,
        now: Millis,
    ) {
        let name_of =
            |key: &WorkloadKey| names.get(key).cloned().unwrap_or_else(|| key.to_string());
        match action {
            Action::Start {
                key,
                release,
                region,
                host,
                slot,
                reason,
                ..
            } => {
                self.meta.next_instance += 1;
                let id = format!("ins_{:06}", self.meta.next_instance);
                let name = name_of(key);
                let Some(instance) = action.started_instance(id.clone(), now) else {
                    return;
                };
                let record = InstanceRecord {
                    instance,
                    name: name.clone(),
                    placement: reason.clone(),
                    detail: None,
                    restarts: 0,
                    address: None,
                    image: None,
                    placed: now,
                    healthy_once: false,
                    retry: self.backs_off(key, region, *slot, *release),
                };
                let retry = record.retry;
                self.batch.put(format!("inst/{id}"), &record);
                self.instances.insert(id.clone(), record);
                if let Some(slot) = slot {
                    let vkey = format!("volume/{}/{region}/{slot}", key_path(key));
                    if !self.volumes.contains_key(&vkey) {
                        let placement = VolumePlacement {
                            key: key.clone(),
                            region: region.clone(),
                            slot: *slot,
                            host: host.clone(),
                        };
                        self.batch.put(vkey.clone(), &placement);
                        self.volumes.insert(vkey, placement);
                    }
                }
                self.emit(
                    Event::new(
                        kind::INSTANCE_PLACED,
                        now,
                        format!(
                            "instance {id} of {name} release {release} placed on {host}: {reason}"
                        ),
                    )
                    .for_workload(&name)
                    .release(*release)
                    .instance(&id)
                    .host(host)
                    .across_instances(retry),
                );
            }
            Action::Stop {
                instance,
                key,
                reason,
            } => {
                let Some(rec) = self.instances.get_mut(instance) else {
                    return;
                };
                if !rec.instance.phase.is_live() {
                    return;
                }
                rec.instance.phase = Phase::Stopping;
                rec.instance.since = now;
                let rec = rec.clone();
                self.batch.put(format!("inst/{instance}"), &rec);
                self.emit(
                    Event::new(
                        kind::INSTANCE_STOPPING,
                        now,
                        format!("instance {instance} of {} stopping: {reason}", name_of(key)),
                    )
                    .for_workload(&rec.name)
                    .release(rec.instance.release)
                    .instance(instance)
                    .host(&rec.instance.host),
                );
            }
            Action::Unplaceable {
                key,
                release,
                region,
                count,
                reason,
            } => {
                let reason = format!("{count} instance(s) cannot be placed: {reason}");
                self.note_pending(
                    key,
                    region,
                    &reason,
                    kind::INSTANCE_UNPLACEABLE,
                    &name_of(key),
                    *release,
                    pending,
                    now,
                );
            }
            Action::Waiting {
                key,
                region,
                reason,
                ..
            } => {
                let release = self.releases.get(key).map_or(0, |r| r.number);
                self.note_pending(
                    key,
                    region,
                    reason,
                    kind::INSTANCE_WAITING,
                    &name_of(key),
                    release,
                    pending,
                    now,
                );
            }
            // The failures that led to it were events; `status` shows the
            // record with its next try.
            Action::BackingOff { .. } => {}
            Action::RolloutStarted { key, release } => {
                let state = RolloutState {
                    key: key.clone(),
                    release: *release,
                    started: now,
                    last_progress: now,
                    healthy: 0,
                    status: RolloutStatus::Progressing,
                };
                self.put_rollout(state);
                let name = name_of(key);
                self.emit(
                    Event::new(
                        kind::ROLLOUT_STARTED,
                        now,
                        format!("rollout of {name} release {release} started"),
                    )
                    .for_workload(&name)
                    .release(*release),
                );
            }
            Action::RolloutProgressed {
                key,
                release,
                healthy,
            } => {
                if let Some(mut state) = self.rollouts.get(key).cloned() {
                    state.last_progress = now;
                    state.healthy = *healthy;
                    // Progress after a halt resumes the rollout.
                    state.status = RolloutStatus::Progressing;
                    self.put_rollout(state);
                }
                let name = name_of(key);
                self.emit(
                    Event::new(
                        kind::ROLLOUT_PROGRESSED,
                        now,
                        format!("rollout of {name} release {release}: {healthy} healthy"),
                    )
                    .for_workload(&name)
                    .release(*release),
                );
            }
            Action::RolloutCompleted { key, release } => {
                if let Some(mut state) = self.rollouts.get(key).cloned() {
                    state.status = RolloutStatus::Completed;
                    self.put_rollout(state);
                }
                let name = name_of(key);
                self.emit(
                    Event::new(
                        kind::ROLLOUT_COMPLETED,
                        now,
                        format!("rollout of {name} release {release} completed"),
                    )
                    .for_workload(&name)
                    .release(*release),
                );
            }
            Action::RolloutHalted {
                key,
                release,
                reason,
            } => {
                if let Some(mut state) = self.rollouts.get(key).cloned() {
                    state.status = RolloutStatus::Halted {
                        reason: reason.clone(),
                    };
                    self.put_rollout(state);
                }
                let name = name_of(key);
                self.emit(
                    Event::new(
                        kind::ROLLOUT_HALTED,
                        now,
                        format!("rollout of {name} release {release} halted: {reason}"),
                    )
                    .for_workload(&name)
                    .release(*release),
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn note_pending(
        &mut self,
        key: &WorkloadKey,
        region: &str,
        reason: &str,
        kind: &str,
        name: &str,
        release: u64,
        pending: &mut BTreeMap<WorkloadKey, Vec<Pending>>,
        now: Millis,
    ) {
        let entry = Pending {
            region: region.to_string(),
            reason: reason.to_string(),
        };
        // An event only when the explanation changes, not on every tick.
        if !self.pending.get(key).is_some_and(|p| p.contains(&entry)) {
            self.emit(
                Event::new(kind, now, format!("{name} in {region}: {reason}"))
                    .for_workload(name)
                    .release(release),
            );
        }
        pending.entry(key.clone()).or_default().push(entry);
    }

    fn put_rollout(&mut self, state: RolloutState) {
        self.batch
            .put(format!("rollout/{}", key_path(&state.key)), &state);
        self.rollouts.insert(state.key.clone(), state);
    }

    /// The instances `host` should have: live ones to run, stopping ones to stop.
    pub fn assignments(&self, host: &str) -> Vec<Assignment> {
        self.instances
            .values()
            .filter(|i| i.instance.host == host)
            .filter_map(|i| {
                let desire = match i.instance.phase {
                    p if p.is_live() => Desire::Run,
                    Phase::Stopping => Desire::Stop,
                    _ => return None,
                };
                let spec = self.release_spec(&i.instance.key, i.instance.release)?;
                Some(Assignment {
                    id: i.instance.id.clone(),
                    key: i.instance.key.clone(),
                    name: i.name.clone(),
                    release: i.instance.release,
                    spec,
                    slot: i.instance.slot,
                    desire,
                    secrets: Vec::new(),
                })
            })
            .collect()
    }

    fn release_spec(&self, key: &WorkloadKey, number: u64) -> Option<vt_repo::EffectiveSpec> {
        match self.releases.get(key) {
            Some(r) if r.number == number => Some(r.spec.clone()),
            _ => self
                .store
                .get::<Release>(&format!("release/{}/{number:010}", key_path(key)))
                .ok()
                .flatten()
                .map(|r| r.spec),
        }
    }

    /// Records the volumes a host reports (kept across restarts).
    pub fn host_volumes(&mut self, host: &str, volumes: Vec<vt_wire::messages::VolumeReport>) {
        if self.host_volumes.get(host) != Some(&volumes) {
            self.batch.put(
                format!("hostvol/{host}"),
                &(host.to_string(), volumes.clone()),
            );
            self.host_volumes.insert(host.to_string(), volumes);
        }
    }

    /// Every volume with its host.
    pub fn volumes(&self) -> Vec<(String, vt_wire::messages::VolumeReport)> {
        self.host_volumes
            .iter()
            .flat_map(|(host, vs)| vs.iter().map(move |v| (host.clone(), v.clone())))
            .collect()
    }

    /// The qualified env name of a workload, if it ever had a release.
    pub fn workload_name(&self, key: &WorkloadKey) -> Option<String> {
        self.releases.get(key).map(|r| r.name.clone())
    }

    /// Hosts, by name.
    pub fn hosts(&self) -> Vec<HostRecord> {
        self.hosts.values().cloned().collect()
    }

    /// The phase of each instance on a host, to tell whether a report changed anything.
    pub fn instances_of_host(&self, host: &str) -> Vec<(String, Phase)> {
        self.instances
            .values()
            .filter(|i| i.instance.host == host)
            .map(|i| (i.instance.id.clone(), i.instance.phase))
            .collect()
    }

    /// Instances of one workload, by ID.
    pub fn instances_of(&self, key: &WorkloadKey) -> Vec<&InstanceRecord> {
        self.instances
            .values()
            .filter(|i| &i.instance.key == key)
            .collect()
    }

    /// Instances, by ID.
    pub fn instances(&self) -> Vec<InstanceRecord> {
        self.instances.values().cloned().collect()
    }

    /// The latest release of each workload, active or not.
    pub fn latest_releases(&self) -> Vec<(Release, bool)> {
        self.releases
            .values()
            .map(|r| (r.clone(), self.active.contains(&r.key)))
            .collect()
    }

    /// The rollout record of a workload.
    pub fn rollout(&self, key: &WorkloadKey) -> Option<&RolloutState> {
        self.rollouts.get(key)
    }

    /// Why parts of a workload are not placed, from the last tick.
    pub fn pending(&self, key: &WorkloadKey) -> &[Pending] {
        self.pending.get(key).map_or(&[], Vec::as_slice)
    }

    /// Every release of a workload, oldest first.
    pub fn releases_of(&self, key: &WorkloadKey) -> Result<Vec<Release>, StoreError> {
        Ok(self
            .store
            .scan::<Release>(&format!("release/{}/", key_path(key)))?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }
}
