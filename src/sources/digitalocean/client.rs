//! The App Platform API client: the same code talks to api.digitalocean.com and to the simulator.
//!
//! It honours `retry-after` exactly (no request to the API before it has passed), retries transport
//! errors, timeouts and 5xx with jittered backoff a few times, never retries 4xx, and keeps the
//! numbers the poller needs to stay inside the token's budget.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::types::{self, App, Deployment, LogsResponse, RollbackValidation};
use crate::telemetry::metrics::Metrics;

#[derive(Debug, Clone, thiserror::Error)]
pub enum DoError {
    #[error(
        "the DigitalOcean API at {host} rejected the token (HTTP {status} {}); check DIGITALOCEAN_TOKEN and its scopes (app:read, app:update for rollbacks)",
        if *status == 401 { "unauthorized" } else { "forbidden" }
    )]
    Unauthorized { status: u16, host: String },
    #[error("not found on DigitalOcean: {0}")]
    NotFound(String),
    #[error("rate limited by DigitalOcean; next request allowed in {0:?}")]
    RateLimited(Duration),
    #[error("DigitalOcean answered HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("could not reach the DigitalOcean API: {0}")]
    Transport(String),
    #[error("DigitalOcean did not answer within {0:?}")]
    Timeout(Duration),
    #[error("DigitalOcean sent a response that could not be parsed: {0}")]
    Decode(String),
}

impl DoError {
    fn retryable(&self) -> bool {
        match self {
            DoError::Transport(_) | DoError::Timeout(_) => true,
            DoError::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// Budget figures the poller reads.
#[derive(Debug, Clone, Default)]
pub struct BudgetView {
    pub requests_last_hour: usize,
    pub requests_last_minute: usize,
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub blocked_for: Option<Duration>,
}

#[derive(Default)]
struct RateState {
    sent: VecDeque<Instant>,
    limit: Option<u64>,
    remaining: Option<u64>,
    not_before: Option<Instant>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Log archives are fetched without the API token: their URLs point at other hosts.
    plain_http: reqwest::Client,
    base: Url,
    token: SecretString,
    timeout: Duration,
    state: Arc<Mutex<RateState>>,
    metrics: Option<Arc<Metrics>>,
    max_attempts: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    pub fn new(
        base: Url,
        token: SecretString,
        timeout: Duration,
        metrics: Option<Arc<Metrics>>,
    ) -> Client {
        let build = || {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(5)))
                .user_agent(concat!("deploywatch/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default()
        };
        Client {
            http: build(),
            plain_http: build(),
            base,
            token,
            timeout,
            state: Arc::new(Mutex::new(RateState::default())),
            metrics,
            max_attempts: 3,
        }
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `host[:port]` of the API base, for error messages.
    fn host(&self) -> String {
        match (self.base.host_str(), self.base.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => self.base.to_string(),
        }
    }

    pub fn budget(&self) -> BudgetView {
        let mut s = lock(&self.state);
        let now = Instant::now();
        while s
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(3600))
        {
            s.sent.pop_front();
        }
        BudgetView {
            requests_last_hour: s.sent.len(),
            requests_last_minute: s
                .sent
                .iter()
                .filter(|t| now.duration_since(**t) <= Duration::from_secs(60))
                .count(),
            limit: s.limit,
            remaining: s.remaining,
            blocked_for: s.not_before.and_then(|nb| nb.checked_duration_since(now)),
        }
    }

    fn url(&self, path: &str) -> Result<Url, DoError> {
        self.base
            .join(path)
            .map_err(|e| DoError::Transport(format!("bad URL {path}: {e}")))
    }

    fn count(&self, endpoint: &str, code: &str) {
        if let Some(m) = &self.metrics {
            m.do_request(endpoint, code);
        }
    }

    /// One request, no retries. Respects a pending `retry-after` without sending anything.
    async fn send_once(
        &self,
        method: reqwest::Method,
        url: Url,
        endpoint: &'static str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, bytes::Bytes), DoError> {
        {
            let s = lock(&self.state);
            if let Some(left) = s
                .not_before
                .and_then(|nb| nb.checked_duration_since(Instant::now()))
            {
                return Err(DoError::RateLimited(left));
            }
        }
        lock(&self.state).sent.push_back(Instant::now());
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(self.token.expose_secret())
            .header("accept", "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let code = if e.is_timeout() {
                    "timeout"
                } else {
                    "transport"
                };
                self.count(endpoint, code);
                return Err(if e.is_timeout() {
                    DoError::Timeout(self.timeout)
                } else {
                    DoError::Transport(describe_transport(&self.host(), &without_url(&e)))
                });
            }
        };
        let status = resp.status();
        self.count(endpoint, status.as_str());
        self.note_rate_headers(resp.headers(), status);
        let bytes = resp.bytes().await.map_err(|e| {
            if e.is_timeout() {
                DoError::Timeout(self.timeout)
            } else {
                DoError::Transport(without_url(&e))
            }
        })?;
        match status.as_u16() {
            200..=299 => Ok((status, bytes)),
            401 | 403 => Err(DoError::Unauthorized {
                status: status.as_u16(),
                host: self.host(),
            }),
            404 => Err(DoError::NotFound(endpoint.to_string())),
            429 => Err(DoError::RateLimited(
                self.budget().blocked_for.unwrap_or_default(),
            )),
            s => Err(DoError::Http {
                status: s,
                message: error_message(&bytes),
            }),
        }
    }

    fn note_rate_headers(&self, h: &reqwest::header::HeaderMap, status: StatusCode) {
        let num = |k: &str| {
            h.get(k)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let mut s = lock(&self.state);
        if let Some(l) = num("ratelimit-limit") {
            s.limit = Some(l);
        }
        if let Some(r) = num("ratelimit-remaining") {
            s.remaining = Some(r);
            if let Some(m) = &self.metrics {
                m.do_ratelimit_remaining(r);
            }
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            // retry-after in seconds; without it, wait until the reported reset (a Unix time), else a minute.
            let wait = num("retry-after")
                .map(Duration::from_secs)
                .unwrap_or_else(|| {
                    num("ratelimit-reset")
                        .and_then(|reset| reset.checked_sub(chrono::Utc::now().timestamp() as u64))
                        .map(Duration::from_secs)
                        .unwrap_or(Duration::from_secs(60))
                });
            s.not_before = Some(Instant::now() + wait);
        }
    }

    /// A request with retries for transient faults only, bounded per call.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        endpoint: &'static str,
        body: Option<serde_json::Value>,
    ) -> Result<bytes::Bytes, DoError> {
        self.send_to(method, self.url(path)?, endpoint, body).await
    }

    /// [`Client::send`] to a full URL (a pagination link).
    async fn send_to(
        &self,
        method: reqwest::Method,
        url: Url,
        endpoint: &'static str,
        body: Option<serde_json::Value>,
    ) -> Result<bytes::Bytes, DoError> {
        let attempt = || {
            let (m, u, b) = (method.clone(), url.clone(), body.clone());
            async move {
                self.send_once(m, u, endpoint, b.as_ref())
                    .await
                    .map(|(_, b)| b)
            }
        };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(3))
                    .with_max_times(self.max_attempts.saturating_sub(1))
                    .with_jitter(),
            )
            .when(|e: &DoError| e.retryable())
            .await
    }

    /// Every app, following `links.pages.next`. Returns the apps and how many were skipped as
    /// malformed; any failing page fails the call.
    pub async fn list_apps(&self) -> Result<(Vec<App>, usize), DoError> {
        let l = self.list_apps_partial().await?;
        match l.incomplete {
            Some(e) => Err(e),
            None => Ok((l.apps, l.skipped)),
        }
    }

    /// Every app, following `links.pages.next` as given (absolute or relative, same origin only).
    /// Fails only when the first page fails; a later failing page keeps what was read.
    pub async fn list_apps_partial(&self) -> Result<AppsListing, DoError> {
        let mut url = self.url("/v2/apps?per_page=200")?;
        let mut out = AppsListing::default();
        for page in 0..100 {
            let res = self
                .send_to(reqwest::Method::GET, url.clone(), "/v2/apps", None)
                .await
                .and_then(|body| {
                    types::parse_apps_page(&body).map_err(|e| DoError::Decode(e.to_string()))
                })
                .and_then(|(apps, s, next)| {
                    let next = next
                        .filter(|n| !n.is_empty())
                        .map(|n| next_page_url(&self.base, &n))
                        .transpose()?;
                    Ok((apps, s, next))
                });
            match res {
                Ok((apps, s, next)) => {
                    out.apps.extend(apps);
                    out.skipped += s;
                    match next {
                        Some(n) => url = n,
                        None => break,
                    }
                }
                Err(e) if page == 0 => return Err(e),
                Err(e) => {
                    out.incomplete = Some(e);
                    break;
                }
            }
        }
        Ok(out)
    }

    pub async fn list_deployments(
        &self,
        app_id: &str,
        per_page: u32,
    ) -> Result<(Vec<Deployment>, usize), DoError> {
        let path = format!("/v2/apps/{}/deployments?per_page={per_page}", seg(app_id));
        let body = self
            .send(
                reqwest::Method::GET,
                &path,
                "/v2/apps/{id}/deployments",
                None,
            )
            .await?;
        types::parse_deployments_page(&body).map_err(|e| DoError::Decode(e.to_string()))
    }

    pub async fn get_deployment(
        &self,
        app_id: &str,
        deployment_id: &str,
    ) -> Result<Deployment, DoError> {
        let path = format!(
            "/v2/apps/{}/deployments/{}",
            seg(app_id),
            seg(deployment_id)
        );
        let body = self
            .send(
                reqwest::Method::GET,
                &path,
                "/v2/apps/{id}/deployments/{id}",
                None,
            )
            .await?;
        parse_deployment_envelope(&body)
    }

    pub async fn get_app(&self, app_id: &str) -> Result<App, DoError> {
        #[derive(serde::Deserialize)]
        struct Env {
            app: App,
        }
        let body = self
            .send(
                reqwest::Method::GET,
                &format!("/v2/apps/{}", seg(app_id)),
                "/v2/apps/{id}",
                None,
            )
            .await?;
        serde_json::from_slice::<Env>(&body)
            .map(|e| e.app.normalize())
            .map_err(|e| DoError::Decode(e.to_string()))
    }

    /// The last `lines` lines of a deployment's aggregate BUILD or DEPLOY log. The endpoint answers
    /// with URLs; the text is fetched from them without the API token.
    pub async fn deployment_log_tail(
        &self,
        app_id: &str,
        deployment_id: &str,
        log_type: &str,
        lines: usize,
    ) -> Result<String, DoError> {
        let path = format!(
            "/v2/apps/{}/deployments/{}/logs?type={}&follow=false",
            seg(app_id),
            seg(deployment_id),
            seg(log_type)
        );
        let body = self
            .send(
                reqwest::Method::GET,
                &path,
                "/v2/apps/{id}/deployments/{id}/logs",
                None,
            )
            .await?;
        let logs: LogsResponse =
            serde_json::from_slice(&body).map_err(|e| DoError::Decode(e.to_string()))?;
        let mut last_err = DoError::NotFound("log URL".into());
        for u in logs.urls() {
            let Ok(url) = Url::parse(u) else { continue };
            if !matches!(url.scheme(), "http" | "https") {
                continue;
            }
            match self.plain_http.get(url).send().await {
                Ok(r) if r.status().is_success() => {
                    let text = r
                        .bytes()
                        .await
                        .map_err(|e| DoError::Transport(without_url(&e)))?;
                    // Bound memory: only the end of a large log matters.
                    let start = text.len().saturating_sub(256 * 1024);
                    return Ok(tail_lines(&String::from_utf8_lossy(&text[start..]), lines));
                }
                Ok(r) => {
                    last_err = DoError::Http {
                        status: r.status().as_u16(),
                        message: "log download failed".into(),
                    }
                }
                Err(e) => last_err = DoError::Transport(without_url(&e)),
            }
        }
        Err(last_err)
    }

    pub async fn validate_rollback(
        &self,
        app_id: &str,
        deployment_id: &str,
    ) -> Result<RollbackValidation, DoError> {
        let body = self
            .send(
                reqwest::Method::POST,
                &format!("/v2/apps/{}/rollback/validate", seg(app_id)),
                "/v2/apps/{id}/rollback/validate",
                Some(serde_json::json!({"deployment_id": deployment_id})),
            )
            .await?;
        serde_json::from_slice(&body).map_err(|e| DoError::Decode(e.to_string()))
    }

    pub async fn rollback(&self, app_id: &str, deployment_id: &str) -> Result<Deployment, DoError> {
        let body = self
            .send(
                reqwest::Method::POST,
                &format!("/v2/apps/{}/rollback", seg(app_id)),
                "/v2/apps/{id}/rollback",
                Some(serde_json::json!({"deployment_id": deployment_id, "skip_pin": false})),
            )
            .await?;
        parse_deployment_envelope(&body)
    }

    /// Commits a rollback (unpins the app). The spec declares 200 but the API sends no body.
    pub async fn commit_rollback(&self, app_id: &str) -> Result<(), DoError> {
        self.send(
            reqwest::Method::POST,
            &format!("/v2/apps/{}/rollback/commit", seg(app_id)),
            "/v2/apps/{id}/rollback/commit",
            None,
        )
        .await
        .map(|_| ())
    }

    pub async fn revert_rollback(&self, app_id: &str) -> Result<Deployment, DoError> {
        let body = self
            .send(
                reqwest::Method::POST,
                &format!("/v2/apps/{}/rollback/revert", seg(app_id)),
                "/v2/apps/{id}/rollback/revert",
                None,
            )
            .await?;
        parse_deployment_envelope(&body)
    }
}

fn parse_deployment_envelope(body: &[u8]) -> Result<Deployment, DoError> {
    #[derive(serde::Deserialize)]
    struct Env {
        deployment: Deployment,
    }
    serde_json::from_slice::<Env>(body)
        .map(|e| e.deployment)
        .map_err(|e| DoError::Decode(e.to_string()))
}

/// Percent-encodes one path segment, so an id can never change the path.
/// Percent-encodes one path segment (RFC 3986: everything but unreserved characters), so an id
/// can neither escape the path nor be read as form encoding (a space is `%20`, never `+`).
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Pure: where `links.pages.next` points, absolute or relative, refused unless it is on the API
/// base's own origin (the bearer token goes with it).
pub fn next_page_url(base: &Url, next: &str) -> Result<Url, DoError> {
    let u = Url::parse(next)
        .or_else(|_| base.join(next))
        .map_err(|e| DoError::Decode(format!("bad pagination link {next:?}: {e}")))?;
    if u.origin() != base.origin() {
        return Err(DoError::Decode(format!(
            "pagination link points to another host ({}), not the API base {}; not followed",
            u.host_str().unwrap_or("none"),
            base.host_str().unwrap_or("none")
        )));
    }
    Ok(u)
}

/// Apps read from the paginated list; `incomplete` holds the error of a page that failed after
/// others were read (the apps read so far are kept).
#[derive(Debug, Default)]
pub struct AppsListing {
    pub apps: Vec<App>,
    pub skipped: usize,
    pub incomplete: Option<DoError>,
}

/// Pure: the cause of a transport error, from its error chain, and the next step to take.
pub fn transport_cause(chain: &str) -> (&'static str, &'static str) {
    let c = chain.to_ascii_lowercase();
    if c.contains("dns error")
        || c.contains("failed to lookup address")
        || c.contains("name or service not known")
        || c.contains("no such host")
        || c.contains("name resolution")
    {
        (
            "DNS lookup failed",
            "check the host in digitalocean.api_url / DEPLOYWATCH_DO_API_URL and this machine's DNS",
        )
    } else if c.contains("connection refused") {
        (
            "connection refused",
            "check the host and port in digitalocean.api_url / DEPLOYWATCH_DO_API_URL and any proxy or firewall",
        )
    } else if c.contains("certificate") || c.contains("tls") || c.contains("handshake") {
        (
            "TLS handshake failed",
            "check the system clock, any TLS-intercepting proxy, and that the URL is the real API over https",
        )
    } else {
        (
            "network error",
            "check connectivity from this machine to the API host",
        )
    }
}

fn describe_transport(host: &str, chain: &str) -> String {
    let (cause, next) = transport_cause(chain);
    format!("{host}: {cause} ({chain}); {next}")
}

/// reqwest errors quote the URL, which for log archives may be pre-signed; keep only the kind.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<url>");
    }
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn error_message(body: &[u8]) -> String {
    let parsed: Option<types::ApiErrorBody> = serde_json::from_slice(body).ok();
    match parsed.and_then(|p| p.message) {
        Some(m) => m.chars().take(200).collect(),
        None => {
            let text =
                String::from_utf8_lossy(&body[..body.len().min(120)]).replace(['\n', '\r'], " ");
            if text.trim_start().starts_with('<') {
                "an HTML error page".to_string()
            } else {
                text
            }
        }
    }
}

pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_the_last_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
        assert_eq!(tail_lines("", 5), "");
    }

    #[test]
    fn segments_cannot_escape_the_path() {
        assert_eq!(seg("../../v2/account"), "..%2F..%2Fv2%2Faccount");
        assert_eq!(seg("abc-123"), "abc-123");
        assert_eq!(seg("a b"), "a%20b");
        assert_eq!(seg("a+b"), "a%2Bb");
        assert_eq!(seg("a?b#c%d"), "a%3Fb%23c%25d");
        assert_eq!(seg("é"), "%C3%A9");
    }

    #[test]
    fn transport_causes_name_the_next_step() {
        let table = [
            (
                "error sending request: client error (Connect): dns error: failed to lookup address information: Name or service not known",
                "DNS lookup failed",
            ),
            (
                "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
                "connection refused",
            ),
            (
                "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer",
                "TLS handshake failed",
            ),
            ("error sending request: connection reset", "network error"),
        ];
        for (chain, want) in table {
            assert_eq!(transport_cause(chain).0, want, "{chain}");
        }
        let e = DoError::Unauthorized {
            status: 401,
            host: "api.digitalocean.com".into(),
        };
        let m = e.to_string();
        assert!(
            m.contains("api.digitalocean.com")
                && m.contains("401 unauthorized")
                && m.contains("check DIGITALOCEAN_TOKEN"),
            "{m}"
        );
    }

    #[test]
    fn next_page_links_absolute_or_relative_on_the_same_origin() {
        let base = Url::parse("http://127.0.0.1:8080").unwrap();
        let table = [
            (
                "http://127.0.0.1:8080/v2/apps?page=2&per_page=200",
                Some("http://127.0.0.1:8080/v2/apps?page=2&per_page=200"),
            ),
            (
                "/v2/apps?page=3",
                Some("http://127.0.0.1:8080/v2/apps?page=3"),
            ),
            ("http://127.0.0.1:9999/v2/apps?page=2", None),
            ("https://127.0.0.1:8080/v2/apps?page=2", None),
            ("https://evil.example/v2/apps?page=2", None),
        ];
        for (next, want) in table {
            let got = next_page_url(&base, next).ok().map(|u| u.to_string());
            assert_eq!(got.as_deref(), want, "{next}");
        }
    }

    #[test]
    fn error_messages_are_short_and_readable() {
        assert_eq!(
            error_message(br#"{"id":"x","message":"API rate limit exceeded."}"#),
            "API rate limit exceeded."
        );
        assert_eq!(
            error_message(b"<html><body>Bad gateway</body></html>"),
            "an HTML error page"
        );
    }
}
