//! What a new desired state will do to a fleet, before it is committed: the
//! releases it makes, and the planner's actions wave by wave until the fleet
//! would have converged. Pure, like the planner it calls: `vt diff` feeds it
//! the running controller's [`Baseline`] (or a simulated one) and a loaded
//! working tree or commit.
//!
//! The waves assume every started instance becomes healthy and every stopped
//! one stops before the next plan: they show *what* the rollout does and in
//! which order (placement per host, surge, stop-before-start for volumes),
//! not how long it takes — the simulator's timeline does that.

use crate::releases::{plan_releases, CommitInfo, Release};
use crate::{
    plan, Action, Desired, HostId, Millis, Observed, Phase, ReleaseNo, VolumePlacement, Workload,
    WorkloadKey,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use vt_repo::secrets::in_place_change;
use vt_repo::{DesiredState, EffectiveSpec, FieldChange};

/// Most waves followed before giving up (a rollout that cannot converge).
const MAX_WAVES: usize = 200;

/// What the fleet runs now: the controller's answer to `GET /v1/baseline`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The commit the running desired state comes from.
    pub commit: Option<CommitInfo>,
    /// The latest release of every active workload.
    pub releases: Vec<Release>,
    /// Hosts, instances, rollouts and volume placements.
    pub observed: Observed,
}

impl Baseline {
    /// SHA-256 of the observed state's canonical JSON (its lists sorted), so a
    /// plan can say which observation it was made against.
    pub fn observed_hash(&self) -> String {
        let mut o = self.observed.clone();
        o.hosts.sort_by(|a, b| a.id.cmp(&b.id));
        o.instances.sort_by(|a, b| a.id.cmp(&b.id));
        o.rollouts.sort_by(|a, b| a.key.cmp(&b.key));
        o.volumes
            .sort_by(|a, b| (&a.key, &a.region, a.slot).cmp(&(&b.key, &b.region, b.slot)));
        let json = serde_json::to_vec(&o).unwrap_or_default();
        hex::encode(Sha256::digest(&json))
    }
}

/// One (app, env) whose spec changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseChange {
    /// Qualified env name.
    pub name: String,
    /// The release running now (`None` for a new workload).
    pub from: Option<ReleaseNo>,
    /// The release the change makes.
    pub to: ReleaseNo,
    /// Fields changed, old and new values.
    pub fields: Vec<FieldChange>,
    /// Applied to the running instances without replacing them (scale, or
    /// `on_change: signal` secrets only).
    pub in_place: bool,
}

/// One step of a wave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Step {
    /// An instance starts.
    Start {
        /// Qualified env name.
        workload: String,
        /// Release it runs.
        release: ReleaseNo,
        /// Host name.
        host: String,
        /// Region.
        region: String,
        /// Volume slot, with volumes.
        #[serde(skip_serializing_if = "Option::is_none")]
        slot: Option<u32>,
        /// Why this host.
        reason: String,
    },
    /// An instance stops.
    Stop {
        /// Qualified env name.
        workload: String,
        /// Instance ID (`planned-N` for one started earlier in this preview).
        instance: String,
        /// Release it ran.
        release: ReleaseNo,
        /// Host name.
        host: String,
        /// Why.
        reason: String,
    },
}

/// Per workload: how many instances start, stop, and are replaced (a stop of
/// an old release matched by a start of the new one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Instances started.
    pub start: u32,
    /// Instances stopped.
    pub stop: u32,
    /// Of those, replacements (min of starts and stops of a changed release).
    pub replace: u32,
}

/// A volume the change creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewVolume {
    /// Qualified env name.
    pub workload: String,
    /// Volume name.
    pub volume: String,
    /// Slot.
    pub slot: u32,
    /// Host name.
    pub host: String,
}

/// An endpoint added or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointChange {
    /// Qualified env name.
    pub workload: String,
    /// Endpoint name.
    pub endpoint: String,
    /// Public port.
    pub port: u16,
    /// `added` or `removed`.
    pub change: String,
}

/// A secret whose version changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretChange {
    /// Qualified env name.
    pub workload: String,
    /// Secret name.
    pub secret: String,
    /// Old version (0: not referenced before).
    pub from: u64,
    /// New version (0: no longer referenced).
    pub to: u64,
}

/// Everything a change does, as data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Preview {
    /// The commit the fleet runs (the plan's base).
    pub base_commit: Option<String>,
    /// [`Baseline::observed_hash`] of the observation planned against.
    pub observed_hash: String,
    /// Releases the change makes, by workload.
    pub releases: Vec<ReleaseChange>,
    /// Workloads the change removes (their instances stop).
    pub removed: Vec<String>,
    /// Planner actions, wave by wave.
    pub waves: Vec<Vec<Step>>,
    /// Per workload counts.
    pub counts: BTreeMap<String, Counts>,
    /// Endpoints added or removed.
    pub endpoints: Vec<EndpointChange>,
    /// Volumes created.
    pub volumes: Vec<NewVolume>,
    /// Secret versions changed.
    pub secrets: Vec<SecretChange>,
    /// Things to know: downtime, pinned placement, no capacity.
    pub warnings: Vec<String>,
}

impl Preview {
    /// Whether the change changes anything.
    pub fn has_changes(&self) -> bool {
        !self.releases.is_empty() || !self.removed.is_empty()
    }
}

/// Previews `state` (valid) against `baseline` at time `now`.
pub fn preview(
    baseline: &Baseline,
    state: &DesiredState,
    commit: &CommitInfo,
    now: Millis,
) -> Preview {
    let latest: BTreeMap<WorkloadKey, Release> = baseline
        .releases
        .iter()
        .map(|r| (r.key.clone(), r.clone()))
        .collect();
    let planned = plan_releases(&latest, state, commit, now);
    let mut out = Preview {
        base_commit: baseline.commit.as_ref().map(|c| c.sha.clone()),
        observed_hash: baseline.observed_hash(),
        removed: planned
            .removed
            .iter()
            .filter_map(|k| latest.get(k).map(|r| r.name.clone()))
            .collect(),
        ..Preview::default()
    };
    let mut observed = baseline.observed.clone();
    let mut names: BTreeMap<WorkloadKey, String> = latest
        .iter()
        .map(|(k, r)| (k.clone(), r.name.clone()))
        .collect();
    for r in &planned.releases {
        names.insert(r.key.clone(), r.name.clone());
        let old = latest.get(&r.key).map(|p| &p.spec);
        let in_place = old.and_then(|o| in_place_change(o, &r.spec)).is_some();
        if in_place {
            // The controller adopts the running instances (see core::secrets).
            let from = latest
                .get(&r.key)
                .map_or(ReleaseNo::default(), |p| p.number);
            for i in &mut observed.instances {
                if i.key == r.key && i.release == from {
                    i.release = r.number;
                }
            }
        }
        out.releases.push(ReleaseChange {
            name: r.name.clone(),
            from: latest.get(&r.key).map(|p| p.number),
            to: r.number,
            fields: r.diff.clone(),
            in_place,
        });
        describe_spec_change(&mut out, &r.name, old, Some(&r.spec));
        if old.is_some() && !in_place && !r.spec.volumes.is_empty() {
            out.warnings.push(format!(
                "{}: volumes pin each slot to its host: instances are replaced there, one slot at a time, stop before start",
                r.name
            ));
        }
    }
    for key in &planned.removed {
        if let Some(r) = latest.get(key) {
            describe_spec_change(&mut out, &r.name, Some(&r.spec), None);
        }
    }
    let desired = desired_after(&latest, &planned.releases, &planned.removed);
    let focus: BTreeSet<&WorkloadKey> = planned
        .releases
        .iter()
        .map(|r| &r.key)
        .chain(&planned.removed)
        .collect();
    let quotas = QuotaCheck::new(state, &observed, &focus, &names);
    let (desired, mut observed) = focused(&desired, &observed, &focus);
    follow_waves(
        &mut out,
        &desired,
        &mut observed,
        &names,
        now,
        Some(&quotas),
    );
    out
}

/// What an org's instances hold.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    instances: u64,
    cpu: u64,
    memory: u64,
}

impl Usage {
    fn add(&mut self, i: &crate::Instance) {
        // Saturating: a sum past u64 is over any quota, never a wrap.
        self.instances = self.instances.saturating_add(1);
        self.cpu = self.cpu.saturating_add(u64::from(i.cpu));
        self.memory = self.memory.saturating_add(i.memory);
    }
}

/// Org quotas against a rollout's peak: what the planned workloads hold
/// after each wave (old and new instances together, with surge) plus what
/// every other workload holds.
struct QuotaCheck<'a> {
    quotas: BTreeMap<&'a str, &'a vt_repo::schema::Quotas>,
    others: BTreeMap<String, Usage>,
    names: &'a BTreeMap<WorkloadKey, String>,
}

fn org_of(name: &str) -> &str {
    name.split('/').next().unwrap_or_default()
}

impl<'a> QuotaCheck<'a> {
    fn new(
        state: &'a DesiredState,
        observed: &Observed,
        focus: &BTreeSet<&WorkloadKey>,
        names: &'a BTreeMap<WorkloadKey, String>,
    ) -> Self {
        let mut others: BTreeMap<String, Usage> = BTreeMap::new();
        for i in &observed.instances {
            if !focus.contains(&i.key) && i.phase.holds_resources() {
                if let Some(name) = names.get(&i.key) {
                    others.entry(org_of(name).to_string()).or_default().add(i);
                }
            }
        }
        let quotas = state
            .orgs
            .iter()
            .filter_map(|o| Some((o.name.as_str(), o.spec.quotas.as_ref()?)))
            .collect();
        QuotaCheck {
            quotas,
            others,
            names,
        }
    }

    /// Warns (once per org and quota) when the planned workloads' instances
    /// now holding resources take an org over its quota.
    fn check(&self, observed: &Observed, out: &mut Preview, warned: &mut BTreeSet<String>) {
        let mut usage = self.others.clone();
        for i in observed
            .instances
            .iter()
            .filter(|i| i.phase.holds_resources())
        {
            if let Some(name) = self.names.get(&i.key) {
                usage.entry(org_of(name).to_string()).or_default().add(i);
            }
        }
        for (org, u) in usage {
            let Some(q) = self.quotas.get(org.as_str()) else {
                continue;
            };
            let checks = [
                ("max_instances", q.max_instances.map(u64::from), u.instances),
                ("max_cpu", q.max_cpu.map(|c| u64::from(c.0)), u.cpu),
                ("max_memory", q.max_memory.map(|m| m.0), u.memory),
            ];
            for (field, limit, used) in checks {
                let Some(limit) = limit.filter(|l| used > *l) else {
                    continue;
                };
                let w = format!(
                    "org {org}: the rollout's peak uses {used} against quotas.{field} {limit} (old and new instances run together while it surges)"
                );
                if warned.insert(w.clone()) {
                    out.warnings.push(w);
                }
            }
        }
    }
}

/// The planner's inputs narrowed to the `focus` workloads: the others stay
/// where they are, so they only count as capacity their hosts do not have.
/// Planning the rest again would change nothing (the planner is idempotent)
/// and costs most of the time on a big fleet.
fn focused(
    desired: &Desired,
    observed: &Observed,
    focus: &BTreeSet<&WorkloadKey>,
) -> (Desired, Observed) {
    let mut held: BTreeMap<&str, (u32, u64)> = BTreeMap::new();
    for i in &observed.instances {
        if !focus.contains(&i.key) && i.phase.holds_resources() {
            let h = held.entry(i.host.as_str()).or_default();
            h.0 = h.0.saturating_add(i.cpu);
            h.1 = h.1.saturating_add(i.memory);
        }
    }
    let hosts = observed
        .hosts
        .iter()
        .map(|h| {
            let (cpu, memory) = held.get(h.id.as_str()).copied().unwrap_or_default();
            crate::Host {
                cpu: h.cpu.saturating_sub(cpu),
                memory: h.memory.saturating_sub(memory),
                ..h.clone()
            }
        })
        .collect();
    let desired = Desired {
        workloads: desired
            .workloads
            .iter()
            .filter(|w| focus.contains(&w.key))
            .cloned()
            .collect(),
    };
    let observed = Observed {
        hosts,
        instances: observed
            .instances
            .iter()
            .filter(|i| focus.contains(&i.key))
            .cloned()
            .collect(),
        rollouts: observed
            .rollouts
            .iter()
            .filter(|r| focus.contains(&r.key))
            .cloned()
            .collect(),
        volumes: observed
            .volumes
            .iter()
            .filter(|v| focus.contains(&v.key))
            .cloned()
            .collect(),
        backoffs: observed
            .backoffs
            .iter()
            .filter(|b| focus.contains(&b.key))
            .cloned()
            .collect(),
    };
    (desired, observed)
}

/// The desired workloads once the change is applied.
fn desired_after(
    latest: &BTreeMap<WorkloadKey, Release>,
    new: &[Release],
    removed: &[WorkloadKey],
) -> Desired {
    let mut by_key: BTreeMap<&WorkloadKey, &Release> = latest.iter().collect();
    for r in new {
        by_key.insert(&r.key, r);
    }
    Desired {
        workloads: by_key
            .into_iter()
            .filter(|(k, _)| !removed.contains(k))
            .map(|(k, r)| Workload {
                key: k.clone(),
                name: r.name.clone(),
                release: r.number,
                spec: r.spec.clone(),
            })
            .collect(),
    }
}

/// Endpoints, volumes and secrets a spec change adds or removes, and the
/// warnings that follow from the spec alone.
fn describe_spec_change(
    out: &mut Preview,
    name: &str,
    old: Option<&EffectiveSpec>,
    new: Option<&EffectiveSpec>,
) {
    let names = |spec: Option<&EffectiveSpec>| -> BTreeMap<String, u16> {
        spec.map(|s| {
            s.endpoints
                .iter()
                .map(|e| (e.name.clone(), e.port))
                .collect()
        })
        .unwrap_or_default()
    };
    let (before, after) = (names(old), names(new));
    for (endpoint, port) in &after {
        if !before.contains_key(endpoint) {
            out.endpoints.push(EndpointChange {
                workload: name.into(),
                endpoint: endpoint.clone(),
                port: *port,
                change: "added".into(),
            });
        }
    }
    for (endpoint, port) in &before {
        if !after.contains_key(endpoint) {
            out.endpoints.push(EndpointChange {
                workload: name.into(),
                endpoint: endpoint.clone(),
                port: *port,
                change: "removed".into(),
            });
        }
    }
    let versions = |spec: Option<&EffectiveSpec>| -> BTreeMap<String, u64> {
        spec.map(|s| {
            s.secrets
                .iter()
                .map(|s| (s.name.clone(), s.version))
                .collect()
        })
        .unwrap_or_default()
    };
    let (before, after) = (versions(old), versions(new));
    let secrets: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for secret in secrets {
        let (from, to) = (
            before.get(secret).copied().unwrap_or(0),
            after.get(secret).copied().unwrap_or(0),
        );
        if from != to {
            out.secrets.push(SecretChange {
                workload: name.into(),
                secret: secret.clone(),
                from,
                to,
            });
        }
    }
    let volumes = |spec: Option<&EffectiveSpec>| -> BTreeSet<String> {
        spec.map(|s| s.volumes.iter().map(|v| v.name.clone()).collect())
            .unwrap_or_default()
    };
    let dropped: Vec<String> = volumes(old).difference(&volumes(new)).cloned().collect();
    if !dropped.is_empty() {
        out.warnings.push(format!(
            "{name}: volume(s) {} leave the spec; their data is kept (never deleted implicitly): `vt volumes destroy` removes it",
            dropped.join(", ")
        ));
    }
}

/// Plans wave after wave, applying each as if it succeeded at once, until
/// the planner has nothing left to start or stop.
fn follow_waves(
    out: &mut Preview,
    desired: &Desired,
    observed: &mut Observed,
    names: &BTreeMap<WorkloadKey, String>,
    now: Millis,
    quotas: Option<&QuotaCheck<'_>>,
) {
    let host_name: BTreeMap<HostId, String> = observed
        .hosts
        .iter()
        .map(|h| (h.id.clone(), h.name.clone()))
        .collect();
    let mut minted = 0u64;
    let mut warned: BTreeSet<String> = BTreeSet::new();
    let mut t = now;
    for _ in 0..MAX_WAVES {
        let actions = plan(desired, observed, t);
        let mut wave = Vec::new();
        let mut stopped = BTreeMap::new();
        for action in &actions {
            let workload = names.get(action_key(action)).cloned().unwrap_or_default();
            match action {
                Action::Start {
                    release,
                    host,
                    region,
                    slot,
                    reason,
                    ..
                } => {
                    minted += 1;
                    wave.push(Step::Start {
                        workload: workload.clone(),
                        release: *release,
                        host: host_name.get(host).cloned().unwrap_or_else(|| host.to_string()),
                        region: region.clone(),
                        slot: *slot,
                        reason: reason.clone(),
                    });
                    note_new_volumes(out, desired, action, &workload, observed, &host_name);
                    if let Some(i) = action.started_instance(format!("planned-{minted}").into(), t) {
                        observed.instances.push(i);
                    }
                }
                Action::Stop {
                    instance,
                    key,
                    reason,
                } => {
                    let Some(i) = observed.instances.iter_mut().find(|i| &i.id == instance) else {
                        continue;
                    };
                    wave.push(Step::Stop {
                        workload: workload.clone(),
                        instance: instance.to_string(),
                        release: i.release,
                        host: host_name
                            .get(&i.host)
                            .cloned()
                            .unwrap_or_else(|| i.host.to_string()),
                        reason: reason.clone(),
                    });
                    i.phase = Phase::Stopped;
                    stopped.insert(key.clone(), workload.clone());
                }
                Action::Unplaceable {
                    region,
                    count,
                    reason,
                    ..
                } => warn_once(
                    out,
                    &mut warned,
                    format!("{workload}: no capacity in region {region} for {count} instance(s): {reason}"),
                ),
                Action::Waiting { region, reason, .. } => warn_once(
                    out,
                    &mut warned,
                    format!("{workload}: waits in region {region}: {reason}"),
                ),
                Action::BackingOff {
                    region,
                    release,
                    failures,
                    reason,
                    ..
                } => warn_once(
                    out,
                    &mut warned,
                    format!("{workload}: release {release} backs off in region {region} after {failures} failure(s): {reason}"),
                ),
                Action::RolloutStarted { .. }
                | Action::RolloutProgressed { .. }
                | Action::RolloutCompleted { .. }
                | Action::RolloutHalted { .. } => record_rollout(observed, action, t),
            }
        }
        warn_downtime(out, &stopped, observed, &mut warned);
        if let Some(q) = quotas {
            q.check(observed, out, &mut warned);
        }
        // What started this wave is healthy by the next one.
        for i in &mut observed.instances {
            if i.phase == Phase::Pending {
                i.phase = Phase::Healthy;
                i.since = t;
            }
        }
        observed.instances.retain(|i| i.phase != Phase::Stopped);
        if wave.is_empty() {
            break;
        }
        count(out, &wave);
        out.waves.push(wave);
        t += 1_000;
    }
}

/// Adds a warning, unless the same one was given before.
fn warn_once(out: &mut Preview, warned: &mut BTreeSet<String>, warning: String) {
    if warned.insert(warning.clone()) {
        out.warnings.push(warning);
    }
}

fn action_key(action: &Action) -> &WorkloadKey {
    match action {
        Action::Start { key, .. }
        | Action::Stop { key, .. }
        | Action::Unplaceable { key, .. }
        | Action::Waiting { key, .. }
        | Action::BackingOff { key, .. }
        | Action::RolloutStarted { key, .. }
        | Action::RolloutProgressed { key, .. }
        | Action::RolloutCompleted { key, .. }
        | Action::RolloutHalted { key, .. } => key,
    }
}

/// Keeps the rollout records as the controller does ([`crate::record_rollout`]).
fn record_rollout(observed: &mut Observed, action: &Action, t: Millis) {
    let key = action_key(action);
    let pos = observed.rollouts.iter().position(|r| &r.key == key);
    let current = pos.map(|p| &observed.rollouts[p]);
    if let Some(state) = crate::record_rollout(current, action, t) {
        match pos {
            Some(p) => observed.rollouts[p] = state,
            None => observed.rollouts.push(state),
        }
    }
}

/// A start with a slot that has no volume placement yet creates the slot's
/// volumes on its host.
fn note_new_volumes(
    out: &mut Preview,
    desired: &Desired,
    action: &Action,
    workload: &str,
    observed: &mut Observed,
    host_name: &BTreeMap<HostId, String>,
) {
    let Action::Start {
        key,
        region,
        host,
        slot: Some(slot),
        ..
    } = action
    else {
        return;
    };
    let placed = observed
        .volumes
        .iter()
        .any(|v| &v.key == key && &v.region == region && v.slot == *slot)
        || observed
            .instances
            .iter()
            .any(|i| &i.key == key && &i.region == region && i.slot == Some(*slot));
    if placed {
        return;
    }
    observed.volumes.push(VolumePlacement {
        key: key.clone(),
        region: region.clone(),
        slot: *slot,
        host: host.clone(),
    });
    let Some(w) = desired.workloads.iter().find(|w| &w.key == key) else {
        return;
    };
    for v in &w.spec.volumes {
        out.volumes.push(NewVolume {
            workload: workload.into(),
            volume: v.name.clone(),
            slot: *slot,
            host: host_name
                .get(host)
                .cloned()
                .unwrap_or_else(|| host.to_string()),
        });
    }
}

/// Warns when a wave stops instances of a changed workload and leaves it
/// with no healthy instance: the rollout has downtime.
fn warn_downtime(
    out: &mut Preview,
    stopped: &BTreeMap<WorkloadKey, String>,
    observed: &Observed,
    warned: &mut BTreeSet<String>,
) {
    for (key, workload) in stopped {
        if !out.releases.iter().any(|r| &r.name == workload) {
            continue;
        }
        let serving = observed
            .instances
            .iter()
            .any(|i| &i.key == key && i.phase == Phase::Healthy);
        let w = format!(
            "{workload}: downtime — the rollout stops its last serving instance before a new one is healthy (no surge, an immediate rollout, or volumes: stop before start)"
        );
        if !serving && warned.insert(w.clone()) {
            out.warnings.push(w);
        }
    }
}

/// Adds a wave's starts and stops to the per-workload counts.
fn count(out: &mut Preview, wave: &[Step]) {
    for step in wave {
        let (workload, start) = match step {
            Step::Start { workload, .. } => (workload, true),
            Step::Stop { workload, .. } => (workload, false),
        };
        let c = out.counts.entry(workload.clone()).or_default();
        if start {
            c.start += 1;
        } else {
            c.stop += 1;
        }
        c.replace = c.start.min(c.stop);
    }
}

/// A simulated fleet of `hosts` that runs `state` (the base of a change)
/// and has converged: what `vt diff --against sim` plans against.
pub fn simulated_baseline(
    hosts: Vec<crate::Host>,
    state: &DesiredState,
    commit: &CommitInfo,
    now: Millis,
) -> Baseline {
    let planned = plan_releases(&BTreeMap::new(), state, commit, now);
    let desired = desired_after(&BTreeMap::new(), &planned.releases, &[]);
    let names = planned
        .releases
        .iter()
        .map(|r| (r.key.clone(), r.name.clone()))
        .collect();
    let mut observed = Observed {
        hosts,
        ..Observed::default()
    };
    follow_waves(
        &mut Preview::default(),
        &desired,
        &mut observed,
        &names,
        now,
        None,
    );
    Baseline {
        commit: Some(commit.clone()),
        releases: planned.releases,
        observed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{commit, load_files};
    use crate::Host;

    /// One app `web` with env `prod`; `app` and `env` are extra YAML lines.
    fn state(app: &str, env: &str) -> DesiredState {
        state_with_org(app, env, "")
    }

    /// [`state`] with `org` (YAML lines) appended to the org file.
    fn state_with_org(app: &str, env: &str, org: &str) -> DesiredState {
        let files = [
            ("vt.yaml", "version: 1\nregions: [{name: local}]\n".to_string()),
            (
                "orgs/a/org.yaml",
                format!("id: org_01jdq0000000000000000000aa\n{org}"),
            ),
            ("orgs/a/p/project.yaml", "id: prj_01jdq0000000000000000000aa\n".into()),
            (
                "orgs/a/p/web/app.yaml",
                format!("id: app_01jdq0000000000000000000aa\nports: [{{name: main, port: 8080}}]\n{app}"),
            ),
            (
                "orgs/a/p/web/envs/prod.yaml",
                format!("id: env_01jdq0000000000000000000aa\n{env}"),
            ),
        ];
        load_files(&files).state
    }

    fn hosts(n: u32, cpu: u32) -> Vec<Host> {
        (1..=n)
            .map(|i| Host {
                id: format!("h{i}").into(),
                name: format!("host-{i}"),
                region: "local".into(),
                cpu,
                memory: 8 << 30,
                status: crate::HostStatus::Ready,
            })
            .collect()
    }

    fn run(base: &DesiredState, head: &DesiredState, hosts: Vec<Host>) -> Preview {
        let baseline = simulated_baseline(hosts, base, &commit("base"), 1_000);
        preview(&baseline, head, &commit("head"), 2_000)
    }

    const IMAGE_1: &str = "image: web:1\n";
    const IMAGE_2: &str = "image: web:2\n";

    #[test]
    fn the_same_state_changes_nothing() {
        let s = state(IMAGE_1, "instances: 2\n");
        let p = run(&s, &s, hosts(2, 4_000));
        assert!(!p.has_changes());
        assert!(p.waves.is_empty(), "{:?}", p.waves);
        assert_eq!(p.base_commit.as_deref(), Some("base"));
    }

    #[test]
    fn a_scale_up_starts_instances_in_place() {
        let p = run(
            &state(IMAGE_1, "instances: 2\n"),
            &state(IMAGE_1, "instances: 3\n"),
            hosts(2, 4_000),
        );
        assert_eq!(p.releases.len(), 1);
        assert!(p.releases[0].in_place);
        assert_eq!(
            (p.releases[0].from, p.releases[0].to),
            (Some(ReleaseNo::new(1)), ReleaseNo::new(2))
        );
        let c = &p.counts["a/p/web/prod"];
        assert_eq!((c.start, c.stop, c.replace), (1, 0, 0));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn a_rolling_image_change_replaces_one_by_one_without_downtime() {
        let p = run(
            &state(IMAGE_1, "instances: 2\n"),
            &state(IMAGE_2, "instances: 2\n"),
            hosts(2, 4_000),
        );
        let c = &p.counts["a/p/web/prod"];
        assert_eq!((c.start, c.stop, c.replace), (2, 2, 2));
        assert!(
            p.waves.len() >= 3,
            "surge 1: start, then stop+start, then stop"
        );
        assert!(
            matches!(p.waves[0][..], [Step::Start { release, .. }] if release == ReleaseNo::new(2))
        );
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(p.releases[0].fields[0].path, "image");
    }

    #[test]
    fn an_immediate_rollout_warns_of_downtime() {
        let app = |image: &str| format!("{image}rollout: {{strategy: immediate}}\n");
        let p = run(
            &state(&app(IMAGE_1), "instances: 2\n"),
            &state(&app(IMAGE_2), "instances: 2\n"),
            hosts(2, 4_000),
        );
        assert!(
            p.warnings.iter().any(|w| w.contains("downtime")),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn a_surge_over_the_org_quota_is_a_warning() {
        let quota = "quotas: {max_instances: 2}\n";
        let p = run(
            &state_with_org(IMAGE_1, "instances: 2\n", quota),
            &state_with_org(IMAGE_2, "instances: 2\n", quota),
            hosts(2, 4_000),
        );
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("org a") && w.contains("quotas.max_instances 2")),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn no_capacity_is_a_warning() {
        let p = run(
            &state(IMAGE_1, "instances: 1\n"),
            &state(IMAGE_1, "instances: 9\n"),
            hosts(1, 1_000),
        );
        assert!(
            p.warnings.iter().any(|w| w.contains("no capacity")),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn endpoints_and_volumes_are_listed() {
        let extra = "endpoints: [{name: http, port: 80, target: main}]\nvolumes: [{name: data, size: 1Gi, mount: /data}]\n";
        let p = run(
            &state(IMAGE_1, "instances: 1\n"),
            &state(&format!("{IMAGE_1}{extra}"), "instances: 1\n"),
            hosts(1, 4_000),
        );
        assert_eq!(p.endpoints.len(), 1);
        assert_eq!(
            (
                p.endpoints[0].endpoint.as_str(),
                p.endpoints[0].change.as_str()
            ),
            ("http", "added")
        );
        assert_eq!(p.volumes.len(), 1);
        assert_eq!(
            (p.volumes[0].volume.as_str(), p.volumes[0].host.as_str()),
            ("data", "host-1")
        );
    }

    #[test]
    fn a_baseline_round_trips_through_json() {
        let s = state(
            "image: web:1\nhealth: {type: tcp, port: main}\nendpoints: [{name: http, port: 80, target: main}]\n",
            "instances: 2\n",
        );
        let b = simulated_baseline(hosts(2, 4_000), &s, &commit("c"), 0);
        let json = serde_json::to_string(&b).expect("serialize");
        let back: Baseline = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        assert_eq!(back, b);
    }

    #[test]
    fn the_observed_hash_ignores_list_order() {
        let s = state(IMAGE_1, "instances: 3\n");
        let mut b = simulated_baseline(hosts(3, 4_000), &s, &commit("c"), 0);
        let hash = b.observed_hash();
        b.observed.hosts.reverse();
        b.observed.instances.reverse();
        assert_eq!(b.observed_hash(), hash);
        b.observed.instances.pop();
        assert_ne!(b.observed_hash(), hash);
    }
}
