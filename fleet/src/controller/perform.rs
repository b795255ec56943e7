//! Carrying out what the API asks beyond views: a request parsed into a
//! `vt_control::operations::Operation` goes to the controller, which decides
//! ([`Controller::decide`](vt_control::core::Controller)); this module does
//! the IO the decision asks for (an exec's host connection, a volume's
//! deletion on its host) and maps failures to [`ApiError`]s. Shared by the
//! API's handlers and the exec WebSocket (`attach`), which depend on it and
//! not on each other.

use crate::controller::access::Grant;
use crate::controller::shared::Shared;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use vt_control::operations::{
    Decision, ExecRoute, NodeRef, Operation, OperationError, VolumeDestroy,
};
use vt_control::views;
use vt_wire::clock::now;
use vt_wire::codes::ErrorCode;

/// An API error: a stable code, a message and the HTTP status.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable code (`E_UNAUTHORIZED`, `E_NOT_FOUND`, ...).
    pub code: ErrorCode,
    /// What went wrong.
    pub message: String,
    /// How to fix it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// HTTP status.
    #[serde(skip)]
    pub status: u16,
}

impl ApiError {
    /// An error answered with `status`.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            hint: None,
            status: status.as_u16(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self)).into_response()
    }
}

impl From<vt_control::store::StoreError> for ApiError {
    fn from(e: vt_control::store::StoreError) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Store,
            vt_wire::error_chain(&e),
        )
    }
}

/// What the daemon did for an operation.
pub enum Performed {
    /// The host deleted the volume (as it was before).
    VolumeDestroyed(views::VolumeView),
    /// Where the exec runs, and the connection to its host.
    ExecRouted(ExecRoute, quinn::Connection),
    /// A node was revoked or removed, and its session ended.
    NodeChanged(NodeChange),
}

/// A host or an edge revoked or removed (`vt hosts revoke|remove`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeChange {
    /// `host` or `edge`.
    pub role: vt_wire::Role,
    /// Its name.
    pub name: String,
    /// `revoked` or `removed`.
    pub done: String,
    /// Whether a session was open (and was ended).
    pub session_ended: bool,
}

impl Performed {
    /// The destroyed volume.
    pub fn volume(self) -> Result<views::VolumeView, ApiError> {
        match self {
            Performed::VolumeDestroyed(volume) => Ok(volume),
            _ => Err(mismatch("a volume")),
        }
    }

    /// The exec's route and connection.
    pub fn route(self) -> Result<(ExecRoute, quinn::Connection), ApiError> {
        match self {
            Performed::ExecRouted(route, conn) => Ok((route, conn)),
            _ => Err(mismatch("an exec route")),
        }
    }

    /// The node revoked or removed.
    pub fn node(self) -> Result<NodeChange, ApiError> {
        match self {
            Performed::NodeChanged(change) => Ok(change),
            _ => Err(mismatch("a node")),
        }
    }
}

/// A handler got another answer than its operation's (a bug).
fn mismatch(wanted: &str) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Internal,
        format!("the controller did not answer with {wanted}"),
    )
}

/// Hands `operation` to the controller and does the IO its decision asks for:
/// an exec's host connection, a volume's deletion on its host.
///
/// An org token's request for another org's instance or volume is not found,
/// as if it did not exist.
pub async fn perform(
    shared: &Shared,
    operation: &Operation,
    grant: &Grant,
) -> Result<Performed, ApiError> {
    let decision = shared.lock().decide(operation)?;
    let hidden = match &decision {
        Decision::RouteExec(route) => !grant.sees(&route.name),
        Decision::DestroyVolume(destroy) => !grant.sees(&destroy.volume.workload),
        Decision::EndSessions { .. } => false,
    };
    if hidden {
        return Err(operation.not_found().into());
    }
    match decision {
        Decision::DestroyVolume(destroy) => destroy_on_host(shared, destroy)
            .await
            .map(Performed::VolumeDestroyed),
        Decision::RouteExec(route) => {
            let conn = shared
                .host_conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&route.host)
                .cloned();
            let conn = conn.ok_or_else(|| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::HostUnreachable,
                    format!(
                        "host {} of instance {} is not connected",
                        route.host, route.instance
                    ),
                )
            })?;
            Ok(Performed::ExecRouted(route, conn))
        }
        Decision::EndSessions { node, remove } => {
            Ok(Performed::NodeChanged(end_sessions(shared, &node, remove)?))
        }
    }
}

/// Revokes or removes `node` and closes its open session at once: from now
/// on its certificate is refused.
fn end_sessions(shared: &Shared, node: &NodeRef, remove: bool) -> Result<NodeChange, ApiError> {
    {
        let mut controller = shared.lock();
        let changed = if remove {
            controller.remove_node(node.role, &node.name, now())
        } else {
            controller.revoke_node(node.role, &node.name, now())
        };
        shared.commit(&mut controller);
        changed.map_err(OperationError::from)?;
    }
    let done = if remove { "removed" } else { "revoked" };
    let conn = shared.conns(node.role).remove(&node.name);
    if let Some(conn) = &conn {
        conn.close(
            crate::controller::sessions::REFUSED.into(),
            format!("{} {} was {done}", node.role, node.name).as_bytes(),
        );
    }
    shared.changed.send_modify(|v| *v += 1);
    Ok(NodeChange {
        role: node.role,
        name: node.name.clone(),
        done: done.to_string(),
        session_ended: conn.is_some(),
    })
}

/// How long the host has to delete a volume.
const DESTROY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Sends the host its command, waits until it no longer reports the volume,
/// then has the controller record the deletion.
async fn destroy_on_host(
    shared: &Shared,
    destroy: VolumeDestroy,
) -> Result<views::VolumeView, ApiError> {
    shared
        .host_commands
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(destroy.host.clone())
        .or_default()
        .push(destroy.message.clone());
    shared.changed.send_modify(|v| *v += 1);
    let deadline = tokio::time::Instant::now() + DESTROY_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut c = shared.lock();
        if c.volume(&destroy.volume.id).is_none() {
            c.volume_destroyed(&destroy, now());
            shared.commit(&mut c);
            return Ok(destroy.volume);
        }
    }
    Err(ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::HostUnreachable,
        format!(
            "host {} did not delete volume {} within {}s",
            destroy.host,
            destroy.volume.id,
            DESTROY_TIMEOUT.as_secs()
        ),
    ))
}

impl From<OperationError> for ApiError {
    fn from(e: OperationError) -> Self {
        let status = match e {
            OperationError::NoVolume(_)
            | OperationError::NoInstance { .. }
            | OperationError::NoNode(_) => StatusCode::NOT_FOUND,
            OperationError::Attached { .. } => StatusCode::CONFLICT,
        };
        let mut error = ApiError::new(status, e.code(), e.to_string());
        error.hint = e.hint().map(str::to_string);
        error
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refusals_answer_their_status_code_and_hint() {
        let answer = |e: OperationError| {
            let e = ApiError::from(e);
            (e.status, serde_json::to_value(&e).unwrap())
        };
        assert_eq!(
            answer(OperationError::NoVolume("vol_1".into())),
            (
                404,
                serde_json::json!({"code": "E_NOT_FOUND", "message": "no volume vol_1"})
            )
        );
        assert_eq!(
            answer(OperationError::NoInstance { what: "web".into() }),
            (
                404,
                serde_json::json!({"code": "E_NOT_FOUND", "message": "no running instance of web"})
            )
        );
        let (status, body) = answer(OperationError::Attached {
            id: "vol_1".into(),
            instance: "inst_1".into(),
        });
        assert_eq!(
            (status, &body["code"]),
            (409, &serde_json::json!("E_ATTACHED"))
        );
        assert_eq!(
            body["message"],
            "volume vol_1 is attached to instance inst_1"
        );
        assert_eq!(
            body["hint"],
            "stop the instance first (remove the volume or the env from the repository)"
        );
    }
}
