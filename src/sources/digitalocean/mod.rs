//! The DigitalOcean App Platform source: polls apps and their deployments within the token's
//! request budget, keeps a snapshot, counts every deployment's outcome once, emits one trace per
//! deployment and publishes lifecycle events.

pub mod client;
pub mod export;
pub mod poller;
pub mod schedule;
pub mod traces;
pub mod types;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::Phase;
use types::FailedStep;

/// What the poller knows about one app, as `/api/v1/status`, `/metrics` and task enrichment use it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppView {
    pub id: String,
    pub name: String,
    pub region: String,
    pub live_url: Option<String>,
    /// Branch the app deploys from (first component that names one).
    pub branch: Option<String>,
    /// Health check paths from the spec, with the kind (`readiness`, `liveness`).
    pub health_paths: Vec<(String, String)>,
    pub active: Option<DeploymentView>,
    pub latest: Option<DeploymentView>,
    pub in_progress: Option<DeploymentView>,
    /// The newest deployment that reached a terminal phase.
    pub last_ended: Option<DeploymentView>,
    pub pinned_deployment_id: Option<String>,
    /// The deployment serving traffic (ACTIVE).
    pub last_good_deployment_id: Option<String>,
    /// The newest successful deployment before the active one: the target when the active one is
    /// the problem.
    pub previous_good_deployment_id: Option<String>,
    pub last_failure: Option<FailureView>,
    pub stuck: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeploymentView {
    pub id: String,
    pub phase: Phase,
    pub cause: Option<String>,
    pub commit: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub trace_id: String,
    pub steps: Vec<StepView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepView {
    pub name: String,
    pub status: String,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailureView {
    pub deployment_id: String,
    pub failed_step: Option<FailedStep>,
    pub class: crate::tasks::classify::FailureClass,
    pub log_tail: Option<String>,
    pub commit: Option<String>,
    pub cause: Option<String>,
    pub trace_id: String,
    /// When the failed deployment ended, so an old failure reads as history.
    pub ended_at: Option<DateTime<Utc>>,
}

impl DeploymentView {
    pub fn from_api(d: &types::Deployment) -> DeploymentView {
        DeploymentView {
            id: d.id.clone(),
            phase: d.phase,
            cause: d.cause.clone(),
            commit: d.commit().map(str::to_string),
            created_at: d.created_at,
            ended_at: if d.phase.outcome().is_some() {
                d.ended_at()
            } else {
                None
            },
            trace_id: crate::telemetry::deployment_trace_id(&d.id).to_string(),
            steps: d
                .progress
                .as_ref()
                .map(|p| {
                    p.steps
                        .iter()
                        .map(|s| StepView {
                            name: s.name.clone(),
                            status: s.status.clone().unwrap_or_default(),
                            started_at: s.started_at,
                            ended_at: s.ended_at,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// The source's snapshot. Replaced whole after each poll.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub apps: BTreeMap<String, AppView>,
    pub polled_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// A deployment lifecycle event, for the fixer.
#[derive(Debug, Clone, Serialize)]
pub struct LifecycleEvent {
    pub kind: LifecycleKind,
    pub app: String,
    pub deployment: DeploymentView,
    pub failure: Option<FailureView>,
    pub duration_seconds: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleKind {
    Started,
    Succeeded,
    Failed,
    Canceled,
    Stuck,
}

impl LifecycleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleKind::Started => "started",
            LifecycleKind::Succeeded => "succeeded",
            LifecycleKind::Failed => "failed",
            LifecycleKind::Canceled => "canceled",
            LifecycleKind::Stuck => "stuck",
        }
    }
}
