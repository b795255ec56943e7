//! The `vt` binary: parses the command line, runs the command, renders the
//! result and maps errors to the documented exit codes.

mod cli;
mod commands;
mod error;
mod output;
mod telemetry;

use clap::Parser;
use cli::{AppCommand, Cli, Command, EnvCommand, OrgCommand, ProjectCommand};
use error::CliError;
use std::process::ExitCode;

fn run(cli: &Cli) -> Result<(), CliError> {
    let g = &cli.global;
    match &cli.command {
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
    }
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
