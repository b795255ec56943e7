//! `vt tokens create|list|revoke`: API tokens scoped to an org, kept by the
//! controller as hashes.

use crate::cli::{Global, TokenRoleArg};
use crate::client::{format_time, Client};
use crate::error::{CliError, ErrorCode, Exit};
use crate::output::{self, Table};
use serde_json::{json, Value};
use vt_control::core::TokenRecord;

/// `vt tokens create --org ORG --role ROLE [--ttl D]`: prints the token once.
pub fn create(
    global: &Global,
    client: &Client,
    org: &str,
    role: TokenRoleArg,
    ttl: Option<&str>,
) -> Result<(), CliError> {
    let ttl_ms = ttl
        .map(vt_repo::Duration::parse)
        .transpose()
        .map_err(|e| CliError::new(Exit::Usage, ErrorCode::Usage, format!("--ttl: {e}")))?
        .map(|d| d.0);
    let role = match role {
        TokenRoleArg::Viewer => "viewer",
        TokenRoleArg::Deployer => "deployer",
        TokenRoleArg::Admin => "admin",
    };
    let created: Value = client.post(
        "/v1/tokens",
        &json!({"org": org, "role": role, "ttl_ms": ttl_ms}),
    )?;
    output::print(global.output, &created, |s| {
        format!(
            "{} token {} ({} of {}): {}\n(shown once: the controller keeps only its hash)\n",
            s.green("created"),
            created["id"].as_str().unwrap_or_default(),
            role,
            org,
            created["token"].as_str().unwrap_or_default()
        )
    });
    Ok(())
}

/// `vt tokens list`.
pub fn list(global: &Global, client: &Client) -> Result<(), CliError> {
    let tokens: Vec<TokenRecord> = client.get("/v1/tokens", &[])?;
    output::print(global.output, &tokens, |s| {
        let mut table = Table::new(&["TOKEN", "ORG", "ROLE", "CREATED", "EXPIRES", "REVOKED"]);
        for t in &tokens {
            let time = |t: Option<u64>| t.map_or("-".to_string(), format_time);
            table.row(vec![
                t.id.clone(),
                t.org.clone(),
                format!("{:?}", t.role).to_lowercase(),
                format_time(t.created),
                time(t.expires),
                time(t.revoked),
            ]);
        }
        table.render(s)
    });
    Ok(())
}

/// `vt tokens revoke ID`.
pub fn revoke(global: &Global, client: &Client, id: &str) -> Result<(), CliError> {
    let token: TokenRecord = client.delete(&format!("/v1/tokens/{id}"))?;
    output::print(global.output, &token, |s| {
        format!("token {} {}\n", token.id, s.green("revoked"))
    });
    Ok(())
}
