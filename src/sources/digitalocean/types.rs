//! App Platform types, modelled on the public OpenAPI spec (`specification/resources/apps/`) plus the
//! fields godo knows that the spec lacks (`cause_details`, `timing`, `previous_deployment_id`).
//!
//! Parsing is tolerant: every field is optional or defaulted, unknown fields are ignored, an unknown
//! phase is `UNKNOWN`, and the zero time `0001-01-01T00:00:00Z` (with or without `Z`) means unset.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::Phase;

/// A timestamp that may be absent, zero or unparseable; all three read as `None`.
pub fn de_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let raw: Option<serde_json::Value> = Option::deserialize(d)?;
    Ok(raw.and_then(|v| v.as_str().and_then(parse_time)))
}

pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })?;
    // The API's way of saying "not set".
    if t.timestamp() <= 0 { None } else { Some(t) }
}

fn de_phase<'de, D: Deserializer<'de>>(d: D) -> Result<Phase, D::Error> {
    let raw: Option<serde_json::Value> = Option::deserialize(d)?;
    Ok(raw
        .as_ref()
        .and_then(|v| v.as_str())
        .map(Phase::parse)
        .unwrap_or(Phase::Unknown))
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct App {
    pub id: String,
    #[serde(default)]
    pub spec: AppSpec,
    #[serde(default)]
    pub live_url: Option<String>,
    #[serde(default)]
    pub default_ingress: Option<String>,
    #[serde(default)]
    pub region: Option<Region>,
    #[serde(default)]
    pub active_deployment: Option<Deployment>,
    #[serde(default)]
    pub in_progress_deployment: Option<Deployment>,
    #[serde(default)]
    pub pending_deployment: Option<Deployment>,
    #[serde(default)]
    pub pinned_deployment: Option<Deployment>,
    #[serde(default, deserialize_with = "de_time")]
    pub last_deployment_created_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de_time")]
    pub last_deployment_active_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de_time")]
    pub updated_at: Option<DateTime<Utc>>,
}

impl App {
    /// The spec's list example leaves `phase` off the active deployment (and puts `cause` and
    /// `progress` on the app). The deployment serving as `active_deployment` is ACTIVE by
    /// definition, so an unknown phase there is read as ACTIVE.
    pub fn normalize(mut self) -> App {
        if let Some(d) = self.active_deployment.as_mut()
            && d.phase == Phase::Unknown
        {
            d.phase = Phase::Active;
        }
        self
    }

    pub fn name(&self) -> &str {
        if self.spec.name.is_empty() {
            &self.id
        } else {
            &self.spec.name
        }
    }

    pub fn region_slug(&self) -> &str {
        self.region
            .as_ref()
            .map(|r| r.slug.as_str())
            .filter(|s| !s.is_empty())
            .or(self.spec.region.as_deref())
            .unwrap_or("")
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Region {
    #[serde(default)]
    pub slug: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct AppSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub services: Vec<ComponentSpec>,
    #[serde(default)]
    pub workers: Vec<ComponentSpec>,
    #[serde(default)]
    pub jobs: Vec<ComponentSpec>,
    #[serde(default)]
    pub static_sites: Vec<ComponentSpec>,
}

impl AppSpec {
    pub fn components(&self) -> impl Iterator<Item = &ComponentSpec> {
        self.services
            .iter()
            .chain(&self.workers)
            .chain(&self.jobs)
            .chain(&self.static_sites)
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct ComponentSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub github: Option<GitSource>,
    #[serde(default)]
    pub gitlab: Option<GitSource>,
    #[serde(default)]
    pub git: Option<GitSource>,
    #[serde(default)]
    pub health_check: Option<HealthCheckSpec>,
    #[serde(default)]
    pub liveness_health_check: Option<HealthCheckSpec>,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Job kind (`PRE_DEPLOY`, `POST_DEPLOY`, ...), for jobs.
    #[serde(default)]
    pub kind: Option<String>,
}

impl ComponentSpec {
    pub fn branch(&self) -> Option<&str> {
        [&self.github, &self.gitlab, &self.git]
            .into_iter()
            .flatten()
            .find_map(|g| g.branch.as_deref())
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct GitSource {
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default)]
    pub repo_clone_url: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub deploy_on_push: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct HealthCheckSpec {
    #[serde(default)]
    pub http_path: Option<String>,
    #[serde(default)]
    pub failure_threshold: Option<u32>,
    #[serde(default)]
    pub success_threshold: Option<u32>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub period_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Route {
    #[serde(default)]
    pub path: Option<String>,
}

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
        let kind = self
            .cause_details
            .as_ref()
            .and_then(|c| c.r#type.as_deref())
            .unwrap_or("")
            .to_ascii_uppercase();
        kind == "ROLLBACK"
            || self
                .cause
                .as_deref()
                .unwrap_or("")
                .to_ascii_lowercase()
                .contains("rollback")
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedStep {
    /// `build` or `deploy` (the top-level step).
    pub top_step: String,
    pub step: String,
    pub component: Option<String>,
    pub reason_code: Option<String>,
    pub reason_message: Option<String>,
}

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

/// Parses each value as `T`, keeping the ones that parse and counting the others.
fn lenient<T: serde::de::DeserializeOwned>(values: Vec<serde_json::Value>) -> (Vec<T>, usize) {
    let total = values.len();
    let ok: Vec<T> = values
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    let skipped = total - ok.len();
    (ok, skipped)
}

/// Parses `{"apps": [...]}` keeping every app that parses and counting the ones that don't.
pub fn parse_apps_page(
    body: &[u8],
) -> Result<(Vec<App>, usize, Option<String>), serde_json::Error> {
    #[derive(Deserialize)]
    struct Page {
        #[serde(default)]
        apps: Vec<serde_json::Value>,
        #[serde(default)]
        links: Option<Links>,
    }
    let page: Page = serde_json::from_slice(body)?;
    let (apps, skipped) = lenient::<App>(page.apps);
    let next = page.links.and_then(|l| l.pages).and_then(|p| p.next);
    Ok((
        apps.into_iter().map(App::normalize).collect(),
        skipped,
        next,
    ))
}

/// Parses `{"deployments": [...]}` the same tolerant way.
pub fn parse_deployments_page(body: &[u8]) -> Result<(Vec<Deployment>, usize), serde_json::Error> {
    #[derive(Deserialize)]
    struct Page {
        #[serde(default)]
        deployments: Vec<serde_json::Value>,
    }
    let page: Page = serde_json::from_slice(body)?;
    Ok(lenient(page.deployments))
}
