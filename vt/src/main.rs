//! The `vt` binary: parses the command line, runs the command, renders the
//! result and maps errors to the documented exit codes.

mod cli;
mod client;
mod commands;
mod error;
mod forge;
mod git_ops;
mod output;
mod telemetry;
mod templates;

use clap::Parser;
use cli::{
    AppCommand, Cli, Command, EdgeCommand, EndpointsCommand, EnvCommand, FleetCommand, HostCommand,
    OrgCommand, ProjectCommand, TokenCommand, TokensCommand, VolumesCommand,
};
use client::Client;
use commands::{fleet, observe};
use error::{CliError, Exit};
use std::process::ExitCode;

fn run(cli: &Cli) -> Result<(), CliError> {
    let g = &cli.global;
    match &cli.command {
        Command::Exec {
            app,
            env,
            instance,
            interactive,
            tty,
            command,
            api,
        } => {
            let code = observe::exec(
                &api_client(api)?,
                observe::ExecArgs {
                    app: app.clone(),
                    env: env.clone(),
                    instance: instance.clone(),
                    interactive: *interactive,
                    tty: *tty,
                    argv: command.clone(),
                },
            )?;
            // The command's own exit code is vt's.
            std::process::exit(i32::from(code));
        }
        Command::Init { dir, template } => {
            commands::init::run(g, dir.as_deref(), template.as_deref())
        }
        Command::Org(OrgCommand::Create { name }) => commands::create::org(g, name),
        Command::Project(ProjectCommand::Create { name, org }) => {
            commands::create::project(g, name, org.as_deref())
        }
        Command::App(AppCommand::Create {
            name,
            project,
            image,
            port,
        }) => commands::create::app(g, name, project.as_deref(), image.clone(), port),
        Command::Env(EnvCommand::Create {
            name,
            app,
            instances,
            region,
        }) => commands::create::env(g, name, app.as_deref(), *instances, region.clone()),
        Command::Validate { at } => commands::read::validate(g, at.as_deref()),
        Command::Get {
            kind,
            name,
            app,
            at,
        } => commands::read::get(g, kind, name, app.as_deref(), at.as_deref()),
        Command::List { kind, at } => commands::read::list(g, kind.as_deref(), at.as_deref()),
        Command::Schema { kind } => commands::schema::run(g, kind.as_deref()),
        Command::Fleet(FleetCommand::Init {
            source,
            branch,
            state_dir,
            quic,
            http,
            git,
        }) => fleet::init(g, state_dir, source, branch, (*quic, *http), git),
        Command::Fleet(FleetCommand::Run {
            state_dir,
            quic,
            http,
        }) => fleet::run(
            state_dir,
            vt_fleet::controller::daemon::Overrides {
                quic: *quic,
                http: *http,
                repo: None,
            },
        ),
        Command::Fleet(FleetCommand::Token(TokenCommand::Create {
            role,
            ttl,
            state_dir,
            name,
            controller,
        })) => fleet::token(g, state_dir, (*role, ttl), name.as_deref(), *controller),
        Command::Host(HostCommand::Run {
            controller,
            token,
            name,
            region,
            cpu,
            memory,
            state_dir,
            runtime,
            accel,
            sim_boot,
            tunnel,
            drain_timeout,
            registry_ca,
        }) => {
            let (controller, name) =
                fleet::node_target(*controller, name.as_deref(), token.as_deref())?;
            let registration = commands::fleet::registration(&name, region, cpu, memory, *tunnel)?;
            let choice = fleet::RuntimeChoice {
                name: *runtime,
                accel: *accel,
                sim_boot,
                drain_timeout,
                registry_ca: registry_ca.as_deref(),
            };
            fleet::host(controller, token.clone(), registration, state_dir, choice)
        }
        Command::Host(HostCommand::Doctor { state_dir }) => fleet::doctor(g, state_dir),
        Command::Status { app, env, api } => {
            observe::status(g, &api_client(api)?, app.clone(), env.clone())
        }
        Command::Describe { app, env, api } => {
            observe::describe(g, &api_client(api)?, app.clone(), env.clone())
        }
        Command::Releases { app, env, api } => {
            observe::releases(g, &api_client(api)?, app.clone(), env.clone())
        }
        Command::Events {
            follow,
            since,
            app,
            env,
            kind,
            limit,
            api,
        } => observe::events(
            g,
            &api_client(api)?,
            observe::EventsArgs {
                follow: *follow,
                since: since.clone(),
                app: app.clone(),
                env: env.clone(),
                kind: kind.clone(),
                limit: *limit,
            },
        ),
        Command::Logs {
            app,
            env,
            follow,
            since,
            until,
            grep,
            instance,
            limit,
            api,
        } => observe::logs(
            g,
            &api_client(api)?,
            observe::LogsArgs {
                app: app.clone(),
                env: env.clone(),
                follow: *follow,
                since: since.clone(),
                until: until.clone(),
                grep: grep.clone(),
                instance: instance.clone(),
                limit: *limit,
            },
        ),
        Command::Tokens(TokensCommand::Create {
            org,
            role,
            ttl,
            api,
        }) => commands::tokens::create(g, &api_client(api)?, org, *role, ttl.as_deref()),
        Command::Login { url, token, ca } => commands::login::run(g, url, token, ca.as_deref()),
        Command::Tokens(TokensCommand::List { api }) => {
            commands::tokens::list(g, &api_client(api)?)
        }
        Command::Tokens(TokensCommand::Revoke { id, api }) => {
            commands::tokens::revoke(g, &api_client(api)?, id)
        }
        Command::Volumes(VolumesCommand::List { app, env, api }) => {
            commands::volumes::list(g, &api_client(api)?, app.clone(), env.clone())
        }
        Command::Volumes(VolumesCommand::Describe { id, api }) => {
            commands::volumes::describe(g, &api_client(api)?, id)
        }
        Command::Volumes(VolumesCommand::Destroy { id, yes, api }) => {
            commands::volumes::destroy(g, &api_client(api)?, id, *yes)
        }
        Command::Hosts { action: None, api } => observe::hosts(g, &api_client(api)?),
        Command::Hosts {
            action: Some(action),
            api,
        } => observe::change_node(g, &api_client(api)?, "hosts", action),
        Command::Edges { action, api } => {
            observe::change_node(g, &api_client(api)?, "edges", action)
        }
        Command::Edge(EdgeCommand::Run {
            controller,
            token,
            name,
            state_dir,
            assign_to,
        }) => {
            let (controller, name) =
                fleet::node_target(*controller, name.as_deref(), token.as_deref())?;
            commands::endpoints::run_edge(
                controller,
                token.clone(),
                &name,
                state_dir,
                assign_to.clone(),
            )
        }
        Command::Endpoints(EndpointsCommand::List { app, env, api }) => {
            commands::endpoints::list(g, &api_client(api)?, app.clone(), env.clone())
        }
        Command::Endpoints(EndpointsCommand::Describe {
            app,
            endpoint,
            env,
            api,
        }) => commands::endpoints::describe(g, &api_client(api)?, app, endpoint, env.clone()),
        Command::Usage { since, api } => commands::endpoints::usage(g, &api_client(api)?, since),
        Command::Secrets(command) => secrets_command(g, command),
        Command::Dev(args) => commands::dev::run(g, args),
        Command::Diff(args) => commands::diff::run(g, args),
        Command::Deploy(args) => commands::deploy::run(g, args),
        Command::Rollback(args) => commands::rollback::run(g, args),
        Command::Fleet(FleetCommand::RotateKey { state_dir }) => {
            commands::secrets::rotate_key(g, state_dir)
        }
    }
}

fn secrets_command(g: &cli::Global, command: &cli::SecretsCommand) -> Result<(), CliError> {
    use cli::SecretsCommand as S;
    use commands::secrets::{self, ValueSource};
    let source = |value: &cli::SecretValueArgs, generate: Option<usize>| ValueSource {
        file: value.from_file.clone(),
        stdin: value.from_stdin,
        generate,
    };
    match command {
        S::List { app, env, at } => secrets::list(g, app, env.as_deref(), at.as_deref()),
        S::Set {
            app,
            name,
            env,
            value,
        } => secrets::set(g, app, env.as_deref(), name, &source(value, None), false),
        S::Unset { app, name, env } => secrets::unset(g, app, env.as_deref(), name),
        S::Rotate {
            app,
            name,
            env,
            generate,
            value,
        } => secrets::set(
            g,
            app,
            env.as_deref(),
            name,
            &source(value, *generate),
            true,
        ),
        S::Preview { app, env, api } => secrets::preview(g, app.as_deref(), env.as_deref(), api),
        S::Validate {
            at,
            identity,
            state_dir,
        } => secrets::validate(g, at.as_deref(), identity.as_deref(), state_dir),
    }
}

fn api_client(api: &cli::Api) -> Result<Client, CliError> {
    Client::from_api(api)
}

/// A command line clap refused: help and version as clap prints them (exit
/// 0); errors as clap prints them in text mode, or as a `E_USAGE` error in
/// the JSON/YAML the command line asked for; exit 2 either way.
fn refused(error: &clap::Error) -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let env = std::env::var("VT_OUTPUT").ok();
    let format = output::requested_format(&args, env.as_deref());
    if !error.use_stderr() || format == cli::Output::Text {
        // Help and version go to stdout and exit 0; errors to stderr, exit 2.
        let _ = error.print();
        return if error.use_stderr() {
            ExitCode::from(Exit::Usage as u8)
        } else {
            ExitCode::SUCCESS
        };
    }
    output::print_error(format, &CliError::usage(error, &named_command(&args)));
    ExitCode::from(Exit::Usage as u8)
}

/// The (sub)command the words of a command line name (`vt fleet run`), for
/// its usage line: each word naming a subcommand of the one before descends.
fn named_command(args: &[std::ffi::OsString]) -> clap::Command {
    use clap::CommandFactory;
    let mut command = Cli::command();
    command.build();
    for word in args.iter().skip(1) {
        if word == "--" {
            break;
        }
        if let Some(sub) = command.find_subcommand(word) {
            command = sub.clone();
        }
    }
    command
}

fn main() -> ExitCode {
    telemetry::init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return refused(&e),
    };
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::print_error(cli.global.output, &e);
            ExitCode::from(e.exit as u8)
        }
    }
}
