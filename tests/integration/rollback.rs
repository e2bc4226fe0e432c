//! Guarded automatic rollback against the simulator: validate, roll back, follow, commit — and
//! revert when the rolled-back deployment is unhealthy.

use std::time::Duration;

use do_simulator::Script;
use serde_json::Value;

use crate::helpers::*;

async fn setup(dry_run: bool) -> (SimHandle, TestApp) {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(100))
        .app("api", "1111111111111111111111111111111111111111")
        .start()
        .await;
    let (base, ready) = (&sim.url, sim.health_url("api", "ready"));
    let toml = format!(
        "[digitalocean]\napi_url = \"{base}\"\npoll_interval = \"200ms\"\nfast_poll_interval = \"100ms\"\n\n[health]\ndiscover = false\n\n[[health.targets]]\nname = \"api-ready\"\napp = \"api\"\nurl = \"{ready}\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nfailure_threshold = 1\n\n[rollback]\ncooldown = \"0s\"\nfollow_timeout = \"20s\"\nhealthy_for = \"1s\"\n\n[[rollback.auto]]\napp = \"api\"\ndry_run = {dry_run}\n"
    );
    let app = spawn_app(Kind::Sqlite, &toml, &[("DIGITALOCEAN_TOKEN", "sim-token")]).await;
    // A second deployment goes ACTIVE; the first is now the last good one before it.
    sim.deploy(
        "api",
        "2222222222222222222222222222222222222222",
        Script::Success,
    );
    until(
        "api's active deployment to be commit 2222222",
        Duration::from_secs(10),
        || async {
            let st: Value = app
                .get("/api/v1/status?app=api")
                .await
                .json()
                .await
                .expect("json");
            let active = st["apps"][0]["active"]["commit"].clone();
            seen(active == "2222222222222222222222222222222222222222", active)
        },
    )
    .await;
    (sim, app)
}

async fn rollback_task(app: &TestApp) -> Value {
    let tasks = app.tasks("execution").await;
    match tasks.iter().find(|t| t["kind"] == "rollback") {
        Some(t) => t.clone(),
        None => panic!("a rollback task in {tasks:?}"),
    }
}

async fn history(app: &TestApp, id: &str) -> Vec<String> {
    let v = app.task(id).await;
    v["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("").to_string())
        .collect()
}

fn health_alert() -> Value {
    notification(&[(
        "HealthCheckFailing",
        "firing",
        &[
            ("app", "api"),
            ("severity", "critical"),
            ("target", "api-ready"),
        ],
        "2026-11-22T10:00:00Z",
    )])
}

#[tokio::test]
async fn a_healthy_rollback_is_validated_followed_and_committed() {
    let (sim, app) = setup(false).await;
    app.post_alerts_ok(&health_alert()).await;
    let task = rollback_task(&app).await;
    let id = task["id"].as_str().expect("id").to_string();
    app.until_metric(
        "deploywatch_rollbacks_total{app=\"api\",result=\"committed\"}",
        1.0,
        Duration::from_secs(40),
    )
    .await;
    let t = app.task(&id).await;
    assert_eq!(t["task"]["state"], "done");
    let steps: Vec<String> = history(&app, &id)
        .await
        .into_iter()
        .filter(|e| e != "heartbeat")
        .collect();
    assert_eq!(
        steps,
        vec![
            "created",
            "claimed",
            "validated",
            "rolled_back",
            "deployment_active",
            "committed",
            "completed"
        ]
    );
    assert!(!sim.is_pinned("api"), "never left pinned");
    // The validation warning and each step were announced.
    let titles: Vec<String> = app
        .tasks_where("queue=announce&limit=200")
        .await
        .iter()
        .map(|t| t["title"].as_str().unwrap_or("").to_string())
        .collect();
    for want in [
        "ANNOUNCE: rollback of api has warnings",
        "ANNOUNCE: rollback of api started",
        "ANNOUNCE: rollback of api committed",
    ] {
        assert!(titles.iter().any(|t| t == want), "{want} in {titles:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_unhealthy_rollback_is_reverted() {
    let (sim, app) = setup(false).await;
    // The app's health endpoint fails whatever runs: the rolled-back deployment fails its check.
    sim.set_health("api", 503, None);
    app.post_alerts_ok(&health_alert()).await;
    let id = rollback_task(&app).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    app.until_metric(
        "deploywatch_rollbacks_total{app=\"api\",result=\"reverted\"}",
        1.0,
        Duration::from_secs(40),
    )
    .await;
    let t = app.task(&id).await;
    assert_eq!(t["task"]["state"], "failed");
    let h = history(&app, &id).await;
    assert!(
        h.contains(&"rolled_back".to_string()) && h.contains(&"reverted".to_string()),
        "{h:?}"
    );
    assert!(!sim.is_pinned("api"), "revert unpins the app");
    app.stop().await;
}

#[tokio::test]
async fn dry_run_validates_but_does_not_roll_back() {
    let (sim, app) = setup(true).await;
    let before = sim.requests_to("/v2/apps/{id}/rollback");
    app.post_alerts_ok(&health_alert()).await;
    app.until_metric(
        "deploywatch_rollbacks_total{app=\"api\",result=\"dry_run\"}",
        1.0,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(sim.requests_to("/v2/apps/{id}/rollback/validate"), 1);
    assert_eq!(
        sim.requests_to("/v2/apps/{id}/rollback") - sim.requests_to("/v2/apps/{id}/rollback/"),
        before,
        "no rollback request"
    );
    assert!(!sim.is_pinned("api"));
    app.stop().await;
}
