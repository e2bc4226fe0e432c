//! The simulator's canned HTTP answers: a JSON 200 with DigitalOcean's rate-limit headers, and
//! the API's 404 body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub(crate) fn ok_json(v: Value) -> Response {
    (
        StatusCode::OK,
        [("ratelimit-limit", "5000"), ("ratelimit-remaining", "4999")],
        Json(v),
    )
        .into_response()
}

pub(crate) fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"id": "not_found", "message": format!("{what} not found")})),
    )
        .into_response()
}
