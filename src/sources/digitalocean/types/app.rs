//! Apps and their specs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::deployment::Deployment;
use super::time::de_time;
use crate::domain::Phase;

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
