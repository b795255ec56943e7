//! The controller's core: what it does with a commit, a host's message and
//! the passing of time. No sockets, no tasks, no clock: the daemon
//! (`vt_fleet::controller::daemon`) and the simulator drive the same [`Controller`], passing
//! `now` in. State lives in memory and is written through to the [`Store`].

use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use vt_plan::addresses::{EndpointAddress, Pools};
use vt_plan::events::{Event, Retention};
use vt_plan::releases::{CommitInfo, Release};
use vt_plan::{Backoff, HostId, InstanceId, ReleaseNo, VolumePlacement};
use vt_plan::{
    Desired, Host, Instance, Millis, Observed, Phase, RolloutState, Workload, WorkloadKey,
};
use vt_wire::messages::{Assignment, Desire};

mod commits;
mod endpoints;
mod failures;
mod journal;
mod nodes;
mod reports;
mod secrets;
mod ticks;
mod tokens;
pub use endpoints::EdgeState;
use failures::Retry;
use journal::Journal;
pub use nodes::{
    decide_join, decide_session, Join, JoinRefusal, NoSuchNode, NodeRecord, SessionRefusal,
    UsedJoin,
};
pub use secrets::{SealedSecret, SECRETS_SIGNALLED};
pub use tokens::{
    check_token, hash_secret, parse_token, Capability, Role as TokenRole, TokenRecord,
    TokenRefusal, TOKEN_PREFIX,
};

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
    Accepted(Vec<(String, ReleaseNo)>),
    /// Did not validate; the previous state stays.
    Rejected(usize),
}

/// The controller's state machine.
#[derive(Debug)]
pub struct Controller {
    store: Box<dyn Store>,
    config: Config,
    meta: Meta,
    hosts: BTreeMap<HostId, HostRecord>,
    instances: BTreeMap<InstanceId, InstanceRecord>,
    rollouts: BTreeMap<WorkloadKey, RolloutState>,
    releases: BTreeMap<WorkloadKey, Release>,
    active: BTreeSet<WorkloadKey>,
    retention: BTreeMap<String, Retention>,
    /// Where each volume slot's volumes live; never forgotten implicitly.
    volumes: BTreeMap<String, VolumePlacement>,
    pending: BTreeMap<WorkloadKey, Vec<Pending>>,
    /// When retention last ran (it reads the whole event log).
    last_retention: Option<Millis>,
    /// Log age limit per org (`retention.logs.max_age`), from the last good commit.
    log_retention: BTreeMap<String, Millis>,
    /// Volumes each host reports, by host name.
    host_volumes: BTreeMap<String, Vec<vt_wire::messages::VolumeReport>>,
    /// Unknown instances already reported, so each gets one event.
    unknown_seen: BTreeSet<InstanceId>,
    /// Endpoint addresses, by `<app id>/<env id>/<endpoint>`.
    addresses: BTreeMap<String, EndpointAddress>,
    /// Sequence number of the next IPv4 usage record.
    next_usage: u64,
    /// Edges connected now.
    edges: BTreeMap<String, EdgeState>,
    /// Places backing off, by store key (`backoff/…`).
    backoffs: BTreeMap<String, Backoff>,
    /// Store writes and events since the last flush.
    journal: Journal,
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
    pub fn open(store: Box<dyn Store>, config: Config) -> Result<Controller, StoreError> {
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
            last_retention: None,
            unknown_seen: BTreeSet::new(),
            host_volumes,
            log_retention,
            journal: Journal::new(next_event),
        })
    }

    /// Gives the store back, as a process exit would (unflushed changes are lost).
    pub fn into_store(self) -> Box<dyn Store> {
        self.store
    }

    /// The store, for queries.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// Settings.
    pub fn config(&self) -> Config {
        self.config
    }

    /// Records an event from outside the core (the git source failing, ...).
    pub fn record(&mut self, event: Event) {
        self.journal.emit(event);
    }

    /// Writes what changed since the last flush, in one transaction, and
    /// returns the events it recorded.
    pub fn flush(&mut self) -> Result<Vec<Event>, StoreError> {
        self.journal.put(META, &self.meta);
        let (batch, events) = self.journal.take();
        self.store.write(batch)?;
        Ok(events)
    }

    /// The commit the desired state comes from.
    pub fn meta(&self) -> &Meta {
        &self.meta
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

    fn release_spec(&self, key: &WorkloadKey, number: ReleaseNo) -> Option<vt_repo::EffectiveSpec> {
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
    pub fn instances_of_host(&self, host: &str) -> Vec<(InstanceId, Phase)> {
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
