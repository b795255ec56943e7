//! Secrets in the controller's core. A release records which secret
//! *versions* it runs (in its effective spec); the sealed values of those
//! versions are kept beside it (`sealed/<app>/<env>/<release>`), still
//! encrypted: the records never hold a clear value. The session layer opens
//! them with the fleet's keys when it sends an assignment
//! ([`crate::controller::sessions`]).

use super::{key_path, Controller};
use crate::controller::events::Event;
use crate::controller::releases::Release;
use crate::plan::{Millis, WorkloadKey};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::warn;
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

fn sealed_key(key: &WorkloadKey, number: u64) -> String {
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
        self.batch
            .put(sealed_key(&release.key, release.number), &sealed);
    }

    /// The sealed secret values of a release (empty when it has none).
    pub fn sealed_secrets(&self, key: &WorkloadKey, number: u64) -> Vec<SealedSecret> {
        match self
            .store
            .get::<Vec<SealedSecret>>(&sealed_key(key, number))
        {
            Ok(sealed) => sealed.unwrap_or_default(),
            Err(e) => {
                warn!(workload = %key, release = number, error = %e, "cannot read sealed secrets");
                Vec::new()
            }
        }
    }

    /// Whether the instances of the release before `release` can run it as
    /// they are: only `instances` changed (scaling), or only versions of
    /// secrets declared `on_change: signal` (their hosts rewrite the files in
    /// the guests and signal the app). Records an event for the latter.
    pub(super) fn runs_in_place(&mut self, release: &Release, now: Millis) -> bool {
        if release.number <= 1 || release.diff.is_empty() {
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
            self.emit(
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
