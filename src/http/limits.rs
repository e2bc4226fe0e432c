//! HTTP server limits: how long a client may take to send headers and a body, and how many
//! request-body bytes may be in flight at once, so slow or abandoned uploads cannot hold
//! connections or memory.
//!
//! Architecture Invariant: a request body is admitted only against a byte budget shared by all
//! connections (`max_body_bytes_in_flight`); a `Content-Length` over the body limit is refused
//! from the header (413) and one over the free budget answers 503, both before any body byte is
//! read and with `Connection: close`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::http::error::ApiError;

/// The largest request body any route takes (an Alertmanager notification of a few thousand
/// alerts fits).
pub const BODY_LIMIT: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Time to receive a request's headers; also closes a keep-alive connection idle that long.
    pub header_timeout: Duration,
    /// Time to receive a request's body once its headers are in.
    pub body_timeout: Duration,
    /// Request-body bytes all connections together may have in flight.
    pub max_body_bytes_in_flight: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_body_bytes_in_flight: 32 * 1024 * 1024,
        }
    }
}

/// The shared body budget.
#[derive(Clone)]
pub struct BodyBudget {
    sem: Arc<Semaphore>,
    per_request_max: usize,
}

impl BodyBudget {
    pub fn new(total: usize, per_request_max: usize) -> BodyBudget {
        BodyBudget {
            sem: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))),
            per_request_max,
        }
    }
}

/// Pure: what a request's framing headers ask of the budget.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyClaim {
    /// No body (no `Content-Length`, no `Transfer-Encoding`), or an empty one.
    None,
    /// This many bytes.
    Bytes(usize),
    /// Over the per-request limit: refuse from the header.
    TooLarge,
    /// A `Content-Length` that is not a number.
    Invalid,
}

pub fn body_claim(content_length: Option<&str>, chunked: bool, max: usize) -> BodyClaim {
    match content_length {
        Some(v) => match v.trim().parse::<u64>() {
            Ok(0) => BodyClaim::None,
            Ok(n) if n > max as u64 => BodyClaim::TooLarge,
            Ok(n) => BodyClaim::Bytes(n as usize),
            Err(_) => BodyClaim::Invalid,
        },
        // Unknown length: reserve the most it may grow to.
        None if chunked => BodyClaim::Bytes(max),
        None => BodyClaim::None,
    }
}

fn closing(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Middleware: admits a request body against the budget, holding its share until the handler
/// has answered.
pub async fn admit(State(budget): State<BodyBudget>, req: Request, next: Next) -> Response {
    let h = req.headers();
    let cl = h.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
    let chunked = h.contains_key(header::TRANSFER_ENCODING);
    match body_claim(cl, chunked, budget.per_request_max) {
        BodyClaim::None => next.run(req).await,
        BodyClaim::Invalid => closing(
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Content-Length is not a number",
            )
            .into_response(),
        ),
        BodyClaim::TooLarge => closing(
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the body is over {} bytes; send fewer alerts per notification (max_alerts)",
                    budget.per_request_max
                ),
            )
            .into_response(),
        ),
        BodyClaim::Bytes(n) => {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            match budget.sem.clone().try_acquire_many_owned(n) {
                Ok(permit) => {
                    let r = next.run(req).await;
                    drop(permit);
                    r
                }
                Err(_) => {
                    let mut r = closing(
                        ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "busy",
                            "too many request bodies in flight; retry shortly",
                        )
                        .into_response(),
                    );
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    r
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_claims() {
        let max = 1024;
        let table = [
            (None, false, BodyClaim::None),
            (Some("0"), false, BodyClaim::None),
            (Some("10"), false, BodyClaim::Bytes(10)),
            (Some(" 1024 "), false, BodyClaim::Bytes(1024)),
            (Some("1025"), false, BodyClaim::TooLarge),
            (Some("104857600"), false, BodyClaim::TooLarge),
            (Some("99999999999999999999999"), false, BodyClaim::Invalid),
            (Some("abc"), false, BodyClaim::Invalid),
            (None, true, BodyClaim::Bytes(1024)),
        ];
        for (cl, chunked, want) in table {
            assert_eq!(body_claim(cl, chunked, max), want, "{cl:?} {chunked}");
        }
    }
}
