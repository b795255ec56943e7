//! The HTTP API (axum): status, describe, releases, events (with live follow
//! over server-sent events), hosts, tokens, and the git webhook. Every route
//! but the webhook needs `Authorization: Bearer <api token>` and declares the
//! capability it needs in [`routes`], the one table the router is built from
//! ([`crate::controller::access`] checks it and scopes what an org token
//! sees); the webhook is signed with the shared secret, GitHub style
//! (`X-Hub-Signature-256: sha256=<hex>`).
//!
//! Exec: `POST /v1/exec` runs a command to its end and answers its output
//! ([`ExecRequest`] → [`ExecResult`]); `GET /v1/exec/attach` is an
//! interactive session over a WebSocket (stdin, a terminal, resizes), whose
//! query and messages are documented in [`crate::controller::attach`].
//!
//! Handlers that ask more of the controller than a view parse their request
//! into a [`vt_control::operations::Operation`] (`parse_exec`,
//! `parse_destroy_volume`, `attach::parse_attach`); the controller decides
//! ([`vt_control::core::Controller::decide`]) and [`perform`] does the IO the
//! decision names (the host's connection, the host's command and the wait).

use crate::controller::access::{authorize, still_granted, Grant};
use crate::controller::perform::{perform, ApiError, NodeChange};
use crate::controller::shared::Shared;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{self, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Extension;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::sync::Arc;
use tokio_stream::StreamExt;
use tracing::warn;
use vt_control::core::{Capability, TokenRecord, TokenRole, TOKEN_PREFIX};
use vt_control::operations::{ExecRoute, ExecTarget, NodeRef, Operation};
use vt_control::{endpoint_views, views};
use vt_plan::events::{Event, EventFilter};
use vt_wire::clock::now;
use vt_wire::codes::ErrorCode;
use vt_wire::constant_time_eq;
use vt_wire::messages::LogLine;
use vt_wire::Role;

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Query of the per-app routes.
#[derive(Debug, Default, Deserialize)]
pub struct AppQuery {
    /// App name or suffix of its qualified name.
    pub app: Option<String>,
    /// Env name.
    pub env: Option<String>,
}

/// Query of `/v1/events`: the [`EventFilter`] fields (not flattened: serde's
/// flatten cannot parse numbers out of a query string).
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    /// App filter.
    pub app: Option<String>,
    /// Env filter.
    pub env: Option<String>,
    /// Kind filter.
    pub kind: Option<String>,
    /// Only events after this sequence number.
    pub after: Option<u64>,
    /// Only events at or after this time (Unix ms).
    pub since: Option<u64>,
    /// Most events returned (newest), default 200.
    pub limit: Option<usize>,
    /// Keep the response open and stream new events (SSE).
    #[serde(default)]
    pub follow: bool,
}

/// Serves the API on `listener` until aborted: over TLS with `tls`, else
/// plain HTTP (loopback only, `api_tls::server_config` decides).
pub async fn serve(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let app = router(shared);
    let served = match tls {
        Some(config) => match crate::controller::api_tls::TlsListener::new(listener, config) {
            Ok(listener) => axum::serve(listener, app).await,
            Err(e) => Err(e),
        },
        None => axum::serve(listener, app).await,
    };
    if let Err(e) = served {
        warn!(error = %e, "the HTTP API stopped");
    }
}

/// One route of the API: its path, the capability it needs, its handlers.
struct ApiRoute {
    path: &'static str,
    need: Capability,
    handler: MethodRouter<Arc<Shared>>,
}

fn route(path: &'static str, need: Capability, handler: MethodRouter<Arc<Shared>>) -> ApiRoute {
    ApiRoute {
        path,
        need,
        handler,
    }
}

/// Every token-authenticated route with the capability it needs: the one
/// table the router is built from (`GET /v1/routes` answers it).
fn routes() -> Vec<ApiRoute> {
    use Capability::*;
    vec![
        route("/v1/status", Read, get(status)),
        route("/v1/describe", Read, get(describe)),
        route("/v1/releases", Read, get(releases)),
        route("/v1/events", Read, get(events)),
        route("/v1/volumes", Read, get(volumes)),
        route("/v1/endpoints", Read, get(endpoints)),
        route("/v1/usage", Read, get(usage)),
        route("/v1/logs", Logs, get(logs)),
        route("/v1/exec", Exec, post(exec)),
        route(
            "/v1/exec/attach",
            Exec,
            get(crate::controller::attach::attach),
        ),
        route("/v1/volumes/destroy", VolumesDestroy, post(destroy_volume)),
        route("/v1/baseline", FleetAdmin, get(baseline)),
        route("/v1/hosts", FleetAdmin, get(hosts)),
        route("/v1/hosts/{name}", FleetAdmin, delete(remove_host)),
        route("/v1/hosts/{name}/revoke", FleetAdmin, post(revoke_host)),
        route("/v1/edges/{name}", FleetAdmin, delete(remove_edge)),
        route("/v1/edges/{name}/revoke", FleetAdmin, post(revoke_edge)),
        route("/v1/nodes", FleetAdmin, get(nodes)),
        route(
            "/v1/tokens",
            FleetAdmin,
            get(list_tokens).post(create_token),
        ),
        route("/v1/tokens/{id}", FleetAdmin, delete(revoke_token)),
        route("/v1/routes", FleetAdmin, get(route_table)),
    ]
}

/// A route and the capability it needs, for `GET /v1/routes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteNeed {
    /// The path pattern (`/v1/hosts/{name}`).
    pub path: String,
    /// What a token needs to call it.
    pub needs: Capability,
}

/// The routes with what they need.
async fn route_table() -> ApiResult<Vec<RouteNeed>> {
    Ok(Json(
        routes()
            .into_iter()
            .map(|r| RouteNeed {
                path: r.path.to_string(),
                needs: r.need,
            })
            .collect(),
    ))
}

/// The routes, each behind [`authorize`] with what it needs; the webhook,
/// signed instead.
pub fn router(shared: Arc<Shared>) -> Router {
    let mut app = Router::new().route("/v1/hooks/git", post(git_hook));
    for ApiRoute {
        path,
        need,
        handler,
    } in routes()
    {
        let guard = axum::middleware::from_fn_with_state((shared.clone(), need), authorize);
        app = app.route(path, handler.route_layer(guard));
    }
    app.with_state(shared)
}

fn need_app(q: &AppQuery) -> Result<&str, ApiError> {
    q.app.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Usage,
            "the `app` query parameter is required",
        )
    })
}

async fn status(
    State(shared): State<Arc<Shared>>,
    Extension(grant): Extension<Grant>,
    Query(q): Query<AppQuery>,
) -> ApiResult<views::StatusView> {
    let mut view = views::status(&shared.lock(), q.app.as_deref(), q.env.as_deref());
    view.workloads.retain(|w| grant.sees(&w.name));
    view.source = Some(shared.source_view());
    Ok(Json(view))
}

async fn describe(
    State(shared): State<Arc<Shared>>,
    Extension(grant): Extension<Grant>,
    Query(q): Query<AppQuery>,
) -> ApiResult<Vec<views::DescribeView>> {
    let app = need_app(&q)?;
    let mut found = views::describe(&shared.lock(), app, q.env.as_deref())?;
    found.retain(|d| grant.sees(&d.status.name));
    if found.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("the controller has no release of `{app}`"),
        ));
    }
    Ok(Json(found))
}

async fn releases(
    State(shared): State<Arc<Shared>>,
    Extension(grant): Extension<Grant>,
    Query(q): Query<AppQuery>,
) -> ApiResult<Vec<views::ReleaseView>> {
    let app = need_app(&q)?;
    let mut list = views::releases(&shared.lock(), app, q.env.as_deref())?;
    list.retain(|r| grant.sees(&r.release.name));
    Ok(Json(list))
}

/// What `vt diff --against fleet` plans against.
async fn baseline(State(shared): State<Arc<Shared>>) -> ApiResult<vt_plan::preview::Baseline> {
    Ok(Json(views::baseline(&shared.lock())))
}

async fn hosts(State(shared): State<Arc<Shared>>) -> ApiResult<Vec<views::HostView>> {
    Ok(Json(views::hosts(&shared.lock())))
}

/// Every enrolled host and edge: certificate fingerprint, expiry, revocation.
async fn nodes(State(shared): State<Arc<Shared>>) -> ApiResult<Vec<vt_control::core::NodeRecord>> {
    Ok(Json(shared.lock().nodes()))
}

/// `vt hosts|edges revoke|remove NAME` as an operation.
fn parse_node_change(role: Role, name: String, remove: bool) -> Operation {
    let node = NodeRef { role, name };
    if remove {
        Operation::RemoveNode(node)
    } else {
        Operation::RevokeNode(node)
    }
}

async fn change_node(
    shared: &Shared,
    grant: &Grant,
    operation: Operation,
) -> ApiResult<NodeChange> {
    Ok(Json(perform(shared, &operation, grant).await?.node()?))
}

async fn revoke_host(
    State(shared): State<Arc<Shared>>,
    Extension(grant): Extension<Grant>,
    Path(name): Path<String>,
) -> ApiResult<NodeChange> {
    change_node(&shared, &grant, parse_node_change(Role::Host, name, false)).await
}

async fn remove_host(
    State(shared): State<Arc<Shared>>,
    Extension(grant): Extension<Grant>,
    Path(name): Path<String>,
) -> ApiResult<NodeChange> {
    change_node(&shared, &grant, parse_node_change(Role::Host, name, true)).await
}

async fn revoke_edge(
    State(shared): State<Arc<Shared>>,
    Extension(grant): Extension<Grant>,
    Path(name): Path<String>,
) -> ApiResult<NodeChange> {
    change_node(&shared, &grant, parse_node_change(Role::Edge, name, false)).await
}

async fn remove_edge(
    State(shared): State<Arc<Shared>>,
    Extension(grant): Extension<Grant>,
    Path(name): Path<String>,
) -> ApiResult<NodeChange> {
    change_node(&shared, &grant, parse_node_change(Role::Edge, name, true)).await
}

async fn events(
    State(shared): State<Arc<Shared>>,
    Extension(grant): Extension<Grant>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(200);
    let filter = EventFilter {
        app: q.app.clone(),
        env: q.env.clone(),
        kind: q.kind.clone(),
        after: q.after,
        since: q.since,
    };
    // Subscribe before reading the backlog so nothing falls in between.
    let live = shared.events.subscribe();
    let mut backlog = shared.lock().store().events(&filter, limit)?;
    backlog.retain(|e| grant.sees_event(e));
    if !q.follow {
        return Ok(Json(backlog).into_response());
    }
    let last = backlog.last().map_or(filter.after.unwrap_or(0), |e| e.seq);
    let backlog = tokio_stream::iter(backlog);
    let sees = grant.clone();
    let live = tokio_stream::wrappers::BroadcastStream::new(live)
        .filter_map(|e| e.ok())
        .filter(move |e: &Event| e.seq > last && filter.matches(e) && sees.sees_event(e));
    let stream = backlog.chain(live).map(|e| {
        Ok::<_, Infallible>(
            sse::Event::default()
                .event("event")
                .json_data(&e)
                .unwrap_or_default(),
        )
    });
    Ok(Sse::new(while_granted(shared, grant, stream))
        .keep_alive(sse::KeepAlive::default())
        .into_response())
}

/// How often a followed stream checks that its token is still valid.
const GRANT_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// Forwards a followed stream until its token is revoked or expires (checked
/// every [`GRANT_CHECK`]); then sends an `error` event saying so and ends.
fn while_granted<S>(
    shared: Arc<Shared>,
    grant: Grant,
    events: S,
) -> tokio_stream::wrappers::ReceiverStream<Result<sse::Event, Infallible>>
where
    S: tokio_stream::Stream<Item = Result<sse::Event, Infallible>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut events = Box::pin(events);
        let mut checks = tokio::time::interval(GRANT_CHECK);
        loop {
            tokio::select! {
                item = events.next() => {
                    let Some(item) = item else { return };
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
                _ = checks.tick() => {
                    if let Err(why) = still_granted(&shared, &grant) {
                        let body = serde_json::json!({"code": ErrorCode::Unauthorized, "message": why});
                        let end = sse::Event::default().event("error").json_data(body);
                        let _ = tx.send(Ok(end.unwrap_or_default())).await;
                        return;
                    }
                }
                () = tx.closed() => return,
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Answer of the webhook.
#[derive(Debug, Serialize, Deserialize)]
pub struct HookAccepted {
    /// Always true.
    pub accepted: bool,
}

async fn git_hook(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<HookAccepted> {
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .unwrap_or_default();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(shared.settings.webhook_secret.as_bytes())
        .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "bad webhook secret",
        )
    })?;
    mac.update(&body);
    let expected = hex::encode(mac.finalize().into_bytes());
    if !constant_time_eq(signature.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::BadSignature,
            "the webhook signature does not match",
        ));
    }
    shared.git_kick.notify_one();
    Ok(Json(HookAccepted { accepted: true }))
}

/// Query of `/v1/logs`.
#[derive(Debug, Default, Deserialize)]
pub struct LogsQuery {
    /// App name or suffix of its qualified name.
    pub app: Option<String>,
    /// Env name.
    pub env: Option<String>,
    /// Only this instance.
    pub instance: Option<String>,
    /// Only lines at or after this time (Unix ms).
    pub since: Option<u64>,
    /// Only lines before this time (Unix ms).
    pub until: Option<u64>,
    /// Only lines containing this text.
    pub grep: Option<String>,
    /// Most lines returned (newest), default 500.
    pub limit: Option<usize>,
    /// Keep the response open and stream new lines (SSE).
    #[serde(default)]
    pub follow: bool,
}

impl LogsQuery {
    fn matches(&self, l: &LogLine) -> bool {
        self.app
            .as_deref()
            .is_none_or(|a| views::matches(&l.name, a, self.env.as_deref()))
            && self.instance.as_deref().is_none_or(|i| l.instance == i)
            && self.since.is_none_or(|t| l.time >= t)
            && self.until.is_none_or(|t| l.time < t)
            && self.grep.as_deref().is_none_or(|g| l.line.contains(g))
    }
}

async fn logs(
    State(shared): State<Arc<Shared>>,
    Extension(grant): Extension<Grant>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let live = shared.logs.subscribe();
    let mut backlog: Vec<LogLine> = shared
        .lock()
        .store()
        .logs(0, q.limit.unwrap_or(500), |l| {
            grant.sees(&l.name) && q.matches(l)
        })?
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    // Lines from several instances arrive in batches: show them in time order.
    backlog.sort_by_key(|l| l.time);
    if !q.follow {
        return Ok(Json(backlog).into_response());
    }
    let sees = grant.clone();
    let live = tokio_stream::wrappers::BroadcastStream::new(live)
        .filter_map(|l| l.ok())
        .filter(move |l: &LogLine| sees.sees(&l.name) && q.matches(l));
    let stream = tokio_stream::iter(backlog).chain(live).map(|l| {
        Ok::<_, Infallible>(
            sse::Event::default()
                .event("log")
                .json_data(&l)
                .unwrap_or_default(),
        )
    });
    Ok(Sse::new(while_granted(shared, grant, stream))
        .keep_alive(sse::KeepAlive::default())
        .into_response())
}

/// Body of `POST /v1/exec`.
#[derive(Debug, Deserialize)]
pub struct ExecRequest {
    /// App name or suffix of its qualified name.
    pub app: String,
    /// Env name.
    pub env: Option<String>,
    /// A specific instance (default: a healthy one).
    pub instance: Option<String>,
    /// Command and arguments.
    pub argv: Vec<String>,
    /// Bytes for stdin.
    #[serde(default)]
    pub stdin: Vec<u8>,
}

/// What `POST /v1/exec` answers.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ExecResult {
    /// The instance it ran in.
    pub instance: String,
    /// The host of that instance.
    pub host: String,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// Signal, if one killed it.
    pub signal: Option<i32>,
}

/// How long an exec may run.
const EXEC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// `POST /v1/exec`'s body as the operation that routes it.
pub fn parse_exec(req: &ExecRequest) -> Operation {
    Operation::RouteExec(ExecTarget {
        app: req.app.clone(),
        env: req.env.clone(),
        instance: req.instance.clone(),
    })
}

/// `POST /v1/volumes/destroy`'s body as an operation.
pub fn parse_destroy_volume(req: DestroyVolume) -> Operation {
    Operation::DestroyVolume { id: req.id }
}

async fn exec(
    State(shared): State<Arc<Shared>>,
    Extension(grant): Extension<Grant>,
    Json(req): Json<ExecRequest>,
) -> ApiResult<ExecResult> {
    use vt_wire::frame;
    use vt_wire::messages::{ExecCommand, ExecEvent};
    let (ExecRoute { instance, host, .. }, conn) =
        perform(&shared, &parse_exec(&req), &grant).await?.route()?;
    let wire_error = |e: vt_wire::WireError| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::HostUnreachable,
            format!("exec on host {host}: {}", vt_wire::error_chain(&e)),
        )
    };
    let run = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| wire_error(e.into()))?;
        frame::send(
            &mut send,
            &ExecCommand {
                instance: instance.as_str().into(),
                argv: req.argv.clone(),
                stdin: req.stdin.clone(),
                ..ExecCommand::default()
            },
        )
        .await
        .map_err(wire_error)?;
        let mut result = ExecResult {
            instance: instance.clone(),
            host: host.clone(),
            ..ExecResult::default()
        };
        loop {
            match frame::recv::<ExecEvent>(&mut recv)
                .await
                .map_err(wire_error)?
            {
                Some(ExecEvent::Output {
                    stream: vt_wire::messages::Stream::Stderr,
                    data,
                }) => result.stderr.extend(data),
                Some(ExecEvent::Output { data, .. }) => result.stdout.extend(data),
                Some(ExecEvent::Exited { code, signal }) => {
                    result.code = code;
                    result.signal = signal;
                    return Ok(result);
                }
                Some(ExecEvent::Error { message }) => {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        ErrorCode::Exec,
                        message,
                    ))
                }
                None => {
                    return Err(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        ErrorCode::Exec,
                        "the host ended the exec without an exit status",
                    ))
                }
            }
        }
    };
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(EXEC_TIMEOUT, run)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::Exec,
                format!(
                    "the command did not finish within {}s",
                    EXEC_TIMEOUT.as_secs()
                ),
            )
        })??;
    let outcome = crate::controller::access::exit_outcome(result.code, result.signal);
    crate::controller::access::audit_exec(&shared, &grant, &instance, &req.argv, &outcome, started);
    Ok(Json(result))
}

async fn endpoints(
    State(shared): State<Arc<Shared>>,
    Extension(grant): Extension<Grant>,
    Query(q): Query<AppQuery>,
) -> ApiResult<Vec<endpoint_views::EndpointView>> {
    let mut list = endpoint_views::endpoints(&shared.lock(), q.app.as_deref(), q.env.as_deref());
    list.retain(|e| grant.sees(&e.workload));
    Ok(Json(list))
}

/// Query of `/v1/usage`.
#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    /// Window start, Unix ms (default: 30 days ago).
    pub since: Option<u64>,
}

async fn usage(
    State(shared): State<Arc<Shared>>,
    Extension(grant): Extension<Grant>,
    Query(q): Query<UsageQuery>,
) -> ApiResult<endpoint_views::UsageView> {
    let until = now();
    let since = q.since.unwrap_or(until.saturating_sub(30 * 24 * 3_600_000));
    let orgs = shared.lock().usage(since, until).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Store,
            vt_wire::error_chain(&e),
        )
    })?;
    let orgs = orgs
        .into_iter()
        .filter(|o| grant.sees_org(&o.org))
        .collect();
    Ok(Json(endpoint_views::UsageView { since, until, orgs }))
}

async fn volumes(
    State(shared): State<Arc<Shared>>,
    Extension(grant): Extension<Grant>,
    Query(q): Query<AppQuery>,
) -> ApiResult<Vec<views::VolumeView>> {
    let mut list = views::volumes(&shared.lock(), q.app.as_deref(), q.env.as_deref());
    list.retain(|v| grant.sees(&v.workload));
    Ok(Json(list))
}

/// Body of `POST /v1/volumes/destroy`.
#[derive(Debug, Deserialize)]
pub struct DestroyVolume {
    /// Volume ID.
    pub id: String,
}

async fn destroy_volume(
    State(shared): State<Arc<Shared>>,
    Extension(grant): Extension<Grant>,
    Json(req): Json<DestroyVolume>,
) -> ApiResult<views::VolumeView> {
    Ok(Json(
        perform(&shared, &parse_destroy_volume(req), &grant)
            .await?
            .volume()?,
    ))
}

/// Body of `POST /v1/tokens`.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreateToken {
    /// The org it may act on.
    pub org: String,
    /// viewer, deployer or admin.
    pub role: TokenRole,
    /// How long it is valid, milliseconds (none: until revoked).
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

/// What `POST /v1/tokens` answers: the record, and the token, shown once.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreatedToken {
    /// The record (no secret).
    #[serde(flatten)]
    pub record: TokenRecord,
    /// The token to use (`vtt_<id>_<secret>`); the controller keeps only its hash.
    pub token: String,
}

fn random_hex(bytes: usize) -> Result<String, ApiError> {
    vt_wire::random_hex(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            e.to_string(),
        )
    })
}

async fn create_token(
    State(shared): State<Arc<Shared>>,
    Extension(grant): Extension<Grant>,
    Json(req): Json<CreateToken>,
) -> ApiResult<CreatedToken> {
    vt_wire::validate_name(&req.org).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidName,
            format!("org: {e}"),
        )
    })?;
    let id = format!("tok_{}", random_hex(8)?);
    let secret = random_hex(24)?;
    let at = now();
    let mut controller = shared.lock();
    let record = controller.create_token(
        (&id, &secret),
        (&req.org, req.role),
        req.ttl_ms.map(|ttl| at.saturating_add(ttl)),
        (&grant.token, at),
    );
    shared.commit(&mut controller);
    Ok(Json(CreatedToken {
        token: format!("{TOKEN_PREFIX}{id}_{secret}"),
        record,
    }))
}

async fn list_tokens(State(shared): State<Arc<Shared>>) -> ApiResult<Vec<TokenRecord>> {
    Ok(Json(shared.lock().tokens()))
}

async fn revoke_token(
    State(shared): State<Arc<Shared>>,
    Extension(grant): Extension<Grant>,
    Path(id): Path<String>,
) -> ApiResult<TokenRecord> {
    let mut controller = shared.lock();
    let revoked = controller.revoke_token(&id, (&grant.token, now()));
    shared.commit(&mut controller);
    revoked.map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no token {id}"),
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_into_operations() {
        let req: ExecRequest = serde_json::from_str(
            r#"{"app": "shop/web", "env": "prod", "argv": ["ls"], "stdin": [104]}"#,
        )
        .unwrap();
        assert_eq!(
            parse_exec(&req),
            Operation::RouteExec(ExecTarget {
                app: "shop/web".into(),
                env: Some("prod".into()),
                instance: None,
            })
        );
        let req: DestroyVolume = serde_json::from_str(r#"{"id": "vol_1"}"#).unwrap();
        assert_eq!(
            parse_destroy_volume(req),
            Operation::DestroyVolume { id: "vol_1".into() }
        );
    }
}
