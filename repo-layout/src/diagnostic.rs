//! Diagnostics: what validation found wrong, and where.
//!
//! Validation never stops at the first problem: every loader and check returns
//! the diagnostics it found, each with a stable [`Code`], the file, line and
//! column, the field path inside the file and a hint.

use serde::Serialize;
use std::fmt;

/// A stable, machine-readable error class. The string form (`E_...`) is part of
/// the CLI's JSON output and must not change once published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "&'static str")]
pub enum Code {
    /// The file is not valid YAML.
    Syntax,
    /// A mapping sets the same key twice (the first is used, the duplicate is reported).
    DuplicateKey,
    /// A field has the wrong type (a string where a number belongs, ...).
    Type,
    /// A field the schema does not know.
    UnknownField,
    /// A required field is absent.
    MissingField,
    /// A size, cpu amount, duration or count that does not parse or is out of range.
    Quantity,
    /// A field whose value is not allowed (bad image reference, relative path, ...).
    InvalidValue,
    /// A name that is not a DNS label.
    InvalidName,
    /// A resource has no `id`.
    MissingId,
    /// An `id` with the wrong prefix or shape.
    InvalidId,
    /// Two resources share an `id`.
    DuplicateId,
    /// Two items of one list share a name.
    DuplicateName,
    /// A reference that resolves to nothing (env without app, endpoint to unknown port, ...).
    DanglingReference,
    /// A region that `vt.yaml` does not declare.
    UnknownRegion,
    /// An organisation's quota is exceeded.
    QuotaExceeded,
    /// A total computed from several quantities (memory × instances × regions,
    /// summed over an org's envs; cpu and volume sizes likewise) does not fit
    /// in 64 bits.
    QuantityOverflow,
    /// The repository has no `vt.yaml`.
    NoConfig,
    /// A file in a place the layout does not define.
    UnexpectedFile,
    /// The schema version in `vt.yaml` is not supported.
    UnsupportedVersion,
    /// A manifest references a secret its env's secrets file does not have.
    MissingSecret,
    /// A secret's value does not decrypt with the fleet's keys.
    SecretUndecryptable,
    /// A secret's value is empty or does not match its declared format.
    SecretFormat,
}

impl Code {
    /// The stable string form, e.g. `E_UNKNOWN_FIELD`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "E_SYNTAX",
            Code::DuplicateKey => "E_DUPLICATE_KEY",
            Code::Type => "E_TYPE",
            Code::UnknownField => "E_UNKNOWN_FIELD",
            Code::MissingField => "E_MISSING_FIELD",
            Code::Quantity => "E_QUANTITY",
            Code::InvalidValue => "E_INVALID_VALUE",
            Code::InvalidName => "E_INVALID_NAME",
            Code::MissingId => "E_MISSING_ID",
            Code::InvalidId => "E_INVALID_ID",
            Code::DuplicateId => "E_DUPLICATE_ID",
            Code::DuplicateName => "E_DUPLICATE_NAME",
            Code::DanglingReference => "E_DANGLING_REFERENCE",
            Code::UnknownRegion => "E_UNKNOWN_REGION",
            Code::QuotaExceeded => "E_QUOTA_EXCEEDED",
            Code::QuantityOverflow => "E_QUANTITY_OVERFLOW",
            Code::NoConfig => "E_NO_CONFIG",
            Code::UnexpectedFile => "E_UNEXPECTED_FILE",
            Code::UnsupportedVersion => "E_UNSUPPORTED_VERSION",
            Code::MissingSecret => "E_MISSING_SECRET",
            Code::SecretUndecryptable => "E_SECRET_UNDECRYPTABLE",
            Code::SecretFormat => "E_SECRET_FORMAT",
        }
    }
}

impl From<Code> for &'static str {
    fn from(code: Code) -> Self {
        code.as_str()
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found in the desired-state repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Stable error class.
    pub code: Code,
    /// What is wrong, as a sentence.
    pub message: String,
    /// Path of the file relative to the repository root (`orgs/acme/org.yaml`).
    pub file: String,
    /// 1-based line, 0 when the problem concerns the file as a whole.
    pub line: usize,
    /// 1-based column, 0 when the problem concerns the file as a whole.
    pub column: usize,
    /// Field path inside the file (`health.interval`, `ports[1].port`), empty for the whole file.
    pub path: String,
    /// How to fix it, when there is something useful to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic about a whole file (line and column 0, no field path).
    pub fn file(code: Code, file: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            file: file.into(),
            line: 0,
            column: 0,
            path: String::new(),
            hint: None,
        }
    }

    /// Sets the hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets the position and field path.
    pub fn at(mut self, pos: Position, path: impl Into<String>) -> Self {
        self.line = pos.line;
        self.column = pos.column;
        self.path = path.into();
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": {} {}", self.code, self.message)?;
        if !self.path.is_empty() {
            write!(f, " (at `{}`)", self.path)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// A 1-based line and column in a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// Sorts diagnostics by file, then position, then code, so output is stable.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        (&a.file, a.line, a.column, a.code.as_str(), &a.message).cmp(&(
            &b.file,
            b.line,
            b.column,
            b.code.as_str(),
            &b.message,
        ))
    });
}
