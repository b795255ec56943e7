//! `vt volumes list|describe|destroy`: the volumes hosts hold, from the controller.

use crate::cli::Global;
use crate::client::Client;
use crate::error::{CliError, ErrorCode, Exit};
use crate::output::{self, Table};
use vt_control::views::VolumeView;

fn size(bytes: u64) -> String {
    vt_repo::ByteSize(bytes).to_string()
}

/// `vt volumes list [APP] [--env ENV]`.
pub fn list(
    global: &Global,
    client: &Client,
    app: Option<String>,
    env: Option<String>,
) -> Result<(), CliError> {
    let volumes: Vec<VolumeView> = client.get("/v1/volumes", &[("app", app), ("env", env)])?;
    output::print(global.output, &volumes, |s| {
        let mut table = Table::new(&[
            "VOLUME", "APP/ENV", "NAME", "SLOT", "HOST", "SIZE", "USED", "ATTACHED",
        ]);
        for v in &volumes {
            table.row(vec![
                v.id.clone(),
                v.workload.clone(),
                v.name.clone(),
                v.slot.map_or("-".into(), |n| n.to_string()),
                v.host.clone(),
                size(v.size),
                size(v.used),
                v.attached.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        table.render(s)
    });
    Ok(())
}

fn find(client: &Client, id: &str) -> Result<VolumeView, CliError> {
    let volumes: Vec<VolumeView> = client.get("/v1/volumes", &[])?;
    volumes.into_iter().find(|v| v.id == id).ok_or_else(|| {
        CliError::new(
            Exit::NotFound,
            ErrorCode::NotFound,
            format!("no volume {id}"),
        )
        .hint("list them with `vt volumes list`")
    })
}

/// `vt volumes describe ID`.
pub fn describe(global: &Global, client: &Client, id: &str) -> Result<(), CliError> {
    let v = find(client, id)?;
    output::print(global.output, &v, |s| {
        let status = v
            .host_status
            .map_or("unknown".into(), |st| format!("{st:?}").to_lowercase());
        format!(
            "{}\n  app/env     {}\n  name        {} (slot {})\n  host        {} ({status})\n  path        {}\n  size        {} ({} used on disk)\n  attached    {}\n",
            s.bold(&v.id),
            v.workload,
            v.name,
            v.slot.map_or("-".into(), |n| n.to_string()),
            v.host,
            v.path,
            size(v.size),
            size(v.used),
            v.attached.clone().unwrap_or_else(|| "no (instances of this app/env on other hosts cannot use it)".into()),
        )
    });
    Ok(())
}

/// `vt volumes destroy ID --yes`: deletes an unattached volume and its data.
pub fn destroy(global: &Global, client: &Client, id: &str, yes: bool) -> Result<(), CliError> {
    if !yes {
        return Err(CliError::new(
            Exit::Usage,
            ErrorCode::Confirm,
            format!("destroying volume {id} deletes its data for good"),
        )
        .hint("add --yes to confirm"));
    }
    let v: VolumeView = client.post("/v1/volumes/destroy", &serde_json::json!({ "id": id }))?;
    output::print(global.output, &v, |s| {
        format!(
            "{} volume {} ({} of {}) on {}\n",
            s.green("destroyed"),
            v.id,
            v.name,
            v.workload,
            v.host
        )
    });
    Ok(())
}
