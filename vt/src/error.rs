//! The CLI's error type: a stable code, a message, a hint, the exit code, and
//! for validation failures every diagnostic.

use serde::Serialize;
use vt_repo::Diagnostic;
pub use vt_wire::codes::ErrorCode;

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
    pub code: ErrorCode,
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
    pub fn new(exit: Exit, code: ErrorCode, message: impl Into<String>) -> Self {
        CliError {
            code,
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
            ErrorCode::Validation,
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

impl CliError {
    /// A command line clap refused (`E_USAGE`, exit 2): clap's message
    /// (without "error: " or colours) and, as the hint, its tips, the usage
    /// of `command` (the subcommand the words name, built) and where to read
    /// more.
    pub fn usage(error: &clap::Error, command: &clap::Command) -> Self {
        let rendered = error.render().to_string();
        let mut message = Vec::new();
        let mut tips = Vec::new();
        for line in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if line.starts_with("Usage:") {
                // The usage and what follows it (a help text's commands).
                break;
            } else if let Some(tip) = line.strip_prefix("tip:") {
                tips.push(tip.trim().to_string());
            } else if !line.starts_with("For more information") {
                message.push(
                    line.strip_prefix("error:")
                        .unwrap_or(line)
                        .trim()
                        .to_string(),
                );
            }
        }
        // A bare `vt org` prints its help on stderr: there is no message to
        // take (VT_OUTPUT counts as an argument, so it is a clap error then).
        let message = if error.kind()
            == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            || message.is_empty()
        {
            "a subcommand is required".to_string()
        } else {
            message.join(" ")
        };
        let name = command.get_bin_name().unwrap_or("vt");
        let mut hint = tips;
        hint.push(command.clone().render_usage().to_string());
        hint.push(format!("see `{name} --help`"));
        CliError::new(Exit::Usage, ErrorCode::Usage, message).hint(hint.join("; "))
    }
}

/// Joins an error with its `source()` chain: "cannot read x: permission denied".
pub use vt_wire::error_chain as chain;

impl From<vt_repo::SourceError> for CliError {
    fn from(e: vt_repo::SourceError) -> Self {
        use vt_repo::SourceError as S;
        let message = match &e {
            // git2's own message says the same with internal codes appended.
            S::NotARepo { .. } | S::NoSuchRevision { .. } => e.to_string(),
            _ => chain(&e),
        };
        match e {
            S::NotARepo { .. } => CliError::new(Exit::Failure, ErrorCode::NotARepo, message)
                .hint("run `vt init` or pass --repo"),
            S::NoSuchRevision { .. } => {
                CliError::new(Exit::NotFound, ErrorCode::NoSuchRevision, message)
                    .hint("list revisions with `git log --oneline`")
            }
            S::Io { .. } | S::Git(_) => CliError::new(Exit::Failure, ErrorCode::Io, message),
        }
    }
}

impl From<vt_repo::write::WriteError> for CliError {
    fn from(e: vt_repo::write::WriteError) -> Self {
        use vt_repo::write::WriteError as W;
        let message = chain(&e);
        match e {
            W::Exists(_) => CliError::new(Exit::Conflict, ErrorCode::Exists, message),
            W::InvalidName(_) => CliError::new(Exit::Usage, ErrorCode::InvalidName, message),
            W::NoParent { kind, .. } | W::NoParentYet(kind) => {
                CliError::new(Exit::NotFound, ErrorCode::NotFound, message).hint(format!(
                    "list them with `vt list {kind}`, create one with `vt {kind} create NAME`"
                ))
            }
            W::Ambiguous { kind, .. } => CliError::new(Exit::Usage, ErrorCode::Ambiguous, message)
                .hint(format!("pass --{kind} with one of them")),
            W::Io { .. } | W::Git(_) => CliError::new(Exit::Failure, ErrorCode::Io, message),
        }
    }
}
