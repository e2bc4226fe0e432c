//! Startup checks: deploywatch's own schema and the monitored apps' migration checks, run like a
//! Kubernetes startup probe. `/health/startup` answers from the results; `deploywatch check` runs
//! them once and prints a report.
//!
//! A failed check is a value (a result with a reason), never an error that stops the process.

pub mod app_migrations;

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::Store;
use crate::telemetry::metrics::Metrics;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    /// A sentence a person can act on, when not ok.
    pub reason: Option<String>,
    pub details: serde_json::Value,
    pub checked_at: DateTime<Utc>,
}

impl CheckResult {
    pub fn pass(name: &str, details: serde_json::Value) -> CheckResult {
        CheckResult {
            name: name.into(),
            ok: true,
            reason: None,
            details,
            checked_at: Utc::now(),
        }
    }
    pub fn fail(name: &str, reason: impl Into<String>, details: serde_json::Value) -> CheckResult {
        CheckResult {
            name: name.into(),
            ok: false,
            reason: Some(reason.into()),
            details,
            checked_at: Utc::now(),
        }
    }
}

#[async_trait]
pub trait Check: Send + Sync {
    fn name(&self) -> &str;
    /// Required checks hold startup until they pass; the others only until the grace period ends.
    fn required(&self) -> bool;
    fn timeout(&self) -> Duration {
        Duration::from_secs(10)
    }
    async fn run(&self) -> CheckResult;
}

/// Runs a check within its timeout; a hang becomes a failed result naming the timeout.
pub async fn run_check(c: &dyn Check) -> CheckResult {
    match tokio::time::timeout(c.timeout(), c.run()).await {
        Ok(r) => r,
        Err(_) => CheckResult::fail(
            c.name(),
            format!(
                "the check did not finish within {:?}; is the database reachable?",
                c.timeout()
            ),
            serde_json::Value::Null,
        ),
    }
}

/// deploywatch's own schema: reachable, migrated, not newer than this binary.
pub struct SchemaCheck {
    pub store: Store,
}

#[async_trait]
impl Check for SchemaCheck {
    fn name(&self) -> &str {
        "schema"
    }
    fn required(&self) -> bool {
        true
    }
    fn timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
    async fn run(&self) -> CheckResult {
        match self.store.verify_schema().await {
            Ok(s) => CheckResult::pass(
                "schema",
                serde_json::json!({"applied": s.applied, "known": s.known}),
            ),
            Err(e) => CheckResult::fail("schema", e.to_string(), serde_json::Value::Null),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    required: bool,
    last: Option<CheckResult>,
    ever_passed: bool,
}

/// Results of the startup checks, shared by the runner and the health endpoints.
pub struct StartupChecks {
    inner: RwLock<BTreeMap<String, Entry>>,
    grace_until: RwLock<Option<Instant>>,
}

impl Default for StartupChecks {
    fn default() -> Self {
        StartupChecks {
            inner: RwLock::new(BTreeMap::new()),
            grace_until: RwLock::new(None),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StartupStatus {
    pub ok: bool,
    pub checks: Vec<CheckStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckStatus {
    pub name: String,
    pub required: bool,
    pub ok: bool,
    pub ever_passed: bool,
    pub reason: Option<String>,
    pub details: serde_json::Value,
    pub checked_at: Option<DateTime<Utc>>,
}

impl StartupChecks {
    pub fn expect(&self, name: &str, required: bool) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_insert(Entry {
                required,
                last: None,
                ever_passed: false,
            });
    }

    pub fn set_grace(&self, grace: Duration) {
        *self.grace_until.write().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + grace);
    }

    pub fn record(&self, r: CheckResult, metrics: &Metrics) {
        metrics.startup_check(&r.name, r.ok);
        let mut g = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let e = g.entry(r.name.clone()).or_insert(Entry {
            required: true,
            last: None,
            ever_passed: false,
        });
        e.ever_passed |= r.ok;
        e.last = Some(r);
    }

    /// Startup passes once every required check has passed, and every other check has passed or
    /// its grace period is over. Like a startup probe it latches: a later failure shows in
    /// `/health/ready`, metrics and alerts, not here.
    pub fn status(&self) -> StartupStatus {
        let grace_over = self
            .grace_until
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|g| Instant::now() >= g);
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let checks: Vec<CheckStatus> = g
            .iter()
            .map(|(name, e)| CheckStatus {
                name: name.clone(),
                required: e.required,
                ok: e.last.as_ref().is_some_and(|r| r.ok),
                ever_passed: e.ever_passed,
                reason: match &e.last {
                    None => Some("not run yet".into()),
                    Some(r) => r.reason.clone(),
                },
                details: e
                    .last
                    .as_ref()
                    .map(|r| r.details.clone())
                    .unwrap_or_default(),
                checked_at: e.last.as_ref().map(|r| r.checked_at),
            })
            .collect();
        let ok = checks
            .iter()
            .all(|c| c.ever_passed || (!c.required && grace_over));
        StartupStatus { ok, checks }
    }

    /// Whether the named check has passed at least once.
    pub fn passed(&self, name: &str) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .is_some_and(|e| e.ever_passed)
    }

    /// Names and reasons of checks failing right now.
    pub fn failing_now(&self) -> Vec<(String, String)> {
        self.status()
            .checks
            .into_iter()
            .filter(|c| !c.ok)
            .map(|c| (c.name, c.reason.unwrap_or_default()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_latches_and_respects_grace() {
        let m = Metrics::new();
        let s = StartupChecks::default();
        s.expect("schema", true);
        s.expect("app-db", false);
        assert!(!s.status().ok, "nothing has run");
        s.record(CheckResult::pass("schema", serde_json::Value::Null), &m);
        s.record(
            CheckResult::fail("app-db", "missing table x", serde_json::Value::Null),
            &m,
        );
        assert!(!s.status().ok, "optional check failing within grace");
        s.set_grace(Duration::ZERO);
        assert!(
            s.status().ok,
            "grace over: optional failure no longer holds startup"
        );
        s.record(
            CheckResult::fail("schema", "down", serde_json::Value::Null),
            &m,
        );
        assert!(s.status().ok, "latched once passed");
        assert_eq!(s.failing_now().len(), 2);
    }
}
