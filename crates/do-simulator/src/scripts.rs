//! How a simulated deployment unfolds: each [`Script`] fixes the phase a deployment is in at any
//! moment, computed from the time elapsed since it was created, and the JSON and logs the API shows
//! for it at that moment.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::state::{Script, SimApp, SimDeployment};

impl Script {
    /// Scripts that run a PRE_DEPLOY job (`migrate`) before the service.
    pub(crate) fn has_pre_deploy_job(self) -> bool {
        self == Script::FailingPreDeployJob
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepStatus {
    Pending,
    Running,
    Success,
    Error,
}

impl StepStatus {
    fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "PENDING",
            StepStatus::Running => "RUNNING",
            StepStatus::Success => "SUCCESS",
            StepStatus::Error => "ERROR",
        }
    }
}

impl SimDeployment {
    /// Build runs over [1, 3) steps, deploy over [3, 5); the outcome lands at the end of its step.
    pub(crate) fn phase_at(
        &self,
        now: DateTime<Utc>,
        step: Duration,
    ) -> (&'static str, Option<DateTime<Utc>>) {
        let step_ms = step.as_millis().max(1) as i64;
        let at = |k: i64| self.created + chrono::Duration::milliseconds(k * step_ms);
        let elapsed = (now - self.created).num_milliseconds();
        let k = elapsed / step_ms;
        if let Some(c) = self.canceled_at.filter(|c| *c <= now) {
            return ("CANCELED", Some(c));
        }
        match self.script {
            Script::Cancel if k >= 2 => ("CANCELED", Some(at(2))),
            Script::BuildFailure if k >= 3 => ("ERROR", Some(at(3))),
            Script::HealthCheckFailure | Script::FailingPreDeployJob if k >= 5 => {
                ("ERROR", Some(at(5)))
            }
            Script::Success
            | Script::CrashLoop
            | Script::MemoryLeak
            | Script::LatencyRegression
                if k >= 5 =>
            {
                ("ACTIVE", Some(at(5)))
            }
            _ if k < 1 => ("PENDING_BUILD", None),
            _ if k < 3 => ("BUILDING", None),
            Script::Stuck => ("DEPLOYING", None),
            _ => ("DEPLOYING", None),
        }
    }

    pub(crate) fn to_json(
        &self,
        app: &SimApp,
        now: DateTime<Utc>,
        step: Duration,
        superseded: bool,
    ) -> Value {
        let (mut phase, ended) = self.phase_at(now, step);
        if superseded && phase == "ACTIVE" {
            phase = "SUPERSEDED";
        }
        let step_ms = step.as_millis().max(1) as i64;
        let at = |k: i64| self.created + chrono::Duration::milliseconds(k * step_ms);
        let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let ended_at = ended.unwrap_or(now);
        // Status of a sub-interval [from, to) in steps, given the terminal outcome.
        let status =
            |from: i64, to: i64, fails: bool| -> (StepStatus, Option<String>, Option<String>) {
                let start = at(from);
                let end = at(to);
                if ended.is_some_and(|e| e <= start) || (now < start) {
                    return (StepStatus::Pending, None, None);
                }
                if fails && ended.is_some_and(|e| e <= end) {
                    return (StepStatus::Error, Some(ts(start)), ended.map(ts));
                }
                if now >= end && !(self.script == Script::Stuck && to > 3) {
                    return (StepStatus::Success, Some(ts(start)), Some(ts(end)));
                }
                (StepStatus::Running, Some(ts(start)), None)
            };
        let build_fails =
            matches!(self.script, Script::BuildFailure) || (self.script == Script::Cancel);
        let deploy_fails = matches!(
            self.script,
            Script::HealthCheckFailure | Script::FailingPreDeployJob
        );
        let (deploy_code, deploy_msg) = if self.script.has_pre_deploy_job() {
            (
                "PreDeployJobFailed",
                "pre-deploy job migrate exited with code 1",
            )
        } else {
            (
                "DeployHealthChecksFailed",
                "readiness probe failed: GET /health/ready returned 503",
            )
        };
        let (b_init, bi_s, bi_e) = status(1, 2, false);
        let (b_comp, bc_s, bc_e) = status(2, 3, build_fails);
        let (build, b_s, b_e) = status(1, 3, build_fails);
        let (d_init, di_s, di_e) = status(3, 4, false);
        let (d_comp, dc_s, dc_e) = status(4, 5, deploy_fails);
        let (deploy, d_s, d_e) = status(3, 5, deploy_fails);
        let reason = |st: StepStatus, code: &str, msg: &str| {
            if st == StepStatus::Error && self.script != Script::Cancel {
                json!({"code": code, "message": msg})
            } else {
                Value::Null
            }
        };
        let step_json = |name: &str,
                         st: StepStatus,
                         s: Option<String>,
                         e: Option<String>,
                         children: Value,
                         reason: Value| {
            let mut v = json!({"name": name, "status": st.as_str(), "steps": children,
                "started_at": s.unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                "ended_at": e.unwrap_or_else(|| "0001-01-01T00:00:00Z".into())});
            if !reason.is_null() {
                v["reason"] = reason;
            }
            v
        };
        let steps = json!([
            step_json(
                "build",
                build,
                b_s,
                b_e,
                json!([
                    step_json("initialize", b_init, bi_s, bi_e, json!([]), Value::Null),
                    step_json(
                        "components",
                        b_comp,
                        bc_s.clone(),
                        bc_e.clone(),
                        json!([
                            {"name": "web", "status": b_comp.as_str(), "component_name": "web", "message_base": "Building service",
                             "reason": reason(b_comp, "BuildJobFailed", "build job exited with code 1")}
                        ]),
                        reason(b_comp, "BuildJobFailed", "build job exited with code 1")
                    ),
                ]),
                reason(build, "BuildJobFailed", "build job exited with code 1")
            ),
            step_json(
                "deploy",
                deploy,
                d_s,
                d_e,
                json!([
                    step_json("initialize", d_init, di_s, di_e, json!([]), Value::Null),
                    step_json(
                        "components",
                        d_comp,
                        dc_s.clone(),
                        dc_e.clone(),
                        if self.script.has_pre_deploy_job() {
                            json!([
                                {"name": "migrate", "status": d_comp.as_str(), "component_name": "migrate", "message_base": "Running pre-deploy job",
                                 "reason": reason(d_comp, deploy_code, deploy_msg)}
                            ])
                        } else {
                            json!([
                                {"name": "web", "status": d_comp.as_str(), "component_name": "web", "steps": [
                                    {"name": "deploy", "status": if d_comp == StepStatus::Pending { "PENDING" } else { "SUCCESS" }, "component_name": "web", "message_base": "Deploying service"},
                                    {"name": "wait", "status": d_comp.as_str(), "component_name": "web", "message_base": "Waiting for service",
                                     "reason": reason(d_comp, deploy_code, deploy_msg)}
                                ]}
                            ])
                        },
                        reason(d_comp, deploy_code, deploy_msg)
                    ),
                ]),
                reason(deploy, deploy_code, deploy_msg)
            ),
        ]);
        let count = |want: StepStatus| {
            [b_init, b_comp, d_init, d_comp]
                .iter()
                .filter(|s| **s == want)
                .count()
        };
        let mut spec = app.spec_json();
        let mut jobs = json!([]);
        if self.script.has_pre_deploy_job() {
            spec["jobs"] =
                json!([{"name": "migrate", "kind": "PRE_DEPLOY", "run_command": "bin/migrate"}]);
            jobs = json!([{"name": "migrate", "source_commit_hash": self.commit}]);
        }
        json!({
            "id": self.id,
            "spec": spec,
            "services": [{"name": "web", "source_commit_hash": self.commit}],
            "jobs": jobs,
            "phase_last_updated_at": ended.map(ts).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "created_at": ts(self.created),
            "updated_at": ts(ended_at.max(self.created)),
            "cause": self.cause,
            "cause_details": {"type": self.cause_type},
            "progress": {
                "pending_steps": count(StepStatus::Pending),
                "running_steps": count(StepStatus::Running),
                "success_steps": count(StepStatus::Success),
                "error_steps": count(StepStatus::Error),
                "total_steps": 4,
                "steps": steps,
            },
            "phase": phase,
            "tier_slug": "basic",
        })
    }

    pub(crate) fn log_text(&self, kind: &str) -> String {
        let mut lines = vec![
            format!("[build] commit {}", self.commit),
            "[build] detecting buildpacks...".to_string(),
            "[build] installing dependencies".to_string(),
        ];
        match (self.script, kind) {
            (Script::BuildFailure, "BUILD") => {
                lines.push("npm ERR! code ERESOLVE".into());
                lines.push(
                    "npm ERR! ERESOLVE could not resolve dependency: peer react@\"^17\"".into(),
                );
                lines.push("error: build job exited with code 1".into());
            }
            (Script::HealthCheckFailure, "DEPLOY") => {
                lines.push("[web] listening on :8080".into());
                lines.push("[web] GET /health/ready 503 (database: relation \"match_records\" does not exist)".into());
                lines.push("ERROR failed health checks after 3 attempts".into());
            }
            (Script::FailingPreDeployJob, "DEPLOY") => {
                lines.push("[migrate] running migration 0042_add_match_scores".into());
                lines.push(
                    "[migrate] ERROR: column \"score\" of relation \"match_records\" does not exist"
                        .into(),
                );
                lines.push("[migrate] migration failed; pre-deploy job exited with code 1".into());
            }
            _ => lines.push("[build] build complete".into()),
        }
        lines.join("\n") + "\n"
    }
}
