//! Fix-task titles: what is wrong and where, from the alert and what the sources know. Pure.

use serde_json::Value;

use crate::domain::classify::FailureClass;

/// What a failed verification is about, for the fix task's title: the first reason's kind and the
/// component it names (`crash_loop` and `oom` are a service crash).
fn verification_title(v: Option<&Value>) -> (&'static str, Option<String>) {
    let first = v
        .and_then(|v| v["reasons"].as_array())
        .and_then(|r| r.first());
    let kind = first.and_then(|r| r["reason"].as_str()).unwrap_or("");
    let component = first
        .and_then(|r| r["subject"].as_str())
        .filter(|s| !s.is_empty())
        .map(|s| s.split('/').next().unwrap_or(s).to_string());
    match kind {
        "crash_loop" | "oom" => ("Service crash", component),
        "latency_regression" | "error_rate_regression" => ("Performance regression", None),
        "unhealthy" => ("Health check failure", None),
        "serving_wrong_commit" => ("Wrong commit serving", None),
        _ => ("Post-deploy verification failure", None),
    }
}

/// The fix task's title for an alert: what is wrong, and where (`app` or `app/component`).
pub fn fix_title(
    alertname: &str,
    component_label: Option<String>,
    app: &str,
    class: Option<FailureClass>,
    verification: Option<&Value>,
) -> String {
    let component = |c: Option<String>| match c {
        Some(c) => format!("{app}/{c}"),
        None => app.to_string(),
    };
    match alertname {
        "DeploymentVerificationFailed" => {
            let (what, c) = verification_title(verification);
            return format!("FIX: {what} in {}", component(c));
        }
        "AppCrashLooping" => {
            return format!("FIX: Service crash in {}", component(component_label));
        }
        _ => {}
    }
    let what = match alertname {
        "DeploymentFailed" => class
            .unwrap_or(FailureClass::DeploymentError)
            .title()
            .to_string(),
        "HealthCheckFailing" => "Health check failure".to_string(),
        "MigrationCheckFailed" => "Database migration issue".to_string(),
        "DeploymentStuck" => "Deployment stuck".to_string(),
        "DeploySuccessRateLow" => "Deployment success rate low".to_string(),
        other => other.to_string(),
    };
    format!("FIX: {what} in {app}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn titles_say_what_and_where() {
        let v = |reason: &str, subject: &str| json!({"reasons": [{"reason": reason, "subject": subject}]});
        let crash = v("crash_loop", "web");
        let oom = v("oom", "worker");
        let slow = v("latency_regression", "p95_latency");
        let cases = [
            (
                "DeploymentVerificationFailed",
                None,
                Some(&crash),
                "FIX: Service crash in api/web",
            ),
            (
                "DeploymentVerificationFailed",
                None,
                Some(&oom),
                "FIX: Service crash in api/worker",
            ),
            (
                "DeploymentVerificationFailed",
                None,
                Some(&slow),
                "FIX: Performance regression in api",
            ),
            (
                "DeploymentVerificationFailed",
                None,
                None,
                "FIX: Post-deploy verification failure in api",
            ),
            (
                "AppCrashLooping",
                Some("web".to_string()),
                None,
                "FIX: Service crash in api/web",
            ),
            (
                "HealthCheckFailing",
                None,
                None,
                "FIX: Health check failure in api",
            ),
        ];
        for (alert, component, verification, want) in cases {
            assert_eq!(
                fix_title(alert, component, "api", None, verification),
                want,
                "{alert}"
            );
        }
    }
}
