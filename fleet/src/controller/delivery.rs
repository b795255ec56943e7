//! Secrets on the controller's IO side: the fleet's age identities in the
//! state directory, the check every commit passes before it is applied (each
//! referenced secret decrypts, is not empty and matches its format), and
//! delivery: the session layer opens the sealed values of what a host should
//! run just before sending its assignments, so clear values exist only in
//! memory and on the mutual-TLS session, never in the records.

use crate::controller::daemon::Shared;
use std::path::{Path, PathBuf};
use tracing::{debug, warn};
use vt_repo::secrets::{self, CryptoError, Keyring};
use vt_repo::Loaded;
use vt_wire::messages::{Assignment, DeliveredSecret, Desire};

/// The fleet's age identity file in the state directory: every identity the
/// fleet ever had (a key rotation adds one), all tried when decrypting.
pub const IDENTITIES_FILE: &str = "age-identities.txt";

/// Where the identity file of a state directory is.
pub fn identities_path(state_dir: &Path) -> PathBuf {
    state_dir.join(IDENTITIES_FILE)
}

/// Loads the fleet's identities (none when the file does not exist).
pub fn load_keyring(state_dir: &Path) -> Result<Keyring, CryptoError> {
    Keyring::load(&identities_path(state_dir))
}

/// Re-reads the identity file (a `vt fleet rotate-key` may have added one),
/// then adds a diagnostic to `loaded` for every referenced secret that does
/// not decrypt or is not valid, so that the commit is rejected.
pub fn check_commit(shared: &Shared, loaded: &mut Loaded) {
    match load_keyring(&shared.state_dir) {
        Ok(keyring) => {
            *shared.keyring.write().unwrap_or_else(|p| p.into_inner()) = keyring;
        }
        Err(e) => {
            warn!(error = %vt_wire::error_chain(&e), "cannot read the fleet's identities; keeping the ones loaded")
        }
    }
    let keyring = shared.keyring.read().unwrap_or_else(|p| p.into_inner());
    let checked = secrets::check_values(loaded, &keyring);
    debug!(checked, "secrets checked");
}

/// Fills in the secret files of every `Run` assignment from the sealed values
/// of its release. A value that does not open is left out and logged (by
/// name): the commit check makes that rare (a key removed from the state
/// directory by hand).
pub fn deliver(shared: &Shared, assignments: &mut [Assignment]) {
    let wanted: Vec<usize> = assignments
        .iter()
        .enumerate()
        .filter(|(_, a)| a.desire == Desire::Run && !a.spec.secrets.is_empty())
        .map(|(i, _)| i)
        .collect();
    if wanted.is_empty() {
        return;
    }
    let sealed: Vec<_> = {
        let controller = shared.lock();
        wanted
            .iter()
            .map(|&i| controller.sealed_secrets(&assignments[i].key, assignments[i].release))
            .collect()
    };
    let keyring = shared.keyring.read().unwrap_or_else(|p| p.into_inner());
    for (&i, sealed) in wanted.iter().zip(sealed) {
        let a = &mut assignments[i];
        a.secrets = sealed
            .into_iter()
            .filter_map(|s| match keyring.open(&s.value) {
                Ok(value) => Some(DeliveredSecret {
                    name: s.name,
                    version: s.version,
                    path: s.path,
                    content: value.into_bytes().into(),
                }),
                Err(e) => {
                    warn!(app = %a.name, release = a.release, instance = %a.id, secret = %s.name, version = s.version, error = %e, "cannot decrypt a secret for an assignment");
                    None
                }
            })
            .collect();
    }
}
