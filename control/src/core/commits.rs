//! What the controller does with a commit of the tracked branch: validate,
//! number releases, keep their sealed secrets, adopt running instances on a
//! scale-only change, allocate endpoint addresses, take in the orgs'
//! retention policies.

use super::{key_path, CommitOutcome, Controller, ACTIVE, LOG_RETENTION, RETENTION};
use serde_json::json;
use std::collections::BTreeMap;
use tracing::{info_span, warn};
use vt_plan::events::{kind, Event, Retention};
use vt_plan::releases::{plan_releases, CommitInfo, Release};
use vt_plan::{InstanceId, Millis, ReleaseNo};
use vt_repo::Loaded;

impl Controller {
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
            self.journal.emit(
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
            self.journal
                .put(format!("release/{path}/{:010}", release.number), &release);
            self.journal.put(format!("latest/{path}"), &release);
            let changed: Vec<&str> = release.diff.iter().map(|d| d.path.as_str()).collect();
            let message = if release.number == ReleaseNo::FIRST {
                format!("release 1 of {} from {short}", release.name)
            } else {
                format!(
                    "release {} of {} from {short}: {}",
                    release.number,
                    release.name,
                    changed.join(", ")
                )
            };
            self.journal.emit(
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
                self.journal.emit(
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
        self.journal.put(ACTIVE, &self.active);
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
        self.journal.put(RETENTION, &stored);
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
        self.journal.put(LOG_RETENTION, &self.log_retention);
        self.meta.last_good = Some(commit.clone());
        self.journal.emit(
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
        let previous = ReleaseNo::new(release.number.get() - 1);
        let adopted: Vec<InstanceId> = self
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
                self.journal.put(format!("inst/{id}"), &rec);
            }
        }
    }
}
