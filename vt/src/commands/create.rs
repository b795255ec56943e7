//! `vt org|project|app|env create`: writes the new resource's file, all or nothing.

use crate::cli::Global;
use crate::commands::{find_root, load};
use crate::error::{CliError, ErrorCode, Exit};
use crate::output;
use vt_repo::schema::{Health, HealthKind, Port, Spec};
use vt_repo::write::{self, Created};

fn report(global: &Global, created: &Created) {
    output::print(global.output, created, |s| {
        let mut out = format!(
            "{} {} {} ({})\n",
            s.green("created"),
            created.kind,
            s.bold(&created.name),
            created.id
        );
        for file in &created.files {
            out.push_str(&format!("  {file}\n"));
        }
        out
    });
}

/// `vt org create NAME`.
pub fn org(global: &Global, name: &str) -> Result<(), CliError> {
    let root = find_root(global)?;
    report(global, &write::create_org(&root, name)?);
    Ok(())
}

/// `vt project create NAME [--org ORG]`.
pub fn project(global: &Global, name: &str, org: Option<&str>) -> Result<(), CliError> {
    let root = find_root(global)?;
    let state = load(global, None)?.state;
    report(global, &write::create_project(&root, &state, name, org)?);
    Ok(())
}

/// Parses `--port` values: `8080` or `admin=9000`. The first unnamed port is `main`.
fn parse_ports(values: &[String]) -> Result<Vec<Port>, CliError> {
    values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let (name, number) = match value.split_once('=') {
                Some((name, number)) => (name.to_string(), number),
                None if i == 0 => ("main".to_string(), value.as_str()),
                None => (format!("port-{value}"), value.as_str()),
            };
            let port = number
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    CliError::new(
                        Exit::Usage,
                        ErrorCode::Usage,
                        format!("`{value}` is not a port"),
                    )
                    .hint("use --port 8080 or --port NAME=8080")
                })?;
            Ok(Port { name, port })
        })
        .collect()
}

/// `vt app create NAME [--project P] [--image REF] [--port [NAME=]PORT]...`.
pub fn app(
    global: &Global,
    name: &str,
    project: Option<&str>,
    image: Option<String>,
    ports: &[String],
) -> Result<(), CliError> {
    if let Some(Err(why)) = image.as_deref().map(vt_repo::validate::check_image) {
        return Err(CliError::new(
            Exit::Usage,
            ErrorCode::Usage,
            format!("--image: {why}"),
        ));
    }
    let ports = parse_ports(ports)?;
    let health = ports.first().map(|p| Health {
        kind: Some(HealthKind::Tcp),
        port: Some(p.name.clone()),
        ..Health::default()
    });
    let spec = Spec {
        image,
        ports: (!ports.is_empty()).then_some(ports),
        health,
        ..Spec::default()
    };
    let root = find_root(global)?;
    let state = load(global, None)?.state;
    report(
        global,
        &write::create_app(&root, &state, name, project, spec)?,
    );
    Ok(())
}

/// `vt env create NAME [--app APP] [--instances N] [--region R]...`.
pub fn env(
    global: &Global,
    name: &str,
    app: Option<&str>,
    instances: Option<u32>,
    regions: Vec<String>,
) -> Result<(), CliError> {
    let root = find_root(global)?;
    let state = load(global, None)?.state;
    if let Some(unknown) = regions
        .iter()
        .find(|r| !state.config.regions.iter().any(|d| &d.name == *r))
    {
        return Err(CliError::new(
            Exit::Usage,
            ErrorCode::UnknownRegion,
            format!("region `{unknown}` is not declared in vt.yaml"),
        )
        .hint("add it to `regions:` in vt.yaml first"));
    }
    let overrides = Spec {
        instances: Some(instances.unwrap_or(1)),
        regions: (!regions.is_empty()).then_some(regions),
        ..Spec::default()
    };
    report(
        global,
        &write::create_env(&root, &state, name, app, overrides)?,
    );
    Ok(())
}
