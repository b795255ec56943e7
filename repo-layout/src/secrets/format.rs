//! The secrets file format (`envs/<env>.secrets.yaml`): its types, the
//! signals a change may send, value patterns and secret names. A leaf module:
//! the repository's state and its validation use these without depending on
//! the secrets checks, which depend on them.

use crate::effective::EffectiveSecret;
use crate::schema::OnChange;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Schema version of secrets files.
pub const FILE_VERSION: u32 = 1;

/// The first line of an armored age message.
pub const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";

/// `envs/<env>.secrets.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretsFile {
    /// Schema version of the file; `1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Team recipients (`age1...`) the values are encrypted to besides the fleet's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// The secrets.
    #[serde(default)]
    pub secrets: Vec<SecretEntry>,
}

/// One secret: metadata in clear, the value sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretEntry {
    /// Name, referenced by `secrets[].name` in app and env files.
    pub name: String,
    /// Version, 1 and up; every new value gets the next one.
    pub version: u64,
    /// Who set this version (`Name <email>`, from git's configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    /// When this version was set (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The value: an ASCII-armored age message.
    pub value: Sealed,
}

/// A sealed (age-encrypted, ASCII-armored) value.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Sealed(pub String);

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

/// A secret's clear value. Its `Debug` never shows the bytes, and it has no
/// `Display` nor `Serialize`: the value reaches only what asks for it by
/// [`SecretValue::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    /// Wraps clear bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretValue(bytes)
    }

    /// The clear bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Takes the clear bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(<redacted, {} bytes>)", self.0.len())
    }
}

/// Signals a secret change may send, by name (Linux x86_64 numbers).
pub const SIGNALS: [(&str, i32); 7] = [
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGUSR1", 10),
    ("SIGUSR2", 12),
    ("SIGTERM", 15),
    ("SIGWINCH", 28),
];

/// The signal sent with `on_change: signal` when none is named.
pub const DEFAULT_SIGNAL: &str = "SIGHUP";

/// The number of a signal named `SIGHUP` or `HUP` (case-insensitive).
pub fn signal_number(name: &str) -> Option<i32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    SIGNALS.iter().find(|(n, _)| *n == full).map(|(_, s)| *s)
}

impl EffectiveSecret {
    /// The signal a change of this secret sends, for `on_change: signal`.
    pub fn signal_number(&self) -> Option<i32> {
        (self.on_change == OnChange::Signal)
            .then(|| signal_number(self.signal.as_deref().unwrap_or(DEFAULT_SIGNAL)))
            .flatten()
    }
}

/// Compiles a declared pattern, anchored: the whole value must match.
pub fn compile_pattern(pattern: &str) -> Result<regex::bytes::Regex, regex::Error> {
    regex::bytes::Regex::new(&format!("^(?:{pattern})$"))
}

/// Whether `name` may name a secret: 1–253 of letters, digits, `_`, `-`, `.`,
/// starting with a letter or digit.
pub fn is_secret_name(name: &str) -> bool {
    name.len() <= 253
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl SecretsFile {
    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&SecretEntry> {
        self.secrets.iter().find(|s| s.name == name)
    }
}
