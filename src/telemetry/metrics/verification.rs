//! The post-deploy verification and runtime series.

use super::registry::Metrics;

/// Every result a verdict can have, in the order the gauge lists them.
const RESULTS: [&str; 4] = ["pending", "passed", "failed", "inconclusive"];

/// One component's runtime readings; absent values leave their series as they were.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ComponentReading {
    pub restarts: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    pub replicas_ready: Option<i64>,
    pub replicas_desired: Option<i64>,
}

impl Metrics {
    /// The latest deployment's verdict: 1 for `result`, 0 for the others.
    pub fn verification(&self, app: &str, result: &str) {
        for r in RESULTS {
            self.deployment_verification
                .set(&[app, r], (i64::from(r == result)) as f64);
        }
        self.changed();
    }

    /// A verification window ended with `result` (once per deployment; the caller dedupes).
    pub fn verification_ended(&self, app: &str, result: &str) {
        for r in RESULTS {
            // Every result exists from the first verdict, so a rate over it is 0, not absent.
            self.deployment_verifications_total.add(&[app, r], 0.0);
        }
        self.deployment_verifications_total.inc(&[app, result]);
        // A deployment that failed its verification is a failed change, as DORA means it.
        if result == "failed" {
            self.dora_change_failures_total.inc(&[app]);
        }
        self.changed();
    }

    /// A component's runtime readings (DigitalOcean app health and monitoring).
    pub fn component_runtime(&self, app: &str, component: &str, r: &ComponentReading) {
        let l = [app, component];
        if let Some(v) = r.restarts {
            self.app_component_restarts.set(&l, v);
        }
        if let Some(v) = r.cpu_percent {
            self.app_component_cpu.set(&l, v);
        }
        if let Some(v) = r.memory_percent {
            self.app_component_memory.set(&l, v);
        }
        if let Some(v) = r.replicas_ready {
            self.app_component_replicas
                .set(&[app, component, "ready"], v as f64);
        }
        if let Some(v) = r.replicas_desired {
            self.app_component_replicas
                .set(&[app, component, "desired"], v as f64);
        }
        self.changed();
    }
}
