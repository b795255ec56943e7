//! The changes `vt secrets` and `vt fleet rotate-key` make to the working
//! tree: set, unset and re-encrypt values in a [`SecretsFile`], write it
//! back (whole, atomically), and point `vt.yaml` at new fleet recipients.
//! Nothing here commits: the user reviews and commits, like any change.

use super::crypto::{seal, CryptoError, Keyring};
use super::{is_secret_name, SecretEntry, SecretValue, SecretsFile, FILE_VERSION};
use std::path::{Path, PathBuf};

/// Why an edit failed; the file was not changed.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The secret name is not valid.
    #[error("`{0}` is not a valid secret name: use letters, digits, `_`, `-` and `.`, starting with a letter or digit")]
    InvalidName(String),
    /// The value is empty.
    #[error("the value of secret `{0}` is empty")]
    Empty(String),
    /// No such secret.
    #[error("there is no secret `{name}` in {file}")]
    NotFound {
        /// Secret name.
        name: String,
        /// The secrets file.
        file: String,
    },
    /// Encryption or decryption failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A secret could not be re-encrypted.
    #[error("cannot re-encrypt secret `{name}` of {file}")]
    Reseal {
        /// Secret name.
        name: String,
        /// The secrets file.
        file: String,
        /// Why.
        #[source]
        source: CryptoError,
    },
    /// The file could not be written.
    #[error("cannot write {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Who changed a secret and when, recorded in clear beside it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamp {
    /// `Name <email>`.
    pub by: Option<String>,
    /// RFC 3339 time.
    pub at: Option<String>,
}

/// Everyone a file's values are encrypted to: the fleet's recipients, then
/// the file's team recipients.
pub fn recipients_of(fleet: &[String], file: &SecretsFile) -> Vec<String> {
    let mut all: Vec<String> = fleet.to_vec();
    for r in &file.recipients {
        if !all.contains(r) {
            all.push(r.clone());
        }
    }
    all
}

/// Sets `name` to `value` as its next version (1 for a new secret) and
/// returns that version.
pub fn set(
    file: &mut SecretsFile,
    name: &str,
    value: &SecretValue,
    fleet: &[String],
    stamp: &Stamp,
) -> Result<u64, EditError> {
    if !is_secret_name(name) {
        return Err(EditError::InvalidName(name.into()));
    }
    if value.is_empty() {
        return Err(EditError::Empty(name.into()));
    }
    let sealed = seal(value.expose(), &recipients_of(fleet, file))?;
    file.version.get_or_insert(FILE_VERSION);
    let entry = match file.secrets.iter_mut().find(|s| s.name == name) {
        Some(entry) => {
            entry.version += 1;
            entry
        }
        None => {
            file.secrets.push(SecretEntry {
                name: name.into(),
                version: 1,
                updated_by: None,
                updated_at: None,
                description: None,
                value: super::Sealed::default(),
            });
            file.secrets.sort_by(|a, b| a.name.cmp(&b.name));
            file.secrets
                .iter_mut()
                .find(|s| s.name == name)
                .ok_or_else(|| EditError::InvalidName(name.into()))?
        }
    };
    entry.value = sealed;
    entry.updated_by = stamp.by.clone();
    entry.updated_at = stamp.at.clone();
    Ok(entry.version)
}

/// Removes `name`; returns the version it had.
pub fn unset(file: &mut SecretsFile, name: &str, path: &str) -> Result<u64, EditError> {
    let i = file
        .secrets
        .iter()
        .position(|s| s.name == name)
        .ok_or_else(|| EditError::NotFound {
            name: name.into(),
            file: path.into(),
        })?;
    Ok(file.secrets.remove(i).version)
}

/// Re-encrypts every value of a file to `fleet` plus its team recipients,
/// keeping names, versions and stamps (a key rotation changes no secret).
pub fn reseal_all(
    file: &mut SecretsFile,
    path: &str,
    keyring: &Keyring,
    fleet: &[String],
) -> Result<usize, EditError> {
    let recipients = recipients_of(fleet, file);
    let mut resealed = Vec::with_capacity(file.secrets.len());
    for s in &file.secrets {
        let wrap = |source| EditError::Reseal {
            name: s.name.clone(),
            file: path.into(),
            source,
        };
        let value = keyring.open(&s.value).map_err(wrap)?;
        resealed.push(seal(value.expose(), &recipients).map_err(wrap)?);
    }
    let n = resealed.len();
    for (s, sealed) in file.secrets.iter_mut().zip(resealed) {
        s.value = sealed;
    }
    Ok(n)
}

/// The text of a secrets file, with a header saying what it is.
pub fn to_text(file: &SecretsFile, env: &str) -> String {
    let body = serde_yaml::to_string(file)
        .unwrap_or_else(|e| unreachable!("secrets files serialize: {e}"));
    format!(
        "# Secrets of {env}: names and versions in clear, values encrypted with age\n\
         # to the fleet's recipients (vt.yaml) and the recipients below.\n\
         # Change with `vt secrets set|unset|rotate`, then commit.\n{body}"
    )
}

/// Writes `text` to `root/rel` atomically (a temporary file, then a rename).
pub fn write_file(root: &Path, rel: &str, text: &str) -> Result<(), EditError> {
    let path = root.join(rel);
    let io = |source| EditError::Io {
        path: path.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// `vt.yaml`'s text with its `secrets:` section replaced by one naming
/// `recipients` (appended when there is none). Everything else, comments
/// included, stays as it was (a leading byte order mark too).
pub fn set_config_recipients(text: &str, recipients: &[String]) -> String {
    let (bom, text) = crate::parse::split_bom(text);
    let mut out = Vec::new();
    let mut skipping = false;
    for line in text.lines() {
        let top_level = !line.starts_with([' ', '\t']) && !line.trim().is_empty();
        if top_level && !line.starts_with('#') {
            skipping = line
                .strip_prefix("secrets")
                .is_some_and(|rest| rest.trim_start().starts_with(':'));
        }
        if !skipping {
            out.push(line);
        }
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    let mut text = format!("{bom}{}", out.join("\n"));
    if !out.is_empty() {
        text.push('\n');
    }
    text.push_str("secrets:\n  recipients:\n");
    for r in recipients {
        text.push_str(&format!("    - {r}\n"));
    }
    text
}

/// A random value of `len` letters and digits (for `vt secrets rotate --generate`).
pub fn generate(len: usize) -> Result<SecretValue, EditError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = Vec::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(|e| EditError::Io {
            path: PathBuf::from("/dev/urandom"),
            source: std::io::Error::other(e.to_string()),
        })?;
        // Rejection sampling keeps every character equally likely.
        for b in buf {
            if out.len() < len && usize::from(b) < 62 * 4 {
                out.push(ALPHABET[usize::from(b) % 62]);
            }
        }
    }
    Ok(SecretValue::new(out))
}

/// Unix seconds as RFC 3339 UTC (`2026-01-31T12:00:00Z`).
pub fn rfc3339(unix: u64) -> String {
    let at = i64::try_from(unix)
        .ok()
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
