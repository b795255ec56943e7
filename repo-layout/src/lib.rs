//! `vt-repo`: the desired-state repository.
//!
//! Schema v1 types ([`schema`]), loading from a working tree or any git commit
//! ([`Snapshot`], [`load()`]), validation with file:line diagnostics
//! ([`Diagnostic`]), the effective spec of each env ([`EffectiveSpec`]),
//! semantic diff of two states ([`diff()`]) and creation of new resources
//! ([`write`]). It does no network IO and knows nothing of the controller.

pub mod diagnostic;
pub mod diff;
pub mod effective;
pub mod ids;
pub mod load;
mod parse;
pub mod quantity;
pub mod schema;
pub mod schema_json;
pub mod secrets;
pub mod source;
pub mod state;
pub mod validate;
pub mod write;
mod yaml_pos;
mod yaml_value;

pub use diagnostic::{Code, Diagnostic, Position};
pub use diff::{diff, diff_values, Change, FieldChange, ResourceDiff};
pub use effective::{EffectiveSecret, EffectiveSpec};
pub use ids::Kind;
pub use load::{load, Loaded};
pub use quantity::{ByteSize, Cpu, Duration};
pub use source::{Snapshot, SourceError};
pub use state::{App, DesiredState, Env, EnvSecrets, Org, Project, ResourceRef};
