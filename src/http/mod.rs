//! HTTP: the router (built without a socket, so tests call it directly). Each route's handler lives
//! in the file named after what it serves; this file only wires them.
//!
//! Architecture Invariant: `/metrics`, `/health/*` and `/api/v1/status` never await the network;
//! they read snapshots the background loops keep.

pub mod access;
pub mod deploys;
pub mod error;
pub mod exposition;
pub mod fail_reasons;
pub mod health;
pub mod limits;
pub mod page;
pub mod status;
pub mod status_text;
pub mod tasks;
pub mod webhook;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use self::error::ApiError;
use crate::app::AppState;

/// Builds the whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/webhook/alertmanager", post(webhook::handler))
        .route("/api/v1/tasks", get(tasks::list).post(deploys::create))
        .route("/api/v1/tasks/claim", post(tasks::claim))
        .route("/api/v1/tasks/{id}", get(tasks::get_one))
        .route("/api/v1/tasks/{id}/heartbeat", post(tasks::heartbeat))
        .route("/api/v1/tasks/{id}/complete", post(tasks::complete))
        .route("/api/v1/tasks/{id}/fail", post(tasks::fail))
        .route("/api/v1/tasks/{id}/merged", post(deploys::merged))
        .route("/api/v1/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(crate::http::limits::BODY_LIMIT));
    Router::new()
        .route("/", get(page::landing))
        .route("/metrics", get(exposition::metrics))
        .route("/health/live", get(health::live))
        .route("/health/startup", get(health::startup))
        .route("/health/ready", get(health::ready))
        .route("/api/v1/status", get(status::handler))
        .merge(protected)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            exposition::mark_metrics_changed,
        ))
        // Authenticate every route but the open ones, before any body is read.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::http::access::guard,
        ))
        .with_state(state)
}

/// This API described in OpenAPI 3.1 (`docs/openapi.json`, checked against the running server).
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../docs/openapi.json"),
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
