//! The gate every API request passes: counted, authenticated, then answered by the next queued
//! fault if there is one.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;

use crate::Simulator;
use crate::state::lock;

/// A fault the next API request receives instead of a normal answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    RateLimited { retry_after_secs: u64 },
    ServerError,
    Hang(Duration),
    Malformed,
    Truncated,
    HtmlError,
}

impl Simulator {
    /// Counts the request, checks the token, and applies a queued fault if there is one.
    pub(crate) async fn gate(&self, headers: &HeaderMap, path: &str) -> Result<(), Response> {
        let (fault, valid) = {
            let mut s = lock(&self.state);
            s.requests += 1;
            *s.requests_by_path.entry(path.to_string()).or_default() += 1;
            (s.faults.pop_front(), s.valid_token.clone())
        };
        let authed = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| !t.is_empty() && valid.as_deref().is_none_or(|v| v == t));
        if !authed {
            return Err((
                StatusCode::UNAUTHORIZED,
                Json(json!({"id": "unauthorized", "message": "Unable to authenticate you."})),
            )
                .into_response());
        }
        let remaining = [
            ("ratelimit-limit", "5000".to_string()),
            ("ratelimit-remaining", "4999".to_string()),
        ];
        match fault {
            None => Ok(()),
            Some(Fault::RateLimited { retry_after_secs }) => Err((
                StatusCode::TOO_MANY_REQUESTS,
                [
                    ("retry-after", retry_after_secs.to_string()),
                    ("ratelimit-limit", "5000".to_string()),
                    ("ratelimit-remaining", "0".to_string()),
                ],
                Json(json!({"id": "too_many_requests", "message": "API rate limit exceeded."})),
            )
                .into_response()),
            Some(Fault::ServerError) => Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                remaining,
                Json(json!({"id": "server_error", "message": "Server was unable to give you a response."})),
            )
                .into_response()),
            Some(Fault::Hang(d)) => {
                tokio::time::sleep(d).await;
                Err((StatusCode::GATEWAY_TIMEOUT, "timeout").into_response())
            }
            Some(Fault::Malformed) => Err((StatusCode::OK, [("content-type", "application/json")], "{\"apps\": [{\"id\": 42, \"spec\": ").into_response()),
            Some(Fault::Truncated) => Err((StatusCode::OK, [("content-type", "application/json")], "{\"apps\": [").into_response()),
            Some(Fault::HtmlError) => Err((
                StatusCode::BAD_GATEWAY,
                [("content-type", "text/html")],
                "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
            )
                .into_response()),
        }
    }
}

/// Like the API, every answer (401, 404 and 429 included) carries the rate-limit headers.
pub(crate) async fn ratelimit_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let reset = (Utc::now().timestamp() + 60).to_string();
    for (k, v) in [
        ("ratelimit-limit", "5000".to_string()),
        ("ratelimit-remaining", "4999".to_string()),
        ("ratelimit-reset", reset),
    ] {
        if !h.contains_key(k)
            && let Ok(v) = axum::http::HeaderValue::from_str(&v)
        {
            h.insert(k, v);
        }
    }
    r
}
