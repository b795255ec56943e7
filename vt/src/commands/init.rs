//! `vt init`.

use crate::cli::Global;
use crate::error::CliError;
use crate::output;
use std::path::Path;

/// Creates a desired-state repository in `dir`.
pub fn run(global: &Global, dir: Option<&Path>) -> Result<(), CliError> {
    let dir = dir.unwrap_or(Path::new("."));
    let done = vt_repo::write::init(dir)?;
    output::print(global.output, &done, |s| {
        format!(
            "{} desired-state repository in {} (commit {})\nnext: {}\n",
            s.green("initialized"),
            done.root,
            &done.commit[..12],
            s.bold("vt org create NAME"),
        )
    });
    Ok(())
}
