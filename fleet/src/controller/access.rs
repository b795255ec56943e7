//! Who may call the API, and what they see.
//!
//! Every route is registered with the [`Capability`] it needs (the table in
//! `api::routes`, which the router is built from, so a route cannot lack
//! one). [`authorize`] turns the bearer token into a [`Grant`] (the fleet's
//! bootstrap token is fleet-admin of every org; a `vtt_` token is its org's
//! viewer, deployer or admin), refuses a grant without the capability (403,
//! `audit.denied`), hands the grant to the handler, and records every
//! mutating call and every exec as `audit.call` with the token's ID (never
//! its secret). Handlers show an org token its org only: resources of other
//! orgs are not found (404), lists leave them out.

use crate::controller::perform::ApiError;
use crate::controller::shared::Shared;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use vt_control::core::{check_token, parse_token, Capability, TokenRefusal};
use vt_plan::events::{kind, Event};
use vt_wire::clock::now;
use vt_wire::codes::ErrorCode;
use vt_wire::constant_time_eq;

/// The ID audit events name the fleet's bootstrap token by.
pub const FLEET_TOKEN_ID: &str = "fleet";

/// What a request's token may do and see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The token's ID (`fleet` for the bootstrap token).
    pub token: String,
    /// The org it is limited to (`None`: every org).
    pub org: Option<String>,
    /// What it may do.
    pub capabilities: Vec<Capability>,
}

impl Grant {
    /// The bootstrap token's grant: everything, every org.
    pub fn fleet() -> Grant {
        use Capability::*;
        Grant {
            token: FLEET_TOKEN_ID.to_string(),
            org: None,
            capabilities: vec![Read, Logs, Exec, VolumesDestroy, FleetAdmin],
        }
    }

    /// Whether it holds `capability`.
    pub fn may(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    /// Whether it sees the org `org`.
    pub fn sees_org(&self, org: &str) -> bool {
        self.org.as_deref().is_none_or(|o| o == org)
    }

    /// Whether it sees the resource with the qualified name `qualified`
    /// (`org/project/app[/env]`).
    pub fn sees(&self, qualified: &str) -> bool {
        self.sees_org(qualified.split('/').next().unwrap_or_default())
    }

    /// Whether it sees an event: an org token sees its org's events only.
    pub fn sees_event(&self, event: &Event) -> bool {
        self.org.is_none() || event.org.as_deref().is_some_and(|o| self.sees_org(o))
    }
}

/// The grant of the `Authorization` header's bearer token, or why none.
fn grant_of(shared: &Shared, header: Option<&str>) -> Result<Grant, String> {
    let token = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| "missing API token".to_string())?;
    if constant_time_eq(token.as_bytes(), shared.settings.api_token.as_bytes()) {
        return Ok(Grant::fleet());
    }
    let (id, secret) = parse_token(token).ok_or_else(|| TokenRefusal::Unknown.to_string())?;
    let record = shared.lock().token(id);
    let record = check_token(record.as_ref(), secret, now()).map_err(|e| e.to_string())?;
    Ok(Grant {
        token: record.id,
        org: Some(record.org),
        capabilities: record.role.capabilities().to_vec(),
    })
}

/// Whether the token of `grant` is still valid (not revoked, not expired):
/// a followed stream ends when it is not.
pub fn still_granted(shared: &Shared, grant: &Grant) -> Result<(), String> {
    if grant.token == FLEET_TOKEN_ID {
        return Ok(());
    }
    match shared.lock().token(&grant.token) {
        Some(t) if t.revoked.is_some() => Err(TokenRefusal::Revoked(t.id).to_string()),
        Some(t) if t.expires.is_some_and(|e| e <= now()) => {
            Err(TokenRefusal::Expired(t.id).to_string())
        }
        Some(_) => Ok(()),
        None => Err(TokenRefusal::Unknown.to_string()),
    }
}

/// Records an audit event.
fn audit(shared: &Shared, event: Event) {
    let mut controller = shared.lock();
    controller.record(event);
    shared.commit(&mut controller);
}

/// How a command ended, in words: `exit 3`, `signal 9`, or `ended`.
pub fn exit_outcome(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "ended".to_string(),
    }
}

/// Records an exec session (`audit.exec`): who, which instance, what, how
/// long, how it ended.
pub fn audit_exec(
    shared: &Shared,
    grant: &Grant,
    instance: &str,
    argv: &[String],
    outcome: &str,
    started: std::time::Instant,
) {
    let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    audit(
        shared,
        Event::new(
            kind::AUDIT_EXEC,
            now(),
            format!(
                "exec in {instance} by token {}: {} ({outcome}, {millis} ms)",
                grant.token,
                argv.first().map_or("", String::as_str)
            ),
        )
        .fields(serde_json::json!({
            "token": grant.token, "instance": instance, "argv": argv,
            "outcome": outcome, "duration_ms": millis,
        })),
    );
}

/// The middleware of a route needing `need`: see the module's text.
pub async fn authorize(
    State((shared, need)): State<(Arc<Shared>, Capability)>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let grant = match grant_of(&shared, header) {
        Ok(grant) => grant,
        Err(why) => {
            audit(
                &shared,
                Event::new(kind::AUDIT_DENIED, now(), format!("{method} {path}: {why}")).fields(
                    serde_json::json!({"method": method.as_str(), "path": path, "status": 401}),
                ),
            );
            let mut e = ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, why);
            e.hint = Some(
                "pass --token or set VT_TOKEN (`vt tokens create`, or the token in the controller's fleet.json)"
                    .into(),
            );
            return e.into_response();
        }
    };
    if !grant.may(need) {
        let need_name = serde_json::to_value(need)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        audit(
            &shared,
            Event::new(
                kind::AUDIT_DENIED,
                now(),
                format!("{method} {path}: token {} lacks {need_name}", grant.token),
            )
            .fields(serde_json::json!({
                "token": grant.token, "method": method.as_str(), "path": path,
                "status": 403, "needs": need_name,
            })),
        );
        return ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!("this token may not {need_name} (`{method} {path}`)"),
        )
        .into_response();
    }
    let recorded = method != Method::GET || need == Capability::Exec;
    req.extensions_mut().insert(grant.clone());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    if recorded {
        let status = response.status().as_u16();
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        audit(
            &shared,
            Event::new(
                kind::AUDIT_CALL,
                now(),
                format!("{method} {path} by token {}: {status}", grant.token),
            )
            .fields(serde_json::json!({
                "token": grant.token, "method": method.as_str(), "path": path,
                "status": status, "duration_ms": millis,
            })),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_org_grant_sees_its_org_only() {
        let grant = Grant {
            token: "tok_1".into(),
            org: Some("acme".into()),
            capabilities: vec![Capability::Read],
        };
        assert!(grant.sees("acme/shop/web/prod"));
        assert!(!grant.sees("globex/shop/web/prod"));
        assert!(!grant.sees("acmex/shop/web"));
        let mut event = Event::new("x", 1, "m").for_workload("acme/shop/web/prod");
        assert!(grant.sees_event(&event));
        event.org = None;
        assert!(
            !grant.sees_event(&event),
            "fleet-wide events are not an org's"
        );
        assert!(Grant::fleet().sees_event(&event));
        assert!(!grant.may(Capability::Exec));
    }
}
