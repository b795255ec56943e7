//! `vt edge run`, `vt endpoints list|describe` and `vt usage`.

use crate::cli::Global;
use crate::client::Client;
use crate::commands::fleet::{ctrl_c, runtime};
use crate::error::{CliError, ErrorCode, Exit};
use crate::output::{self, Table};
use std::net::SocketAddr;
use std::path::Path;
use vt_control::endpoint_views::{EndpointView, UsageView};

/// `vt edge run`.
pub fn run_edge(
    controller: SocketAddr,
    token: Option<String>,
    name: &str,
    state_dir: &Path,
    assign_to: Option<String>,
) -> Result<(), CliError> {
    vt_wire::validate_name(name)
        .map_err(|e| CliError::new(Exit::Usage, ErrorCode::Usage, format!("--name: {e}")))?;
    let opts = vt_edge::EdgeOptions {
        controller,
        token,
        name: name.to_string(),
        state_dir: state_dir.to_path_buf(),
        assign_to,
    };
    runtime()?
        .block_on(vt_edge::run(opts, ctrl_c()))
        .map_err(|e| CliError::new(Exit::Failure, ErrorCode::Edge, vt_wire::error_chain(&e)))
}

/// An endpoint's addresses with its port: `[fd76:7400:e::1]:80, 198.51.100.1:80`.
pub fn addresses(e: &EndpointView) -> String {
    let mut out = e
        .ipv6
        .map_or("(none yet)".into(), |a| format!("[{a}]:{}", e.port));
    match (e.ipv4, e.ipv4_requested) {
        (Some(v4), _) => out.push_str(&format!(", {v4}:{}", e.port)),
        (None, true) => out.push_str(", ipv4 pending"),
        _ => {}
    }
    out
}

/// `vt endpoints list [APP] [--env ENV]`.
pub fn list(
    global: &Global,
    client: &Client,
    app: Option<String>,
    env: Option<String>,
) -> Result<(), CliError> {
    let endpoints: Vec<EndpointView> =
        client.get("/v1/endpoints", &[("app", app), ("env", env)])?;
    output::print(global.output, &endpoints, |s| {
        let mut table = Table::new(&[
            "APP/ENV",
            "ENDPOINT",
            "ADDRESSES",
            "TARGET",
            "HEALTHY",
            "OPEN",
            "EDGES",
        ]);
        for e in &endpoints {
            let routed = e.instances.iter().filter(|i| i.routed).count();
            table.row(vec![
                e.workload.clone(),
                e.endpoint.clone(),
                addresses(e),
                if e.target_port == 0 {
                    "-".into()
                } else {
                    e.target_port.to_string()
                },
                format!("{routed}/{}", e.instances.len()),
                e.open.to_string(),
                e.edges.len().to_string(),
            ]);
        }
        table.render(s)
    });
    Ok(())
}

/// `vt endpoints describe APP ENDPOINT [--env ENV]`.
pub fn describe(
    global: &Global,
    client: &Client,
    app: &str,
    endpoint: &str,
    env: Option<String>,
) -> Result<(), CliError> {
    let all: Vec<EndpointView> = client.get(
        "/v1/endpoints",
        &[("app", Some(app.to_string())), ("env", env)],
    )?;
    let found: Vec<EndpointView> = all.into_iter().filter(|e| e.endpoint == endpoint).collect();
    let e = match found.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(CliError::new(
                Exit::NotFound,
                ErrorCode::NotFound,
                format!("app {app} has no endpoint {endpoint}"),
            )
            .hint("list them with `vt endpoints list`"))
        }
        many => {
            return Err(CliError::new(
                Exit::Usage,
                ErrorCode::Ambiguous,
                format!(
                    "endpoint {endpoint} of {app} exists in {} envs: {}",
                    many.len(),
                    many.iter()
                        .map(|e| e.workload.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .hint("pick one with --env"))
        }
    };
    output::print(global.output, &e, |s| {
        let mut out = format!(
            "{} {}\n  addresses   {}\n  port        {} → {} in the guest{}\n  traffic     {} open, {} total, {} B in, {} B out, {} errors, {} refused\n",
            s.bold(&e.workload),
            s.bold(&e.endpoint),
            addresses(&e),
            e.port,
            e.target_port,
            if e.proxy_protocol { " (PROXY protocol v2)" } else { "" },
            e.open,
            e.total,
            e.bytes_in,
            e.bytes_out,
            e.errors,
            e.refused,
        );
        out.push_str("\nEdges:\n");
        let mut edges = Table::new(&["EDGE", "LISTENING", "ERROR"]);
        for l in &e.edges {
            edges.row(vec![
                l.edge.clone(),
                l.listening.join(", "),
                l.error.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push_str(&edges.render(s));
        out.push_str("\nInstances:\n");
        let mut instances = Table::new(&[
            "INSTANCE", "HOST", "PHASE", "ROUTED", "OPEN", "TOTAL", "IN", "OUT", "ERRORS",
        ]);
        for i in &e.instances {
            instances.row(vec![
                i.instance.clone(),
                i.host.clone(),
                i.phase.clone(),
                if i.routed { "yes" } else { "no" }.into(),
                i.open.to_string(),
                i.total.to_string(),
                i.bytes_in.to_string(),
                i.bytes_out.to_string(),
                i.errors.to_string(),
            ]);
        }
        out.push_str(&instances.render(s));
        out
    });
    Ok(())
}

/// `vt usage [--since 30d]`.
pub fn usage(global: &Global, client: &Client, since: &str) -> Result<(), CliError> {
    let back = vt_repo::Duration::parse(since)
        .map_err(|e| CliError::new(Exit::Usage, ErrorCode::Usage, format!("--since: {e}")))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let view: UsageView = client.get(
        "/v1/usage",
        &[("since", Some(now.saturating_sub(back.0).to_string()))],
    )?;
    output::print(global.output, &view, |s| {
        let mut table = Table::new(&["ORG", "IPV4 ADDRESS-HOURS", "IPV4 NOW", "IPV6 NOW"]);
        for o in &view.orgs {
            table.row(vec![
                o.org.clone(),
                format!("{:.2}", o.ipv4_address_hours),
                o.ipv4_addresses_now.to_string(),
                o.ipv6_addresses_now.to_string(),
            ]);
        }
        table.render(s)
    });
    Ok(())
}
