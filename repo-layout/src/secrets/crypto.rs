//! age encryption of secret values: X25519 recipients (`age1...`) and
//! identities (`AGE-SECRET-KEY-1...`), ASCII-armored messages.
//!
//! The fleet's identities live in the controller's state directory in an
//! identity file (one `AGE-SECRET-KEY-1...` per line, `#` comments, the
//! format of `age-keygen`); a [`Keyring`] holds all of them, old and new,
//! and tries each when opening a value.

use super::{Sealed, SecretValue};
use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::secrecy::ExposeSecret;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Why a value could not be sealed or opened, or a key read. Never carries
/// a value.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A recipient that is not an `age1...` X25519 public key.
    #[error("`{recipient}` is not an age X25519 recipient (age1...): {reason}")]
    BadRecipient {
        /// The text given.
        recipient: String,
        /// Why it does not parse.
        reason: String,
    },
    /// Nothing to encrypt to.
    #[error("no recipients to encrypt to: vt.yaml has no `secrets.recipients`")]
    NoRecipients,
    /// Encryption failed.
    #[error("cannot encrypt: {0}")]
    Encrypt(String),
    /// No identity can open the value.
    #[error("none of the {0} fleet key(s) can decrypt it (encrypted to another key?)")]
    NoMatchingKey(usize),
    /// There is no identity at all.
    #[error("no identity to decrypt with")]
    NoIdentity,
    /// The value is not a valid age message, or was tampered with.
    #[error("it is not a valid age message: {0}")]
    Corrupt(String),
    /// A line of an identity file that is not an identity.
    #[error("{path}:{line}: not an age identity (AGE-SECRET-KEY-1...)")]
    BadIdentity {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
    /// An identity file that cannot be read or written.
    #[error("cannot use {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Parses an `age1...` recipient.
pub fn parse_recipient(text: &str) -> Result<age::x25519::Recipient, CryptoError> {
    age::x25519::Recipient::from_str(text.trim()).map_err(|reason| CryptoError::BadRecipient {
        recipient: text.to_string(),
        reason: reason.to_string(),
    })
}

/// Encrypts `value` to every recipient, as an ASCII-armored age message.
pub fn seal(value: &[u8], recipients: &[String]) -> Result<Sealed, CryptoError> {
    let parsed = recipients
        .iter()
        .map(|r| parse_recipient(r))
        .collect::<Result<Vec<_>, _>>()?;
    if parsed.is_empty() {
        return Err(CryptoError::NoRecipients);
    }
    let encryptor =
        age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| CryptoError::Encrypt(e.to_string()))?;
    let mut out = Vec::new();
    let fail = |e: std::io::Error| CryptoError::Encrypt(e.to_string());
    let armor = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).map_err(fail)?;
    let mut writer = encryptor.wrap_output(armor).map_err(fail)?;
    writer.write_all(value).map_err(fail)?;
    writer
        .finish()
        .and_then(|armor| armor.finish())
        .map_err(fail)?;
    String::from_utf8(out)
        .map(Sealed)
        .map_err(|e| CryptoError::Encrypt(e.to_string()))
}

/// The identities a controller (or `vt secrets validate --identity`) decrypts with.
#[derive(Default)]
pub struct Keyring {
    identities: Vec<age::x25519::Identity>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} identities)", self.identities.len())
    }
}

/// A newly generated key pair.
pub struct NewKey {
    /// The identity, as a line of an identity file.
    identity: age::x25519::Identity,
    /// Its public recipient (`age1...`).
    pub recipient: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NewKey({})", self.recipient)
    }
}

impl NewKey {
    /// A fresh X25519 key pair.
    pub fn generate() -> NewKey {
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public().to_string();
        NewKey {
            identity,
            recipient,
        }
    }

    /// Appends the identity to an identity file (created with mode 0600),
    /// with a comment naming its recipient and `created` (a timestamp).
    pub fn append_to(&self, path: &Path, created: &str) -> Result<(), CryptoError> {
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| CryptoError::Io {
            path: path.into(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let secret = self.identity.to_string();
        let text = format!(
            "# created: {created}\n# public key: {}\n{}\n",
            self.recipient,
            secret.expose_secret()
        );
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }
}

impl Keyring {
    /// Reads an identity file; a missing file is an empty keyring.
    pub fn load(path: &Path) -> Result<Keyring, CryptoError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Keyring::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Keyring::default()),
            Err(source) => Err(CryptoError::Io {
                path: path.into(),
                source,
            }),
        }
    }

    /// Parses the text of an identity file (`path` is for errors).
    pub fn parse(path: &Path, text: &str) -> Result<Keyring, CryptoError> {
        let mut identities = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let identity =
                age::x25519::Identity::from_str(line).map_err(|_| CryptoError::BadIdentity {
                    path: path.into(),
                    line: i + 1,
                })?;
            identities.push(identity);
        }
        Ok(Keyring { identities })
    }

    /// A keyring of one generated key (tests and `vt fleet init`).
    pub fn of(key: &NewKey) -> Keyring {
        Keyring {
            identities: vec![key.identity.clone()],
        }
    }

    /// How many identities it holds.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// The public recipients of its identities.
    pub fn recipients(&self) -> Vec<String> {
        self.identities
            .iter()
            .map(|i| i.to_public().to_string())
            .collect()
    }

    /// Decrypts a sealed value with whichever identity can.
    pub fn open(&self, sealed: &Sealed) -> Result<SecretValue, CryptoError> {
        if self.identities.is_empty() {
            return Err(CryptoError::NoIdentity);
        }
        let reader = ArmoredReader::new(sealed.0.trim_start().as_bytes());
        let decryptor =
            age::Decryptor::new(reader).map_err(|e| CryptoError::Corrupt(e.to_string()))?;
        let mut stream = decryptor
            .decrypt(self.identities.iter().map(|i| i as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => CryptoError::NoMatchingKey(self.len()),
                e => CryptoError::Corrupt(e.to_string()),
            })?;
        let mut out = Vec::new();
        stream
            .read_to_end(&mut out)
            .map_err(|e| CryptoError::Corrupt(e.to_string()))?;
        Ok(SecretValue::new(out))
    }
}
