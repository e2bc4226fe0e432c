//! Deployments, their progress and causes; logs, rollback validation and API error bodies.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::time::{de_phase, de_time};
use crate::domain::Phase;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Deployment {
    pub id: String,
    #[serde(default, deserialize_with = "de_phase")]
    pub phase: Phase,
    #[serde(default)]
    pub cause: Option<String>,
    #[serde(default)]
    pub cause_details: Option<CauseDetails>,
    #[serde(default)]
    pub services: Vec<DeploymentComponent>,
    #[serde(default)]
    pub workers: Vec<DeploymentComponent>,
    #[serde(default)]
    pub jobs: Vec<DeploymentComponent>,
    #[serde(default)]
    pub static_sites: Vec<DeploymentComponent>,
    #[serde(default)]
    pub progress: Option<Progress>,
    #[serde(default, deserialize_with = "de_time")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de_time")]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de_time")]
    pub phase_last_updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub previous_deployment_id: Option<String>,
    #[serde(default)]
    pub cloned_from: Option<String>,
    #[serde(default)]
    pub timing: Option<serde_json::Value>,
}

impl Default for Deployment {
    fn default() -> Self {
        Deployment {
            id: String::new(),
            phase: Phase::Unknown,
            cause: None,
            cause_details: None,
            services: vec![],
            workers: vec![],
            jobs: vec![],
            static_sites: vec![],
            progress: None,
            created_at: None,
            updated_at: None,
            phase_last_updated_at: None,
            previous_deployment_id: None,
            cloned_from: None,
            timing: None,
        }
    }
}

impl Deployment {
    /// The commit the deployment built, from its first component that names one.
    pub fn commit(&self) -> Option<&str> {
        self.services
            .iter()
            .chain(&self.workers)
            .chain(&self.jobs)
            .chain(&self.static_sites)
            .find_map(|c| c.source_commit_hash.as_deref().filter(|h| !h.is_empty()))
    }

    /// When the deployment reached its terminal phase, as well as the API lets us know.
    pub fn ended_at(&self) -> Option<DateTime<Utc>> {
        let step_end = self
            .progress
            .as_ref()
            .and_then(|p| p.steps.iter().filter_map(|s| s.ended_at).max());
        self.phase_last_updated_at.or(step_end).or(self.updated_at)
    }

    /// DORA excludes deployments no developer caused.
    pub fn is_autoscale_or_maintenance(&self) -> bool {
        let kind = self
            .cause_details
            .as_ref()
            .and_then(|c| c.r#type.as_deref())
            .unwrap_or("")
            .to_ascii_uppercase();
        let cause = self.cause.as_deref().unwrap_or("").to_ascii_lowercase();
        matches!(
            kind.as_str(),
            "AUTOSCALED" | "AUTOSCALING" | "MAINTENANCE" | "INTERNAL" | "DOCR_PUSH_INTERNAL"
        ) || cause.contains("autoscal")
            || cause.contains("maintenance")
    }

    pub fn is_rollback(&self) -> bool {
        is_rollback_cause(
            self.cause_details
                .as_ref()
                .and_then(|c| c.r#type.as_deref())
                .unwrap_or(""),
            self.cause.as_deref().unwrap_or(""),
        )
    }

    /// The first failed step, depth-first, with its reason.
    pub fn failed_step(&self) -> Option<FailedStep> {
        fn walk(steps: &[Step], top: &str) -> Option<FailedStep> {
            for s in steps {
                if s.status.as_deref() == Some("ERROR") {
                    if let Some(inner) = walk(&s.steps, top) {
                        return Some(inner);
                    }
                    return Some(FailedStep {
                        top_step: top.to_string(),
                        step: s.name.clone(),
                        component: s.component_name.clone(),
                        reason_code: s.reason.as_ref().and_then(|r| r.code.clone()),
                        reason_message: s.reason.as_ref().and_then(|r| r.message.clone()),
                    });
                }
            }
            None
        }
        let p = self.progress.as_ref()?;
        p.steps.iter().find_map(|top| {
            if top.status.as_deref() == Some("ERROR") {
                walk(&top.steps, &top.name).or_else(|| walk(std::slice::from_ref(top), &top.name))
            } else {
                None
            }
        })
    }
}

pub use crate::domain::classify::FailedStep;

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct CauseDetails {
    #[serde(default)]
    pub r#type: Option<String>,
    #[serde(default)]
    pub digitalocean_user_action: Option<serde_json::Value>,
    #[serde(default)]
    pub git_push: Option<serde_json::Value>,
    #[serde(default)]
    pub autoscaler: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct DeploymentComponent {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub source_commit_hash: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Progress {
    #[serde(default)]
    pub pending_steps: i64,
    #[serde(default)]
    pub running_steps: i64,
    #[serde(default)]
    pub success_steps: i64,
    #[serde(default)]
    pub error_steps: i64,
    #[serde(default)]
    pub total_steps: i64,
    #[serde(default)]
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Step {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub reason: Option<StepReason>,
    #[serde(default, deserialize_with = "de_time")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de_time")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub component_name: Option<String>,
    #[serde(default)]
    pub message_base: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct StepReason {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Links {
    #[serde(default)]
    pub pages: Option<Pages>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Pages {
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub last: Option<String>,
}

/// `GET …/logs`: the spec's schema says `live_url` + `historic_urls`; its own example says `url` +
/// `historic_logs`. Accept both.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct LogsResponse {
    #[serde(default)]
    pub live_url: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub historic_urls: Vec<String>,
    #[serde(default)]
    pub historic_logs: Vec<String>,
}

impl LogsResponse {
    /// Historic (complete) logs first: a finished deployment's log is there.
    pub fn urls(&self) -> Vec<&str> {
        self.historic_urls
            .iter()
            .chain(&self.historic_logs)
            .map(String::as_str)
            .chain(self.live_url.as_deref())
            .chain(self.url.as_deref())
            .collect()
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct RollbackValidation {
    #[serde(default)]
    pub valid: bool,
    #[serde(default)]
    pub error: Option<ApiErrorBody>,
    #[serde(default)]
    pub warnings: Vec<RollbackWarning>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct RollbackWarning {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub components: Vec<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct ApiErrorBody {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// Pure: whether a deployment's cause makes it a rollback (for change failure rate and
/// deployment frequency). godo's `DeploymentCauseDetailsType` sends `MANUAL_ROLLBACK` or
/// `AUTO_ROLLBACK`; a bare `ROLLBACK` is accepted too. A typed cause is authoritative (a
/// `ROLLBACK_REVERT` returns to the newer release and is no rollback); the free-text cause is the
/// fallback when no type is given.
pub fn is_rollback_cause(kind: &str, cause: &str) -> bool {
    let kind = kind.trim().to_ascii_uppercase();
    if !kind.is_empty() && kind != "UNKNOWN" {
        return matches!(
            kind.as_str(),
            "ROLLBACK" | "MANUAL_ROLLBACK" | "AUTO_ROLLBACK"
        );
    }
    let cause = cause.to_ascii_lowercase();
    cause.contains("rollback") && !cause.contains("revert")
}

#[cfg(test)]
mod rollback_cause_tests {
    use super::is_rollback_cause;

    #[test]
    fn rollback_causes() {
        let table = [
            ("MANUAL_ROLLBACK", "", true),
            ("AUTO_ROLLBACK", "", true),
            ("manual_rollback", "manual", true),
            ("ROLLBACK", "", true),
            ("ROLLBACK_REVERT", "rollback reverted", false),
            ("MANUAL", "manual", false),
            (
                "DEPLOY_ON_PUSH",
                "commit abc pushed to github.com/x/y",
                false,
            ),
            ("AUTOSCALED", "", false),
            ("", "rollback to deployment 123", true),
            ("UNKNOWN", "rollback to deployment 123", true),
            ("", "manual", false),
        ];
        for (kind, cause, want) in table {
            assert_eq!(is_rollback_cause(kind, cause), want, "{kind:?} {cause:?}");
        }
    }
}
