//! The Alertmanager webhook receiver (payload version 4).
//!
//! Architecture Invariant: only this module knows the Alertmanager JSON. It parses strictly (types)
//! yet tolerantly (unknown fields), turns each alert into a [`rules::AlertInput`], and stores the
//! notification with everything it causes before answering 200: in a group commit, one durable
//! transaction shared with the notifications queued beside it (`store/group_commit.rs`), answered
//! after that commit. It answers 5xx
//! only when Alertmanager should retry (the store is down or slow): any 4xx is dropped by
//! Alertmanager, so a 4xx is reserved for input that will never succeed.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::store::{AlertRecord, NotificationRecord, PlaceOptions};
use crate::tasks::rules::{self, AlertInput, PlanContext};

/// Added to `webhook.store_timeout` per alert of a notification (2,300 alerts: 23 s more). A
/// notification also waits for the group-commit batch ahead of it, and 3 ms per alert was missed
/// by a 2,300-alert notification on a loaded PostgreSQL (a 503 that Alertmanager would repeat).
const PER_ALERT_BUDGET: std::time::Duration = std::time::Duration::from_millis(10);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub version: String,
    pub group_key: String,
    #[serde(default)]
    pub truncated_alerts: u64,
    pub status: String,
    pub receiver: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: String,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    #[serde(default)]
    pub fingerprint: String,
}

/// Why a payload was refused, mapped to 400 (not JSON) or 422 (JSON of the wrong shape).
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not valid JSON: {0}")]
    Syntax(String),
    #[error("the body is JSON but not an Alertmanager v4 notification: {0}")]
    Shape(String),
}

impl PayloadError {
    pub fn status(&self) -> StatusCode {
        match self {
            PayloadError::Syntax(_) => StatusCode::BAD_REQUEST,
            PayloadError::Shape(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

/// What parsing changed so the store can take the input (counted in
/// `deploywatch_webhook_sanitized_total{reason}`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sanitized {
    /// Fields that had NUL bytes (PostgreSQL text cannot hold them), which were removed.
    pub nul_byte: u64,
}

fn strip_nul(s: &mut String, count: &mut u64) {
    if s.contains('\0') {
        s.retain(|c| c != '\0');
        *count += 1;
    }
}

fn strip_nul_map(m: &mut BTreeMap<String, String>, count: &mut u64) {
    if m.iter().any(|(k, v)| k.contains('\0') || v.contains('\0')) {
        *m = std::mem::take(m)
            .into_iter()
            .map(|(mut k, mut v)| {
                strip_nul(&mut k, count);
                strip_nul(&mut v, count);
                (k, v)
            })
            .collect();
    }
}

/// Removes what no store can hold (NUL bytes) from every string the store will see.
fn sanitize(n: &mut Notification) -> Sanitized {
    let mut c = 0;
    strip_nul(&mut n.receiver, &mut c);
    strip_nul(&mut n.group_key, &mut c);
    for a in &mut n.alerts {
        strip_nul_map(&mut a.labels, &mut c);
        strip_nul_map(&mut a.annotations, &mut c);
        strip_nul(&mut a.fingerprint, &mut c);
        strip_nul(&mut a.generator_url, &mut c);
    }
    Sanitized { nul_byte: c }
}

/// Parses and validates a notification into alert inputs; the notification's alerts move into
/// the inputs (its `alerts` comes back empty). Pure.
pub fn parse(body: &[u8]) -> Result<(Notification, Vec<AlertInput>), PayloadError> {
    parse_sanitized(body).map(|(n, i, _)| (n, i))
}

/// [`parse`], also telling what was removed to make the input storable. Pure.
pub fn parse_sanitized(
    body: &[u8],
) -> Result<(Notification, Vec<AlertInput>, Sanitized), PayloadError> {
    let mut n: Notification = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => PayloadError::Shape(e.to_string()),
        _ => PayloadError::Syntax(e.to_string()),
    })?;
    if n.version != "4" {
        return Err(PayloadError::Shape(format!(
            "version is {:?}; deploywatch reads version \"4\"",
            n.version
        )));
    }
    if !matches!(n.status.as_str(), "firing" | "resolved") {
        return Err(PayloadError::Shape(format!(
            "status {:?} is neither \"firing\" nor \"resolved\"",
            n.status
        )));
    }
    let sanitized = sanitize(&mut n);
    let mut inputs = Vec::with_capacity(n.alerts.len());
    // The alerts move into the inputs (their label maps are most of a notification's allocations).
    for (i, a) in std::mem::take(&mut n.alerts).into_iter().enumerate() {
        let firing = match a.status.as_str() {
            "firing" => true,
            "resolved" => false,
            other => {
                return Err(PayloadError::Shape(format!(
                    "alerts[{i}].status {other:?} is neither \"firing\" nor \"resolved\""
                )));
            }
        };
        let Some(alertname) = a.labels.get("alertname").filter(|s| !s.is_empty()).cloned() else {
            return Err(PayloadError::Shape(format!(
                "alerts[{i}] has no alertname label"
            )));
        };
        // Alertmanager's zero time means "no end".
        let ends_at = a.ends_at.filter(|t| t.timestamp() > 0);
        // The episode identity is the full label set, hashed (what Alertmanager's fingerprint is
        // too): bounded whatever the labels hold, and not trusted from the sender's field, which
        // may be missing, huge or differ between versions.
        let fingerprint = label_fingerprint(&a.labels);
        inputs.push(AlertInput {
            alertname,
            firing,
            labels: a.labels,
            annotations: a.annotations,
            starts_at: a.starts_at,
            ends_at,
            fingerprint,
            generator_url: a.generator_url,
        });
    }
    Ok((n, inputs, sanitized))
}

/// Same labels, same fingerprint: SHA-256 over the sorted label pairs, 32 hex digits.
pub fn label_fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0xff]);
        h.update(v.as_bytes());
        h.update([0xff]);
    }
    format!("{:x}", h.finalize())[..32].to_string()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

/// The 200 answer's body, serialized straight from the report (no intermediate JSON tree).
#[derive(serde::Serialize)]
struct Stored<'a> {
    report: &'a crate::store::IngestReport,
    status: &'static str,
}

/// `POST /webhook/alertmanager`. Authentication ran before the body was read (middleware).
pub async fn receive(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let res = handle(&app, &headers, &body).await;
    let code = match &res {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status,
    };
    app.metrics.webhook_request(code.as_str());
    match res {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(app: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<Response, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the notification as Content-Type: application/json",
        ));
    }
    let (n, inputs, sanitized) = parse_sanitized(body).map_err(|e| {
        ApiError::new(
            e.status(),
            if e.status() == StatusCode::BAD_REQUEST {
                "bad_request"
            } else {
                "invalid_payload"
            },
            e.to_string(),
        )
    })?;
    if sanitized.nul_byte > 0 {
        app.metrics
            .webhook_sanitized("nul_byte", sanitized.nul_byte);
    }
    // Only what the alerts name: each alert's app view, and the checks only when an alert is about
    // one; not a copy of the whole DigitalOcean snapshot (every app's deployments) per notification.
    let checks = inputs
        .iter()
        .any(|a| a.labels.contains_key("check"))
        .then(|| app.checks.status());
    // Verification alerts carry the verdict's evidence into their tasks (one bounded read, only
    // when such an alert is in the notification).
    let verdicts: std::collections::BTreeMap<String, serde_json::Value> =
        if inputs.iter().any(|a| {
            matches!(
                a.alertname.as_str(),
                "DeploymentVerificationFailed" | "AppCrashLooping"
            )
        }) {
            match tokio::time::timeout(
                std::time::Duration::from_secs(2),
                app.store.latest_verifications(),
            )
            .await
            {
                Ok(Ok(rows)) => rows
                    .into_iter()
                    .map(|r| (r.app.clone(), r.to_json()))
                    .collect(),
                _ => Default::default(),
            }
        } else {
            Default::default()
        };
    let cfg = &app.config.webhook;
    let mut records = Vec::with_capacity(inputs.len());
    for a in &inputs {
        let view = a.app().and_then(|name| app.app_view(name));
        let check_details = a
            .labels
            .get("check")
            .zip(checks.as_ref())
            .and_then(|(name, checks)| checks.checks.iter().find(|c| &c.name == name))
            .map(|c| c.details.clone());
        let plan = rules::plan(
            a,
            &PlanContext {
                rules: &cfg.rules,
                app: view.as_ref(),
                dashboard_url: cfg.dashboard_url.as_deref(),
                check_details,
                environment: a
                    .app()
                    .and_then(|name| app.config.deploy.environment_of(name)),
                verification: a.app().and_then(|name| verdicts.get(name)),
            },
        );
        records.push(AlertRecord {
            fingerprint: a.fingerprint.clone(),
            alertname: a.alertname.clone(),
            app: a.app().map(str::to_string),
            firing: a.firing,
            starts_at_ms: a.starts_at.timestamp_millis(),
            ends_at_ms: a.ends_at.map(|t| t.timestamp_millis()),
            labels_json: serde_json::to_string(&a.labels).unwrap_or_default(),
            annotations_json: serde_json::to_string(&a.annotations).unwrap_or_default(),
            create: plan.create,
            cancel_keys: plan.cancel_keys,
        });
    }
    let record = NotificationRecord {
        body_sha256: format!("{:x}", Sha256::digest(body)),
        receiver: n.receiver.clone(),
        status: n.status.clone(),
        group_key: n.group_key.clone(),
        alert_count: inputs.len() as i64,
        body: String::from_utf8_lossy(body).into_owned(),
    };
    let notifiers = app.config.notifier_names();
    let opts = PlaceOptions {
        max_attempts: app.config.tasks.max_attempts as i64,
        reopen_window: cfg.reopen_window,
        notifiers: &notifiers,
    };
    // The deadline grows with the notification: a large one is slow to store, not a broken store,
    // and a deadline it can never meet would make Alertmanager retry it (and block its group) forever.
    let deadline = cfg.store_timeout + PER_ALERT_BUDGET * (records.len() as u32);
    let report = tokio::time::timeout(
        deadline,
        app.store.ingest_notification(record, records, &opts),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the store did not commit within {deadline:?}; Alertmanager will retry"),
        )
    })?
    .map_err(ApiError::store_input)?;
    let firing = inputs.iter().filter(|a| a.firing).count() as u64;
    app.metrics
        .webhook_ingested(firing, inputs.len() as u64 - firing, &report);
    // Alert-derived strings are logged Debug-quoted: a newline in a label cannot start a log line.
    tracing::info!(
        receiver = ?n.receiver, alerts = report.alerts, created = report.tasks_created,
        duplicates = report.duplicates_absorbed, cancelled = report.tasks_cancelled,
        stale = report.stale_ignored, "webhook notification stored"
    );
    Ok((
        StatusCode::OK,
        axum::Json(Stored {
            report: &report,
            status: "stored",
        }),
    )
        .into_response())
}

pub(super) async fn handler(
    state: State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match body {
        Ok(b) => crate::http::webhook::receive(state, headers, b).await,
        Err(r) => {
            let e = ApiError::from(r);
            state.metrics.webhook_request(e.status.as_str());
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"version":"4","groupKey":"{}:{alertname=\"DeploymentFailed\"}","truncatedAlerts":0,
      "status":"firing","receiver":"deploywatch","groupLabels":{"alertname":"DeploymentFailed"},
      "commonLabels":{"alertname":"DeploymentFailed","app":"api"},"commonAnnotations":{},
      "externalURL":"http://am:9093","newFieldFromTheFuture":{"x":1},
      "alerts":[{"status":"firing","labels":{"alertname":"DeploymentFailed","app":"api","severity":"critical"},
      "annotations":{"summary":"s"},"startsAt":"2026-11-22T10:00:00Z","endsAt":"0001-01-01T00:00:00Z",
      "generatorURL":"http://prom/graph","fingerprint":"c0ffee"}]}"#;

    #[test]
    fn parses_a_real_shape_and_ignores_unknown_fields() {
        let (n, inputs) = parse(SAMPLE.as_bytes()).expect("valid");
        assert_eq!(n.receiver, "deploywatch");
        assert_eq!(inputs.len(), 1);
        assert_eq!(inputs[0].alertname, "DeploymentFailed");
        assert!(inputs[0].firing);
        assert_eq!(inputs[0].ends_at, None, "zero time is no end");
        assert_eq!(inputs[0].fingerprint, label_fingerprint(&inputs[0].labels));
        assert_eq!(inputs[0].fingerprint.len(), 32);
    }

    #[test]
    fn refusals_are_classified() {
        let cases: &[(&[u8], StatusCode)] = &[
            (b"", StatusCode::BAD_REQUEST),
            (b"{\"version\":", StatusCode::BAD_REQUEST),
            (b"\xff\xfe", StatusCode::BAD_REQUEST),
            (b"[]", StatusCode::UNPROCESSABLE_ENTITY),
            (b"{\"version\":4}", StatusCode::UNPROCESSABLE_ENTITY),
            (br#"{"version":"3","groupKey":"g","status":"firing","receiver":"r","alerts":[]}"#, StatusCode::UNPROCESSABLE_ENTITY),
            (br#"{"version":"4","groupKey":"g","status":"weird","receiver":"r","alerts":[]}"#, StatusCode::UNPROCESSABLE_ENTITY),
            (br#"{"version":"4","groupKey":"g","status":"firing","receiver":"r","alerts":[{"status":"firing","labels":{},"startsAt":"2026-01-01T00:00:00Z"}]}"#, StatusCode::UNPROCESSABLE_ENTITY),
            (br#"{"version":"4","groupKey":"g","status":"firing","receiver":"r","alerts":[{"status":"firing","labels":{"alertname":"X"},"startsAt":"yesterday"}]}"#, StatusCode::UNPROCESSABLE_ENTITY),
        ];
        for (body, want) in cases {
            let got = parse(body).err().map(|e| e.status());
            assert_eq!(got, Some(*want), "{}", String::from_utf8_lossy(body));
        }
        // Deep nesting in an ignored field neither overflows the stack nor is mistaken for data.
        let deep = format!(
            "{{\"x\": {}{}, \"version\": \"4\"}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(
            parse(deep.as_bytes()).err().map(|e| e.status()),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        let deep_labels = format!(
            "{{\"version\":\"4\",\"groupKey\":\"g\",\"status\":\"firing\",\"receiver\":\"r\",\"alerts\":[],\"commonLabels\":{}}}",
            "{\"a\":".repeat(5_000)
        );
        assert_eq!(
            parse(deep_labels.as_bytes()).err().map(|e| e.status()),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        let deep_open = "[".repeat(10_000);
        assert!(parse(deep_open.as_bytes()).is_err());
    }

    #[test]
    fn nul_bytes_are_stripped_and_counted() {
        let body = SAMPLE
            .replace("\"api\",\"severity\"", "\"a\\u0000pi\",\"severity\"")
            .replace("\"summary\":\"s\"", "\"summary\":\"s\\u0000\"")
            .replace("c0ffee", "c0\\u0000ffee");
        let (_, inputs, s) = parse_sanitized(body.as_bytes()).expect("valid");
        assert_eq!(s.nul_byte, 3, "{body}");
        assert_eq!(inputs[0].labels.get("app").map(String::as_str), Some("api"));
        assert_eq!(inputs[0].annotations["summary"], "s");
    }

    #[test]
    fn store_errors_map_to_retry_or_refusal() {
        use crate::store::StoreError;
        assert_eq!(
            ApiError::store_input(StoreError::Unavailable("disk full".into())).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::store_input(StoreError::Timeout(std::time::Duration::from_secs(1))).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::store_input(StoreError::Rejected("index row size".into())).status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }

    #[test]
    fn fingerprints_from_labels_are_stable() {
        let l: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        assert_eq!(label_fingerprint(&l), label_fingerprint(&l.clone()));
        let l2: BTreeMap<String, String> = [("a".to_string(), "2".to_string())].into();
        assert_ne!(label_fingerprint(&l), label_fingerprint(&l2));
    }
}
