//! `vt fleet init|run|token create` and `vt host run`: the daemons' entry points.

use crate::cli::{AccelChoice, GitAccessArgs, Global, HostRuntime, JoinRole};
use crate::error::{chain, CliError, ErrorCode, Exit};
use crate::output;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};
use vt_fleet::controller::git_fetch::GitSetup;
use vt_fleet::controller::{daemon, setup};
use vt_host::agent::{self, AgentOptions};
use vt_host::image::{Auth, ImageStore};
use vt_host::microvm::artifacts::{self, GuestArtifacts};
use vt_host::microvm::instance::Context;
use vt_host::microvm::launch::Accel;
use vt_host::microvm::MicrovmRuntime;
use vt_host::sim_runtime::SimRuntime;
use vt_wire::messages::HostRegistration;
use vt_wire::{Binding, Enroller, Role};

pub(crate) fn setup_error(e: setup::SetupError) -> CliError {
    let exit = match e {
        setup::SetupError::Exists(_) => Exit::Conflict,
        setup::SetupError::NoFleet(_) => Exit::NotFound,
        _ => Exit::Failure,
    };
    CliError::new(exit, ErrorCode::FleetState, chain(&e))
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Runtime::new().map_err(|e| {
        CliError::new(
            Exit::Failure,
            ErrorCode::Io,
            format!("cannot start the async runtime: {e}"),
        )
    })
}

/// Set by `vt dev` for the daemons it starts: its pid.
pub(crate) const DEV_PARENT_ENV: &str = "VT_DEV_PARENT";

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, or, for a daemon `vt dev`
/// started, once that `vt dev` is gone (killed without stopping it).
pub(crate) async fn ctrl_c() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    let orphaned = async {
        let Some(parent) = std::env::var(DEV_PARENT_ENV)
            .ok()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            return std::future::pending().await;
        };
        while rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) == Some(parent) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tracing::warn!(
            parent,
            "the vt dev that started this daemon is gone: stopping"
        );
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
        () = orphaned => {}
    }
}

/// What `vt fleet init` reports.
#[derive(Serialize)]
struct Initialized {
    state_dir: String,
    repo: String,
    branch: String,
    quic: SocketAddr,
    /// The API's URL (HTTPS unless fleet.json says otherwise).
    controller: String,
    /// The fleet CA that signs the API's certificate (`vt login --ca`).
    ca: String,
    token: String,
    /// The fleet's age recipient for secrets.
    recipient: String,
    /// Whether it was written into the repository's vt.yaml.
    vt_yaml_updated: bool,
    /// The public half of the SSH key fetches present (an SSH repository):
    /// add it to the repository's deploy keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    deploy_key: Option<String>,
}

/// What `--git-*` names, read: the token file's content, not its path.
fn git_setup(args: &GitAccessArgs) -> Result<GitSetup, CliError> {
    let token = match &args.git_token_file {
        Some(file) => {
            let token = std::fs::read_to_string(file).map_err(|e| {
                CliError::new(
                    Exit::Failure,
                    ErrorCode::Io,
                    format!("cannot read the token file {}: {e}", file.display()),
                )
            })?;
            Some((args.git_username.clone(), token.trim().to_string()))
        }
        None => None,
    };
    Ok(GitSetup {
        ca: args.git_ca.clone(),
        token,
        ssh_key: args.git_ssh_key.clone(),
        known_hosts: args.git_known_hosts.clone(),
    })
}

/// `vt fleet init`.
pub fn init(
    global: &Global,
    state_dir: &Path,
    repo: &str,
    branch: &str,
    addresses: (SocketAddr, SocketAddr),
    git: &GitAccessArgs,
) -> Result<(), CliError> {
    let made =
        setup::init(state_dir, repo, branch, addresses, &git_setup(git)?).map_err(setup_error)?;
    let settings = made.settings;
    let (recipient, vt_yaml_updated) =
        crate::commands::secrets::publish_recipient(state_dir, &settings.repo)?;
    let done = Initialized {
        state_dir: state_dir.display().to_string(),
        repo: settings.repo.clone(),
        branch: settings.branch.clone(),
        quic: settings.quic,
        controller: format!("{}://{}", settings.api_tls.scheme(), settings.http),
        ca: state_dir.join(vt_wire::CA_CERT_FILE).display().to_string(),
        token: settings.api_token.clone(),
        recipient,
        vt_yaml_updated,
        deploy_key: made.deploy_key,
    };
    output::print(global.output, &done, |s| {
        let secrets = if done.vt_yaml_updated {
            format!(
                "secrets:         encrypted to {} (written to vt.yaml: commit it)\n",
                done.recipient
            )
        } else {
            format!("secrets:         encrypted to {} (add it to vt.yaml as `secrets: {{recipients: [{}]}}`)\n", done.recipient, done.recipient)
        };
        let secrets = match &done.deploy_key {
            Some(key) => format!("{secrets}deploy key:      {key}\n                 (add it to the repository's deploy keys, read-only)\n"),
            None => secrets,
        };
        format!(
            "{} fleet in {} tracking {} ({})\nstart it:        vt fleet run --state-dir {}\njoin a host:     vt fleet token create --role host --state-dir {}\nuse the CLI:     vt login {} --ca {} --token {}\n{secrets}",
            s.green("created"),
            done.state_dir,
            done.repo,
            done.branch,
            done.state_dir,
            done.state_dir,
            done.controller,
            done.ca,
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
            CliError::new(exit, ErrorCode::Controller, chain(&e))
        })
}

/// What `vt fleet token create` prints.
#[derive(Serialize)]
struct JoinToken {
    role: String,
    expires_in: String,
    /// The name it is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// The controller address it carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    controller: Option<SocketAddr>,
    token: String,
}

/// `vt fleet token create --role host|edge`.
pub fn token(
    global: &Global,
    state_dir: &Path,
    (role, ttl): (JoinRole, &str),
    name: Option<&str>,
    controller: Option<SocketAddr>,
) -> Result<(), CliError> {
    let role = match role {
        JoinRole::Host => Role::Host,
        JoinRole::Edge => Role::Edge,
    };
    let ttl_ms = vt_repo::Duration::parse(ttl)
        .map_err(|e| CliError::new(Exit::Usage, ErrorCode::Usage, format!("--ttl: {e}")))?;
    if let Some(name) = name {
        vt_wire::validate_name(name).map_err(|e| {
            CliError::new(Exit::Usage, ErrorCode::InvalidName, format!("--name: {e}"))
        })?;
    }
    // Where nodes dial: as given, else fleet.json's address if it is one.
    let controller = match controller {
        Some(addr) => Some(addr),
        None => Some(setup::load_settings(state_dir).map_err(setup_error)?.quic)
            .filter(|addr| !addr.ip().is_unspecified() && addr.port() != 0),
    };
    let binding = Binding {
        name: name.map(str::to_string),
        controller,
    };
    let out = JoinToken {
        role: role.to_string(),
        expires_in: ttl_ms.to_string(),
        name: binding.name.clone(),
        controller: binding.controller,
        token: mint_token(state_dir, role, ttl_ms.as_std(), &binding)?,
    };
    output::print(global.output, &out, |_| format!("{}\n", out.token));
    Ok(())
}

/// A single-use join token for `role`, valid for `ttl`, carrying `binding`,
/// from the fleet in `state_dir`.
pub(crate) fn mint_token(
    state_dir: &Path,
    role: Role,
    ttl: Duration,
    binding: &Binding,
) -> Result<String, CliError> {
    let keys = setup::load_keys(state_dir).map_err(setup_error)?;
    let enroller = Enroller::new(keys.ca, keys.secret, Duration::from_secs(365 * 24 * 3600));
    let token = enroller
        .mint(role, ttl, SystemTime::now(), binding)
        .map_err(|e| CliError::new(Exit::Failure, ErrorCode::Token, chain(&e)))?;
    Ok(token.as_str().to_string())
}

/// The controller address and name of `vt host run` / `vt edge run`: as
/// given, else what the join token carries (its controller, the name it is
/// bound to), else the default address; a name is needed.
pub(crate) fn node_target(
    controller: Option<SocketAddr>,
    name: Option<&str>,
    token: Option<&str>,
) -> Result<(SocketAddr, String), CliError> {
    let claims = token
        .map(vt_wire::Token::parse)
        .transpose()
        .map_err(|e| CliError::new(Exit::Usage, ErrorCode::Token, chain(&e)))?
        .map(|t| t.claims().clone());
    let controller = controller
        .or(claims.as_ref().and_then(|c| c.controller))
        .unwrap_or(DEFAULT_CONTROLLER);
    let name = name
        .map(str::to_string)
        .or(claims.and_then(|c| c.name))
        .ok_or_else(|| {
            CliError::new(Exit::Usage, ErrorCode::Usage, "no node name")
                .hint("pass --name NAME, or join with a token bound to a name (`vt fleet token create --name NAME`)")
        })?;
    Ok((controller, name))
}

/// Where a node dials when neither a flag nor its token says.
const DEFAULT_CONTROLLER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7443);

/// Options of `vt host run` that choose and tune the runtime.
pub struct RuntimeChoice<'a> {
    /// `microvm` or `sim`.
    pub name: HostRuntime,
    /// `auto`, `kvm` or `tcg` (microvm).
    pub accel: AccelChoice,
    /// Boot time of simulated instances (sim).
    pub sim_boot: &'a str,
    /// How long stopped instances keep their endpoint connections.
    pub drain_timeout: &'a str,
    /// A CA bundle registries are checked with, besides the system's roots.
    pub registry_ca: Option<&'a Path>,
}

/// The image store, checking registries against `registry_ca` too.
fn images(state_dir: &Path, registry_ca: Option<&Path>) -> Result<ImageStore, CliError> {
    let store = ImageStore::new(state_dir.join("images"));
    let Some(ca) = registry_ca else {
        return Ok(store);
    };
    // Refused now, not at the first pull: it must hold certificates.
    vt_wire::trust::read_bundle(ca).map_err(|e| {
        CliError::new(
            Exit::Usage,
            ErrorCode::Usage,
            format!("--registry-ca: {}", chain(&e)),
        )
    })?;
    let pem = std::fs::read(ca).map_err(|e| {
        CliError::new(
            Exit::Failure,
            ErrorCode::Io,
            format!("--registry-ca {}: {e}", ca.display()),
        )
    })?;
    Ok(store.with_registry_ca(pem))
}

fn accel(choice: AccelChoice, state_dir: &Path, qemu: &Path, guest: &GuestArtifacts) -> Accel {
    match choice {
        AccelChoice::Kvm => Accel::Kvm,
        AccelChoice::Tcg => Accel::Tcg,
        AccelChoice::Auto => match artifacts::probe(
            qemu,
            guest,
            Accel::Kvm,
            &state_dir.join("probe"),
            Duration::from_secs(10),
        ) {
            Ok(t) => {
                tracing::info!(
                    boot_ms = u64::try_from(t.as_millis()).unwrap_or(0),
                    "KVM boots a guest: using it"
                );
                Accel::Kvm
            }
            Err(why) => {
                tracing::info!(%why, "KVM cannot boot a guest here: using TCG");
                Accel::Tcg
            }
        },
    }
}

/// `vt host run`.
pub fn host(
    controller: SocketAddr,
    token: Option<String>,
    registration: HostRegistration,
    state_dir: &Path,
    choice: RuntimeChoice<'_>,
) -> Result<(), CliError> {
    let drain = vt_repo::Duration::parse(choice.drain_timeout).map_err(|e| {
        CliError::new(
            Exit::Usage,
            ErrorCode::Usage,
            format!("--drain-timeout: {e}"),
        )
    })?;
    let tokio = runtime()?;
    let rt: Box<dyn vt_host::Runtime> = match choice.name {
        HostRuntime::Sim => {
            let boot = vt_repo::Duration::parse(choice.sim_boot).map_err(|e| {
                CliError::new(Exit::Usage, ErrorCode::Usage, format!("--sim-boot: {e}"))
            })?;
            Box::new(SimRuntime::new(boot.0, 100))
        }
        HostRuntime::Microvm => {
            let missing = |what: String| {
                CliError::new(Exit::Failure, ErrorCode::Host, what)
                    .hint("run `vt host doctor` to see what is missing")
            };
            let qemu = artifacts::qemu()
                .ok_or_else(|| missing("qemu-system-x86_64 is not installed".into()))?;
            let guest = GuestArtifacts::find(&artifacts::guest_dir()).map_err(missing)?;
            let accel = accel(choice.accel, state_dir, &qemu, &guest);
            let ctx = Context {
                host: registration.name.clone(),
                dir: state_dir.to_path_buf(),
                guest,
                qemu,
                accel,
                images: images(state_dir, choice.registry_ca)?,
                auth: Auth::from_environment(),
                orgs: Default::default(),
            };
            Box::new(MicrovmRuntime::new(ctx))
        }
    };
    let opts = AgentOptions {
        controller,
        token,
        tunnel: registration.tunnel,
        registration,
        state_dir: state_dir.to_path_buf(),
        drain_timeout: std::time::Duration::from_millis(drain.0),
    };
    tokio
        .block_on(agent::run(opts, rt, ctrl_c()))
        .map_err(|e| CliError::new(Exit::Failure, ErrorCode::Host, chain(&e)))
}

/// `vt host doctor`.
pub fn doctor(global: &Global, state_dir: &Path) -> Result<(), CliError> {
    let report = artifacts::doctor(&state_dir.join("probe"));
    output::print(global.output, &report, |s| {
        let mut out = String::new();
        for c in &report.checks {
            let mark = if c.ok { s.green("ok  ") } else { s.red("FAIL") };
            out.push_str(&format!("{mark} {:<20} {}\n", c.name, c.detail));
        }
        out.push_str(&match report.accel {
            Some(a) => format!(
                "\naccelerator: {} (the microVM runtime will use it)\n",
                s.bold(&a.to_string())
            ),
            None => format!(
                "\n{} no accelerator can boot a guest: fix the failures above\n",
                s.red("error:")
            ),
        });
        out
    });
    if report.accel.is_none() {
        return Err(CliError::new(
            Exit::Failure,
            ErrorCode::Host,
            "this host cannot run microVMs",
        ));
    }
    Ok(())
}

/// The registration of `vt host run` from its flags.
pub fn registration(
    name: &str,
    region: &str,
    cpu: &str,
    memory: &str,
    tunnel: Option<SocketAddr>,
) -> Result<HostRegistration, CliError> {
    if tunnel.is_some_and(|t| t.ip().is_unspecified()) {
        return Err(CliError::new(
            Exit::Usage,
            ErrorCode::Usage,
            "--tunnel: edges connect to this address, so it must be a concrete one, not `[::]` or `0.0.0.0`",
        ));
    }
    let usage = |flag: &str, e: String| {
        CliError::new(Exit::Usage, ErrorCode::Usage, format!("--{flag}: {e}"))
    };
    vt_wire::validate_name(name).map_err(|e| usage("name", e.to_string()))?;
    Ok(HostRegistration {
        name: name.to_string(),
        region: region.to_string(),
        cpu: vt_repo::Cpu::parse(cpu).map_err(|e| usage("cpu", e))?.0,
        memory: vt_repo::ByteSize::parse(memory)
            .map_err(|e| usage("memory", e))?
            .0,
        tunnel,
    })
}
