//! The task API agents use: list, get, claim, heartbeat, complete, fail.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::access::{ApiPath, ApiQuery};
use super::error::{ApiError, json_body};
use crate::app::AppState;
use crate::store::{TaskFilter, TaskUpdateError};
use crate::tasks::{Queue, State as TaskState};

#[derive(Deserialize)]
pub(super) struct ListQuery {
    queue: Option<String>,
    state: Option<String>,
    app: Option<String>,
    limit: Option<i64>,
}

pub(super) async fn list(
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
                    format!("unknown queue {s:?}; use execution, announce, e2e-test or deploy"),
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

pub(super) async fn get_one(
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
pub(super) struct ClaimBody {
    queue: String,
    worker: String,
    lease_seconds: Option<u64>,
}

pub(super) fn worker_ok(w: &str) -> Result<(), ApiError> {
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

pub(super) async fn claim(
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
                "unknown queue {:?}; use execution, announce, e2e-test or deploy",
                b.queue
            ),
        )
    })?;
    worker_ok(&b.worker)?;
    let lease = lease(&app, b.lease_seconds)?;
    match app.store.claim(queue, &b.worker, lease).await {
        Ok(Some(t)) => {
            app.metrics.task_claimed(queue.as_str());
            Ok(Json(t).into_response())
        }
        Ok(None) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => Err(ApiError::store(e)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HolderBody {
    worker: String,
    lease_seconds: Option<u64>,
    result: Option<serde_json::Value>,
    reason: Option<String>,
    retry: Option<bool>,
}

pub(super) fn update_error(e: TaskUpdateError) -> ApiError {
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

pub(super) async fn heartbeat(
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

pub(super) async fn complete(
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

pub(super) async fn fail(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b: HolderBody = json_body(&headers, &body?)?;
    worker_ok(&b.worker)?;
    let reason = b.reason.unwrap_or_else(|| "no reason given".into());
    // not_approved, merge_conflict, merge_failed: the follow-up is the next step, not a retry.
    let structured = super::fail_reasons::fail_followup(&app, &id, &b.worker, &reason).await?;
    let t = app
        .store
        .fail(
            &id,
            &b.worker,
            &reason,
            b.retry.unwrap_or(true) && !structured,
        )
        .await
        .map_err(update_error)?;
    Ok(Json(t).into_response())
}
