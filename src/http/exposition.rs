//! `/metrics`: serves the cached exposition, and marks it stale after any request that can change
//! state.

use axum::extract::Request;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;

/// Serves the cached exposition (see `crate::telemetry::exposition`): gzip when the client accepts it.
pub(super) async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(crate::telemetry::exposition::accepts_gzip);
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
        HeaderValue::from_static(crate::telemetry::metrics::CONTENT_TYPE),
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
pub(super) async fn mark_metrics_changed(
    State(app): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
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
