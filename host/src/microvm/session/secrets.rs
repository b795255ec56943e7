//! The secret files of one VM: what the guest was given, what it should
//! have, and the frames that bring it up to date.

use tracing::info;
use vt_init::protocol::{HostToGuest, SecretFile};
use vt_repo::effective::EffectiveSecret;
use vt_wire::messages::DeliveredSecret;

/// The delivered secrets of a VM.
#[derive(Debug)]
pub(super) struct Secrets {
    /// The assignment's secrets, for their `on_change: signal`.
    specs: Vec<EffectiveSecret>,
    /// The files the guest has (or gets in its setup).
    delivered: Vec<DeliveredSecret>,
    /// Newer files that wait for the app to start.
    deferred: Option<Vec<DeliveredSecret>>,
}

impl Secrets {
    /// The secrets of an assignment, with the files delivered so far.
    pub(super) fn new(specs: Vec<EffectiveSecret>, delivered: Vec<DeliveredSecret>) -> Self {
        Secrets {
            specs,
            delivered,
            deferred: None,
        }
    }

    /// Newer files before the setup: the setup will carry them.
    pub(super) fn replace(&mut self, new: Vec<DeliveredSecret>) {
        self.delivered = new;
    }

    /// Newer files after the setup, before the app started: they go to the
    /// guest once it has.
    pub(super) fn defer(&mut self, new: Vec<DeliveredSecret>) {
        self.deferred = Some(new);
    }

    /// The files for the setup.
    pub(super) fn for_setup(&self, uid: u32, gid: u32) -> Vec<SecretFile> {
        secret_files(&self.delivered, uid, gid)
    }

    /// The update for files deferred until the app started, if any.
    pub(super) fn take_deferred(&mut self, uid: u32, gid: u32) -> Option<HostToGuest> {
        let new = self.deferred.take()?;
        Some(self.update(new, uid, gid))
    }

    /// The frame that gives the running guest the files of `new` that
    /// changed, and its app their signals.
    pub(super) fn update(&mut self, new: Vec<DeliveredSecret>, uid: u32, gid: u32) -> HostToGuest {
        let (changed, signals) = secret_update(&self.specs, &self.delivered, &new);
        let names: Vec<String> = changed
            .iter()
            .map(|s| format!("{} v{}", s.name, s.version))
            .collect();
        info!(secrets = ?names, ?signals, "updating secret files in the guest");
        self.delivered = new;
        HostToGuest::UpdateSecrets {
            secrets: secret_files(&changed, uid, gid),
            signals,
        }
    }
}

/// The guest's secret files for the delivered secrets: read-only for the
/// app's user, in memory (the guest puts them on a tmpfs).
fn secret_files(secrets: &[DeliveredSecret], uid: u32, gid: u32) -> Vec<SecretFile> {
    secrets
        .iter()
        .map(|s| SecretFile {
            path: s.path.clone(),
            content_b64: s.content.clone(),
            mode: 0o400,
            uid,
            gid,
        })
        .collect()
}

/// The files of `new` that differ from `old`, and the signals their
/// secrets' `on_change: signal` asks for (each once, in spec order).
fn secret_update(
    specs: &[EffectiveSecret],
    old: &[DeliveredSecret],
    new: &[DeliveredSecret],
) -> (Vec<DeliveredSecret>, Vec<i32>) {
    let changed: Vec<DeliveredSecret> = new.iter().filter(|s| !old.contains(s)).cloned().collect();
    let mut signals = Vec::new();
    for secret in specs {
        if changed.iter().any(|c| c.name == secret.name) {
            if let Some(signal) = secret.signal_number() {
                if !signals.contains(&signal) {
                    signals.push(signal);
                }
            }
        }
    }
    (changed, signals)
}
