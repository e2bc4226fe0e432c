//! The one error shape of the HTTP API: a status and `{"error": "<code>", "message": "<sentence>"}`.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

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

    /// A store error: 503 only when retrying can help (the store is down, full, read-only, slow
    /// or deadlocked); anything else is the server's own fault, a 500 that no retry fixes.
    #[allow(clippy::needless_pass_by_value, reason = "the shape `map_err` passes")]
    pub fn store(e: crate::store::StoreError) -> ApiError {
        if e.is_transient() {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("{e}; retry shortly"),
            )
        } else {
            tracing::error!(error = ?e.to_string(), "the store refused a request");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                format!("{e}; retrying will not help, report it"),
            )
        }
    }

    /// A store error while storing outside input: 503 when retrying can help; otherwise the input
    /// itself cannot be stored, a 422 naming why (Alertmanager then drops it instead of retrying the
    /// group forever and blocking every later alert in it).
    #[allow(clippy::needless_pass_by_value, reason = "the shape `map_err` passes")]
    pub fn store_input(e: crate::store::StoreError) -> ApiError {
        let msg = e.to_string();
        if e.is_transient() {
            tracing::warn!(error = ?msg, "store failed; answering 503 so the sender retries");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("{msg}; Alertmanager will retry"),
            )
        } else {
            tracing::warn!(error = ?msg, "the store refused this input; answering 422");
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unstorable",
                format!("{msg}; retrying the same notification cannot succeed"),
            )
        }
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
