//! What deploywatch knows about apps and their deployments: the views every reader shares (status,
//! metrics, task enrichment), the source's snapshot and the lifecycle events the fixer acts on.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::classify::{FailedStep, FailureClass};
use super::phase::Phase;

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
    /// That deployment's commit: the start of the suspect range when the active one is the problem.
    #[serde(default)]
    pub previous_good_commit: Option<String>,
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
    pub class: FailureClass,
    pub log_tail: Option<String>,
    pub commit: Option<String>,
    pub cause: Option<String>,
    pub trace_id: String,
    /// When the failed deployment ended, so an old failure reads as history.
    pub ended_at: Option<DateTime<Utc>>,
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
