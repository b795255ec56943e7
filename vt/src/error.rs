//! The CLI's error type: a stable code, a message, a hint, the exit code, and
//! for validation failures every diagnostic.

use serde::Serialize;
use vt_repo::Diagnostic;

/// Documented exit codes of failures (README, "Exit codes"); success is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Something failed (IO, git, ...).
    Failure = 1,
    /// Bad command line (clap's own code).
    Usage = 2,
    /// The desired state does not validate.
    Invalid = 3,
    /// A named resource or revision does not exist.
    NotFound = 4,
    /// A resource or file to create exists already.
    Conflict = 5,
    /// `--timeout` passed before the rollout finished.
    TimedOut = 6,
    /// The change was pushed but was rejected by the controller or its rollout failed.
    RolloutFailed = 7,
}

/// A failed command, rendered as text on stderr or as JSON on stdout.
#[derive(Debug, Serialize)]
pub struct CliError {
    /// Stable error code (`E_...`).
    pub code: String,
    /// What went wrong, with its causes.
    pub message: String,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Validation diagnostics, when the error is a failed validation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Diagnostic>,
    /// Process exit code.
    #[serde(skip)]
    pub exit: Exit,
}

impl CliError {
    /// A new error.
    pub fn new(exit: Exit, code: impl Into<String>, message: impl Into<String>) -> Self {
        CliError {
            code: code.into(),
            message: message.into(),
            hint: None,
            errors: Vec::new(),
            exit,
        }
    }

    /// Sets the hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A failed validation carrying every diagnostic.
    pub fn invalid(diagnostics: Vec<Diagnostic>) -> Self {
        let n = diagnostics.len();
        let mut e = CliError::new(
            Exit::Invalid,
            "E_VALIDATION",
            format!(
                "the desired state has {n} error{}",
                if n == 1 { "" } else { "s" }
            ),
        )
        .hint("fix the errors above and run `vt validate` again");
        e.errors = diagnostics;
        e
    }
}

/// Joins an error with its `source()` chain: "cannot read x: permission denied".
pub use vt_fleet::controller::error_chain as chain;

impl From<vt_repo::SourceError> for CliError {
    fn from(e: vt_repo::SourceError) -> Self {
        use vt_repo::SourceError as S;
        let message = match &e {
            // git2's own message says the same with internal codes appended.
            S::NotARepo { .. } | S::NoSuchRevision { .. } => e.to_string(),
            _ => chain(&e),
        };
        match e {
            S::NotARepo { .. } => CliError::new(Exit::Failure, "E_NOT_A_REPO", message)
                .hint("run `vt init` or pass --repo"),
            S::NoSuchRevision { .. } => {
                CliError::new(Exit::NotFound, "E_NO_SUCH_REVISION", message)
                    .hint("list revisions with `git log --oneline`")
            }
            S::Io { .. } | S::Git(_) => CliError::new(Exit::Failure, "E_IO", message),
        }
    }
}

impl From<vt_repo::write::WriteError> for CliError {
    fn from(e: vt_repo::write::WriteError) -> Self {
        use vt_repo::write::WriteError as W;
        let message = chain(&e);
        match e {
            W::Exists(_) => CliError::new(Exit::Conflict, "E_EXISTS", message),
            W::InvalidName(_) => CliError::new(Exit::Usage, "E_INVALID_NAME", message),
            W::NoParent { kind, .. } | W::NoParentYet(kind) => {
                CliError::new(Exit::NotFound, "E_NOT_FOUND", message).hint(format!(
                    "list them with `vt list {kind}`, create one with `vt {kind} create NAME`"
                ))
            }
            W::Ambiguous { kind, .. } => CliError::new(Exit::Usage, "E_AMBIGUOUS", message)
                .hint(format!("pass --{kind} with one of them")),
            W::Io { .. } | W::Git(_) => CliError::new(Exit::Failure, "E_IO", message),
        }
    }
}
