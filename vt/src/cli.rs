//! The command line, as clap types. Parsing only: the commands live in
//! [`crate::commands`].

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// vt runs applications as microVMs on a fleet of hosts, driven by Git.
#[derive(Debug, Parser)]
#[command(name = "vt", version, about, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Text, env = "VT_OUTPUT")]
    pub output: Output,
    /// The desired-state repository (default: the nearest directory upwards with a vt.yaml).
    #[arg(short = 'C', long, global = true, env = "VT_REPO", value_name = "DIR")]
    pub repo: Option<PathBuf>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned text for people.
    Text,
    /// JSON, stable shape; errors are JSON too.
    Json,
    /// YAML, same shape as JSON.
    Yaml,
}

/// `vt fleet token create --role`: who may join with the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JoinRole {
    /// A host agent (`vt host run`).
    Host,
    /// An edge (`vt edge run`).
    Edge,
}

/// `vt host run --runtime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HostRuntime {
    /// qemu microVMs.
    Microvm,
    /// Simulated instances, for tests without qemu.
    Sim,
}

/// `vt dev --runtime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DevRuntime {
    /// microvm where this machine has what it needs, else sim.
    Auto,
    /// qemu microVMs.
    Microvm,
    /// Simulated instances: nothing boots, nothing serves.
    Sim,
}

/// `--accel` of microVM hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccelChoice {
    /// KVM where a probe guest boots, else TCG.
    Auto,
    /// KVM.
    Kvm,
    /// TCG (emulation).
    Tcg,
}

/// vt's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a desired-state repository: git init, vt.yaml, first commit.
    Init {
        /// Directory to create (default: the current one).
        dir: Option<PathBuf>,
        /// Start from a template (a sample app with its image): `hello`.
        #[arg(long, value_name = "NAME")]
        template: Option<String>,
    },
    /// Organisations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Projects of an org.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Apps of a project.
    #[command(subcommand)]
    App(AppCommand),
    /// Environments of an app.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Check the desired state: every error in every file, with file, line and hint.
    Validate {
        /// Validate this git revision instead of the working tree.
        #[arg(long, value_name = "REV")]
        at: Option<String>,
    },
    /// Show one resource: name, ID, file and (for envs) the effective spec.
    Get {
        /// org, project, app or env.
        kind: String,
        /// Name, qualified name (acme/shop/web) or ID.
        name: String,
        /// For envs: the app they belong to.
        #[arg(long)]
        app: Option<String>,
        /// Read this git revision instead of the working tree.
        #[arg(long, value_name = "REV")]
        at: Option<String>,
    },
    /// List resources, all or of one kind.
    List {
        /// org, project, app or env.
        kind: Option<String>,
        /// Read this git revision instead of the working tree.
        #[arg(long, value_name = "REV")]
        at: Option<String>,
    },
    /// The fleet controller: create a fleet, run it, mint join tokens.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// The host agent.
    #[command(subcommand)]
    Host(HostCommand),
    /// The edge: endpoint listeners tunnelled to hosts over QUIC.
    #[command(subcommand)]
    Edge(EdgeCommand),
    /// Desired and current state of every app/env (from the controller).
    Status {
        /// Only this app (name or qualified name).
        app: Option<String>,
        /// Only this env.
        #[arg(long)]
        env: Option<String>,
        /// The controller.
        #[command(flatten)]
        api: Api,
    },
    /// Desired vs current of one app, field by field, with placement reasons.
    Describe {
        /// App name or qualified name.
        app: String,
        /// Only this env.
        #[arg(long)]
        env: Option<String>,
        /// The controller.
        #[command(flatten)]
        api: Api,
    },
    /// Releases of an app: number, commit, author, time, what changed.
    Releases {
        /// App name or qualified name.
        app: String,
        /// Only this env.
        #[arg(long)]
        env: Option<String>,
        /// The controller.
        #[command(flatten)]
        api: Api,
    },
    /// The fleet's events, optionally followed live.
    Events {
        /// Keep printing new events.
        #[arg(short, long)]
        follow: bool,
        /// Only events of the last DURATION (10m, 2h).
        #[arg(long)]
        since: Option<String>,
        /// Only events of this app.
        #[arg(long)]
        app: Option<String>,
        /// Only events of this env.
        #[arg(long)]
        env: Option<String>,
        /// Only events of this kind, or kinds starting with it when it ends in '.' (`rollout.`).
        #[arg(long)]
        kind: Option<String>,
        /// Most events shown.
        #[arg(long, default_value_t = 200)]
        limit: usize,
        /// The controller.
        #[command(flatten)]
        api: Api,
    },
    /// Logs of an app's instances, merged in time order.
    Logs {
        /// App name or qualified name.
        app: String,
        /// Only this env.
        #[arg(long)]
        env: Option<String>,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// Only lines of the last DURATION (10m, 2h).
        #[arg(long)]
        since: Option<String>,
        /// Only lines older than DURATION ago.
        #[arg(long)]
        until: Option<String>,
        /// Only lines containing TEXT.
        #[arg(long, value_name = "TEXT")]
        grep: Option<String>,
        /// Only this instance.
        #[arg(long)]
        instance: Option<String>,
        /// Most lines shown.
        #[arg(long, default_value_t = 500)]
        limit: usize,
        /// The controller.
        #[command(flatten)]
        api: Api,
    },
    /// Run a command in an instance of an app (a healthy one unless --instance).
    Exec {
        /// App name or qualified name.
        app: String,
        /// Only this env.
        #[arg(long)]
        env: Option<String>,
        /// This instance.
        #[arg(long)]
        instance: Option<String>,
        /// Stream stdin to the command as it comes (interactive session).
        #[arg(short, long)]
        interactive: bool,
        /// Run the command on a terminal: with -i, keys go through as typed,
        /// and resizes follow the local terminal.
        #[arg(short, long)]
        tty: bool,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
        /// The controller.
        #[command(flatten)]
        api: Api,
    },
    /// Volumes: list, describe, destroy (never implicitly).
    #[command(subcommand)]
    Volumes(VolumesCommand),
    /// API tokens scoped to an org: create, list, revoke.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Check and save the controller's address, a token and the CA that signs the
    /// controller's certificate (~/.config/vt/config.json), for every later command.
    Login {
        /// The controller's API URL (`https://HOST:PORT`, as `vt fleet init` printed).
        url: String,
        /// The API token.
        #[arg(long, env = "VT_TOKEN", hide_env_values = true)]
        token: String,
        /// The CA bundle the controller's certificate is checked with (the fleet's
        /// ca.pem; not needed when a public CA signed it).
        #[arg(long, env = "VT_CA", value_name = "FILE")]
        ca: Option<PathBuf>,
    },
    /// The fleet's hosts with capacity and what is reserved; `revoke` or
    /// `remove` one.
    Hosts {
        /// Revoke or remove a host (none: list them).
        #[command(subcommand)]
        action: Option<NodeAction>,
        /// The controller.
        #[command(flatten)]
        api: Api,
    },
    /// Revoke or remove an edge.
    Edges {
        /// What to do.
        #[command(subcommand)]
        action: NodeAction,
        /// The controller.
        #[command(flatten)]
        api: Api,
    },
    /// Endpoints: addresses, the instances behind them, traffic.
    #[command(subcommand)]
    Endpoints(EndpointsCommand),
    /// Billable IPv4 address-hours per org.
    Usage {
        /// Window start: a duration back from now (`30d`, `12h`).
        #[arg(long, default_value = "30d")]
        since: String,
        /// The controller.
        #[command(flatten)]
        api: Api,
    },
    /// Secrets of an app's envs: encrypted in the repository, delivered as files.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Run the whole stack locally (controller, hosts, edge) from the working tree.
    Dev(DevArgs),
    /// What a change will do: the desired-state diff, the planner's actions, warnings,
    /// a predicted rollout timeline. Exit 0: no changes, 1: changes, >1: errors.
    Diff(DiffArgs),
    /// Validate, pin the image digest, commit, push, follow the rollout, print a receipt.
    Deploy(DeployArgs),
    /// Restore an app/env to an earlier release: a branch, a pull request, or `--merge`.
    Rollback(RollbackArgs),
    /// Print the JSON Schema of a file kind, for editors.
    Schema {
        /// config (vt.yaml), org, project, app or env; all when absent.
        kind: Option<String>,
    },
}

/// `vt org ...`
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organisation.
    Create {
        /// DNS-label name.
        name: String,
    },
}

/// `vt project ...`
#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project.
    Create {
        /// DNS-label name.
        name: String,
        /// The org (default: the only one).
        #[arg(long)]
        org: Option<String>,
    },
}

/// `vt app ...`
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create an app.
    Create {
        /// DNS-label name.
        name: String,
        /// The project (default: the only one).
        #[arg(long)]
        project: Option<String>,
        /// OCI image, by tag or digest.
        #[arg(long)]
        image: Option<String>,
        /// A TCP port the app listens on: PORT or NAME=PORT; repeatable. The
        /// first port gets a TCP health check.
        #[arg(long, value_name = "[NAME=]PORT")]
        port: Vec<String>,
    },
}

/// `vt env ...`
#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create an environment of an app.
    Create {
        /// DNS-label name (prod, staging, ...).
        name: String,
        /// The app (default: the only one).
        #[arg(long)]
        app: Option<String>,
        /// Instances per region.
        #[arg(long)]
        instances: Option<u32>,
        /// Regions to run in; repeatable (default: the first region of vt.yaml).
        #[arg(long)]
        region: Vec<String>,
    },
}

/// How to reach the controller's API.
#[derive(Debug, Clone, Args)]
pub struct Api {
    /// The controller's HTTP address (default: VT_CONTROLLER, then ~/.config/vt/config.json).
    #[arg(long, env = "VT_CONTROLLER", value_name = "URL")]
    pub controller: Option<String>,
    /// The API token (default: VT_TOKEN, then the config file).
    #[arg(long, env = "VT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The CA bundle (PEM) the controller's certificate is checked with, besides the
    /// system's roots (default: VT_CA, then the config file; the fleet's is its ca.pem).
    #[arg(long, env = "VT_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

/// How `vt fleet run` reaches a remote repository (`vt fleet init`); each
/// becomes a file of `STATE/git/`.
#[derive(Debug, Clone, clap::Args)]
pub struct GitAccessArgs {
    /// HTTPS: the CA bundle (PEM) a private Git host's certificate is checked with.
    #[arg(long, value_name = "FILE")]
    pub git_ca: Option<PathBuf>,
    /// HTTPS: a file holding the token (or password) to fetch with.
    #[arg(long, value_name = "FILE")]
    pub git_token_file: Option<PathBuf>,
    /// HTTPS: the user name sent with the token.
    #[arg(long, value_name = "NAME", default_value = "x-access-token")]
    pub git_username: String,
    /// SSH: the private key to fetch with (default for an SSH repository: a new ed25519 deploy key).
    #[arg(long, value_name = "FILE")]
    pub git_ssh_key: Option<PathBuf>,
    /// SSH: the Git host's known_hosts lines (`ssh-keyscan HOST`, fingerprint checked).
    #[arg(long, value_name = "FILE")]
    pub git_known_hosts: Option<PathBuf>,
}

/// `vt hosts|edges revoke|remove NAME`.
#[derive(Debug, Clone, Subcommand)]
pub enum NodeAction {
    /// End its session now and refuse it from then on (a lost or retired machine).
    Revoke {
        /// Its name.
        name: String,
    },
    /// Forget its enrolment: its certificate is refused, and the name can join again.
    Remove {
        /// Its name.
        name: String,
    },
}

/// `vt fleet ...`
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Create a fleet: CA, keys and settings in the state directory.
    Init {
        /// The desired-state repository: a path (watched) or a URL (fetched).
        #[arg(value_name = "REPO")]
        source: String,
        /// The tracked branch.
        #[arg(long, default_value = "main")]
        branch: String,
        /// State directory.
        #[arg(long, env = "VT_STATE_DIR", default_value = "/var/lib/vt/fleet")]
        state_dir: PathBuf,
        /// QUIC address for hosts and edges.
        #[arg(long, default_value = "127.0.0.1:7443")]
        quic: std::net::SocketAddr,
        /// HTTP address of the API.
        #[arg(long, default_value = "127.0.0.1:7080")]
        http: std::net::SocketAddr,
        /// How the controller reaches a remote repository.
        #[command(flatten)]
        git: GitAccessArgs,
    },
    /// Run the controller.
    Run {
        /// State directory.
        #[arg(long, env = "VT_STATE_DIR", default_value = "/var/lib/vt/fleet")]
        state_dir: PathBuf,
        /// Override the QUIC address.
        #[arg(long)]
        quic: Option<std::net::SocketAddr>,
        /// Override the HTTP address.
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
    },
    /// Join tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// A new fleet key for secrets: re-encrypts every secrets file of the
    /// working tree to it and updates vt.yaml (commit them together).
    RotateKey {
        /// State directory of the controller (holds the fleet's identities).
        #[arg(long, env = "VT_STATE_DIR", default_value = "/var/lib/vt/fleet")]
        state_dir: PathBuf,
    },
}

/// `vt fleet token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a join token for a host or an edge.
    Create {
        /// host or edge.
        #[arg(long, value_enum, hide_possible_values = true)]
        role: JoinRole,
        /// How long the token is valid.
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// Bind the token to this node name: no other name can join with it.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// The controller's QUIC address as nodes reach it, carried in the token
        /// (default: fleet.json's `quic`, unless it is a wildcard or port 0).
        #[arg(long, value_name = "ADDR")]
        controller: Option<std::net::SocketAddr>,
        /// State directory.
        #[arg(long, env = "VT_STATE_DIR", default_value = "/var/lib/vt/fleet")]
        state_dir: PathBuf,
    },
}

/// `vt host ...`
// Parsed once per process: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Check what the microVM runtime needs and which accelerator boots a guest here.
    Doctor {
        /// State directory (probe scratch files go under it).
        #[arg(long, env = "VT_STATE_DIR", default_value = "/var/lib/vt/host")]
        state_dir: PathBuf,
    },
    /// Run the host agent.
    Run {
        /// The controller's QUIC address (default: the join token's, else 127.0.0.1:7443).
        #[arg(long, env = "VT_CONTROLLER_QUIC")]
        controller: Option<std::net::SocketAddr>,
        /// Join token (needed the first time).
        #[arg(long, env = "VT_JOIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Host name (a DNS label; default: the name the join token is bound to).
        #[arg(long)]
        name: Option<String>,
        /// Region.
        #[arg(long, default_value = "local")]
        region: String,
        /// Cpu offered to instances (cores or millicores).
        #[arg(long, default_value = "2")]
        cpu: String,
        /// Memory offered to instances.
        #[arg(long, default_value = "4Gi")]
        memory: String,
        /// State directory (certificate, images, volumes).
        #[arg(long, env = "VT_STATE_DIR", default_value = "/var/lib/vt/host")]
        state_dir: PathBuf,
        /// Runtime: `microvm` (qemu microVMs) or `sim` (simulated instances, for tests without qemu).
        #[arg(long, value_enum, default_value_t = HostRuntime::Microvm, hide_possible_values = true)]
        runtime: HostRuntime,
        /// Accelerator for microVMs: `auto` (KVM only if a probe guest boots), `kvm` or `tcg`.
        #[arg(long, value_enum, default_value_t = AccelChoice::Auto, hide_possible_values = true)]
        accel: AccelChoice,
        /// For the sim runtime: time an instance takes to become healthy.
        #[arg(long, default_value = "300ms")]
        sim_boot: String,
        /// Accept endpoint traffic from edges on this address (QUIC, fleet
        /// certificates only); edges are told to connect here.
        #[arg(long, env = "VT_TUNNEL")]
        tunnel: Option<std::net::SocketAddr>,
        /// How long an instance told to stop keeps serving its open endpoint
        /// connections (it gets no new ones meanwhile).
        #[arg(long, default_value = "30s")]
        drain_timeout: String,
        /// A CA bundle (PEM) registries' certificates are checked with, besides the
        /// system's roots (a private registry). Credentials: `$DOCKER_CONFIG/config.json`.
        #[arg(long, env = "VT_REGISTRY_CA", value_name = "FILE")]
        registry_ca: Option<PathBuf>,
    },
}

/// `vt edge ...`
#[derive(Debug, Subcommand)]
pub enum EdgeCommand {
    /// Run an edge node.
    Run {
        /// The controller's QUIC address (default: the join token's, else 127.0.0.1:7443).
        #[arg(long, env = "VT_CONTROLLER_QUIC")]
        controller: Option<std::net::SocketAddr>,
        /// Join token (needed the first time).
        #[arg(long, env = "VT_JOIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Edge name (a DNS label; default: the name the join token is bound to).
        #[arg(long)]
        name: Option<String>,
        /// State directory (certificate).
        #[arg(long, env = "VT_STATE_DIR", default_value = "/var/lib/vt/edge")]
        state_dir: PathBuf,
        /// Add each endpoint address to this network device (e.g. `lo`) while
        /// it is served; without it, route the prefix to this machine yourself.
        #[arg(long, value_name = "DEVICE")]
        assign_to: Option<String>,
    },
}

/// `vt endpoints ...`
#[derive(Debug, Subcommand)]
pub enum EndpointsCommand {
    /// Every endpoint with its addresses and healthy instances.
    List {
        /// Only this app.
        app: Option<String>,
        /// Only this env.
        #[arg(long)]
        env: Option<String>,
        /// The controller.
        #[command(flatten)]
        api: Api,
    },
    /// One endpoint: addresses, edges, instances with health and traffic.
    Describe {
        /// The app.
        app: String,
        /// Endpoint name.
        endpoint: String,
        /// The env (needed when the app has several).
        #[arg(long)]
        env: Option<String>,
        /// The controller.
        #[command(flatten)]
        api: Api,
    },
}

/// What an API token may do in its org.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenRoleArg {
    /// Read status, releases, events, volumes, endpoints.
    Viewer,
    /// A viewer that also reads logs and runs `vt exec`.
    Deployer,
    /// A deployer that also destroys volumes.
    Admin,
}

/// `vt tokens ...`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token for one org (printed once; the controller keeps its hash).
    Create {
        /// The org it may act on.
        #[arg(long)]
        org: String,
        /// What it may do there.
        #[arg(long, value_enum)]
        role: TokenRoleArg,
        /// How long it is valid (default: until revoked).
        #[arg(long)]
        ttl: Option<String>,
        /// The controller.
        #[command(flatten)]
        api: Api,
    },
    /// Every token: ID, org, role, expiry, revocation (never a secret).
    List {
        /// The controller.
        #[command(flatten)]
        api: Api,
    },
    /// Revoke a token: requests with it are refused from now on.
    Revoke {
        /// Its ID (`tok_...`).
        id: String,
        /// The controller.
        #[command(flatten)]
        api: Api,
    },
}

/// `vt volumes ...`
#[derive(Debug, Subcommand)]
pub enum VolumesCommand {
    /// Every volume, with its host and what it is attached to.
    List {
        /// Only this app.
        app: Option<String>,
        /// Only this env.
        #[arg(long)]
        env: Option<String>,
        /// The controller.
        #[command(flatten)]
        api: Api,
    },
    /// One volume.
    Describe {
        /// Volume ID (`vol_...`).
        id: String,
        /// The controller.
        #[command(flatten)]
        api: Api,
    },
    /// Delete an unattached volume and its data.
    Destroy {
        /// Volume ID (`vol_...`).
        id: String,
        /// Confirm that the data goes.
        #[arg(long)]
        yes: bool,
        /// The controller.
        #[command(flatten)]
        api: Api,
    },
}

/// Where a secret's new value comes from: never the command line.
#[derive(Debug, Args)]
pub struct SecretValueArgs {
    /// Read the value from this file (as is, newline included).
    #[arg(long, value_name = "FILE", conflicts_with = "from_stdin")]
    pub from_file: Option<PathBuf>,
    /// Read the value from stdin (as is, newline included).
    #[arg(long)]
    pub from_stdin: bool,
}

/// `vt secrets ...`: they change the working tree; committing deploys.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Names, versions, who changed them and when (never values).
    List {
        /// App name or qualified name.
        app: String,
        /// Only this env.
        #[arg(long)]
        env: Option<String>,
        /// Read this git revision instead of the working tree.
        #[arg(long, value_name = "REV")]
        at: Option<String>,
    },
    /// Set a secret (its next version) from a file or stdin.
    Set {
        /// App name or qualified name.
        app: String,
        /// Secret name.
        name: String,
        /// The env (default: the app's only env).
        #[arg(long)]
        env: Option<String>,
        /// Where the value comes from.
        #[command(flatten)]
        value: SecretValueArgs,
    },
    /// Remove a secret.
    Unset {
        /// App name or qualified name.
        app: String,
        /// Secret name.
        name: String,
        /// The env (default: the app's only env).
        #[arg(long)]
        env: Option<String>,
    },
    /// A new version of an existing secret: generated, or from a file or stdin.
    Rotate {
        /// App name or qualified name.
        app: String,
        /// Secret name.
        name: String,
        /// The env (default: the app's only env).
        #[arg(long)]
        env: Option<String>,
        /// Generate a random value of N letters and digits.
        #[arg(long, value_name = "N", conflicts_with_all = ["from_file", "from_stdin"])]
        generate: Option<usize>,
        /// Where the value comes from (without --generate).
        #[command(flatten)]
        value: SecretValueArgs,
    },
    /// What the working tree's secret changes (vs HEAD) would restart or signal once committed.
    Preview {
        /// Only this app.
        app: Option<String>,
        /// Only this env.
        #[arg(long)]
        env: Option<String>,
        /// The controller, to list running instances (optional).
        #[command(flatten)]
        api: Api,
    },
    /// Check that every referenced secret exists, decrypts, is not empty and matches its format.
    Validate {
        /// Validate this git revision instead of the working tree.
        #[arg(long, value_name = "REV")]
        at: Option<String>,
        /// An age identity file to decrypt with (default: the controller's state directory).
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        /// The controller's state directory.
        #[arg(long, env = "VT_STATE_DIR", default_value = "/var/lib/vt/fleet")]
        state_dir: PathBuf,
    },
}

/// `vt dev`
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Hosts to run.
    #[arg(long, default_value_t = 1)]
    pub hosts: u32,
    /// Regions to spread the hosts over (the first N regions of vt.yaml).
    #[arg(long, default_value_t = 1)]
    pub regions: u32,
    /// Runtime of the hosts: microvm (qemu), sim (simulated instances), or auto
    /// (microvm when qemu and the guest are installed).
    #[arg(long, value_enum, default_value_t = DevRuntime::Auto, hide_possible_values = true)]
    pub runtime: DevRuntime,
    /// Start from scratch: delete the previous run's state (volumes included).
    #[arg(long)]
    pub clean: bool,
    /// Accelerator of microVM hosts: auto (KVM where a probe guest boots,
    /// probed once per machine and cached), kvm or tcg.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto, hide_possible_values = true)]
    pub accel: AccelChoice,
    /// Cpu each host offers.
    #[arg(long, default_value = "2")]
    pub cpu: String,
    /// Memory each host offers.
    #[arg(long, default_value = "2Gi")]
    pub memory: String,
    /// Where the registry for the images built from `images/` listens; the
    /// manifests' `image:` lines name it (the hello template: 127.0.0.1:5055).
    #[arg(long, default_value = "127.0.0.1:5055", value_name = "ADDR")]
    pub registry: std::net::SocketAddr,
}

/// Where `vt diff` takes the current fleet from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Against {
    /// The running controller (VT_CONTROLLER): its hosts, instances and releases.
    Fleet,
    /// The hosts of `vt dev` in this repository (from .vt/dev/dev.json), simulated.
    Dev,
    /// A simulated fleet (`--topology FILE`, else one host per region).
    Sim,
}

/// `vt diff`
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// `BASE..HEAD` (two revisions), `BASE` (a revision vs the working tree);
    /// default: HEAD vs the working tree, or the fleet's applied commit with --against fleet.
    pub range: Option<String>,
    /// Plan against this fleet (default: fleet when a controller is configured, else sim).
    #[arg(long, value_enum)]
    pub against: Option<Against>,
    /// A topology file (YAML: hosts with name, region, cpu, memory) for --against sim.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
    /// The controller.
    #[command(flatten)]
    pub api: Api,
}

/// `--wait` / `--timeout`, shared by deploy and rollback.
#[derive(Debug, Clone, Args)]
pub struct Wait {
    /// Do not follow the rollout: exit once the change is pushed.
    #[arg(long, conflicts_with = "wait")]
    pub no_wait: bool,
    /// Follow even where it is not the default: `vt rollback` without --merge
    /// waits for its pull request to be merged, then follows the release it makes.
    #[arg(long)]
    pub wait: bool,
    /// Give up following after DURATION (exit code 6).
    #[arg(long, default_value = "10m")]
    pub timeout: String,
}

/// `vt deploy`
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// App (name or qualified name); default: every change in the working tree.
    pub app: Option<String>,
    /// Only this env (default: every env of the app).
    #[arg(long)]
    pub env: Option<String>,
    /// Set the image (a tag is resolved to its digest, which is pinned).
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// Commit message (default: one describing the change).
    #[arg(short, long)]
    pub message: Option<String>,
    /// Following the rollout.
    #[command(flatten)]
    pub wait: Wait,
    /// The controller.
    #[command(flatten)]
    pub api: Api,
}

/// `vt rollback`
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// App (name or qualified name).
    pub app: String,
    /// Env (required when the app has several).
    #[arg(long)]
    pub env: Option<String>,
    /// Release to restore (default: the one before the latest).
    #[arg(long, value_name = "N")]
    pub to: Option<u64>,
    /// Apply the rollback to the tracked branch at once instead of opening a pull request.
    #[arg(long)]
    pub merge: bool,
    /// The forge to open the pull request with: github or gitea (Gitea and Forgejo).
    #[arg(long, env = "VT_FORGE", value_name = "KIND")]
    pub forge: Option<String>,
    /// The forge's API base URL (default: https://api.github.com for github).
    #[arg(long, env = "VT_FORGE_URL", value_name = "URL")]
    pub forge_url: Option<String>,
    /// The repository on the forge, `OWNER/NAME` (default: from the remote's URL).
    #[arg(long, env = "VT_FORGE_REPO", value_name = "OWNER/NAME")]
    pub forge_repo: Option<String>,
    /// The forge's API token.
    #[arg(long, env = "VT_FORGE_TOKEN", hide_env_values = true)]
    pub forge_token: Option<String>,
    /// A CA bundle (PEM) the forge's certificate is checked with, besides the system's roots.
    #[arg(long, env = "VT_FORGE_CA", value_name = "FILE")]
    pub forge_ca: Option<PathBuf>,
    /// Following the rollout (with --merge).
    #[command(flatten)]
    pub wait: Wait,
    /// The controller.
    #[command(flatten)]
    pub api: Api,
}
