//! Which tasks an alert produces. Pure: the webhook hands in a parsed alert and what the sources
//! know about the app; this returns the tasks to open and the keys a resolve closes.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Kind, NewTask};
use crate::domain::AppView;
use crate::domain::classify::FailureClass;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Fix,
    Rollback,
    Announce,
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fix" => Ok(Action::Fix),
            "rollback" => Ok(Action::Rollback),
            "announce" => Ok(Action::Announce),
            other => Err(format!(
                "unknown action {other:?}; use \"fix\", \"rollback\" or \"announce\""
            )),
        }
    }
}

/// A user rule: when `alertname` (or `*`) fires with all of `match_labels`, take `actions`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub alertname: String,
    pub match_labels: BTreeMap<String, String>,
    pub actions: Vec<Action>,
}

impl Rule {
    fn matches(&self, a: &AlertInput) -> bool {
        (self.alertname == "*" || self.alertname == a.alertname)
            && self
                .match_labels
                .iter()
                .all(|(k, v)| a.labels.get(k) == Some(v))
    }
}

/// The built-in answer for each shipped alert.
pub fn default_actions(alertname: &str) -> &'static [Action] {
    match alertname {
        "DeploymentFailed"
        | "DeploymentStuck"
        | "DeploySuccessRateLow"
        | "MigrationCheckFailed" => &[Action::Fix, Action::Announce],
        "HealthCheckFailing" | "DeploymentVerificationFailed" => {
            &[Action::Fix, Action::Rollback, Action::Announce]
        }
        "AppCrashLooping" => &[Action::Fix, Action::Announce],
        _ => &[Action::Announce],
    }
}

/// An alert as the fixer sees it: no Alertmanager JSON beyond this point.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertInput {
    pub alertname: String,
    pub firing: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub fingerprint: String,
    pub generator_url: String,
}

impl AlertInput {
    pub fn app(&self) -> Option<&str> {
        self.labels
            .get("app")
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    fn subject(&self) -> String {
        self.app()
            .or_else(|| self.labels.get("source").map(String::as_str))
            .or_else(|| self.labels.get("check").map(String::as_str))
            .unwrap_or("deploywatch")
            .to_string()
    }

    /// The episode identity in task dedup keys: every label counts (as in Alertmanager's own
    /// fingerprint), so `environment=staging` and `environment=production` are two problems, while
    /// the same labels from two Alertmanagers of an HA pair are one. `fingerprint` is that label-set
    /// hash (see the webhook); the name and subject in front are readable hints, bounded so keys stay
    /// indexable whatever the label values are.
    fn identity(&self) -> String {
        format!(
            "{}:{}:{}",
            bounded(&self.alertname),
            bounded(&self.subject()),
            self.fingerprint
        )
    }
}

/// At most 64 characters of `s` (on a character boundary), with `…` when cut.
fn bounded(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

pub struct Plan {
    pub create: Vec<NewTask>,
    pub cancel_keys: Vec<String>,
}

pub struct PlanContext<'a> {
    pub rules: &'a [Rule],
    pub app: Option<&'a AppView>,
    pub dashboard_url: Option<&'a str>,
    /// The last result of the check an alert names (`check` label), e.g. missing tables.
    pub check_details: Option<Value>,
    /// The app's configured environment (`[[apps]] environment`), for priority by impact.
    pub environment: Option<&'a str>,
    /// The app's latest post-deploy verdict (reasons, evidence, suspect commits, log tail).
    pub verification: Option<&'a Value>,
}

fn priority(a: &AlertInput) -> i64 {
    let base = match a.labels.get("severity").map(String::as_str) {
        Some("critical") => 1,
        Some("warning") => 2,
        _ => 3,
    };
    let env = a
        .labels
        .get("environment")
        .or_else(|| a.labels.get("env"))
        .map(|s| s.to_ascii_lowercase());
    match env.as_deref() {
        None | Some("production") | Some("prod") => base,
        Some(_) => base + 1,
    }
}

fn class_for(a: &AlertInput, app: Option<&AppView>) -> Option<FailureClass> {
    match a.alertname.as_str() {
        "DeploymentFailed" => app.and_then(|v| v.last_failure.as_ref()).map(|f| f.class),
        "HealthCheckFailing" => Some(FailureClass::HealthCheckFailure),
        "MigrationCheckFailed" => Some(FailureClass::DatabaseMigrationIssue),
        _ => None,
    }
}

fn context(a: &AlertInput, cx: &PlanContext<'_>, class: Option<FailureClass>) -> Value {
    let mut c = json!({
        "alert": {
            "name": a.alertname,
            "status": if a.firing { "firing" } else { "resolved" },
            "severity": a.labels.get("severity"),
            "labels": a.labels,
            "annotations": a.annotations,
            "starts_at": a.starts_at,
            "fingerprint": a.fingerprint,
        },
        "links": {
            "generator": a.generator_url,
            "runbook": a.annotations.get("runbook_url"),
            "dashboard": cx.dashboard_url.map(|d| match a.app() {
                Some(app) => format!("{d}?var-app={app}"),
                None => d.to_string(),
            }),
        },
    });
    if let Some(k) = class {
        c["classification"] = json!(k);
        c["instructions"] = json!(k.instructions());
    }
    if let Some(v) = cx.app {
        c["app"] = json!({"name": v.name, "id": v.id, "live_url": v.live_url, "branch": v.branch});
        if let Some(d) = v.latest.as_ref() {
            c["deployment"] = json!({"id": d.id, "phase": d.phase, "commit": d.commit, "cause": d.cause, "trace_id": d.trace_id});
            c["trace_id"] = json!(d.trace_id);
        }
        if let Some(d) = v.active.as_ref() {
            c["active_deployment"] = json!({"id": d.id, "commit": d.commit});
        }
        if let Some(f) = v.last_failure.as_ref()
            && a.alertname == "DeploymentFailed"
        {
            c["failure"] = json!({
                "deployment_id": f.deployment_id,
                "step": f.failed_step.as_ref().map(|s| &s.top_step),
                "component_step": f.failed_step.as_ref().map(|s| &s.step),
                "reason_code": f.failed_step.as_ref().and_then(|s| s.reason_code.clone()),
                "reason_message": f.failed_step.as_ref().and_then(|s| s.reason_message.clone()),
                "class": f.class,
                "log_tail": f.log_tail,
                "commit": f.commit,
                "cause": f.cause,
            });
            c["trace_id"] = json!(f.trace_id);
        }
        if v.pinned_deployment_id.is_some() {
            c["pinned_deployment_id"] = json!(v.pinned_deployment_id);
        }
    } else if let Some(app) = a.app() {
        c["app"] = json!({"name": app});
    }
    if let Some(v) = cx.verification
        && matches!(
            a.alertname.as_str(),
            "DeploymentVerificationFailed" | "AppCrashLooping"
        )
    {
        c["verification"] = v.clone();
        for k in ["reasons", "suspect_commits", "log_tail", "components"] {
            if !v[k].is_null() {
                c[k] = v[k].clone();
            }
        }
    }
    if let Some(d) = &cx.check_details {
        for k in [
            "missing_tables",
            "missing_columns",
            "pending",
            "failed",
            "unknown",
            "failed_sql_checks",
            "tracking_style",
        ] {
            if !d[k].is_null() {
                c[k] = d[k].clone();
            }
        }
        c["check"] = d.clone();
    }
    c
}

/// Decides what `a` causes.
pub fn plan(a: &AlertInput, cx: &PlanContext<'_>) -> Plan {
    let actions: Vec<Action> = cx
        .rules
        .iter()
        .find(|r| r.matches(a))
        .map(|r| r.actions.clone())
        .unwrap_or_else(|| default_actions(&a.alertname).to_vec());
    let subject = a.subject();
    let identity = a.identity();
    let class = class_for(a, cx.app);
    let ctx = context(a, cx, class);
    let prio = priority(a);
    let mut create = Vec::new();
    let mut cancel_keys = Vec::new();
    for action in actions {
        match action {
            Action::Fix => {
                let key = format!("fix:{identity}");
                if a.firing {
                    // A fix is prioritised by where it hurts: production critical, staging high.
                    let env = super::impact::environment(
                        a.labels
                            .get("environment")
                            .or_else(|| a.labels.get("env"))
                            .map(String::as_str),
                        cx.environment,
                    );
                    create.push(NewTask {
                        kind: Kind::Fix,
                        title: super::titles::fix_title(
                            &a.alertname,
                            a.labels.get("component").map(|c| bounded(c)),
                            &subject,
                            class,
                            cx.verification,
                        ),
                        priority: super::impact::fix_priority(env, prio),
                        dedup_key: key,
                        app: a.app().map(str::to_string),
                        context: ctx.clone(),
                    });
                } else {
                    cancel_keys.push(key);
                }
            }
            Action::Rollback => {
                let key = format!("rollback:{identity}");
                if !a.firing {
                    cancel_keys.push(key);
                    continue;
                }
                // The active deployment is the suspect when health fails; otherwise it still serves.
                let target = cx.app.and_then(|v| match a.alertname.as_str() {
                    "HealthCheckFailing" | "DeploymentVerificationFailed" => {
                        v.previous_good_deployment_id.clone()
                    }
                    _ => v
                        .previous_good_deployment_id
                        .clone()
                        .or(v.last_good_deployment_id.clone()),
                });
                if let Some(target) = target {
                    let mut rc = ctx.clone();
                    rc["rollback_target"] = json!(target);
                    rc["instructions"] = json!(
                        "Validate with POST /v2/apps/{app_id}/rollback/validate, roll back, follow the new deployment and the health probes, then commit (or revert). Never leave the app pinned."
                    );
                    create.push(NewTask {
                        kind: Kind::Rollback,
                        title: format!("ROLLBACK: {subject} to deployment {target}"),
                        priority: prio,
                        dedup_key: key,
                        app: a.app().map(str::to_string),
                        context: rc,
                    });
                }
            }
            Action::Announce => {
                let status = if a.firing { "firing" } else { "resolved" };
                create.push(NewTask {
                    kind: Kind::Announce,
                    title: format!("ANNOUNCE: {} {status} in {subject}", a.alertname),
                    priority: prio + 1,
                    dedup_key: format!(
                        "announce:{status}:{}:{}",
                        a.fingerprint,
                        a.starts_at.timestamp_millis()
                    ),
                    app: a.app().map(str::to_string),
                    context: ctx.clone(),
                });
            }
        }
    }
    Plan {
        create,
        cancel_keys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, firing: bool, labels: &[(&str, &str)]) -> AlertInput {
        AlertInput {
            alertname: name.into(),
            firing,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: BTreeMap::new(),
            starts_at: DateTime::from_timestamp(1_700_000_000, 0).expect("valid"),
            ends_at: None,
            fingerprint: "abc".into(),
            generator_url: "http://prom/graph".into(),
        }
    }

    fn cx(app: Option<&AppView>) -> PlanContext<'_> {
        PlanContext {
            rules: &[],
            app,
            dashboard_url: None,
            check_details: None,
            environment: None,
            verification: None,
        }
    }

    #[test]
    fn default_plans_for_shipped_alerts() {
        let view = AppView {
            name: "api".into(),
            last_good_deployment_id: Some("good-1".into()),
            previous_good_deployment_id: Some("good-0".into()),
            ..Default::default()
        };
        let cases: &[(&str, &[(&str, &str)], &[&str])] = &[
            (
                "DeploymentFailed",
                &[("app", "api"), ("severity", "critical")],
                &[
                    "FIX: Deployment error in api",
                    "ANNOUNCE: DeploymentFailed firing in api",
                ],
            ),
            (
                "HealthCheckFailing",
                &[
                    ("app", "api"),
                    ("severity", "critical"),
                    ("target", "api-live"),
                ],
                &[
                    "FIX: Health check failure in api",
                    "ROLLBACK: api to deployment good-0",
                    "ANNOUNCE: HealthCheckFailing firing in api",
                ],
            ),
            (
                "MigrationCheckFailed",
                &[("app", "api"), ("check", "app-db")],
                &[
                    "FIX: Database migration issue in api",
                    "ANNOUNCE: MigrationCheckFailed firing in api",
                ],
            ),
            (
                "SomethingElse",
                &[("app", "api")],
                &["ANNOUNCE: SomethingElse firing in api"],
            ),
        ];
        for (name, labels, titles) in cases {
            let p = plan(&alert(name, true, labels), &cx(Some(&view)));
            let got: Vec<&str> = p.create.iter().map(|t| t.title.as_str()).collect();
            assert_eq!(&got, titles, "{name}");
            assert!(p.cancel_keys.is_empty());
        }
    }

    #[test]
    fn resolve_cancels_what_firing_opened() {
        let a = alert(
            "HealthCheckFailing",
            true,
            &[("app", "api"), ("target", "t1")],
        );
        let view = AppView {
            previous_good_deployment_id: Some("d0".into()),
            ..Default::default()
        };
        let fired = plan(&a, &cx(Some(&view)));
        let resolved = plan(&AlertInput { firing: false, ..a }, &cx(Some(&view)));
        let opened: Vec<_> = fired
            .create
            .iter()
            .filter(|t| t.kind != Kind::Announce)
            .map(|t| t.dedup_key.clone())
            .collect();
        assert_eq!(opened, resolved.cancel_keys);
        assert_eq!(resolved.create.len(), 1, "a resolve is announced");
        assert_eq!(resolved.create[0].kind, Kind::Announce);
    }

    #[test]
    fn dedup_keys_follow_the_label_set_and_stay_bounded() {
        let key = |a: &AlertInput| plan(a, &cx(None)).create[0].dedup_key.clone();
        let mut prod = alert("DeploymentFailed", true, &[("app", "api")]);
        prod.fingerprint = "hash-of-production-labels".into();
        let mut staging = prod.clone();
        staging.fingerprint = "hash-of-staging-labels".into();
        assert_ne!(key(&prod), key(&staging));
        assert_eq!(
            key(&prod),
            key(&prod.clone()),
            "HA peers: same labels, same key"
        );
        let long = "x".repeat(3_000);
        let big = alert("DeploymentFailed", true, &[("app", long.as_str())]);
        assert!(key(&big).chars().count() < 200, "{}", key(&big));
    }

    #[test]
    fn no_rollback_without_a_known_good_target() {
        let p = plan(
            &alert("HealthCheckFailing", true, &[("app", "api")]),
            &cx(None),
        );
        assert!(p.create.iter().all(|t| t.kind != Kind::Rollback));
    }

    #[test]
    fn priorities_follow_severity_and_environment() {
        for (labels, want) in [
            (vec![("severity", "critical")], 1),
            (
                vec![("severity", "critical"), ("environment", "staging")],
                2,
            ),
            (vec![("severity", "warning")], 2),
            (vec![("severity", "info"), ("environment", "production")], 3),
            (vec![], 3),
        ] {
            assert_eq!(priority(&alert("X", true, &labels)), want, "{labels:?}");
        }
    }

    #[test]
    fn user_rules_override_defaults() {
        let rules = vec![Rule {
            alertname: "DeploymentFailed".into(),
            match_labels: [("environment".to_string(), "staging".to_string())].into(),
            actions: vec![Action::Announce],
        }];
        let staging = alert(
            "DeploymentFailed",
            true,
            &[("app", "api"), ("environment", "staging")],
        );
        let prod = alert(
            "DeploymentFailed",
            true,
            &[("app", "api"), ("environment", "production")],
        );
        let c = PlanContext {
            rules: &rules,
            app: None,
            dashboard_url: None,
            check_details: None,
            environment: None,
            verification: None,
        };
        assert_eq!(plan(&staging, &c).create.len(), 1);
        assert_eq!(plan(&prod, &c).create.len(), 2);
    }

    #[test]
    fn classified_failures_name_the_class() {
        let view = AppView {
            name: "api".into(),
            last_failure: Some(crate::domain::FailureView {
                deployment_id: "d1".into(),
                failed_step: None,
                class: FailureClass::DependencyIssue,
                log_tail: Some("npm ERR!".into()),
                commit: Some("abc".into()),
                cause: None,
                trace_id: "t".into(),
                ended_at: None,
            }),
            ..Default::default()
        };
        let p = plan(
            &alert("DeploymentFailed", true, &[("app", "api")]),
            &cx(Some(&view)),
        );
        assert_eq!(p.create[0].title, "FIX: Dependency issue in api");
        assert_eq!(p.create[0].context["failure"]["log_tail"], "npm ERR!");
        assert_eq!(p.create[0].context["trace_id"], "t");
    }
}
