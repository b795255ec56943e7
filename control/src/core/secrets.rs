//! Secrets in the controller's core. A release records which secret
//! *versions* it runs (in its effective spec); the sealed values of those
//! versions are kept beside it (`sealed/<app>/<env>/<release>`), still
//! encrypted: the records never hold a clear value. The session layer opens
//! them with the fleet's keys when it sends an assignment
//! (`vt_fleet::controller::sessions`).

use super::{key_path, Controller};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::warn;
use vt_plan::events::Event;
use vt_plan::releases::Release;
use vt_plan::{Millis, ReleaseNo, WorkloadKey};
use vt_repo::secrets::{in_place_change, Sealed};
use vt_repo::Loaded;

/// One secret version of a release, as stored: the value still sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// Secret name.
    pub name: String,
    /// Version.
    pub version: u64,
    /// Path in the guest.
    pub path: String,
    /// The age-encrypted value.
    pub value: Sealed,
}

/// Event kind: a release rewrote secret files in running guests and
/// signalled their apps instead of replacing the instances.
pub const SECRETS_SIGNALLED: &str = "secrets.signalled";

fn sealed_key(key: &WorkloadKey, number: ReleaseNo) -> String {
    format!("sealed/{}/{number:010}", key_path(key))
}

impl Controller {
    /// Keeps the sealed values of the secret versions `release` references,
    /// from the commit it was made from.
    pub(super) fn keep_sealed(&mut self, release: &Release, loaded: &Loaded) {
        if release.spec.secrets.is_empty() {
            return;
        }
        let file = loaded
            .state
            .envs
            .iter()
            .find(|e| e.qualified() == release.name)
            .and_then(|env| loaded.state.secrets_of(env));
        let sealed: Vec<SealedSecret> = release
            .spec
            .secrets
            .iter()
            .filter_map(|s| {
                let entry = file.and_then(|f| f.content.get(&s.name))?;
                Some(SealedSecret {
                    name: s.name.clone(),
                    version: entry.version,
                    path: s.path.clone(),
                    value: entry.value.clone(),
                })
            })
            .collect();
        self.journal
            .put(sealed_key(&release.key, release.number), &sealed);
    }

    /// The sealed secret values of a release (empty when it has none), as
    /// flushed to the store: the daemon flushes a commit before any session
    /// reads the assignments it made.
    pub fn sealed_secrets(&self, key: &WorkloadKey, number: ReleaseNo) -> Vec<SealedSecret> {
        match self
            .store
            .get::<Vec<SealedSecret>>(&sealed_key(key, number))
        {
            Ok(sealed) => sealed.unwrap_or_default(),
            Err(e) => {
                warn!(workload = %key, release = number.get(), error = %e, "cannot read sealed secrets");
                Vec::new()
            }
        }
    }

    /// Whether the instances of the release before `release` can run it as
    /// they are: only `instances` changed (scaling), or only versions of
    /// secrets declared `on_change: signal` (their hosts rewrite the files in
    /// the guests and signal the app). Records an event for the latter.
    pub(super) fn runs_in_place(&mut self, release: &Release, now: Millis) -> bool {
        if release.number <= ReleaseNo::FIRST || release.diff.is_empty() {
            return false;
        }
        let Some(previous) = self.releases.get(&release.key) else {
            return false;
        };
        let Some(changes) = in_place_change(&previous.spec, &release.spec) else {
            return false;
        };
        if !changes.is_empty() {
            let what: Vec<String> = changes
                .iter()
                .map(|c| {
                    format!(
                        "{} v{} → v{} ({})",
                        c.name,
                        c.from,
                        c.to,
                        c.signal.as_deref().unwrap_or("")
                    )
                })
                .collect();
            self.journal.emit(
                Event::new(
                    SECRETS_SIGNALLED,
                    now,
                    format!(
                        "release {} of {}: secret files rewritten in place and the app signalled: {}",
                        release.number,
                        release.name,
                        what.join(", ")
                    ),
                )
                .for_workload(&release.name)
                .release(release.number)
                .fields(json!({"secrets": changes})),
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CommitOutcome, Config};
    use crate::store::RedbStore;
    use vt_plan::test_support::{commit, load_files};
    use vt_plan::{Action, InstanceId, Phase};
    use vt_repo::secrets::crypto::NewKey;
    use vt_repo::secrets::edit::{self, Stamp};
    use vt_repo::secrets::{Keyring, SecretValue, SecretsFile};
    use vt_wire::messages::{HostRegistration, InstanceReport};

    const CONFIG_1: &[u8] = b"conf-value-one-4f9a";
    const CONFIG_2: &[u8] = b"conf-value-two-77c1";

    fn loaded(key: &NewKey, secrets: &SecretsFile, on_change: &str) -> Loaded {
        let files = [
            (
                "vt.yaml",
                format!(
                    "version: 1\nregions: [{{name: local}}]\nsecrets: {{recipients: [{}]}}\n",
                    key.recipient
                ),
            ),
            ("orgs/a/org.yaml", "id: org_01jdq0000000000000000000aa\n".into()),
            ("orgs/a/p/project.yaml", "id: prj_01jdq0000000000000000000aa\n".into()),
            (
                "orgs/a/p/web/app.yaml",
                format!("id: app_01jdq0000000000000000000aa\nimage: web:1\nsecrets: [{{name: config, path: /run/config/c, on_change: {on_change}}}]\n"),
            ),
            ("orgs/a/p/web/envs/prod.yaml", "id: env_01jdq0000000000000000000aa\n".into()),
            ("orgs/a/p/web/envs/prod.secrets.yaml", edit::to_text(secrets, "a/p/web/prod")),
        ];
        load_files(&files)
    }

    fn set(file: &mut SecretsFile, key: &NewKey, value: &[u8]) {
        edit::set(
            file,
            "config",
            &SecretValue::new(value.to_vec()),
            std::slice::from_ref(&key.recipient),
            &Stamp::default(),
        )
        .expect("set");
    }

    fn healthy(c: &mut Controller, now: Millis) -> Vec<InstanceId> {
        let reports: Vec<InstanceReport> = c
            .instances()
            .iter()
            .filter(|i| i.instance.phase.is_live())
            .map(|i| {
                serde_json::from_value(json!({"id": i.instance.id, "phase": Phase::Healthy}))
                    .expect("report")
            })
            .collect();
        c.report("h1", &reports, now);
        reports.into_iter().map(|r| r.id).collect()
    }

    #[test]
    fn a_signal_secret_change_keeps_instances_and_records_only_sealed_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.redb");
        let mut c = Controller::open(
            Box::new(RedbStore::open(&path).expect("store")),
            Config::default(),
        )
        .expect("controller");
        let key = NewKey::generate();
        let mut file = SecretsFile::default();
        set(&mut file, &key, CONFIG_1);
        let reg: HostRegistration = serde_json::from_value(
            json!({"name": "h1", "region": "local", "cpu": 2000, "memory": 4u64 << 30}),
        )
        .expect("registration");
        c.register_host(&reg, 1);
        assert!(matches!(
            c.apply_commit(&commit("c1"), &loaded(&key, &file, "signal"), 1),
            CommitOutcome::Accepted(_)
        ));
        let actions = c.tick(2);
        assert!(actions.iter().any(|a| matches!(a, Action::Start { .. })));
        let first = healthy(&mut c, 3);
        c.tick(4);

        // Release 2 only bumps a signal secret: the instance moves to it.
        set(&mut file, &key, CONFIG_2);
        c.apply_commit(&commit("c2"), &loaded(&key, &file, "signal"), 5);
        let actions = c.tick(6);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::Start { .. } | Action::Stop { .. })),
            "{actions:?}"
        );
        let assigned = c.assignments("h1");
        assert_eq!(
            assigned
                .iter()
                .map(|a| (a.id.clone(), a.release))
                .collect::<Vec<_>>(),
            vec![(first[0].clone(), ReleaseNo::new(2))]
        );
        let key_of = assigned[0].key.clone();
        let events = c.flush().expect("flush");
        assert!(
            events.iter().any(|e| e.kind == SECRETS_SIGNALLED),
            "{events:?}"
        );
        let sealed = c.sealed_secrets(&key_of, ReleaseNo::new(2));
        assert_eq!(sealed.len(), 1);
        assert_eq!(sealed[0].version, 2);
        let opened = Keyring::of(&key).open(&sealed[0].value).expect("opens");
        assert_eq!(opened.expose(), CONFIG_2);

        // A restart secret: release 3 replaces the instance.
        set(&mut file, &key, CONFIG_1);
        c.apply_commit(&commit("c3"), &loaded(&key, &file, "restart"), 7);
        let actions = c.tick(8);
        assert!(
            actions.iter().any(
                |a| matches!(a, Action::Start { release, .. } if *release == ReleaseNo::new(3))
            ),
            "{actions:?}"
        );
        c.flush().expect("flush");

        // The records hold no clear value.
        drop(c);
        let bytes = std::fs::read(&path).expect("read redb");
        for value in [CONFIG_1, CONFIG_2] {
            assert!(
                !bytes.windows(value.len()).any(|w| w == value),
                "clear value in redb"
            );
        }
    }
}
