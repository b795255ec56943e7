//! `vt init`.

use crate::cli::Global;
use crate::error::{CliError, ErrorCode, Exit};
use crate::output;
use crate::templates;
use std::path::Path;

/// Creates a desired-state repository in `dir`, empty or from `template`.
pub fn run(global: &Global, dir: Option<&Path>, template: Option<&str>) -> Result<(), CliError> {
    let dir = dir.unwrap_or(Path::new("."));
    let done = match template {
        None => vt_repo::write::init(dir)?,
        Some(name) => {
            let template = templates::find(name).ok_or_else(|| {
                let known: Vec<String> = templates::ALL
                    .iter()
                    .map(|t| format!("{} ({})", t.name, t.about))
                    .collect();
                CliError::new(
                    Exit::Usage,
                    ErrorCode::Usage,
                    format!("there is no template `{name}`"),
                )
                .hint(format!("use one of: {}", known.join("; ")))
            })?;
            vt_repo::write::init_from_template(dir, template.name, template.files)?
        }
    };
    let next = if template.is_some() {
        "vt dev"
    } else {
        "vt org create NAME"
    };
    output::print(global.output, &done, |s| {
        format!(
            "{} desired-state repository in {} (commit {})\nnext: {}\n",
            s.green("initialized"),
            done.root,
            &done.commit[..12],
            s.bold(next),
        )
    });
    Ok(())
}
