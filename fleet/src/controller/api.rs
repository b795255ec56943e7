//! The HTTP API (axum): status, describe, releases, events (with live follow
//! over server-sent events), hosts, and the git webhook. Every route but the
//! webhook needs `Authorization: Bearer <api token>`; the webhook is signed
//! with the shared secret, GitHub style (`X-Hub-Signature-256: sha256=<hex>`).

use crate::controller::daemon::Shared;
use crate::controller::events::{Event, EventFilter};
use crate::controller::views;
use crate::wire::messages::LogLine;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{self, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::sync::Arc;
use tokio_stream::StreamExt;
use tracing::warn;

/// An API error: a stable code, a message and the HTTP status.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable code (`E_UNAUTHORIZED`, `E_NOT_FOUND`, ...).
    pub code: String,
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
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            code: code.into(),
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

impl From<crate::controller::store::StoreError> for ApiError {
    fn from(e: crate::controller::store::StoreError) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "E_STORE",
            crate::controller::error_chain(&e),
        )
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Query of the per-app routes.
#[derive(Debug, Default, Deserialize)]
pub struct AppQuery {
    /// App name or suffix of its qualified name.
    pub app: Option<String>,
    /// Env name.
    pub env: Option<String>,
}

/// Query of `/v1/events`.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    /// The filter.
    #[serde(flatten)]
    pub filter: EventFilter,
    /// Most events returned (newest), default 200.
    pub limit: Option<usize>,
    /// Keep the response open and stream new events (SSE).
    #[serde(default)]
    pub follow: bool,
}

/// Serves the API on `listener` until aborted.
pub async fn serve(shared: Arc<Shared>, listener: tokio::net::TcpListener) {
    let app = router(shared);
    if let Err(e) = axum::serve(listener, app).await {
        warn!(error = %e, "the HTTP API stopped");
    }
}

/// The routes.
pub fn router(shared: Arc<Shared>) -> Router {
    let authed = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/describe", get(describe))
        .route("/v1/releases", get(releases))
        .route("/v1/events", get(events))
        .route("/v1/hosts", get(hosts))
        .route("/v1/logs", get(logs))
        .route_layer(axum::middleware::from_fn_with_state(shared.clone(), auth));
    Router::new()
        .route("/v1/hooks/git", post(git_hook))
        .merge(authed)
        .with_state(shared)
}

async fn auth(
    State(shared): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let expected = format!("Bearer {}", shared.settings.api_token);
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes())) {
        return next.run(req).await;
    }
    let mut e = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "E_UNAUTHORIZED",
        "missing or wrong API token",
    );
    e.hint =
        Some("pass --token or set VT_TOKEN (the token is in the controller's fleet.json)".into());
    e.into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn need_app(q: &AppQuery) -> Result<&str, ApiError> {
    q.app.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "E_USAGE",
            "the `app` query parameter is required",
        )
    })
}

async fn status(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<AppQuery>,
) -> ApiResult<views::StatusView> {
    Ok(Json(views::status(
        &shared.lock(),
        q.app.as_deref(),
        q.env.as_deref(),
    )))
}

async fn describe(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<AppQuery>,
) -> ApiResult<Vec<views::DescribeView>> {
    let app = need_app(&q)?;
    let found = views::describe(&shared.lock(), app, q.env.as_deref())?;
    if found.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "E_NOT_FOUND",
            format!("the controller has no release of `{app}`"),
        ));
    }
    Ok(Json(found))
}

async fn releases(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<AppQuery>,
) -> ApiResult<Vec<crate::controller::releases::Release>> {
    let app = need_app(&q)?;
    Ok(Json(views::releases(
        &shared.lock(),
        app,
        q.env.as_deref(),
    )?))
}

async fn hosts(State(shared): State<Arc<Shared>>) -> ApiResult<Vec<views::HostView>> {
    Ok(Json(views::hosts(&shared.lock())))
}

async fn events(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(200);
    // Subscribe before reading the backlog so nothing falls in between.
    let live = shared.events.subscribe();
    let backlog = shared.lock().store().events(&q.filter, limit)?;
    if !q.follow {
        return Ok(Json(backlog).into_response());
    }
    let last = backlog
        .last()
        .map_or(q.filter.after.unwrap_or(0), |e| e.seq);
    let filter = q.filter.clone();
    let backlog = tokio_stream::iter(backlog);
    let live = tokio_stream::wrappers::BroadcastStream::new(live)
        .filter_map(|e| e.ok())
        .filter(move |e: &Event| e.seq > last && filter.matches(e));
    let stream = backlog.chain(live).map(|e| {
        Ok::<_, Infallible>(
            sse::Event::default()
                .event("event")
                .json_data(&e)
                .unwrap_or_default(),
        )
    });
    Ok(Sse::new(stream)
        .keep_alive(sse::KeepAlive::default())
        .into_response())
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
            "E_INTERNAL",
            "bad webhook secret",
        )
    })?;
    mac.update(&body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if !constant_time_eq(signature.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "E_BAD_SIGNATURE",
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
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let live = shared.logs.subscribe();
    let mut backlog: Vec<LogLine> = shared
        .lock()
        .store()
        .logs(0, q.limit.unwrap_or(500), |l| q.matches(l))?
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    // Lines from several instances arrive in batches: show them in time order.
    backlog.sort_by_key(|l| l.time);
    if !q.follow {
        return Ok(Json(backlog).into_response());
    }
    let live = tokio_stream::wrappers::BroadcastStream::new(live)
        .filter_map(|l| l.ok())
        .filter(move |l: &LogLine| q.matches(l));
    let stream = tokio_stream::iter(backlog).chain(live).map(|l| {
        Ok::<_, Infallible>(
            sse::Event::default()
                .event("log")
                .json_data(&l)
                .unwrap_or_default(),
        )
    });
    Ok(Sse::new(stream)
        .keep_alive(sse::KeepAlive::default())
        .into_response())
}
