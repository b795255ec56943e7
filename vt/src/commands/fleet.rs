//! `vt fleet init|run|token create` and `vt host run`: the daemons' entry points.

use crate::cli::Global;
use crate::error::{chain, CliError, Exit};
use crate::output;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};
use vt_fleet::controller::{daemon, setup};
use vt_fleet::host::agent::{self, AgentOptions};
use vt_fleet::host::sim_runtime::SimRuntime;
use vt_fleet::wire::messages::HostRegistration;
use vt_fleet::wire::{Enroller, Role};

fn setup_error(e: setup::SetupError) -> CliError {
    let exit = match e {
        setup::SetupError::Exists(_) => Exit::Conflict,
        setup::SetupError::NoFleet(_) => Exit::NotFound,
        _ => Exit::Failure,
    };
    CliError::new(exit, "E_FLEET_STATE", chain(&e))
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Runtime::new().map_err(|e| {
        CliError::new(
            Exit::Failure,
            "E_IO",
            format!("cannot start the async runtime: {e}"),
        )
    })
}

async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

/// What `vt fleet init` reports.
#[derive(Serialize)]
struct Initialized {
    state_dir: String,
    repo: String,
    branch: String,
    quic: SocketAddr,
    controller: String,
    token: String,
}

/// `vt fleet init`.
pub fn init(
    global: &Global,
    state_dir: &Path,
    repo: &str,
    branch: &str,
    quic: SocketAddr,
    http: SocketAddr,
) -> Result<(), CliError> {
    let settings = setup::init(state_dir, repo, branch, quic, http).map_err(setup_error)?;
    let done = Initialized {
        state_dir: state_dir.display().to_string(),
        repo: settings.repo.clone(),
        branch: settings.branch.clone(),
        quic: settings.quic,
        controller: format!("http://{}", settings.http),
        token: settings.api_token.clone(),
    };
    output::print(global.output, &done, |s| {
        format!(
            "{} fleet in {} tracking {} ({})\nstart it:        vt fleet run --state-dir {}\njoin a host:     vt fleet token create --role host --state-dir {}\nuse the CLI:     export VT_CONTROLLER={} VT_TOKEN={}\n",
            s.green("created"),
            done.state_dir,
            done.repo,
            done.branch,
            done.state_dir,
            done.state_dir,
            done.controller,
            done.token
        )
    });
    Ok(())
}

/// `vt fleet run`.
pub fn run(state_dir: &Path, overrides: daemon::Overrides) -> Result<(), CliError> {
    runtime()?
        .block_on(daemon::run(state_dir, overrides, ctrl_c()))
        .map_err(|e| {
            let exit = match e {
                daemon::DaemonError::Setup(setup::SetupError::NoFleet(_)) => Exit::NotFound,
                _ => Exit::Failure,
            };
            CliError::new(exit, "E_CONTROLLER", chain(&e))
        })
}

/// What `vt fleet token create` prints.
#[derive(Serialize)]
struct JoinToken {
    role: String,
    expires_in: String,
    token: String,
}

/// `vt fleet token create --role host|edge`.
pub fn token(global: &Global, state_dir: &Path, role: &str, ttl: &str) -> Result<(), CliError> {
    let role = match role {
        "host" => Role::Host,
        "edge" => Role::Edge,
        other => {
            return Err(CliError::new(
                Exit::Usage,
                "E_USAGE",
                format!("`{other}` is not a role that can join"),
            )
            .hint("use --role host or --role edge"))
        }
    };
    let ttl_ms = vt_repo::Duration::parse(ttl)
        .map_err(|e| CliError::new(Exit::Usage, "E_USAGE", format!("--ttl: {e}")))?;
    let keys = setup::load_keys(state_dir).map_err(setup_error)?;
    let enroller = Enroller::new(keys.ca, keys.secret, Duration::from_secs(365 * 24 * 3600));
    let token = enroller
        .mint(role, ttl_ms.as_std(), SystemTime::now())
        .map_err(|e| CliError::new(Exit::Failure, "E_TOKEN", chain(&e)))?;
    let out = JoinToken {
        role: role.to_string(),
        expires_in: ttl_ms.to_string(),
        token: token.as_str().to_string(),
    };
    output::print(global.output, &out, |_| format!("{}\n", out.token));
    Ok(())
}

/// `vt host run`.
pub fn host(
    controller: SocketAddr,
    token: Option<String>,
    registration: HostRegistration,
    state_dir: &Path,
    runtime_name: &str,
    boot: &str,
) -> Result<(), CliError> {
    let boot = vt_repo::Duration::parse(boot)
        .map_err(|e| CliError::new(Exit::Usage, "E_USAGE", format!("--sim-boot: {e}")))?;
    let rt: Box<dyn vt_fleet::host::Runtime> = match runtime_name {
        "sim" => Box::new(SimRuntime::new(boot.0, 100)),
        other => {
            return Err(CliError::new(
                Exit::Usage,
                "E_USAGE",
                format!("runtime `{other}` is not available"),
            )
            .hint("use --runtime sim (the microVM runtime is not built yet)"))
        }
    };
    let opts = AgentOptions {
        controller,
        token,
        registration,
        state_dir: state_dir.to_path_buf(),
    };
    runtime()?
        .block_on(agent::run(opts, rt, ctrl_c()))
        .map_err(|e| CliError::new(Exit::Failure, "E_HOST", chain(&e)))
}

/// The registration of `vt host run` from its flags.
pub fn registration(
    name: &str,
    region: &str,
    cpu: &str,
    memory: &str,
) -> Result<HostRegistration, CliError> {
    let usage =
        |flag: &str, e: String| CliError::new(Exit::Usage, "E_USAGE", format!("--{flag}: {e}"));
    vt_fleet::wire::validate_name(name).map_err(|e| usage("name", e.to_string()))?;
    Ok(HostRegistration {
        name: name.to_string(),
        region: region.to_string(),
        cpu: vt_repo::Cpu::parse(cpu).map_err(|e| usage("cpu", e))?.0,
        memory: vt_repo::ByteSize::parse(memory)
            .map_err(|e| usage("memory", e))?
            .0,
    })
}
