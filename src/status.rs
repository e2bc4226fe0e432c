//! The picture an agent asks for after a push: per app, the latest and active deployments, probes,
//! drift, firing alerts and open tasks. Built from snapshots and the store; never from the network.

use serde_json::{Value, json};

use crate::app::App;
use crate::store::TaskFilter;
use crate::tasks::State;

fn source(on: bool, reason: &str, up: Option<bool>, extra: Value) -> Value {
    let mut v = json!({
        "state": if !on { "off" } else if up == Some(false) { "failing" } else { "on" },
        "reason": reason,
    });
    if let Value::Object(m) = extra {
        for (k, x) in m {
            v[k] = x;
        }
    }
    v
}

pub async fn build(app: &App, only: Option<&str>) -> Value {
    let snap = app.do_snapshot();
    let probes = app.probes.all();
    let git = app.git_snapshot();
    let cfg = &app.config;
    let do_on = cfg.digitalocean.token.is_some();
    let up = |s: &str| {
        app.metrics
            .source_up
            .get_metric_with_label_values(&[s])
            .ok()
            .map(|g| g.get() == 1)
    };
    let sources = json!({
        "digitalocean": source(
            do_on,
            if do_on { "" } else { "no DIGITALOCEAN_TOKEN set" },
            up("digitalocean"),
            json!({"polled_at": snap.polled_at, "last_error": snap.last_error, "apps": snap.apps.len()}),
        ),
        "health": source(
            !cfg.health.targets.is_empty() || (do_on && cfg.health.discover),
            if cfg.health.targets.is_empty() && !(do_on && cfg.health.discover) { "no [[health.targets]] configured and discovery needs the DigitalOcean source" } else { "" },
            up("health"),
            json!({"targets": probes.len()}),
        ),
        "git": source(!cfg.git.repos.is_empty(), if cfg.git.repos.is_empty() { "no [[git.repos]] configured" } else { "" }, up("git"), json!({"repos": git.repos.len()})),
        "migrations": source(
            !cfg.migration_checks.is_empty(),
            if cfg.migration_checks.is_empty() { "no [[migration_checks]] configured" } else { "" },
            up("migrations"),
            json!({}),
        ),
    });
    let mut apps = Vec::new();
    let mut names: Vec<String> = snap.apps.keys().cloned().collect();
    for p in &probes {
        if !names.contains(&p.app) {
            names.push(p.app.clone());
        }
    }
    for r in &git.repos {
        if let Some(a) = &r.app
            && !names.contains(a)
        {
            names.push(a.clone());
        }
    }
    names.sort();
    for name in names
        .iter()
        .filter(|n| only.is_none_or(|o| o == n.as_str()))
    {
        let v = snap.apps.get(name);
        let app_probes: Vec<_> = probes.iter().filter(|p| &p.app == name).collect();
        let drift = git.drift.get(name);
        apps.push(json!({
            "name": name,
            "id": v.map(|v| v.id.clone()),
            "latest": v.and_then(|v| v.latest.clone()),
            "active": v.and_then(|v| v.active.clone()),
            "in_progress": v.and_then(|v| v.in_progress.clone()),
            "pinned_deployment_id": v.and_then(|v| v.pinned_deployment_id.clone()),
            "stuck": v.map(|v| v.stuck).unwrap_or(false),
            "last_failure": v.and_then(|v| v.last_failure.clone()),
            "probes": app_probes,
            "drift": drift,
        }));
    }
    let open = async {
        let mut out = Vec::new();
        for st in [State::Queued, State::Claimed] {
            let f = TaskFilter {
                queue: None,
                state: Some(st),
                app: only.map(str::to_string),
                limit: 200,
            };
            out.extend(app.store.list_tasks(&f).await?);
        }
        Ok::<_, crate::store::StoreError>(out)
    };
    let (open_tasks, store_error) =
        match tokio::time::timeout(std::time::Duration::from_secs(2), open).await {
            Ok(Ok(t)) => (t, None),
            Ok(Err(e)) => (vec![], Some(e.to_string())),
            Err(_) => (
                vec![],
                Some("the store did not answer within 2s".to_string()),
            ),
        };
    let firing = match tokio::time::timeout(std::time::Duration::from_secs(2), app.store.firing_alerts(only)).await {
        Ok(Ok(a)) => a
            .into_iter()
            .map(|(n, a, s)| json!({"alertname": n, "app": a, "starts_at": chrono::DateTime::from_timestamp_millis(s)}))
            .collect(),
        _ => vec![],
    };
    let startup = app.checks.status();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "generated_at": chrono::Utc::now(),
        "sources": sources,
        "startup": startup,
        "apps": apps,
        "firing_alerts": firing,
        "open_tasks": open_tasks,
        "store_error": store_error,
    })
}

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

/// A human rendering of the status JSON.
pub fn render_text(status: &Value) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "deploywatch {}\n",
        status["version"].as_str().unwrap_or("")
    ));
    for (name, s) in status["sources"].as_object().into_iter().flatten() {
        let reason = s["reason"].as_str().unwrap_or("");
        out.push_str(&format!(
            "  source {name:<13} {}{}\n",
            s["state"].as_str().unwrap_or(""),
            if reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            }
        ));
    }
    for a in status["apps"].as_array().into_iter().flatten() {
        out.push_str(&format!("\napp {}\n", a["name"].as_str().unwrap_or("")));
        if let Some(l) = a["latest"].as_object() {
            out.push_str(&format!(
                "  latest   {} {} commit {} ({})\n",
                l.get("id").and_then(Value::as_str).unwrap_or(""),
                l.get("phase").and_then(Value::as_str).unwrap_or(""),
                l.get("commit")
                    .and_then(Value::as_str)
                    .map(|c| &c[..c.len().min(12)])
                    .unwrap_or("-"),
                l.get("cause").and_then(Value::as_str).unwrap_or("")
            ));
        }
        if let Some(l) = a["active"].as_object() {
            out.push_str(&format!(
                "  active   {} commit {}\n",
                l.get("id").and_then(Value::as_str).unwrap_or(""),
                l.get("commit")
                    .and_then(Value::as_str)
                    .map(|c| &c[..c.len().min(12)])
                    .unwrap_or("-")
            ));
        }
        if let Some(f) = a["last_failure"].as_object() {
            out.push_str(&format!(
                "  failure  {} ({})\n",
                f.get("class").and_then(Value::as_str).unwrap_or(""),
                f.get("failed_step")
                    .and_then(|s| s.get("reason_code"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
            ));
        }
        if a["stuck"] == json!(true) {
            out.push_str("  STUCK    the in-progress deployment has not moved for too long\n");
        }
        if let Some(p) = a["pinned_deployment_id"].as_str() {
            out.push_str(&format!("  PINNED   to rollback deployment {p}: deploy-on-push is blocked until commit or revert\n"));
        }
        for p in a["probes"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  probe    {:<20} {}{}\n",
                p["target"].as_str().unwrap_or(""),
                if p["healthy"] == json!(true) {
                    "healthy"
                } else {
                    "FAILING"
                },
                p["last_failure_reason"]
                    .as_str()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
        if let Some(d) = a["drift"].as_object() {
            out.push_str(&format!(
                "  drift    {} commits behind {}\n",
                d.get("commits_behind").and_then(Value::as_i64).unwrap_or(0),
                d.get("branch").and_then(Value::as_str).unwrap_or("")
            ));
        }
    }
    let firing = status["firing_alerts"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    out.push_str(&format!("\nfiring alerts: {firing}\n"));
    let tasks = status["open_tasks"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("open tasks: {}\n", tasks.len()));
    for t in tasks {
        out.push_str(&format!(
            "  [{}] {} ({}, {})\n",
            t["queue"].as_str().unwrap_or(""),
            t["title"].as_str().unwrap_or(""),
            t["state"].as_str().unwrap_or(""),
            t["id"].as_str().unwrap_or("")
        ));
    }
    out
}
