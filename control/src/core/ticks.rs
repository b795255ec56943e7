//! What the controller does as time passes: hosts that fell silent are lost,
//! old instance records are forgotten, the planner runs and its actions are
//! applied to the records, and retention runs now and then.

use super::{key_path, Controller, InstanceRecord, Pending, DEFAULT_LOG_AGE, RETENTION_EVERY};
use std::collections::BTreeMap;
use tracing::warn;
use vt_plan::events::{kind, Event, EventFilter};
use vt_plan::{
    Action, HostId, HostStatus, InstanceId, Millis, Phase, ReleaseNo, RolloutState,
    VolumePlacement, WorkloadKey,
};

impl Controller {
    /// Marks silent hosts lost, plans, and applies the plan to the records.
    /// Returns the actions taken.
    pub fn tick(&mut self, now: Millis) -> Vec<Action> {
        self.mark_lost_hosts(now);
        self.forget_old_instances(now);
        let desired = self.desired();
        let actions = vt_plan::plan(&desired, &self.observed(), now);
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
            // Forgetting old repeats reads every recent one: with retention, not every tick.
            self.journal.forget_repeats(now);
            self.forget_expired_joins(now);
            let all = self
                .store
                .events(&EventFilter::default(), usize::MAX)
                .unwrap_or_default();
            self.journal
                .expire(vt_plan::events::expired(&all, &self.retention, now));
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
        let lost: Vec<HostId> = self
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
                self.journal.put(format!("host/{id}"), &record);
                let silent = now.saturating_sub(record.last_seen) / 1000;
                self.journal.emit(
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
        let mut old: Vec<InstanceId> = self
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
            self.journal.delete(format!("inst/{id}"));
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
                let id = InstanceId::from(format!("ins_{:06}", self.meta.next_instance));
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
                self.journal.put(format!("inst/{id}"), &record);
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
                        self.journal.put(vkey.clone(), &placement);
                        self.volumes.insert(vkey, placement);
                    }
                }
                self.journal.emit(
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
                self.journal.put(format!("inst/{instance}"), &rec);
                self.journal.emit(
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
                let release = self
                    .releases
                    .get(key)
                    .map_or(ReleaseNo::default(), |r| r.number);
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
            Action::RolloutStarted { key, release }
            | Action::RolloutProgressed { key, release, .. }
            | Action::RolloutCompleted { key, release }
            | Action::RolloutHalted { key, release, .. } => {
                if let Some(state) = vt_plan::record_rollout(self.rollouts.get(key), action, now) {
                    self.put_rollout(state);
                }
                let name = name_of(key);
                let (kind, message) = match action {
                    Action::RolloutStarted { .. } => (
                        kind::ROLLOUT_STARTED,
                        format!("rollout of {name} release {release} started"),
                    ),
                    Action::RolloutProgressed { healthy, .. } => (
                        kind::ROLLOUT_PROGRESSED,
                        format!("rollout of {name} release {release}: {healthy} healthy"),
                    ),
                    Action::RolloutCompleted { .. } => (
                        kind::ROLLOUT_COMPLETED,
                        format!("rollout of {name} release {release} completed"),
                    ),
                    _ => (
                        kind::ROLLOUT_HALTED,
                        format!(
                            "rollout of {name} release {release} halted: {}",
                            halt_reason(action)
                        ),
                    ),
                };
                self.journal.emit(
                    Event::new(kind, now, message)
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
        release: ReleaseNo,
        pending: &mut BTreeMap<WorkloadKey, Vec<Pending>>,
        now: Millis,
    ) {
        let entry = Pending {
            region: region.to_string(),
            reason: reason.to_string(),
        };
        // An event only when the explanation changes, not on every tick.
        if !self.pending.get(key).is_some_and(|p| p.contains(&entry)) {
            self.journal.emit(
                Event::new(kind, now, format!("{name} in {region}: {reason}"))
                    .for_workload(name)
                    .release(release),
            );
        }
        pending.entry(key.clone()).or_default().push(entry);
    }

    fn put_rollout(&mut self, state: RolloutState) {
        self.journal
            .put(format!("rollout/{}", key_path(&state.key)), &state);
        self.rollouts.insert(state.key.clone(), state);
    }
}

/// The reason of a `RolloutHalted` action (empty for any other).
fn halt_reason(action: &Action) -> &str {
    match action {
        Action::RolloutHalted { reason, .. } => reason,
        _ => "",
    }
}
