//! The deployment series of `/metrics`, set from the deployment view: by the poller after each
//! cycle, and by every other replica from the snapshot the poller stored (so any replica can be
//! scraped). Label sets are remembered so an app's old `_info` series are replaced, never piled up.

use std::collections::BTreeMap;

use super::registry::Metrics;
use crate::domain::AppView;
use crate::domain::{LabelValue, Outcome, Phase, dora};

#[derive(Default, Clone)]
struct ExportedLabels {
    info: Option<[String; 3]>,
    deployment_info: Option<[String; 4]>,
    active_info: Option<[String; 3]>,
    failed_step: Option<[String; 3]>,
}

/// Label sets currently exported per app, so vanished apps' series are removed.
#[derive(Default)]
pub struct Exporter {
    exported: BTreeMap<String, ExportedLabels>,
}

impl Exporter {
    /// Sets every deployment series from `views`. With `complete` false (a page of the list
    /// failed), series of apps not in `views` are kept; otherwise they are removed.
    pub fn export(&mut self, m: &Metrics, views: &BTreeMap<String, AppView>, complete: bool) {
        let mut next: BTreeMap<String, ExportedLabels> = BTreeMap::new();
        for v in views.values() {
            let app = LabelValue::sanitize(&v.name).as_str().to_string();
            let mut ex = ExportedLabels::default();
            let info = [app.clone(), v.id.clone(), v.region.clone()];
            m.app_info.set(&info.each_ref().map(String::as_str), 1.0);
            ex.info = Some(info);
            let latest_phase = v.latest.as_ref().map(|d| d.phase).unwrap_or(Phase::Unknown);
            for p in Phase::ALL {
                m.deployment_phase
                    .set(&[&app, p.as_str()], ((p == latest_phase) as i64) as f64);
            }
            m.deployment_in_progress
                .set(&[&app], v.in_progress.is_some() as i64 as f64);
            if let Some(outcome) = v.last_ended.as_ref().and_then(|d| d.phase.outcome()) {
                for o in Outcome::ALL {
                    m.deployment_last_outcome
                        .set(&[&app, o.as_str()], ((o == outcome) as i64) as f64);
                }
            }
            m.pinned_deployment
                .set(&[&app], v.pinned_deployment_id.is_some() as i64 as f64);
            m.deployment_stuck.set(&[&app], v.stuck as i64 as f64);
            // One series per meaning, each about one deployment: the latest, and the active one.
            if let Some(l) = &v.latest {
                let di = [
                    app.clone(),
                    l.id.clone(),
                    l.commit.clone().unwrap_or_default(),
                    l.cause
                        .clone()
                        .unwrap_or_default()
                        .chars()
                        .take(120)
                        .collect(),
                ];
                m.deployment_info
                    .set(&di.each_ref().map(String::as_str), 1.0);
                ex.deployment_info = Some(di);
            }
            if let Some(a) = &v.active {
                let ai = [
                    app.clone(),
                    a.id.clone(),
                    a.commit.clone().unwrap_or_default(),
                ];
                m.active_deployment_info
                    .set(&ai.each_ref().map(String::as_str), 1.0);
                ex.active_info = Some(ai);
            }
            // The latest deployment failed: say which step and why (both from bounded sets).
            if let (Some(f), Some(latest)) = (&v.last_failure, &v.latest)
                && latest.id == f.deployment_id
            {
                let step = f
                    .failed_step
                    .as_ref()
                    .map(|s| s.top_step.clone())
                    .unwrap_or_else(|| "unknown".into());
                let reason = f
                    .failed_step
                    .as_ref()
                    .and_then(|s| s.reason_code.clone())
                    .map(|r| LabelValue::sanitize(&r).as_str().to_string())
                    .unwrap_or_else(|| "unknown".into());
                let fl = [app.clone(), step, reason];
                m.deployment_failed_step
                    .set(&fl.each_ref().map(String::as_str), 1.0);
                ex.failed_step = Some(fl);
            }
            next.insert(app, ex);
        }
        // Remove series whose label values changed or whose app is gone.
        for (app, old) in std::mem::take(&mut self.exported) {
            if !complete && !next.contains_key(&app) {
                next.insert(app, old);
                continue;
            }
            let new = next.get(&app).cloned().unwrap_or_default();
            if let Some(l) = old.info.as_ref().filter(|l| Some(*l) != new.info.as_ref()) {
                let _ = m.app_info.remove(&l.each_ref().map(String::as_str));
            }
            if let Some(l) = old
                .deployment_info
                .as_ref()
                .filter(|l| Some(*l) != new.deployment_info.as_ref())
            {
                let _ = m.deployment_info.remove(&l.each_ref().map(String::as_str));
            }
            if let Some(l) = old
                .active_info
                .as_ref()
                .filter(|l| Some(*l) != new.active_info.as_ref())
            {
                let _ = m
                    .active_deployment_info
                    .remove(&l.each_ref().map(String::as_str));
            }
            if let Some(l) = old
                .failed_step
                .as_ref()
                .filter(|l| Some(*l) != new.failed_step.as_ref())
            {
                let _ = m
                    .deployment_failed_step
                    .remove(&l.each_ref().map(String::as_str));
            }
            if !next.contains_key(&app) {
                for p in Phase::ALL {
                    let _ = m.deployment_phase.remove(&[&app, p.as_str()]);
                }
                let _ = m.deployment_in_progress.remove(&[&app]);
                for o in Outcome::ALL {
                    let _ = m.deployment_last_outcome.remove(&[&app, o.as_str()]);
                }
                let _ = m.pinned_deployment.remove(&[&app]);
                let _ = m.deployment_stuck.remove(&[&app]);
            }
        }
        self.exported = next;
        m.changed();
    }
}

impl Metrics {
    /// One ended deployment, folded in exactly once per process (the caller dedupes by id).
    pub fn record_outcome(&self, r: &dora::DeploymentOutcome) {
        let label = LabelValue::sanitize(&r.app);
        let a = label.as_str();
        let outcome = r.outcome;
        for o in Outcome::ALL {
            // Touch every outcome so a rate over a missing series is 0, not absent.
            self.deployments_total.add(&[a, o.as_str()], 0.0);
        }
        self.deployments_total.inc(&[a, outcome.as_str()]);
        if let Some(d) = r.duration_seconds {
            self.deployment_duration.observe(&[a, outcome.as_str()], d);
        }
        if outcome == Outcome::Success {
            self.deployment_last_success
                .set_max(&[a], r.ended_at_ms as f64 / 1000.0);
        }
        let e = dora::effect(r);
        if e.change {
            self.dora_changes_total.inc(&[a]);
        }
        if e.change_failure {
            self.dora_change_failures_total.inc(&[a]);
        }
        if e.deployment {
            self.dora_deployments_total.inc(&[a]);
        }
        if let Some(l) = e.lead_time_seconds {
            self.dora_lead_time.observe(&[a], l);
        }
        if let Some(rt) = e.recovery_seconds {
            self.dora_recovery_time.observe(&[a], rt);
        }
        self.changed();
    }

    /// A build or deploy step's duration, once when its deployment ends.
    pub fn step_duration(&self, app: &str, step: &str, seconds: f64) {
        self.step_duration.observe(&[app, step], seconds);
        self.changed();
    }

    pub fn poll_interval(&self, seconds: f64) {
        self.do_poll_interval_seconds.set(seconds);
        self.changed();
    }

    /// Objects of a DigitalOcean answer that could not be read and were skipped (`kind`: `app`,
    /// `deployment`).
    pub fn do_parse_errors(&self, kind: &str, n: u64) {
        self.do_parse_errors_total.add(&[kind], n as f64);
        self.changed();
    }

    /// One DigitalOcean request, by endpoint and answer (`200`, `429`, `error`, …).
    pub fn do_request(&self, endpoint: &str, code: &str) {
        self.do_requests_total.inc(&[endpoint, code]);
        self.changed();
    }

    /// The request budget left, from DigitalOcean's `ratelimit-remaining`. The series is absent
    /// until the first answer.
    pub fn do_ratelimit_remaining(&self, remaining: u64) {
        self.do_ratelimit_remaining.set(remaining as i64);
        // Registering again is a harmless no-op error.
        let _ = self
            .registry
            .register(Box::new(self.do_ratelimit_remaining.clone()));
        self.changed();
    }
}
