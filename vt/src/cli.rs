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

/// vt's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a desired-state repository: git init, vt.yaml, first commit.
    Init {
        /// Directory to create (default: the current one).
        dir: Option<PathBuf>,
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
