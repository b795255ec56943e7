//! The host tools that hosts and edges both drive: iproute2 (`ip`) and
//! nftables. Shared here so that the edge needs nothing of the host agent.

use std::process::Command;

/// Networking failures.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// `ip` failed.
    #[error("`ip {args}` failed: {stderr}")]
    Ip {
        /// The arguments.
        args: String,
        /// What it said.
        stderr: String,
    },
    /// `ip` or `nft` could not run.
    #[error("cannot run `ip`/`nft` (install iproute2 and nftables)")]
    Missing(#[source] std::io::Error),
}

/// Runs `ip` with `args` (iproute2), its stderr in the error.
pub fn ip(args: &[&str]) -> Result<(), NetError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(NetError::Missing)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Ip {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}
