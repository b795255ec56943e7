//! The one place that sets up `tracing`. `VT_LOG` takes an env-filter
//! directive (`VT_LOG=debug`, `VT_LOG=vt_repo=trace`); the default is `warn`.
//! Logs go to stderr so they never mix with command output.

/// Installs the global subscriber.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr)
        .init();
}
