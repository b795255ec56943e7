//! The fleet's age identities in the state directory. With them the daemon
//! checks every commit before it is applied (each referenced secret decrypts,
//! is not empty and matches its format: `Shared::check_secrets`) and the
//! session layer opens the sealed values of what a host should run just
//! before sending its assignments (`Shared::deliver_secrets`), so clear
//! values exist only in memory and on the mutual-TLS session, never in the
//! records.

use std::path::{Path, PathBuf};
use vt_repo::secrets::{CryptoError, Keyring};

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
