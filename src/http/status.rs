//! `/api/v1/status`: the picture an agent asks for after a push — per app, the latest and active
//! deployments, probes, drift, firing alerts and open tasks. A typed document built from snapshots
//! and the store (each store read bounded by 2 s); never from the network. Its text rendering for
//! the terminal is `status_text.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::access::ApiQuery;
use crate::app::{App, AppState};
use crate::checks::StartupStatus;
use crate::domain::git::Drift;
use crate::domain::probe::ProbeView;
use crate::domain::{DeploymentView, FailureView};
use crate::store::TaskFilter;
use crate::tasks::{State as TaskState, Task};

/// The whole document.
#[derive(Debug, Serialize)]
pub struct StatusDocument {
    pub version: &'static str,
    pub generated_at: DateTime<Utc>,
    pub sources: BTreeMap<String, SourceStatus>,
    pub startup: StartupStatus,
    pub apps: Vec<AppStatus>,
    pub firing_alerts: Vec<FiringAlert>,
    pub open_tasks: Vec<Task>,
    /// Why the task and alert lists are empty when the store did not answer.
    pub store_error: Option<String>,
}

/// One source: `off` (not configured, with the reason), `on`, or `failing` (its last run failed).
#[derive(Debug, Serialize)]
pub struct SourceStatus {
    pub state: &'static str,
    pub reason: String,
    /// DigitalOcean: when it was last polled, the last error, how many apps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polled_at: Option<Option<DateTime<Utc>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apps: Option<usize>,
    /// Health: how many targets are probed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<usize>,
    /// Git: how many repositories are mirrored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repos: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct AppStatus {
    pub name: String,
    pub id: Option<String>,
    pub latest: Option<DeploymentView>,
    pub active: Option<DeploymentView>,
    pub in_progress: Option<DeploymentView>,
    pub pinned_deployment_id: Option<String>,
    pub stuck: bool,
    pub last_failure: Option<FailureView>,
    pub probes: Vec<ProbeView>,
    pub drift: Option<Drift>,
    /// The latest deployment's post-deploy verification: result, reasons with evidence,
    /// components, suspect commits.
    pub verification: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct FiringAlert {
    pub alertname: String,
    pub app: Option<String>,
    pub starts_at: Option<DateTime<Utc>>,
}

/// The state a source shows. Pure.
fn source_state(on: bool, up: Option<bool>) -> &'static str {
    if !on {
        "off"
    } else if up == Some(false) {
        "failing"
    } else {
        "on"
    }
}

pub async fn build(app: &App, only: Option<&str>) -> StatusDocument {
    let snap = app.do_snapshot();
    let probes = app.probes.all();
    let git = app.git_snapshot();
    let sources = crate::sources::enabled(&app.config)
        .iter()
        .map(|e| {
            let mut s = SourceStatus {
                state: source_state(e.on, app.metrics.source_up(e.source)),
                reason: e.why_off.to_string(),
                polled_at: None,
                last_error: None,
                apps: None,
                targets: None,
                repos: None,
            };
            match e.source {
                "digitalocean" => {
                    s.polled_at = Some(snap.polled_at);
                    s.last_error = Some(snap.last_error.clone());
                    s.apps = Some(snap.apps.len());
                }
                "health" => s.targets = Some(probes.len()),
                "git" => s.repos = Some(git.repos.len()),
                _ => {}
            }
            (e.source.to_string(), s)
        })
        .collect();
    let mut names: Vec<String> = snap.apps.keys().cloned().collect();
    names.extend(probes.iter().map(|p| p.app.clone()));
    names.extend(git.repos.iter().filter_map(|r| r.app.clone()));
    names.sort();
    names.dedup();
    let verdicts: BTreeMap<String, serde_json::Value> = match tokio::time::timeout(
        Duration::from_secs(2),
        app.store.latest_verifications(),
    )
    .await
    {
        Ok(Ok(rows)) => rows
            .into_iter()
            .map(|r| (r.app.clone(), r.to_json()))
            .collect(),
        _ => BTreeMap::new(),
    };
    let apps = names
        .iter()
        .filter(|n| only.is_none_or(|o| o == n.as_str()))
        .map(|name| {
            let v = snap.apps.get(name);
            AppStatus {
                name: name.clone(),
                id: v.map(|v| v.id.clone()),
                latest: v.and_then(|v| v.latest.clone()),
                active: v.and_then(|v| v.active.clone()),
                in_progress: v.and_then(|v| v.in_progress.clone()),
                pinned_deployment_id: v.and_then(|v| v.pinned_deployment_id.clone()),
                stuck: v.is_some_and(|v| v.stuck),
                last_failure: v.and_then(|v| v.last_failure.clone()),
                probes: probes.iter().filter(|p| &p.app == name).cloned().collect(),
                drift: git.drift.get(name).cloned(),
                verification: verdicts.get(name).cloned(),
            }
        })
        .collect();
    let open = async {
        let mut out = Vec::new();
        for st in [TaskState::Queued, TaskState::Claimed] {
            let f = TaskFilter {
                queue: None,
                state: Some(st),
                app: only.map(str::to_string),
                limit: 200,
            };
            out.extend(app.store.list_tasks(&f).await?);
        }
        Ok::<_, crate::store::StoreError>(out)
    };
    let (open_tasks, store_error) = match tokio::time::timeout(Duration::from_secs(2), open).await {
        Ok(Ok(t)) => (t, None),
        Ok(Err(e)) => (vec![], Some(e.to_string())),
        Err(_) => (
            vec![],
            Some("the store did not answer within 2s".to_string()),
        ),
    };
    let firing_alerts =
        match tokio::time::timeout(Duration::from_secs(2), app.store.firing_alerts(only)).await {
            Ok(Ok(a)) => a
                .into_iter()
                .map(|(alertname, app, s)| FiringAlert {
                    alertname,
                    app,
                    starts_at: DateTime::from_timestamp_millis(s),
                })
                .collect(),
            _ => vec![],
        };
    StatusDocument {
        version: env!("CARGO_PKG_VERSION"),
        generated_at: Utc::now(),
        sources,
        startup: app.checks.status(),
        apps,
        firing_alerts,
        open_tasks,
        store_error,
    }
}

#[derive(Deserialize)]
pub(super) struct StatusQuery {
    app: Option<String>,
}

pub(super) async fn handler(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> Response {
    Json(crate::http::status::build(&app, q.app.as_deref()).await).into_response()
}
