//! Access: who may read and change what over HTTP, and extractors whose rejections answer the
//! JSON error shape.
//!
//! With a webhook token configured, every route needs it except `/metrics`, `/health/*` and the
//! anonymous view of `/` (which shows no task context, log tails or commits). New routes are
//! protected by default: the guard wraps the whole router and lists only the open paths.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::http::error::ApiError;

/// Which paths any reader may see without the token.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Exposure {
    /// Open to everyone (metrics and health carry no task context).
    Open,
    /// The landing page: everyone, but only the anonymous view without the token.
    Landing,
    /// Needs the token when one is configured.
    Protected,
}

/// Pure: the exposure of a request path.
pub fn exposure(path: &str) -> Exposure {
    match path {
        "/" => Exposure::Landing,
        "/metrics" => Exposure::Open,
        p if p.starts_with("/health/") => Exposure::Open,
        _ => Exposure::Protected,
    }
}

/// Pure: whether `headers` carry one of `tokens` (always true when no token is configured).
/// Compares against every token so timing does not reveal which one (or how much) matched.
pub fn authorized(tokens: &[SecretString], headers: &HeaderMap) -> bool {
    if tokens.is_empty() {
        return true;
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let mut ok = subtle::Choice::from(0u8);
    for t in tokens {
        ok |= given.as_bytes().ct_eq(t.expose_secret().as_bytes());
    }
    bool::from(ok) && !given.trim().is_empty()
}

/// Middleware over the whole router: authenticates before any body is read.
pub async fn guard(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if exposure(req.uri().path()) != Exposure::Protected
        || authorized(&app.config.webhook.tokens, req.headers())
    {
        return next.run(req).await;
    }
    if req.uri().path().starts_with("/webhook") {
        app.metrics.webhook_request("401");
    }
    let mut r = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong bearer token; send Authorization: Bearer <DEPLOYWATCH_WEBHOOK_TOKEN>",
    )
    .into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// Pure: the warning for a listener anyone on the network can reach while no token is set.
pub fn exposure_warning(listen: std::net::SocketAddr, tokens: &[SecretString]) -> Option<String> {
    if !tokens.is_empty() || listen.ip().is_loopback() {
        return None;
    }
    Some(format!(
        "listening on non-loopback address {listen} with no DEPLOYWATCH_WEBHOOK_TOKEN: anyone who can \
         reach this port can read tasks, deployments and log tails, forge alerts and claim or \
         complete tasks; set DEPLOYWATCH_WEBHOOK_TOKEN or listen on 127.0.0.1"
    ))
}

/// `Query<T>` whose rejection is the JSON error shape (400).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(query_error(&e)),
        }
    }
}

fn query_error(e: &QueryRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_query",
        format!("{}; fix the query string", e.body_text()),
    )
}

/// `Path<T>` whose rejection is the JSON error shape (400, or 500 for a routing bug).
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(path_error(&e)),
        }
    }
}

fn path_error(e: &PathRejection) -> ApiError {
    let status = e.status();
    if status.is_server_error() {
        ApiError::new(status, "internal", e.body_text())
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_path",
            format!("{}; fix the path", e.body_text()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposure_of_paths() {
        let table = [
            ("/", Exposure::Landing),
            ("/metrics", Exposure::Open),
            ("/health/live", Exposure::Open),
            ("/health/ready", Exposure::Open),
            ("/healthz", Exposure::Protected),
            ("/api/v1/status", Exposure::Protected),
            ("/api/v1/tasks", Exposure::Protected),
            ("/api/v1/tasks/x", Exposure::Protected),
            ("/webhook/alertmanager", Exposure::Protected),
            ("/metrics/x", Exposure::Protected),
            ("/anything-new", Exposure::Protected),
        ];
        for (p, want) in table {
            assert_eq!(exposure(p), want, "{p}");
        }
    }

    #[test]
    fn exposure_warning_only_off_loopback_without_token() {
        let tok = vec![SecretString::from("t")];
        let table = [
            ("127.0.0.1:1", false, false),
            ("[::1]:1", false, false),
            ("0.0.0.0:1", false, true),
            ("[::]:1", false, true),
            ("10.0.0.5:1", false, true),
            ("0.0.0.0:1", true, false),
        ];
        for (addr, with_token, warns) in table {
            let tokens: &[SecretString] = if with_token { &tok } else { &[] };
            let w = exposure_warning(addr.parse().unwrap(), tokens);
            assert_eq!(w.is_some(), warns, "{addr} token={with_token}");
            if let Some(w) = w {
                assert!(w.contains("DEPLOYWATCH_WEBHOOK_TOKEN"), "{w}");
            }
        }
    }

    #[test]
    fn authorization_table() {
        let tokens = vec![SecretString::from("cur"), SecretString::from("prev")];
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            m
        };
        assert!(authorized(&tokens, &h("Bearer cur")));
        assert!(authorized(&tokens, &h("Bearer prev")));
        assert!(!authorized(&tokens, &h("Bearer wrong")));
        assert!(!authorized(&tokens, &h("Bearer ")));
        assert!(!authorized(&tokens, &h("cur")));
        assert!(!authorized(&tokens, &HeaderMap::new()));
        assert!(authorized(&[], &HeaderMap::new()));
    }
}
