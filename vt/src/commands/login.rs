//! `vt login URL --token T [--ca FILE]`: checks that the controller answers
//! over a verified connection and accepts the token, then saves what every
//! later command needs in `~/.config/vt/config.json` (private), with the CA
//! copied next to it.

use crate::cli::Global;
use crate::client::{config_file, Client, ConfigFile};
use crate::error::{CliError, ErrorCode, Exit};
use crate::output;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What `vt login` reports.
#[derive(Serialize)]
struct LoggedIn {
    controller: String,
    config: String,
    ca: Option<String>,
    workloads: usize,
}

fn io_error(what: &Path) -> impl Fn(std::io::Error) -> CliError + '_ {
    move |e| {
        CliError::new(
            Exit::Failure,
            ErrorCode::Io,
            format!("cannot write {}: {e}", what.display()),
        )
    }
}

/// Writes `content` to `path`, readable by the user only.
fn write_private(path: &Path, content: &[u8]) -> Result<(), CliError> {
    vt_wire::write_private(path, content)
        .map_err(|e| CliError::new(Exit::Failure, ErrorCode::Io, vt_wire::error_chain(&e)))
}

/// `vt login`.
pub fn run(global: &Global, url: &str, token: &str, ca: Option<&Path>) -> Result<(), CliError> {
    let client = Client::new(Some(url), Some(token), ca)?;
    let status: serde_json::Value = client.get("/v1/status", &[])?;
    let config = config_file().ok_or_else(|| {
        CliError::new(
            Exit::Failure,
            ErrorCode::Io,
            "no home directory to keep the config in",
        )
    })?;
    let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let kept_ca: Option<PathBuf> = match ca {
        Some(ca) => {
            let bytes = std::fs::read(ca).map_err(|e| {
                CliError::new(
                    Exit::Failure,
                    ErrorCode::Io,
                    format!("cannot read {}: {e}", ca.display()),
                )
            })?;
            let kept = dir.join("ca.pem");
            write_private(&kept, &bytes)?;
            Some(kept)
        }
        None => None,
    };
    let file = ConfigFile {
        controller: Some(url.trim_end_matches('/').to_string()),
        token: Some(token.to_string()),
        ca: kept_ca.clone(),
    };
    let text = serde_json::to_vec_pretty(&file)
        .map_err(|e| CliError::new(Exit::Failure, ErrorCode::Internal, e.to_string()))?;
    write_private(&config, &text)?;
    let done = LoggedIn {
        controller: url.to_string(),
        config: config.display().to_string(),
        ca: kept_ca.map(|p| p.display().to_string()),
        workloads: status["workloads"].as_array().map_or(0, Vec::len),
    };
    output::print(global.output, &done, |s| {
        format!(
            "{} to {} ({} workload(s) visible); saved in {}\n",
            s.green("logged in"),
            done.controller,
            done.workloads,
            done.config
        )
    });
    Ok(())
}
