//! `vt schema [KIND]`: JSON Schema for editors.

use crate::cli::{Global, Output};
use crate::error::{CliError, ErrorCode, Exit};
use crate::output;
use serde_json::{Map, Value};
use vt_repo::schema_json::{schema, KINDS};

/// Prints the schema of one file kind, or of all as an object keyed by kind.
pub fn run(global: &Global, kind: Option<&str>) -> Result<(), CliError> {
    let value = match kind {
        Some(kind) => schema(kind).ok_or_else(|| {
            CliError::new(
                Exit::Usage,
                ErrorCode::Usage,
                format!("no schema for `{kind}`"),
            )
            .hint(format!("use one of: {}", KINDS.join(", ")))
        })?,
        None => Value::Object(
            KINDS
                .iter()
                .filter_map(|k| Some((k.to_string(), schema(k)?)))
                .collect::<Map<_, _>>(),
        ),
    };
    // A schema is data: text output is JSON too.
    let format = if global.output == Output::Yaml {
        Output::Yaml
    } else {
        Output::Json
    };
    print!("{}", output::structured(format, &value));
    Ok(())
}
