//! The demo's stand-in for Prometheus + Alertmanager: the conditions of the shipped alert rules
//! (`alerts/deploywatch.rules.yml`), evaluated on the same snapshots the metrics are set from, and
//! sent to deploywatch's own webhook as Alertmanager v4 notifications. So `deploywatch demo`
//! shows the whole loop (failure → alert → fix / rollback task → resolve) with no other software.
//!
//! Mirrored rules and their expressions:
//! - `DeploymentFailed`: `deploywatch_deployment_last_outcome{outcome="failure"} == 1`, i.e. the
//!   app's newest ended deployment is an ERROR.
//! - `DeploymentStuck`: `deploywatch_deployment_stuck == 1`.
//! - `HealthCheckFailing`: `deploywatch_health_probe_success == 0`.
//! - `DeploymentVerificationFailed`: `deploywatch_deployment_verification{result="failed"} == 1`,
//!   i.e. the app's latest verdict in the store is `failed`.
//!
//! Their `for:` durations are not waited out: the demo is about seeing the loop within a minute.
//! A unit test holds the labels and annotations here against the shipped rules file.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::domain::AppView;
use crate::domain::Outcome;
use crate::domain::probe::ProbeView;

const RUNBOOKS: &str = "https://github.com/deploywatch/deploywatch/blob/main/docs/runbooks";

/// One alert instance: its rule and the labels that make it distinct.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Firing {
    pub alertname: &'static str,
    pub labels: BTreeMap<String, String>,
}

struct Rule {
    alertname: &'static str,
    severity: &'static str,
    summary: &'static str,
    description: &'static str,
}

const RULES: [Rule; 4] = [
    Rule {
        alertname: "DeploymentFailed",
        severity: "critical",
        summary: "Deployment of {{ $labels.app }} failed",
        description: "The newest ended App Platform deployment of {{ $labels.app }} is in ERROR. The previous deployment keeps serving; a fix task is in the execution queue. `deploywatch status --app {{ $labels.app }}` shows the failed step and log tail.",
    },
    Rule {
        alertname: "DeploymentStuck",
        severity: "warning",
        summary: "Deployment of {{ $labels.app }} is stuck",
        description: "The in-progress deployment of {{ $labels.app }} has not changed phase for longer than stuck_after (default 30m).",
    },
    Rule {
        alertname: "DeploymentVerificationFailed",
        severity: "critical",
        summary: "Deployment of {{ $labels.app }} failed post-deploy verification",
        description: "The ACTIVE deployment of {{ $labels.app }} failed its verification window. A fix task names the reason, the numbers before and after and the suspect commits; with auto_rollback on, deploywatch rolls back to the previous deployment. `deploywatch status --app {{ $labels.app }}` shows the verdict.",
    },
    Rule {
        alertname: "HealthCheckFailing",
        severity: "critical",
        summary: "Health check {{ $labels.target }} of {{ $labels.app }} is failing",
        description: "The probe {{ $labels.target }} has failed its failure threshold and stayed down for 2 minutes. See deploywatch_health_probe_failure for the reason.",
    },
];

fn rule(alertname: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.alertname == alertname)
}

/// The alerts the mirrored rules would have firing now. Pure.
pub fn evaluate(
    apps: &BTreeMap<String, AppView>,
    probes: &[ProbeView],
    failed_verification: &BTreeSet<String>,
) -> BTreeSet<Firing> {
    let mut out = BTreeSet::new();
    for app in failed_verification {
        out.insert(Firing {
            alertname: "DeploymentVerificationFailed",
            labels: BTreeMap::from([("app".to_string(), app.clone())]),
        });
    }
    for (name, v) in apps {
        let labels = BTreeMap::from([("app".to_string(), name.clone())]);
        let failed = v
            .last_ended
            .as_ref()
            .is_some_and(|d| d.phase.outcome() == Some(Outcome::Failure));
        if failed {
            out.insert(Firing {
                alertname: "DeploymentFailed",
                labels: labels.clone(),
            });
        }
        if v.stuck {
            out.insert(Firing {
                alertname: "DeploymentStuck",
                labels,
            });
        }
    }
    for p in probes
        .iter()
        .filter(|p| !p.healthy && p.checked_at.is_some())
    {
        out.insert(Firing {
            alertname: "HealthCheckFailing",
            labels: BTreeMap::from([
                ("app".to_string(), p.app.clone()),
                ("target".to_string(), p.target.clone()),
            ]),
        });
    }
    out
}

fn expand(template: &str, labels: &BTreeMap<String, String>) -> String {
    let mut s = template.to_string();
    for (k, v) in labels {
        s = s.replace(&format!("{{{{ $labels.{k} }}}}"), v);
    }
    s
}

/// What changed between two evaluations: alerts to send as firing (new and still firing, as
/// Alertmanager repeats them) and alerts to send once as resolved.
pub fn diff<'a>(
    before: &'a BTreeSet<Firing>,
    now: &'a BTreeSet<Firing>,
) -> (Vec<&'a Firing>, Vec<&'a Firing>) {
    (
        now.iter().collect(),
        before.iter().filter(|f| !now.contains(f)).collect(),
    )
}

/// One Alertmanager v4 notification for one alert, as a route grouping by alertname and labels
/// would send it. `starts_at` is when the demo first saw it firing.
pub fn notification(
    f: &Firing,
    firing: bool,
    starts_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Value {
    let Some(r) = rule(f.alertname) else {
        return Value::Null;
    };
    let mut labels = f.labels.clone();
    labels.insert("alertname".into(), f.alertname.into());
    labels.insert("severity".into(), r.severity.into());
    let annotations = json!({
        "summary": expand(r.summary, &labels),
        "description": expand(r.description, &labels),
        "runbook_url": format!("{RUNBOOKS}/{}.md", f.alertname),
    });
    let status = if firing { "firing" } else { "resolved" };
    let group_key = format!(
        "{{}}:{{{}}}",
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "deploywatch-demo",
        "groupLabels": {"alertname": f.alertname},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "http://deploywatch-demo/alertmanager",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": starts_at.to_rfc3339(),
            "endsAt": if firing { "0001-01-01T00:00:00Z".to_string() } else { now.to_rfc3339() },
            "generatorURL": "http://deploywatch-demo/rules",
            "fingerprint": "",
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DeploymentView;
    use crate::domain::Phase;

    fn dep(phase: Phase) -> DeploymentView {
        DeploymentView {
            id: "d1".into(),
            phase,
            cause: None,
            commit: None,
            created_at: None,
            ended_at: None,
            trace_id: "t".into(),
            steps: vec![],
        }
    }

    fn app(last_ended: Option<Phase>, stuck: bool) -> AppView {
        AppView {
            last_ended: last_ended.map(dep),
            stuck,
            ..AppView::default()
        }
    }

    #[test]
    fn the_mirrored_conditions() {
        let table: [(Option<Phase>, bool, &[&str]); 5] = [
            (None, false, &[]),
            (Some(Phase::Active), false, &[]),
            (Some(Phase::Canceled), false, &[]),
            (Some(Phase::Error), false, &["DeploymentFailed"]),
            (
                Some(Phase::Error),
                true,
                &["DeploymentFailed", "DeploymentStuck"],
            ),
        ];
        for (ended, stuck, want) in table {
            let apps = BTreeMap::from([("api".to_string(), app(ended, stuck))]);
            let got: Vec<_> = evaluate(&apps, &[], &BTreeSet::new())
                .into_iter()
                .map(|f| f.alertname)
                .collect();
            assert_eq!(got, want, "last ended {ended:?}, stuck {stuck}");
        }
    }

    #[test]
    fn a_failed_verification_fires_its_alert() {
        let failed = BTreeSet::from(["api".to_string()]);
        let got = evaluate(&BTreeMap::new(), &[], &failed);
        assert_eq!(
            got.iter()
                .map(|f| (f.alertname, f.labels["app"].as_str()))
                .collect::<Vec<_>>(),
            vec![("DeploymentVerificationFailed", "api")]
        );
    }

    #[test]
    fn a_cleared_alert_is_sent_resolved_once() {
        let a = Firing {
            alertname: "DeploymentFailed",
            labels: BTreeMap::from([("app".into(), "api".into())]),
        };
        let before = BTreeSet::from([a.clone()]);
        let empty = BTreeSet::new();
        let (firing, resolved) = diff(&before, &empty);
        assert!(firing.is_empty());
        assert_eq!(resolved, vec![&a]);
        let (firing, resolved) = diff(&before, &before);
        assert_eq!(firing, vec![&a]);
        assert!(resolved.is_empty());
    }

    #[test]
    fn notifications_parse_as_alertmanager_v4() {
        let a = Firing {
            alertname: "DeploymentFailed",
            labels: BTreeMap::from([("app".into(), "api".into())]),
        };
        let body = notification(&a, true, Utc::now(), Utc::now());
        let (_, inputs) =
            crate::http::webhook::parse(body.to_string().as_bytes()).expect("a valid v4 payload");
        assert_eq!(inputs.len(), 1);
        assert_eq!(inputs[0].alertname, "DeploymentFailed");
        assert!(inputs[0].firing);
        let resolved = notification(&a, false, Utc::now(), Utc::now());
        let (_, inputs) = crate::http::webhook::parse(resolved.to_string().as_bytes()).expect("v4");
        assert!(!inputs[0].firing);
    }

    /// The mirror must not drift from the rules users deploy.
    #[test]
    fn labels_and_annotations_match_the_shipped_rules() {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(include_str!("../../../alerts/deploywatch.rules.yml"))
                .expect("the shipped rules parse");
        let mut seen = 0;
        for g in doc["groups"].as_sequence().expect("groups") {
            for r in g["rules"].as_sequence().expect("rules") {
                let Some(name) = r["alert"].as_str() else {
                    continue;
                };
                let Some(m) = rule(name) else { continue };
                seen += 1;
                assert_eq!(r["labels"]["severity"].as_str(), Some(m.severity), "{name}");
                assert_eq!(
                    r["annotations"]["summary"].as_str(),
                    Some(m.summary),
                    "{name}"
                );
                assert_eq!(
                    r["annotations"]["description"].as_str(),
                    Some(m.description),
                    "{name}"
                );
                assert_eq!(
                    r["annotations"]["runbook_url"].as_str(),
                    Some(format!("{RUNBOOKS}/{name}.md").as_str()),
                    "{name}"
                );
            }
        }
        assert_eq!(
            seen,
            RULES.len(),
            "every mirrored rule exists in the shipped file"
        );
    }
}
