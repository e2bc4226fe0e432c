//! `/metrics`: serves the cached exposition, and marks it stale after any request that can change
//! state.

use axum::extract::Request;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::telemetry::exposition;

/// Serves the cached exposition (see `crate::telemetry::exposition`): OpenMetrics or text as the
/// client's `Accept` ranks them, gzip when it accepts it.
pub(super) async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let values = |name| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
    };
    let format = exposition::negotiate_format(values(header::ACCEPT));
    let gzip = values(header::ACCEPT_ENCODING)
        .into_iter()
        .any(exposition::accepts_gzip);
    let s = app.metrics.exposition.scrape(format, gzip).await;
    // The cached chunks, no copy; the length is known, so no chunked encoding.
    let frames = s.chunks.into_iter().map(Ok::<_, std::convert::Infallible>);
    let mut r = axum::body::Body::from_stream(futures::stream::iter(frames)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(s.format.content_type()),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(s.len));
    h.insert(
        header::VARY,
        HeaderValue::from_static("accept, accept-encoding"),
    );
    if s.gzip {
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
