//! The simulator's state: apps with their deployments (newest first), queued faults, request
//! counters and the switches tests flip.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::Fault;

/// How a simulated deployment unfolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Success,
    BuildFailure,
    /// Builds, then fails its health check while deploying.
    HealthCheckFailure,
    /// Canceled while building.
    Cancel,
    /// Stays in DEPLOYING.
    Stuck,
    /// Goes ACTIVE, then every instance restarts once a step: replicas never ready, the
    /// `RUN_RESTARTED` log shows the panics.
    CrashLoop,
    /// Goes ACTIVE, then memory climbs ten points a step towards 95% and the instances are
    /// OOM-killed every six steps (restarts, `OOMKilled` in the `RUN_RESTARTED` log).
    MemoryLeak,
    /// Goes ACTIVE and is healthy by DigitalOcean's numbers; the regression shows in the fake
    /// Prometheus series scripted with `Simulator::script_query_on_regression`.
    LatencyRegression,
    /// Its PRE_DEPLOY job `migrate` fails: the job invocation ends FAILED and the deployment ERROR
    /// with the job's step failed.
    FailingPreDeployJob,
}

/// When a scripted series switches from its baseline to its regressed value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Switch {
    At(DateTime<Utc>),
    /// When the app's newest `LatencyRegression` deployment went ACTIVE (never, before it has).
    RegressionActive(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PromScript {
    pub(crate) baseline: f64,
    pub(crate) regressed: f64,
    pub(crate) switch: Option<Switch>,
    /// Relative spread of the jitter (0.05: ±5%).
    pub(crate) jitter: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct SimDeployment {
    pub(crate) id: String,
    pub(crate) script: Script,
    pub(crate) created: DateTime<Utc>,
    pub(crate) commit: String,
    pub(crate) cause: String,
    pub(crate) cause_type: String,
    pub(crate) canceled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub(crate) struct SimApp {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) region: String,
    pub(crate) branch: String,
    pub(crate) repo: String,
    /// Newest first.
    pub(crate) deployments: Vec<SimDeployment>,
    pub(crate) pinned: Option<String>,
    /// The deployment that was ACTIVE before a rollback, for revert.
    pub(crate) before_rollback: Option<String>,
}

pub(crate) struct SimState {
    pub(crate) apps: Vec<SimApp>,
    pub(crate) step: Duration,
    pub(crate) faults: VecDeque<Fault>,
    pub(crate) requests: u64,
    pub(crate) requests_by_path: HashMap<String, u64>,
    pub(crate) base_url: String,
    /// Commit served by each app's health endpoint when it differs from the active one.
    pub(crate) health_override: HashMap<String, (u16, Option<String>)>,
    pub(crate) next_id: u64,
    /// A page of `GET /v2/apps` that answers 500 until cleared.
    pub(crate) failing_list_page: Option<usize>,
    /// When set, only this bearer token is accepted (else any non-empty one).
    pub(crate) valid_token: Option<String>,
    /// The fake Prometheus' scripted series, by query.
    pub(crate) prom_series: HashMap<String, PromScript>,
}

pub(crate) fn lock(m: &Mutex<SimState>) -> std::sync::MutexGuard<'_, SimState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimApp {
    pub(crate) fn spec_json(&self) -> Value {
        json!({
            "name": self.name,
            "region": self.region,
            "services": [{
                "name": "web",
                "github": {"repo": self.repo, "branch": self.branch, "deploy_on_push": true},
                "http_port": 8080,
                "health_check": {"http_path": "/health/ready", "failure_threshold": 3, "success_threshold": 1},
                "liveness_health_check": {"http_path": "/health/live"},
                "routes": [{"path": "/"}],
            }],
        })
    }

    /// The deployment serving traffic: the pinned one, else the newest that went ACTIVE.
    pub(crate) fn active(&self, now: DateTime<Utc>, step: Duration) -> Option<&SimDeployment> {
        if let Some(p) = &self.pinned
            && let Some(d) = self.deployments.iter().find(|d| &d.id == p)
            && d.phase_at(now, step).0 == "ACTIVE"
        {
            return Some(d);
        }
        self.deployments
            .iter()
            .find(|d| d.phase_at(now, step).0 == "ACTIVE")
    }

    pub(crate) fn to_json(&self, now: DateTime<Utc>, step: Duration, base_url: &str) -> Value {
        let active = self.active(now, step);
        let in_progress = self.deployments.iter().find(|d| {
            matches!(
                d.phase_at(now, step).0,
                "PENDING_BUILD" | "BUILDING" | "PENDING_DEPLOY" | "DEPLOYING"
            )
        });
        let mut v = json!({
            "id": self.id,
            "owner_uuid": "ff36cbc6fd350fe12577f5123133bb5ba01a2419",
            "spec": self.spec_json(),
            "default_ingress": format!("{base_url}/sim/apps/{}", self.name),
            "live_url": format!("{base_url}/sim/apps/{}", self.name),
            "live_url_base": format!("{base_url}/sim/apps/{}", self.name),
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": now.to_rfc3339(),
            "region": {"slug": self.region, "label": "Simulated", "flag": "", "continent": "Europe", "data_centers": [format!("{}1", self.region)]},
            "tier_slug": "basic",
        });
        if let Some(a) = active {
            v["active_deployment"] = a.to_json(self, now, step, false);
        }
        if let Some(p) = in_progress {
            v["in_progress_deployment"] = p.to_json(self, now, step, false);
        }
        if let Some(pin) = self
            .pinned
            .as_ref()
            .and_then(|p| self.deployments.iter().find(|d| &d.id == p))
        {
            v["pinned_deployment"] = pin.to_json(self, now, step, false);
        }
        if let Some(newest) = self.deployments.first() {
            v["last_deployment_created_at"] = json!(newest.created.to_rfc3339());
        }
        v
    }
}
