//! `/health/live`, `/health/startup`, `/health/ready`: readiness reads the startup checks and the
//! store (bounded by 2 s each), never the network.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;

pub(super) async fn live() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

pub(super) async fn startup(State(app): State<AppState>) -> Response {
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

pub(super) async fn ready(State(app): State<AppState>) -> Response {
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
