//! A small PromQL client for the verification window's regression queries against the team's own
//! Prometheus (`[verification] prometheus_url`): `query_range` and instant `query` over the HTTP
//! API (`/api/v1/query_range`, `/api/v1/query`), bounded by a timeout, every error naming the URL
//! and the query.
//!
//! Call it by its path (`crate::sources::prometheus::query_range`) or import its items: a bare
//! `prometheus::` path outside `telemetry/` reads as the metrics crate to the architecture test.

use std::time::Duration;

use chrono::{DateTime, Utc};
use url::Url;

/// What went wrong asking Prometheus, said so the next step is clear.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromError {
    #[error(
        "the Prometheus URL {url:?} cannot be used: {reason}; set [verification] prometheus_url to http(s)://host:port"
    )]
    BadUrl { url: String, reason: String },
    #[error(
        "Prometheus at {url} did not answer the query {query:?} within {timeout:?}; check that it is up and the query is not too expensive"
    )]
    Timeout {
        url: String,
        query: String,
        timeout: Duration,
    },
    #[error(
        "could not reach Prometheus at {url} for the query {query:?}: {reason}; check [verification] prometheus_url and the network"
    )]
    Transport {
        url: String,
        query: String,
        reason: String,
    },
    #[error("Prometheus at {url} answered HTTP {status} to the query {query:?}: {message}")]
    Http {
        url: String,
        query: String,
        status: u16,
        message: String,
    },
    #[error(
        "Prometheus at {url} refused the query {query:?} ({error_type}): {message}; fix the query in [[verification.queries]]"
    )]
    Query {
        url: String,
        query: String,
        error_type: String,
        message: String,
    },
    #[error(
        "Prometheus at {url} sent an answer to the query {query:?} that could not be read: {reason}"
    )]
    Decode {
        url: String,
        query: String,
        reason: String,
    },
}

/// One series of an answer: its labels and its samples, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromSeries {
    pub labels: std::collections::BTreeMap<String, String>,
    pub samples: Vec<(DateTime<Utc>, f64)>,
}

/// A client with its own timeout; cheap to clone.
#[derive(Debug, Clone)]
pub struct PromClient {
    http: reqwest::Client,
    timeout: Duration,
}

impl PromClient {
    pub fn new(timeout: Duration) -> PromClient {
        PromClient {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(5)))
                .user_agent(concat!("deploywatch/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
            timeout,
        }
    }

    /// `GET /api/v1/query_range`: every series of the answer.
    pub async fn query_range_series(
        &self,
        base_url: &Url,
        promql: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<PromSeries>, PromError> {
        let step_secs = step.as_secs_f64().max(0.001);
        self.get(
            base_url,
            "api/v1/query_range",
            promql,
            &[
                ("start", unix(start)),
                ("end", unix(end)),
                ("step", format!("{step_secs}")),
            ],
        )
        .await
    }

    /// The samples of a range query, oldest first (series after series: write queries that
    /// aggregate to one series). NaN (no data at that step) is left out; ±Inf is kept.
    pub async fn query_range(
        &self,
        base_url: &Url,
        promql: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<f64>, PromError> {
        let series = self
            .query_range_series(base_url, promql, start, end, step)
            .await?;
        Ok(samples(&series))
    }

    /// `GET /api/v1/query` at `time`: one value per series (a vector) or the scalar.
    pub async fn query(
        &self,
        base_url: &Url,
        promql: &str,
        time: DateTime<Utc>,
    ) -> Result<Vec<f64>, PromError> {
        let series = self
            .get(base_url, "api/v1/query", promql, &[("time", unix(time))])
            .await?;
        Ok(samples(&series))
    }

    async fn get(
        &self,
        base_url: &Url,
        api_path: &str,
        promql: &str,
        params: &[(&str, String)],
    ) -> Result<Vec<PromSeries>, PromError> {
        let shown = base_url.as_str().trim_end_matches('/').to_string();
        let mut url = endpoint(base_url, api_path)?;
        url.query_pairs_mut().append_pair("query", promql);
        for (k, v) in params {
            url.query_pairs_mut().append_pair(k, v);
        }
        let resp = self.http.get(url).send().await.map_err(|e| {
            if e.is_timeout() {
                PromError::Timeout {
                    url: shown.clone(),
                    query: promql.to_string(),
                    timeout: self.timeout,
                }
            } else {
                PromError::Transport {
                    url: shown.clone(),
                    query: promql.to_string(),
                    reason: chain(&e),
                }
            }
        })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| {
            if e.is_timeout() {
                PromError::Timeout {
                    url: shown.clone(),
                    query: promql.to_string(),
                    timeout: self.timeout,
                }
            } else {
                PromError::Transport {
                    url: shown.clone(),
                    query: promql.to_string(),
                    reason: chain(&e),
                }
            }
        })?;
        parse_answer(status.as_u16(), &body).map_err(|f| f.at(&shown, promql))
    }
}

/// A one-off range query with its own client: the samples, oldest first.
pub async fn query_range(
    base_url: &Url,
    promql: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    step: Duration,
    timeout: Duration,
) -> Result<Vec<f64>, PromError> {
    PromClient::new(timeout)
        .query_range(base_url, promql, start, end, step)
        .await
}

fn samples(series: &[PromSeries]) -> Vec<f64> {
    series
        .iter()
        .flat_map(|s| s.samples.iter().map(|(_, v)| *v))
        .filter(|v| !v.is_nan())
        .collect()
}

/// Unix seconds with millisecond precision, as the API takes them.
fn unix(t: DateTime<Utc>) -> String {
    format!("{:.3}", t.timestamp_millis() as f64 / 1000.0)
}

/// `api_path` under the base URL, keeping a path prefix (`http://host/prometheus`).
fn endpoint(base: &Url, api_path: &str) -> Result<Url, PromError> {
    let bad = |reason: String| PromError::BadUrl {
        url: base.to_string(),
        reason,
    };
    if !matches!(base.scheme(), "http" | "https") {
        return Err(bad(format!(
            "scheme {:?} is not http or https",
            base.scheme()
        )));
    }
    let mut b = base.clone();
    b.set_query(None);
    b.set_fragment(None);
    if !b.path().ends_with('/') {
        let p = format!("{}/", b.path());
        b.set_path(&p);
    }
    b.join(api_path).map_err(|e| bad(e.to_string()))
}

fn chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// A failure found in an answer before the URL and query are known.
#[derive(Debug)]
enum Fault {
    Http(u16, String),
    Query(String, String),
    Decode(String),
}

impl Fault {
    fn at(self, url: &str, query: &str) -> PromError {
        let (url, query) = (url.to_string(), query.to_string());
        match self {
            Fault::Http(status, message) => PromError::Http {
                url,
                query,
                status,
                message,
            },
            Fault::Query(error_type, message) => PromError::Query {
                url,
                query,
                error_type,
                message,
            },
            Fault::Decode(reason) => PromError::Decode { url, query, reason },
        }
    }
}

/// A sample value: Prometheus sends strings ("0.25", "NaN", "+Inf"); numbers are accepted too.
fn value(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::String(s) => s.trim().parse().ok(),
        serde_json::Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn sample(v: &serde_json::Value) -> Option<(DateTime<Utc>, f64)> {
    let pair = v.as_array().filter(|a| a.len() == 2)?;
    let secs = pair[0].as_f64().or_else(|| value(&pair[0]))?;
    let t = DateTime::from_timestamp_millis((secs * 1000.0).round() as i64)?;
    Some((t, value(&pair[1])?))
}

/// Pure: reads the API's envelope (`status`, `data.resultType`, `data.result`, or `errorType`
/// and `error`) for any HTTP status.
fn parse_answer(status: u16, body: &[u8]) -> Result<Vec<PromSeries>, Fault> {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) if (200..300).contains(&status) => {
            return Err(Fault::Decode(format!("not JSON ({e})")));
        }
        Err(_) => {
            let text =
                String::from_utf8_lossy(&body[..body.len().min(160)]).replace(['\n', '\r'], " ");
            let text = if text.trim_start().starts_with('<') {
                "an HTML error page".to_string()
            } else {
                text
            };
            return Err(Fault::Http(status, text));
        }
    };
    if v.get("status").and_then(|s| s.as_str()) == Some("error") || !(200..300).contains(&status) {
        let kind = v.get("errorType").and_then(|e| e.as_str());
        let msg = v
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("no message");
        return Err(match kind {
            Some(k) => Fault::Query(k.to_string(), msg.to_string()),
            None => Fault::Http(status, msg.to_string()),
        });
    }
    if v.get("status").and_then(|s| s.as_str()) != Some("success") {
        return Err(Fault::Decode("no \"status\": \"success\"".into()));
    }
    let data = v
        .get("data")
        .ok_or_else(|| Fault::Decode("no \"data\"".into()))?;
    let kind = data
        .get("resultType")
        .and_then(|k| k.as_str())
        .unwrap_or("");
    let result = data.get("result").unwrap_or(&serde_json::Value::Null);
    let labels = |s: &serde_json::Value| {
        s.get("metric")
            .and_then(|m| m.as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let list = |r: &serde_json::Value| -> Result<Vec<serde_json::Value>, Fault> {
        r.as_array()
            .cloned()
            .ok_or_else(|| Fault::Decode(format!("{kind} result is not a list")))
    };
    match kind {
        "matrix" => Ok(list(result)?
            .iter()
            .map(|s| {
                let mut samples: Vec<(DateTime<Utc>, f64)> = s
                    .get("values")
                    .and_then(|v| v.as_array())
                    .map(|vs| vs.iter().filter_map(sample).collect())
                    .unwrap_or_default();
                samples.sort_by_key(|(t, _)| *t);
                PromSeries {
                    labels: labels(s),
                    samples,
                }
            })
            .collect()),
        "vector" => Ok(list(result)?
            .iter()
            .map(|s| PromSeries {
                labels: labels(s),
                samples: s.get("value").and_then(sample).into_iter().collect(),
            })
            .collect()),
        "scalar" => Ok(vec![PromSeries {
            labels: Default::default(),
            samples: sample(result).into_iter().collect(),
        }]),
        other => Err(Fault::Decode(format!(
            "resultType {other:?} is not matrix, vector or scalar"
        ))),
    }
}

#[cfg(test)]
mod tests;
