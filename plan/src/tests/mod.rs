//! Tests of the planner: unit cases per behaviour ([`unit`]) and properties
//! over random fleets ([`props`]), both driving [`Sim`], which records actions
//! the way the controller does and lets instances settle the way hosts do.

mod backoffs;
mod props;
mod unit;

use super::*;
use vt_repo::effective::RolloutPolicy;
use vt_repo::schema::{Strategy, Volume};
use vt_repo::{ByteSize, Cpu, Duration};

pub(super) const MI: u64 = 1 << 20;
pub(super) const GI: u64 = 1 << 30;

/// A stateless spec: 250m cpu, 256Mi, `instances` per region, rolling with
/// surge 1 and no unavailability, a 5m progress deadline.
pub(super) fn spec(instances: u32, regions: &[&str]) -> EffectiveSpec {
    EffectiveSpec {
        image: "registry.local/web:1".into(),
        command: Vec::new(),
        args: Vec::new(),
        env: Default::default(),
        cpu: Cpu(250),
        memory: ByteSize(256 * MI),
        instances,
        regions: regions.iter().map(|r| r.to_string()).collect(),
        ports: Vec::new(),
        endpoints: Vec::new(),
        volumes: Vec::new(),
        secrets: Vec::new(),
        health: None,
        rollout: RolloutPolicy {
            strategy: Strategy::Rolling,
            max_surge: 1,
            max_unavailable: 0,
            progress_deadline: Duration(300_000),
        },
    }
}

/// Gives a spec one volume, `data`.
pub(super) fn with_volume(mut spec: EffectiveSpec) -> EffectiveSpec {
    spec.volumes.push(Volume {
        name: "data".into(),
        size: ByteSize(GI),
        mount: "/data".into(),
    });
    spec
}

pub(super) fn key(app: &str) -> WorkloadKey {
    WorkloadKey {
        app_id: format!("app_{app}"),
        env_id: "env_prod".into(),
    }
}

pub(super) fn workload(app: &str, release: u64, spec: EffectiveSpec) -> Workload {
    Workload {
        key: key(app),
        name: format!("acme/shop/{app}/prod"),
        release: ReleaseNo::new(release),
        spec,
    }
}

pub(super) fn host(id: &str, region: &str, cpu: u32, memory: u64) -> Host {
    Host {
        id: id.into(),
        name: id.into(),
        region: region.into(),
        cpu,
        memory,
        status: HostStatus::Ready,
    }
}

/// An instance of `app` sized like [`spec`].
pub(super) fn instance(
    id: &str,
    app: &str,
    release: u64,
    host: &str,
    region: &str,
    phase: Phase,
) -> Instance {
    Instance {
        id: id.into(),
        key: key(app),
        release: ReleaseNo::new(release),
        host: host.into(),
        region: region.into(),
        cpu: 250,
        memory: 256 * MI,
        phase,
        since: 0,
        slot: None,
    }
}

/// A completed rollout of `release`, so a test sees only instance actions.
pub(super) fn completed(app: &str, release: u64) -> RolloutState {
    rollout_record(app, release, RolloutStatus::Completed)
}

/// The record of a rollout of `release` started at 0 with no progress since.
pub(super) fn rollout_record(app: &str, release: u64, status: RolloutStatus) -> RolloutState {
    RolloutState {
        key: key(app),
        release: ReleaseNo::new(release),
        started: 0,
        last_progress: 0,
        healthy: 0,
        status,
    }
}

pub(super) fn starts(actions: &[Action]) -> Vec<(&str, Option<u32>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { host, slot, .. } => Some((host.as_str(), *slot)),
            _ => None,
        })
        .collect()
}

pub(super) fn stops(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Stop { instance, .. } => Some(instance.as_str()),
            _ => None,
        })
        .collect()
}

fn rollout<'r>(
    rollouts: &'r mut [RolloutState],
    key: &WorkloadKey,
    release: ReleaseNo,
) -> &'r mut RolloutState {
    rollouts
        .iter_mut()
        .find(|r| &r.key == key && r.release == release)
        .expect("rollout was started")
}

/// The controller and the hosts, simulated: records actions into an
/// [`Observed`] and moves instances along as hosts would.
#[derive(Debug, Clone)]
pub(super) struct Sim {
    pub observed: Observed,
    pub now: Millis,
    minted: u64,
}

impl Sim {
    pub fn new(observed: Observed, now: Millis) -> Self {
        Sim {
            observed,
            now,
            minted: 0,
        }
    }

    pub fn plan(&self, desired: &Desired) -> Vec<Action> {
        plan(desired, &self.observed, self.now)
    }

    /// Records actions as the controller does.
    pub fn apply(&mut self, actions: &[Action]) {
        let now = self.now;
        let o = &mut self.observed;
        for action in actions {
            match action {
                Action::Start {
                    key,
                    region,
                    host,
                    slot,
                    ..
                } => {
                    self.minted += 1;
                    o.instances.extend(
                        action.started_instance(format!("new{:04}", self.minted).into(), now),
                    );
                    let recorded = o
                        .volumes
                        .iter()
                        .any(|v| &v.key == key && &v.region == region && Some(v.slot) == *slot);
                    if let (Some(slot), false) = (slot, recorded) {
                        o.volumes.push(VolumePlacement {
                            key: key.clone(),
                            region: region.clone(),
                            slot: *slot,
                            host: host.clone(),
                        });
                    }
                }
                Action::Stop { instance, .. } => {
                    let i = o
                        .instances
                        .iter_mut()
                        .find(|i| &i.id == instance)
                        .expect("stopped instance exists");
                    assert!(
                        i.phase.is_live(),
                        "stop of {instance} in phase {:?}",
                        i.phase
                    );
                    i.phase = Phase::Stopping;
                    i.since = now;
                }
                // Records per release (older ones stay), each kept as the
                // controller keeps its current one.
                Action::RolloutStarted { key, release } => {
                    o.rollouts
                        .retain(|r| !(&r.key == key && r.release == *release));
                    o.rollouts.extend(crate::record_rollout(None, action, now));
                }
                Action::RolloutProgressed { key, release, .. }
                | Action::RolloutCompleted { key, release }
                | Action::RolloutHalted { key, release, .. } => {
                    let r = rollout(&mut o.rollouts, key, *release);
                    if let Some(next) = crate::record_rollout(Some(r), action, now) {
                        *r = next;
                    }
                }
                Action::Unplaceable { .. } | Action::Waiting { .. } | Action::BackingOff { .. } => {
                }
            }
        }
    }

    /// Hosts report: every starting instance becomes healthy, every stopping
    /// one stops. Returns whether anything changed.
    pub fn settle(&mut self) -> bool {
        let mut changed = false;
        for i in &mut self.observed.instances {
            let next = match i.phase {
                Phase::Pending | Phase::Starting | Phase::Unhealthy => Phase::Healthy,
                Phase::Stopping => Phase::Stopped,
                _ => continue,
            };
            i.phase = next;
            i.since = self.now;
            changed = true;
        }
        changed
    }

    /// Healthy instances of a workload in a region, on Ready hosts.
    pub fn healthy(&self, key: &WorkloadKey, region: &str) -> usize {
        self.observed
            .instances
            .iter()
            .filter(|i| &i.key == key && i.region == region && i.phase == Phase::Healthy)
            .filter(|i| {
                self.observed
                    .hosts
                    .iter()
                    .any(|h| h.id == i.host && h.status == HostStatus::Ready)
            })
            .count()
    }
}
