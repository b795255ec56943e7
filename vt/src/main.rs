//! The `vt` binary: parses the command line, runs the command, renders the
//! result and maps errors to the documented exit codes.

mod cli;
mod client;
mod commands;
mod error;
mod output;
mod telemetry;

use clap::Parser;
use cli::{
    AppCommand, Cli, Command, EnvCommand, FleetCommand, HostCommand, OrgCommand, ProjectCommand,
    TokenCommand, VolumesCommand,
};
use client::Client;
use commands::{fleet, observe};
use error::CliError;
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
        Command::Init { dir } => commands::init::run(g, dir.as_deref()),
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
        }) => fleet::init(g, state_dir, source, branch, *quic, *http),
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
        })) => fleet::token(g, state_dir, role, ttl),
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
        }) => {
            let registration = commands::fleet::registration(name, region, cpu, memory)?;
            let choice = fleet::RuntimeChoice {
                name: runtime,
                accel,
                sim_boot,
            };
            fleet::host(*controller, token.clone(), registration, state_dir, choice)
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
        Command::Volumes(VolumesCommand::List { app, env, api }) => {
            commands::volumes::list(g, &api_client(api)?, app.clone(), env.clone())
        }
        Command::Volumes(VolumesCommand::Describe { id, api }) => {
            commands::volumes::describe(g, &api_client(api)?, id)
        }
        Command::Volumes(VolumesCommand::Destroy { id, yes, api }) => {
            commands::volumes::destroy(g, &api_client(api)?, id, *yes)
        }
        Command::Hosts { api } => observe::hosts(g, &api_client(api)?),
    }
}

fn api_client(api: &cli::Api) -> Result<Client, CliError> {
    Client::new(api.controller.as_deref(), api.token.as_deref())
}

fn main() -> ExitCode {
    telemetry::init();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::print_error(cli.global.output, &e);
            ExitCode::from(e.exit as u8)
        }
    }
}
