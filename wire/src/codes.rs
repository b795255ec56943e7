//! The stable error codes (`E_...`) of the controller's API and the `vt`
//! command: one closed list, serialized as the same strings they always were.
//!
//! The API answers errors as `{"code": "E_...", "message": ..., "hint": ...}`
//! and the CLI prints `error[E_...]` or the same JSON; both take their code
//! from [`ErrorCode`]. A code this build does not know (a newer controller's)
//! parses as [`ErrorCode::Other`] and is printed back unchanged.
//!
//! The validation codes of `vt-repo`'s diagnostics (`E_SYNTAX`, `E_TYPE`, ...)
//! are `vt_repo::Code`; the few that a command also answers on its own
//! ([`ErrorCode::NoConfig`], [`ErrorCode::UnknownRegion`],
//! [`ErrorCode::InvalidName`]) are listed here too, with the same strings.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Declares [`ErrorCode`] with its strings, so a variant and its string are
/// written once.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $code:literal,)*) => {
        /// A stable error code of the API and the CLI (`E_...`).
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
            /// A code this build does not know (from a newer controller), kept as given.
            Other(String),
        }

        impl ErrorCode {
            /// Every known code, in declaration order.
            pub const KNOWN: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as printed and serialized (`E_NOT_FOUND`).
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                    ErrorCode::Other(code) => code,
                }
            }

            /// The code a string names; an unknown one is [`ErrorCode::Other`].
            pub fn parse(code: &str) -> ErrorCode {
                match code {
                    $($code => ErrorCode::$variant,)*
                    other => ErrorCode::Other(other.to_string()),
                }
            }
        }
    };
}

error_codes! {
    // Commands on the repository.
    /// The command line is wrong: a bad flag, value or combination (exit 2).
    Usage => "E_USAGE",
    /// Reading or writing a file failed.
    Io => "E_IO",
    /// A named resource (org, app, env, volume, instance, endpoint, release) does not exist.
    NotFound => "E_NOT_FOUND",
    /// A name matches several resources; a qualified name or a flag picks one.
    Ambiguous => "E_AMBIGUOUS",
    /// A resource or file to create exists already.
    Exists => "E_EXISTS",
    /// A name is not a DNS label (or not a valid secret name).
    InvalidName => "E_INVALID_NAME",
    /// The desired state does not validate; the diagnostics say why (exit 3).
    Validation => "E_VALIDATION",
    /// No `vt.yaml` here or in any parent directory.
    NoRepo => "E_NO_REPO",
    /// The directory is not a git repository.
    NotARepo => "E_NOT_A_REPO",
    /// A git revision does not exist.
    NoSuchRevision => "E_NO_SUCH_REVISION",
    /// `vt.yaml` is missing, or lacks what the command needs (regions).
    NoConfig => "E_NO_CONFIG",
    /// A region is not declared in `vt.yaml`.
    UnknownRegion => "E_UNKNOWN_REGION",
    /// Something went wrong inside vt itself (rendering, a bad webhook secret).
    Internal => "E_INTERNAL",

    // Secrets.
    /// An age key, a secret value or a secrets file cannot be used.
    Secret => "E_SECRET",
    /// `vt.yaml` names no recipient to encrypt secrets to.
    NoRecipient => "E_NO_RECIPIENT",
    /// No age identity to decrypt secrets with.
    NoIdentity => "E_NO_IDENTITY",

    // The fleet and its API.
    /// The controller cannot be reached (or its stream broke).
    Unreachable => "E_UNREACHABLE",
    /// The API token is missing or wrong.
    Unauthorized => "E_UNAUTHORIZED",
    /// The API token may not do this (its role lacks the capability).
    Forbidden => "E_FORBIDDEN",
    /// No controller address was given.
    NoController => "E_NO_CONTROLLER",
    /// The controller failed, or answered something unreadable.
    Controller => "E_CONTROLLER",
    /// The controller's state database failed.
    Store => "E_STORE",
    /// The fleet's state directory (CA, keys, settings) cannot be used.
    FleetState => "E_FLEET_STATE",
    /// A join token cannot be minted.
    Token => "E_TOKEN",
    /// The host agent cannot run here (missing qemu, guest or privileges).
    Host => "E_HOST",
    /// The edge cannot run.
    Edge => "E_EDGE",
    /// The host an instance runs on is not connected, or did not answer in time.
    HostUnreachable => "E_HOST_UNREACHABLE",
    /// A command in an instance could not run, or ended without an exit status.
    Exec => "E_EXEC",
    /// The local terminal cannot be used for an interactive exec.
    Terminal => "E_TERMINAL",
    /// A volume to destroy is attached to an instance.
    Attached => "E_ATTACHED",
    /// Destroying a volume needs `--yes`.
    Confirm => "E_CONFIRM",
    /// A webhook's signature does not match the shared secret.
    BadSignature => "E_BAD_SIGNATURE",

    // Deploy, rollback and diff.
    /// The local branch is behind its remote.
    Behind => "E_BEHIND",
    /// The remote rejected the push: it has commits the local branch lacks.
    PushRejected => "E_PUSH_REJECTED",
    /// The remote refused the push (permissions, protection rules).
    PushRefused => "E_PUSH_REFUSED",
    /// `HEAD` is detached: no branch to commit to.
    Detached => "E_DETACHED",
    /// The branch has no remote to push to.
    NoRemote => "E_NO_REMOTE",
    /// The branch does not exist on its remote.
    NoRemoteBranch => "E_NO_REMOTE_BRANCH",
    /// A git operation failed.
    Git => "E_GIT",
    /// A Git host refused the credentials (token, password or deploy key), or none were given.
    GitAuth => "E_GIT_AUTH",
    /// A Git host's TLS certificate cannot be verified (a private CA not given?).
    GitTls => "E_GIT_TLS",
    /// A Git host's SSH key is unknown or changed (known_hosts).
    GitHostKey => "E_GIT_HOST_KEY",
    /// An image cannot be resolved, built or pushed.
    Image => "E_IMAGE",
    /// A registry's TLS certificate cannot be verified (its CA not given to the host).
    ImageTls => "E_IMAGE_TLS",
    /// `--timeout` passed before the rollout finished (exit 6).
    Timeout => "E_TIMEOUT",
    /// The commit was rejected or its rollout halted (exit 7).
    RolloutFailed => "E_ROLLOUT_FAILED",
    /// The app has no release (to roll back to).
    NoRelease => "E_NO_RELEASE",
    /// A release's commit is not in the repository.
    NoCommit => "E_NO_COMMIT",
    /// A rollback commit cannot be made.
    Rollback => "E_ROLLBACK",
    /// The forge did not open the pull request, or its settings are incomplete.
    Forge => "E_FORGE",
    /// A topology file cannot be read.
    Topology => "E_TOPOLOGY",
    /// No `vt dev` state to plan against.
    NoDev => "E_NO_DEV",

    // vt dev.
    /// A part of the `vt dev` stack failed or did not come up.
    Dev => "E_DEV",
    /// `vt dev` is already running in this repository.
    DevRunning => "E_DEV_RUNNING",
    /// The address of `vt dev`'s registry is taken by another process.
    PortTaken => "E_PORT_TAKEN",
    /// `vt dev`'s registry cannot start.
    Registry => "E_REGISTRY",
    /// A signal stopped `vt dev` while it was starting.
    Interrupted => "E_INTERRUPTED",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorCode {
    type Err = std::convert::Infallible;

    fn from_str(code: &str) -> Result<ErrorCode, Self::Err> {
        Ok(ErrorCode::parse(code))
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ErrorCode, D::Error> {
        let code = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(ErrorCode::parse(&code))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_round_trips_through_its_string_and_json() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::KNOWN {
            let s = code.as_str();
            assert!(s.starts_with("E_"), "{s}");
            assert!(seen.insert(s), "{s} is declared twice");
            assert_eq!(&ErrorCode::parse(s), code);
            assert_eq!(code.to_string(), s);
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(&serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn unknown_codes_are_kept_as_given() {
        let code: ErrorCode = serde_json::from_str("\"E_FROM_THE_FUTURE\"").unwrap();
        assert_eq!(code, ErrorCode::Other("E_FROM_THE_FUTURE".into()));
        assert_eq!(code.as_str(), "E_FROM_THE_FUTURE");
        assert_eq!(
            serde_json::to_string(&code).unwrap(),
            "\"E_FROM_THE_FUTURE\""
        );
    }

    #[test]
    fn codes_compare_with_their_strings() {
        assert_eq!(ErrorCode::NotFound, "E_NOT_FOUND");
        assert_eq!("E_USAGE".parse::<ErrorCode>().unwrap(), ErrorCode::Usage);
    }
}
