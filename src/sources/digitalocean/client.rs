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

pub use super::errors::DoError;
use super::errors::{describe_transport, error_message, without_url};
use crate::telemetry::metrics::Metrics;

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
    pub(super) plain_http: reqwest::Client,
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
    pub(super) fn host(&self) -> String {
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

    pub(super) fn url(&self, path: &str) -> Result<Url, DoError> {
        self.base
            .join(path)
            .map_err(|e| DoError::Transport(format!("bad URL {path}: {e}")))
    }

    pub(super) fn count(&self, endpoint: &str, code: &str) {
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
    pub(super) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        endpoint: &'static str,
        body: Option<serde_json::Value>,
    ) -> Result<bytes::Bytes, DoError> {
        self.send_to(method, self.url(path)?, endpoint, body).await
    }

    /// [`Client::send`] to a full URL (a pagination link).
    pub(super) async fn send_to(
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
}
