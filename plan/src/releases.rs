//! Releases: a commit that changes an (app, env)'s effective spec makes
//! release N+1 of it, recording the commit, a hash of the spec and the field
//! diff from release N. Pure: inputs in, new releases out.

use crate::{Millis, ReleaseNo, WorkloadKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use vt_repo::{DesiredState, EffectiveSpec, FieldChange};

/// The commit a desired state was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    /// Full SHA.
    pub sha: String,
    /// Author, `Name <email>`.
    pub author: String,
    /// First line of the message.
    pub message: String,
    /// Commit time (Unix milliseconds).
    pub time: Millis,
}

/// One numbered release of an (app, env).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// The (app, env).
    pub key: WorkloadKey,
    /// Qualified env name at the time (`acme/shop/web/prod`).
    pub name: String,
    /// 1, 2, 3, ... per (app, env).
    pub number: ReleaseNo,
    /// The commit that made it.
    pub commit: CommitInfo,
    /// When the controller made it.
    pub created: Millis,
    /// SHA-256 of the effective spec's canonical JSON.
    pub spec_hash: String,
    /// The effective spec.
    pub spec: EffectiveSpec,
    /// Fields changed since the previous release (empty for release 1).
    pub diff: Vec<FieldChange>,
}

/// The hash that decides whether a spec changed.
pub fn spec_hash(spec: &EffectiveSpec) -> String {
    let json = serde_json::to_vec(spec).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

/// What a new desired state changes: new releases, and workloads that are gone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReleasePlan {
    /// New releases, in key order.
    pub releases: Vec<Release>,
    /// Keys that were in `latest` and are no longer in the state.
    pub removed: Vec<WorkloadKey>,
}

/// Compares a valid desired state with the latest release of each (app, env).
pub fn plan_releases(
    latest: &BTreeMap<WorkloadKey, Release>,
    state: &DesiredState,
    commit: &CommitInfo,
    now: Millis,
) -> ReleasePlan {
    let mut plan = ReleasePlan::default();
    let mut present = std::collections::BTreeSet::new();
    let apps: BTreeMap<String, &vt_repo::App> =
        state.apps.iter().map(|a| (a.qualified(), a)).collect();
    for env in &state.envs {
        let Some(spec) = &env.effective else { continue };
        let Some(app) = apps.get(&env.app_qualified()) else {
            continue;
        };
        let key = WorkloadKey {
            app_id: app.id.clone(),
            env_id: env.id.clone(),
        };
        present.insert(key.clone());
        let previous = latest.get(&key);
        // Equal specs have equal hashes: most envs of a commit are unchanged.
        if previous.is_some_and(|p| &p.spec == spec) {
            continue;
        }
        let hash = spec_hash(spec);
        if previous.is_some_and(|p| p.spec_hash == hash) {
            continue;
        }
        let diff = previous
            .map(|p| {
                let (old, new) = (serde_json::to_value(&p.spec), serde_json::to_value(spec));
                match (old, new) {
                    (Ok(old), Ok(new)) => vt_repo::diff_values(&old, &new),
                    _ => Vec::new(),
                }
            })
            .unwrap_or_default();
        plan.releases.push(Release {
            key,
            name: env.qualified(),
            number: previous.map_or(ReleaseNo::FIRST, |p| p.number.next()),
            commit: commit.clone(),
            created: now,
            spec_hash: hash,
            spec: spec.clone(),
            diff,
        });
    }
    plan.releases.sort_by(|a, b| a.key.cmp(&b.key));
    plan.removed = latest
        .keys()
        .filter(|k| !present.contains(k))
        .cloned()
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{commit, load_files};

    fn state(image: &str, instances: u32) -> DesiredState {
        let files = [
            (
                "vt.yaml",
                "version: 1\nregions: [{name: local}]\n".to_string(),
            ),
            (
                "orgs/a/org.yaml",
                "id: org_01jdq0000000000000000000aa\n".into(),
            ),
            (
                "orgs/a/p/project.yaml",
                "id: prj_01jdq0000000000000000000aa\n".into(),
            ),
            (
                "orgs/a/p/web/app.yaml",
                format!("id: app_01jdq0000000000000000000aa\nimage: {image}\n"),
            ),
            (
                "orgs/a/p/web/envs/prod.yaml",
                format!("id: env_01jdq0000000000000000000aa\ninstances: {instances}\n"),
            ),
        ];
        load_files(&files).state
    }

    #[test]
    fn a_changed_spec_makes_the_next_release_with_a_diff() {
        let first = plan_releases(&BTreeMap::new(), &state("web:1", 1), &commit("c1"), 5);
        assert_eq!(first.releases.len(), 1);
        assert_eq!(
            (first.releases[0].number, first.releases[0].diff.len()),
            (ReleaseNo::FIRST, 0)
        );
        let latest: BTreeMap<_, _> = first
            .releases
            .into_iter()
            .map(|r| (r.key.clone(), r))
            .collect();

        assert_eq!(
            plan_releases(&latest, &state("web:1", 1), &commit("c2"), 6),
            ReleasePlan::default()
        );

        let next = plan_releases(&latest, &state("web:2", 1), &commit("c3"), 7);
        let r = &next.releases[0];
        assert_eq!((r.number, r.commit.sha.as_str()), (ReleaseNo::new(2), "c3"));
        let paths: Vec<_> = r.diff.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["image"]);

        let gone = plan_releases(&latest, &DesiredState::default(), &commit("c4"), 8);
        assert_eq!(gone.removed.len(), 1);
    }
}
