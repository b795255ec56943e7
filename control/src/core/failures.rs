//! Places whose instances fail before they become healthy: the backoff
//! records the planner reads ([`Backoff`]), the `instance.backoff` event, and
//! how many failed instance records a place keeps.

use super::{key_path, Controller, Event};
use std::collections::BTreeMap;
use vt_plan::events::kind;
use vt_plan::{backoff, Backoff, InstanceId, Millis, Phase, ReleaseNo, WorkloadKey};

/// Failed instance records kept per place (slot, or stateless region);
/// older ones are forgotten at once, whatever their age.
pub const KEEP_FAILED: usize = 3;

/// A place: workload, region and slot (`None` for a stateless region).
type Place<'a> = (&'a WorkloadKey, &'a str, Option<u32>);

/// How the failed instance will be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Its host restarts it in place, with a backoff of its own.
    InPlace,
    /// It is gone; the planner starts a new instance when the place's backoff allows.
    NewInstance,
}

/// The store key of a place's backoff record.
fn record_key(key: &WorkloadKey, region: &str, slot: Option<u32>) -> String {
    let slot = slot.map_or_else(|| "-".to_string(), |s| s.to_string());
    format!("backoff/{}/{region}/{slot}", key_path(key))
}

impl Controller {
    /// Counts a failure of instance `id` before it became healthy towards
    /// its place's backoff, and records an `instance.backoff` event.
    pub(super) fn note_failure(&mut self, id: &str, reason: &str, retry: Retry, now: Millis) {
        let Some(rec) = self.instances.get(id) else {
            return;
        };
        let i = &rec.instance;
        let store_key = record_key(&i.key, &i.region, i.slot);
        let fresh = Backoff {
            key: i.key.clone(),
            release: i.release,
            region: i.region.clone(),
            slot: i.slot,
            failures: 0,
            rounds: 0,
            last_failure: now,
            reason: String::new(),
        };
        let mut b = match self.backoffs.get(&store_key) {
            Some(b) if b.release == i.release => b.clone(),
            _ => fresh,
        };
        b.failures = b.failures.saturating_add(1);
        b.reason = reason.to_string();
        if retry == Retry::NewInstance {
            // Instances of one round fail together: only one started after
            // the previous failure begins a new round.
            if b.rounds == 0 || rec.placed >= b.last_failure {
                b.rounds = b.rounds.saturating_add(1);
            }
            b.last_failure = now;
        }
        let summary = backoff::Summary { backoff: &b, now }.to_string();
        let (name, host) = (rec.name.clone(), i.host.clone());
        self.journal.put(store_key.clone(), &b);
        self.journal.emit(
            Event::new(kind::INSTANCE_BACKOFF, now, format!("{name} {summary}"))
                .reason(reason)
                .for_workload(&name)
                .release(b.release)
                .instance(id)
                .host(&host),
        );
        self.backoffs.insert(store_key, b);
    }

    /// An instance became healthy: its place no longer backs off.
    pub(super) fn note_healthy(&mut self, id: &str) {
        let Some(i) = self.instances.get(id).map(|r| &r.instance) else {
            return;
        };
        let store_key = record_key(&i.key, &i.region, i.slot);
        if self.backoffs.remove(&store_key).is_some() {
            self.journal.delete(store_key);
        }
    }

    /// Drops the backoff records of workloads no longer desired and of
    /// releases no longer the latest.
    pub(super) fn prune_backoffs(&mut self) {
        let stale: Vec<String> = self
            .backoffs
            .iter()
            .filter(|(_, b)| {
                !self.active.contains(&b.key)
                    || self
                        .releases
                        .get(&b.key)
                        .is_none_or(|r| r.number != b.release)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.backoffs.remove(&k);
            self.journal.delete(k);
        }
    }

    /// The failed instances beyond the newest [`KEEP_FAILED`] of each place.
    pub(super) fn failed_beyond_keep(&self) -> Vec<InstanceId> {
        let mut by_place: BTreeMap<Place, Vec<(&str, Millis)>> = BTreeMap::new();
        for r in self.instances.values() {
            let i = &r.instance;
            if i.phase == Phase::Failed {
                by_place
                    .entry((&i.key, i.region.as_str(), i.slot))
                    .or_default()
                    .push((i.id.as_str(), i.since));
            }
        }
        let mut out = Vec::new();
        for mut failed in by_place.into_values() {
            // Newest first: by time, then by ID (minted in increasing order).
            failed.sort_by(|a, b| (b.1, b.0.len(), b.0).cmp(&(a.1, a.0.len(), a.0)));
            out.extend(
                failed
                    .into_iter()
                    .skip(KEEP_FAILED)
                    .map(|(id, _)| InstanceId::from(id)),
            );
        }
        out
    }

    /// Whether a place's instances of `release` have failed before
    /// becoming healthy (its record exists, whether or not it still waits).
    pub(super) fn backs_off(
        &self,
        key: &WorkloadKey,
        region: &str,
        slot: Option<u32>,
        release: ReleaseNo,
    ) -> bool {
        self.backoffs
            .get(&record_key(key, region, slot))
            .is_some_and(|b| b.release == release)
    }

    /// The places backing off for a workload's release.
    pub fn backoffs_of(&self, key: &WorkloadKey, release: ReleaseNo) -> Vec<&Backoff> {
        self.backoffs
            .values()
            .filter(|b| &b.key == key && b.release == release)
            .collect()
    }
}
