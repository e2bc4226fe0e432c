//! Guarded automatic rollback against the simulator: validate, roll back, follow, commit — and
//! revert when the rolled-back deployment is unhealthy.

use std::time::Duration;

use do_simulator::{Script, Simulator};
use serde_json::Value;

use crate::helpers::*;

async fn setup(dry_run: bool) -> (Simulator, TestApp) {
    let sim = Simulator::new(Duration::from_millis(100));
    let (addr, _) = sim
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    sim.add_app("api", "1111111111111111111111111111111111111111");
    let toml = format!(
        "[digitalocean]\napi_url = \"http://{addr}\"\npoll_interval = \"200ms\"\nfast_poll_interval = \"100ms\"\n\n[health]\ndiscover = false\n\n[[health.targets]]\nname = \"api-ready\"\napp = \"api\"\nurl = \"http://{addr}/sim/apps/api/health/ready\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nfailure_threshold = 1\n\n[rollback]\ncooldown = \"0s\"\nfollow_timeout = \"20s\"\nhealthy_for = \"1s\"\n\n[[rollback.auto]]\napp = \"api\"\ndry_run = {dry_run}\n"
    );
    let app = spawn_app(Kind::Sqlite, &toml, &[("DIGITALOCEAN_TOKEN", "sim-token")]).await;
    // A second deployment goes ACTIVE; the first is now the last good one before it.
    sim.deploy(
        "api",
        "2222222222222222222222222222222222222222",
        Script::Success,
    );
    wait_for(Duration::from_secs(10), || async {
        let st: Value = app
            .get("/api/v1/status?app=api")
            .await
            .json()
            .await
            .expect("json");
        st["apps"][0]["active"]["commit"] == "2222222222222222222222222222222222222222"
    })
    .await;
    (sim, app)
}

async fn rollback_task(app: &TestApp) -> Value {
    let t: Value = app
        .get("/api/v1/tasks?queue=execution")
        .await
        .json()
        .await
        .expect("json");
    t["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["kind"] == "rollback")
        .cloned()
        .expect("a rollback task")
}

async fn history(app: &TestApp, id: &str) -> Vec<String> {
    let v: Value = app
        .get(&format!("/api/v1/tasks/{id}"))
        .await
        .json()
        .await
        .expect("json");
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
    assert_eq!(
        app.post_json("/webhook/alertmanager", &health_alert(), None)
            .await
            .status(),
        200
    );
    let task = rollback_task(&app).await;
    let id = task["id"].as_str().expect("id").to_string();
    wait_for(Duration::from_secs(40), || async {
        metric(
            &app.metrics().await,
            "deploywatch_rollbacks_total{app=\"api\",result=\"committed\"}",
        ) == Some(1.0)
    })
    .await;
    let t: Value = app
        .get(&format!("/api/v1/tasks/{id}"))
        .await
        .json()
        .await
        .expect("json");
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
    let ann: Value = app
        .get("/api/v1/tasks?queue=announce&limit=200")
        .await
        .json()
        .await
        .expect("json");
    let titles: Vec<String> = ann["tasks"]
        .as_array()
        .expect("tasks")
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
    assert_eq!(
        app.post_json("/webhook/alertmanager", &health_alert(), None)
            .await
            .status(),
        200
    );
    let id = rollback_task(&app).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    wait_for(Duration::from_secs(40), || async {
        metric(
            &app.metrics().await,
            "deploywatch_rollbacks_total{app=\"api\",result=\"reverted\"}",
        ) == Some(1.0)
    })
    .await;
    let t: Value = app
        .get(&format!("/api/v1/tasks/{id}"))
        .await
        .json()
        .await
        .expect("json");
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
    assert_eq!(
        app.post_json("/webhook/alertmanager", &health_alert(), None)
            .await
            .status(),
        200
    );
    wait_for(Duration::from_secs(30), || async {
        metric(
            &app.metrics().await,
            "deploywatch_rollbacks_total{app=\"api\",result=\"dry_run\"}",
        ) == Some(1.0)
    })
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
