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

/// Numbers are signed: the API has been seen to send `-1`, and a health check is no reason to
/// lose the app.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct HealthCheckSpec {
    #[serde(default)]
    pub http_path: Option<String>,
    #[serde(default)]
    pub initial_delay_seconds: Option<i64>,
    #[serde(default)]
    pub failure_threshold: Option<i64>,
    #[serde(default)]
    pub success_threshold: Option<i64>,
    #[serde(default)]
    pub timeout_seconds: Option<i64>,
    #[serde(default)]
    pub period_seconds: Option<i64>,
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

/// Pure: the JSON pointer of the smallest part of `v` whose removal makes `parses` true, given
/// that removing the node at `ptr` does. Descends while one child alone is to blame.
fn culprit(
    v: &serde_json::Value,
    ptr: &str,
    parses: &dyn Fn(&serde_json::Value) -> bool,
) -> String {
    let children: Vec<String> = match v.pointer(ptr) {
        Some(serde_json::Value::Object(m)) => m
            .keys()
            .map(|k| format!("{ptr}/{}", k.replace('~', "~0").replace('/', "~1")))
            .collect(),
        Some(serde_json::Value::Array(a)) => (0..a.len()).map(|i| format!("{ptr}/{i}")).collect(),
        _ => Vec::new(),
    };
    for c in &children {
        let mut trial = v.clone();
        if remove_at(&mut trial, c) && parses(&trial) {
            return culprit(v, c, parses);
        }
    }
    // Several children are to blame: isolate one field at a time (keeping an `id`, which
    // deployments need) so the first bad one is found; the caller loops for the rest.
    if let Some(serde_json::Value::Object(m)) = v.pointer(ptr) {
        for (k, child) in m {
            if k == "id" {
                continue;
            }
            let mut only = serde_json::Map::new();
            only.insert(k.clone(), child.clone());
            if let Some(id) = m.get("id") {
                only.insert("id".into(), id.clone());
            }
            let mut trial = v.clone();
            if let Some(slot) = trial.pointer_mut(ptr) {
                *slot = serde_json::Value::Object(only);
            }
            if !parses(&trial) {
                let c = format!("{ptr}/{}", k.replace('~', "~0").replace('/', "~1"));
                return culprit(&trial, &c, parses);
            }
        }
    }
    ptr.to_string()
}

/// Removes the node at a JSON pointer; false when there is none.
fn remove_at(v: &mut serde_json::Value, ptr: &str) -> bool {
    let Some((parent, last)) = ptr.rsplit_once('/') else {
        return false;
    };
    let key = last.replace("~1", "/").replace("~0", "~");
    match v.pointer_mut(parent) {
        Some(serde_json::Value::Object(m)) => m.remove(&key).is_some(),
        Some(serde_json::Value::Array(a)) => match key.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// Pure: reads an app, dropping the fields that do not parse instead of the whole app. Returns the
/// app (if its essential fields parse) and the JSON pointers of the fields dropped.
pub fn tolerant_app(mut v: serde_json::Value) -> (Option<App>, Vec<String>) {
    let parses = |v: &serde_json::Value| serde_json::from_value::<App>(v.clone()).is_ok();
    let mut dropped = Vec::new();
    // Bounded: each round removes one field; a value broken in many places is not worth more.
    for _ in 0..8 {
        if let Ok(a) = serde_json::from_value::<App>(v.clone()) {
            return (Some(a), dropped);
        }
        let keys: Vec<String> = match &v {
            serde_json::Value::Object(m) => m.keys().filter(|k| *k != "id").cloned().collect(),
            _ => return (None, dropped),
        };
        let mut found = None;
        for k in keys {
            let ptr = format!("/{}", k.replace('~', "~0").replace('/', "~1"));
            let mut trial = v.clone();
            if remove_at(&mut trial, &ptr) && parses(&trial) {
                found = Some(culprit(&v, &ptr, &parses));
                break;
            }
        }
        match found {
            Some(p) if remove_at(&mut v, &p) => dropped.push(p),
            _ => return (None, dropped),
        }
    }
    (serde_json::from_value::<App>(v).ok(), dropped)
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
    let mut apps = Vec::with_capacity(page.apps.len());
    let mut skipped = 0;
    for raw in page.apps {
        let label = raw["spec"]["name"]
            .as_str()
            .or(raw["id"].as_str())
            .unwrap_or("?")
            .to_string();
        let (app, dropped) = tolerant_app(raw);
        for field in &dropped {
            tracing::warn!(app = %label, field = %field, "ignoring an App Platform field that does not parse; the rest of the app is read");
        }
        match app {
            Some(a) => apps.push(a),
            None => {
                tracing::warn!(app = %label, "skipping an app whose essential fields do not parse");
                skipped += 1;
            }
        }
    }
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

#[cfg(test)]
mod tolerant_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bad_spec_field_drops_the_field_not_the_app() {
        let table = [
            (
                json!({"id": "a1", "spec": {"name": "api", "services": [{"name": "web",
                    "health_check": {"http_path": "/h", "initial_delay_seconds": -1, "failure_threshold": -3}}]}}),
                vec![],
            ),
            (
                json!({"id": "a1", "spec": {"name": "api", "services": [{"name": "web",
                    "health_check": {"http_path": "/h", "period_seconds": "ten"}}]}}),
                vec!["/spec/services/0/health_check/period_seconds"],
            ),
            (
                json!({"id": "a1", "spec": {"name": "api", "region": 7, "services": [{"name": "web",
                    "github": {"branch": ["main"]}}]}}),
                vec!["/spec/region", "/spec/services/0/github/branch"],
            ),
        ];
        for (raw, want) in table {
            let (app, dropped) = tolerant_app(raw.clone());
            let app = app.unwrap_or_else(|| panic!("kept: {raw}"));
            assert_eq!(app.name(), "api");
            assert_eq!(app.spec.services.len(), 1, "{raw}");
            let mut dropped = dropped;
            dropped.sort();
            assert_eq!(dropped, want, "{raw}");
        }
        assert!(tolerant_app(json!({"id": 42})).0.is_none());
        assert!(tolerant_app(json!("x")).0.is_none());
    }
}
