//! The status document as text for a terminal (`deploywatch status`), read from its JSON so the
//! command works against any server version. Pure; every value that came from outside is escaped.

use serde_json::{Value, json};

/// `1` when what `status` shows for the app(s) is failing: an ERROR/CANCELED latest deployment, a
/// failing probe, a failing startup check.
pub fn is_failing(status: &Value) -> bool {
    let apps_failing = status["apps"].as_array().into_iter().flatten().any(|a| {
        matches!(
            a["latest"]["phase"].as_str(),
            Some("ERROR") | Some("CANCELED")
        ) || a["probes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["healthy"] == json!(false))
    });
    let checks_failing = status["startup"]["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["ok"] == json!(false));
    apps_failing || checks_failing
}

/// A string field for a terminal: missing is empty, control characters escaped.
fn txt(v: &Value) -> String {
    crate::terminal::clean(v.as_str().unwrap_or(""))
}

fn short_commit(v: &Value) -> String {
    v.as_str()
        .map(|c| crate::terminal::clean(crate::domain::prefix(c, 12)))
        .unwrap_or_else(|| "-".into())
}

/// When the failure ended before the current ACTIVE deployment was created, it is history: say
/// so and give its date, so nobody reads an old failure as today's. Pure.
pub fn failure_is_history(app: &Value) -> bool {
    let ended = |v: &Value| {
        v.as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    };
    let failure_time = ended(&app["last_failure"]["ended_at"]);
    let active_created = ended(&app["active"]["created_at"]);
    matches!((failure_time, active_created), (Some(f), Some(a)) if f <= a)
        || (app["active"]["id"].is_string()
            && app["latest"]["id"] == app["active"]["id"]
            && app["last_failure"]["deployment_id"] != app["latest"]["id"])
}

/// A human rendering of the status JSON. Every value that came from outside is escaped.
pub fn render_text(status: &Value) -> String {
    let mut out = String::new();
    out.push_str(&format!("deploywatch {}\n", txt(&status["version"])));
    for (name, s) in status["sources"].as_object().into_iter().flatten() {
        let reason = txt(&s["reason"]);
        let err = txt(&s["last_error"]);
        out.push_str(&format!(
            "  source {:<13} {}{}{}\n",
            crate::terminal::clean(name),
            txt(&s["state"]),
            if reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            },
            if err.is_empty() {
                String::new()
            } else {
                format!(" last error: {err}")
            }
        ));
    }
    for a in status["apps"].as_array().into_iter().flatten() {
        out.push_str(&format!("\napp {}\n", txt(&a["name"])));
        let l = &a["latest"];
        if l.is_object() {
            out.push_str(&format!(
                "  latest   {} {} commit {} ({})\n",
                txt(&l["id"]),
                txt(&l["phase"]),
                short_commit(&l["commit"]),
                txt(&l["cause"])
            ));
        }
        let act = &a["active"];
        if act.is_object() {
            out.push_str(&format!(
                "  active   {} commit {}\n",
                txt(&act["id"]),
                short_commit(&act["commit"])
            ));
        }
        let f = &a["last_failure"];
        if f.is_object() {
            let when = f["ended_at"]
                .as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|t| {
                    t.with_timezone(&chrono::Utc)
                        .format("%Y-%m-%d %H:%M UTC")
                        .to_string()
                });
            let step = &f["failed_step"];
            let label = if failure_is_history(a) {
                "history "
            } else {
                "failure "
            };
            out.push_str(&format!(
                "  {label} {} {} at {}/{} ({}){}{}\n",
                txt(&f["deployment_id"]),
                txt(&f["class"]),
                txt(&step["top_step"]),
                txt(&step["step"]),
                txt(&step["reason_code"]),
                when.map(|w| format!(" on {w}")).unwrap_or_default(),
                if failure_is_history(a) {
                    ", before the current ACTIVE deployment"
                } else {
                    ""
                }
            ));
        }
        if a["stuck"] == json!(true) {
            out.push_str("  STUCK    the in-progress deployment has not moved for too long\n");
        }
        if let Some(v) = a["verification"].as_object() {
            let reasons: Vec<String> = v
                .get("reasons")
                .and_then(|r| r.as_array())
                .into_iter()
                .flatten()
                .map(|r| txt(&r["summary"]))
                .collect();
            out.push_str(&format!(
                "  verify   {} for deployment {}{}\n",
                txt(&json!(v.get("result"))).to_uppercase(),
                short_commit(v.get("deployment_id").unwrap_or(&json!(null))),
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(": {}", reasons.join("; "))
                }
            ));
        }
        if a["pinned_deployment_id"].is_string() {
            out.push_str(&format!(
                "  PINNED   to rollback deployment {}: deploy-on-push is blocked until commit or revert\n",
                txt(&a["pinned_deployment_id"])
            ));
        }
        for p in a["probes"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  probe    {:<20} {}{}\n",
                txt(&p["target"]),
                if p["healthy"] == json!(true) {
                    "healthy"
                } else {
                    "FAILING"
                },
                p["last_failure_reason"]
                    .as_str()
                    .map(|r| format!(" ({})", crate::terminal::clean(r)))
                    .unwrap_or_default()
            ));
        }
        if let Some(d) = a["drift"].as_object() {
            out.push_str(&format!(
                "  drift    {} commits behind {}\n",
                d.get("commits_behind").and_then(Value::as_i64).unwrap_or(0),
                crate::terminal::clean(d.get("branch").and_then(Value::as_str).unwrap_or(""))
            ));
        }
    }
    let firing = status["firing_alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    out.push_str(&format!("\nfiring alerts: {}\n", firing.len()));
    for f in &firing {
        out.push_str(&format!("  {} {}\n", txt(&f["alertname"]), txt(&f["app"])));
    }
    let tasks = status["open_tasks"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("open tasks: {}\n", tasks.len()));
    for t in tasks {
        out.push_str(&format!(
            "  [{}] {} ({}, {})\n",
            txt(&t["queue"]),
            txt(&t["title"]),
            txt(&t["state"]),
            txt(&t["id"])
        ));
        // A production deploy of a commit staging never took live (`[[pipelines]]`).
        if t["context"]["pipeline_warning"].is_string() {
            out.push_str(&format!(
                "    warning: {}\n",
                txt(&t["context"]["pipeline_warning"])
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_cannot_drive_the_terminal() {
        let doc = json!({
            "version": "1",
            "sources": {"digitalocean": {"state": "on", "reason": "", "last_error": "boom\u{1b}[2J"}},
            "apps": [{"name": "api\u{1b}[2J\nFAKE", "latest": {"id": "d1", "phase": "ERROR", "commit": "aéééééééééééé", "cause": "x\ny"},
                      "last_failure": {"deployment_id": "d1", "class": "build", "failed_step": {"top_step": "build", "step": "b\u{7}"}}}],
            "firing_alerts": [{"alertname": "DeploymentFailed", "app": "a\u{9b}"}],
            "open_tasks": [{"queue": "execution", "title": "FIX\u{1b}]0;pwned\u{7}", "state": "queued", "id": "t1"},
                           {"queue": "deploy", "title": "DEPLOY: PR #1", "state": "claimed", "id": "t2",
                            "context": {"pipeline_warning": "never on staging\u{1b}[2J"}}],
        });
        let text = render_text(&doc);
        assert!(
            text.contains("    warning: never on staging\\e[2J"),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(
            !text.contains('\u{7}') && !text.contains('\u{9b}'),
            "{text}"
        );
        assert!(!text.lines().any(|l| l.starts_with("FAKE")), "{text}");
        assert!(text.contains("api\\e[2J\\nFAKE"), "{text}");
    }

    #[test]
    fn an_old_failure_before_the_active_deployment_reads_as_history() {
        let table = [
            // failure ended before the active deployment was created
            (
                json!({"latest": {"id": "d2"}, "active": {"id": "d2", "created_at": "2026-11-28T10:00:00Z"},
                    "last_failure": {"deployment_id": "d1", "ended_at": "2026-11-27T14:03:00Z"}}),
                true,
            ),
            // the latest deployment is the failure
            (
                json!({"latest": {"id": "d2"}, "active": {"id": "d1", "created_at": "2026-11-27T10:00:00Z"},
                    "last_failure": {"deployment_id": "d2", "ended_at": "2026-11-28T11:00:00Z"}}),
                false,
            ),
            // no active deployment at all
            (
                json!({"latest": {"id": "d1"}, "last_failure": {"deployment_id": "d1"}}),
                false,
            ),
        ];
        for (i, (app, want)) in table.into_iter().enumerate() {
            assert_eq!(failure_is_history(&app), want, "row {i}");
        }
    }
}
