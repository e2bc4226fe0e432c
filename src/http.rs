//! HTTP: the router (built without a socket, so tests call it directly), JSON errors, health
//! endpoints, `/metrics`, the landing page, the task API and `/api/v1/status`.
//!
//! Architecture Invariant: `/metrics`, `/health/*` and `/api/v1/status` never await the network;
//! they read snapshots the background loops keep.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Request;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::access::{ApiPath, ApiQuery};
use crate::app::AppState;
use crate::store::{TaskFilter, TaskUpdateError};
use crate::tasks::{Queue, State as TaskState};

/// `{"error": "<code>", "message": "<sentence>"}` with a status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn store(e: crate::store::StoreError) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("{e}; retry shortly"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response()
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body is over 1 MiB; send fewer alerts per notification (max_alerts)",
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body could not be read: {r}"),
            )
        }
    }
}

/// Parses a JSON body: 415 for another content type, 400 for broken JSON, 422 for the wrong shape.
pub fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.split(';').next().map(str::trim) != Some("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            e.to_string(),
        ),
        _ => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body is not valid JSON: {e}"),
        ),
    })
}

/// Builds the whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/webhook/alertmanager", post(webhook))
        .route("/api/v1/tasks", get(list_tasks))
        .route("/api/v1/tasks/claim", post(claim))
        .route("/api/v1/tasks/{id}", get(get_task))
        .route("/api/v1/tasks/{id}/heartbeat", post(heartbeat))
        .route("/api/v1/tasks/{id}/complete", post(complete))
        .route("/api/v1/tasks/{id}/fail", post(fail))
        .route("/api/v1/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(crate::webhook::BODY_LIMIT));
    Router::new()
        .route("/", get(landing))
        .route("/metrics", get(metrics))
        .route("/health/live", get(live))
        .route("/health/startup", get(startup))
        .route("/health/ready", get(ready))
        .route("/api/v1/status", get(status))
        .merge(protected)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            mark_metrics_changed,
        ))
        // Authenticate every route but the open ones, before any body is read.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::access::guard,
        ))
        .with_state(state)
}

/// This API described in OpenAPI 3.1 (`docs/openapi.json`, checked against the running server).
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../docs/openapi.json"),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see GET / for the routes",
    )
}

async fn webhook(
    state: State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match body {
        Ok(b) => crate::webhook::receive(state, headers, b).await,
        Err(r) => {
            let e = ApiError::from(r);
            state
                .metrics
                .webhook_requests_total
                .with_label_values(&[e.status.as_str()])
                .inc();
            e.into_response()
        }
    }
}

/// Serves the cached exposition (see `crate::exposition`): gzip when the client accepts it.
async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(crate::exposition::accepts_gzip);
    let (cached, process) = app.metrics.exposition.body(gzip);
    let head = if gzip {
        cached.gzip.clone()
    } else {
        cached.plain.clone()
    };
    let len = head.len() + process.len();
    // Two frames, no copy of the cached body; the length is known, so no chunked encoding.
    let frames = [head, process].map(Ok::<_, std::convert::Infallible>);
    let mut r = axum::body::Body::from_stream(futures::stream::iter(frames)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}

/// Any request that can change state (webhook, task API) marks the `/metrics` cache stale before
/// it answers, so the client's next scrape sees its effect.
async fn mark_metrics_changed(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let writes = !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    let r = next.run(req).await;
    if writes {
        app.metrics.exposition.changed_now();
    }
    r
}

async fn live() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn startup(State(app): State<AppState>) -> Response {
    let s = app.checks.status();
    let code = if s.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let failing: Vec<_> = s
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| json!({"check": c.name, "reason": c.reason}))
        .collect();
    (code, Json(json!({"status": if s.ok { "ok" } else { "starting" }, "reasons": failing, "checks": s.checks}))).into_response()
}

async fn ready(State(app): State<AppState>) -> Response {
    let mut reasons = Vec::new();
    let s = app.checks.status();
    if !s.ok {
        for c in s.checks.iter().filter(|c| !c.ok) {
            reasons.push(json!({"check": c.name, "reason": c.reason}));
        }
    }
    match tokio::time::timeout(Duration::from_secs(2), app.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => reasons.push(json!({"check": "store", "reason": e.to_string()})),
        Err(_) => {
            reasons.push(json!({"check": "store", "reason": "the store did not answer within 2s"}))
        }
    }
    // Reads can work while writes fail (disk full, read-only, deleted file): not ready either.
    match tokio::time::timeout(Duration::from_secs(2), app.store.write_problem()).await {
        Ok(None) => {}
        Ok(Some(reason)) => reasons.push(json!({"check": "store_writes", "reason": reason})),
        Err(_) => reasons.push(
            json!({"check": "store_writes", "reason": "the write probe did not finish within 2s"}),
        ),
    }
    if reasons.is_empty() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reasons": reasons})),
        )
            .into_response()
    }
}

#[derive(Deserialize)]
struct PageQuery {
    partial: Option<u8>,
}

/// The page; `?partial=1` is the body alone, for the page's own live refresh.
async fn landing(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Response {
    let details = crate::access::authorized(&app.config.webhook.tokens, &headers);
    let status = crate::status::build(&app, None).await;
    let now = chrono::Utc::now();
    let html = if q.partial == Some(1) {
        crate::page::body(&status, details, now)
    } else {
        crate::page::render(&status, details, now)
    };
    ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

#[derive(Deserialize)]
struct StatusQuery {
    app: Option<String>,
}

async fn status(State(app): State<AppState>, ApiQuery(q): ApiQuery<StatusQuery>) -> Response {
    Json(crate::status::build(&app, q.app.as_deref()).await).into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    queue: Option<String>,
    state: Option<String>,
    app: Option<String>,
    limit: Option<i64>,
}

async fn list_tasks(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let queue = q
        .queue
        .as_deref()
        .map(|s| {
            Queue::parse(s).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_query",
                    format!("unknown queue {s:?}; use execution, announce or e2e-test"),
                )
            })
        })
        .transpose()?;
    let state = q
        .state
        .as_deref()
        .map(|s| {
            TaskState::parse(s).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_query",
                    format!("unknown state {s:?}; use queued, claimed, done, failed or cancelled"),
                )
            })
        })
        .transpose()?;
    let tasks = app
        .store
        .list_tasks(&TaskFilter {
            queue,
            state,
            app: q.app,
            limit: q.limit.unwrap_or(100),
        })
        .await
        .map_err(ApiError::store)?;
    Ok(Json(json!({"tasks": tasks})).into_response())
}

async fn get_task(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let task = app.store.get_task(&id).await.map_err(ApiError::store)?;
    let Some(task) = task else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no task with id {id}"),
        ));
    };
    let history = app.store.task_events(&id).await.map_err(ApiError::store)?;
    Ok(Json(json!({"task": task, "history": history})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimBody {
    queue: String,
    worker: String,
    lease_seconds: Option<u64>,
}

fn worker_ok(w: &str) -> Result<(), ApiError> {
    if w.is_empty() || w.len() > 200 || w.chars().any(char::is_control) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_worker",
            "worker must be 1 to 200 printable characters",
        ));
    }
    Ok(())
}

fn lease(app: &AppState, secs: Option<u64>) -> Result<Duration, ApiError> {
    match secs {
        None => Ok(app.config.tasks.default_lease),
        Some(s) if (1..=86_400).contains(&s) => Ok(Duration::from_secs(s)),
        Some(_) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_lease",
            "lease_seconds must be between 1 and 86400",
        )),
    }
}

async fn claim(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b: ClaimBody = json_body(&headers, &body?)?;
    let queue = Queue::parse(&b.queue).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_queue",
            format!(
                "unknown queue {:?}; use execution, announce or e2e-test",
                b.queue
            ),
        )
    })?;
    worker_ok(&b.worker)?;
    let lease = lease(&app, b.lease_seconds)?;
    match app.store.claim(queue, &b.worker, lease).await {
        Ok(Some(t)) => {
            app.metrics
                .task_claims_total
                .with_label_values(&[queue.as_str()])
                .inc();
            Ok(Json(t).into_response())
        }
        Ok(None) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => Err(ApiError::store(e)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HolderBody {
    worker: String,
    lease_seconds: Option<u64>,
    result: Option<serde_json::Value>,
    reason: Option<String>,
    retry: Option<bool>,
}

fn update_error(e: TaskUpdateError) -> ApiError {
    match e {
        TaskUpdateError::NotFound(id) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no task with id {id}"),
        ),
        e @ TaskUpdateError::NotLeaseHolder { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "lease_lost",
            format!("{e}; claim a task again"),
        ),
        TaskUpdateError::Store(e) => ApiError::store(e),
    }
}

async fn heartbeat(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b: HolderBody = json_body(&headers, &body?)?;
    worker_ok(&b.worker)?;
    let lease = lease(&app, b.lease_seconds)?;
    let t = app
        .store
        .heartbeat(&id, &b.worker, lease)
        .await
        .map_err(update_error)?;
    Ok(Json(t).into_response())
}

async fn complete(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b: HolderBody = json_body(&headers, &body?)?;
    worker_ok(&b.worker)?;
    let result = b.result.unwrap_or(serde_json::Value::Null);
    let t = app
        .store
        .complete(&id, &b.worker, &result)
        .await
        .map_err(update_error)?;
    Ok(Json(t).into_response())
}

async fn fail(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b: HolderBody = json_body(&headers, &body?)?;
    worker_ok(&b.worker)?;
    let reason = b.reason.unwrap_or_else(|| "no reason given".into());
    let t = app
        .store
        .fail(&id, &b.worker, &reason, b.retry.unwrap_or(true))
        .await
        .map_err(update_error)?;
    Ok(Json(t).into_response())
}
