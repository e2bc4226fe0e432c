//! Post-deploy verification end to end: the simulator's crash-looping, leaking, regressing and
//! healthy releases, deploywatch's verification window over real HTTP, the verdict in status and
//! metrics, and the alert's fix task with its evidence (and, with auto_rollback, the rollback).

use std::time::Duration;

use do_simulator::Script;
use serde_json::Value;

use crate::helpers::*;

const OLD: &str = "1111111111111111111111111111111111111111";
const NEW: &str = "2222222222222222222222222222222222222222";

fn toml(base: &str, extra: &str) -> String {
    format!(
        "[digitalocean]\napi_url = \"{base}\"\npoll_interval = \"300ms\"\nfast_poll_interval = \"100ms\"\n\
         request_timeout = \"2s\"\nbudget_share = 1.0\n\n[health]\ndiscover = false\n\n\
         [verification]\nwindow = \"5s\"\ninterval = \"250ms\"\n{extra}"
    )
}

/// The app's verification in the status document once it has `result`.
async fn verdict(app: &TestApp, name: &str, result: &str) -> Value {
    until(
        &format!("{name}'s verification ends {result}"),
        Duration::from_secs(25),
        || async {
            let s = app.status().await;
            let v =
                s["apps"].as_array()?.iter().find(|a| a["name"] == name)?["verification"].clone();
            (v["result"] == result).then_some(v)
        },
    )
    .await
}

fn reasons(v: &Value) -> Vec<String> {
    v["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["reason"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn crash_loop_and_leak_fail_with_their_reason_a_healthy_release_passes() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(30))
        .app("api", OLD)
        .app("leak", OLD)
        .app("ok", OLD)
        .script("api", NEW, Script::CrashLoop)
        .script("leak", NEW, Script::MemoryLeak)
        .script("ok", NEW, Script::Success)
        .start()
        .await;
    let app = spawn_app(
        Kind::Sqlite,
        &toml(&sim.url, ""),
        &[("DIGITALOCEAN_TOKEN", "sim-token")],
    )
    .await;

    let crash = verdict(&app, "api", "failed").await;
    assert_eq!(reasons(&crash), vec!["crash_loop"], "{crash:#}");
    assert_eq!(crash["suspect_commits"]["to"], NEW, "{crash:#}");
    assert!(
        crash["log_tail"]
            .as_str()
            .is_some_and(|t| t.contains("panic")),
        "the RUN_RESTARTED tail is the evidence: {crash:#}"
    );
    // A leak that keeps getting OOM-killed may also read as a crash loop; the kill is the reason
    // that explains it, and it must be there.
    let leak = verdict(&app, "leak", "failed").await;
    assert!(reasons(&leak).contains(&"oom".to_string()), "{leak:#}");
    let ok = verdict(&app, "ok", "passed").await;
    assert!(reasons(&ok).is_empty(), "{ok:#}");

    app.until_metrics(
        &[
            (
                "deploywatch_deployment_verification{app=\"api\",result=\"failed\"}",
                1.0,
            ),
            (
                "deploywatch_deployment_verification{app=\"api\",result=\"passed\"}",
                0.0,
            ),
            (
                "deploywatch_deployment_verifications_total{app=\"api\",result=\"failed\"}",
                1.0,
            ),
            (
                "deploywatch_deployment_verifications_total{app=\"ok\",result=\"passed\"}",
                1.0,
            ),
            // A failed verification is a failed change (DORA).
            ("deploywatch_dora_change_failures_total{app=\"api\"}", 1.0),
        ],
        Duration::from_secs(10),
    )
    .await;
    let body = app.metrics().await;
    let restarts = metric(
        &body,
        "deploywatch_app_component_restarts{app=\"api\",component=\"web\"}",
    )
    .expect("restarts of api/web are exported");
    assert!(restarts >= 3.0, "{restarts}");
    assert!(
        metric(
            &body,
            "deploywatch_app_component_replicas{app=\"api\",component=\"web\",state=\"desired\"}"
        )
        .is_some(),
        "replicas are exported"
    );

    // The alert Prometheus raises from that gauge opens exactly one fix task with the evidence,
    // and a rollback task to the previous deployment; nothing for the healthy app.
    let alert = notification(&[(
        "DeploymentVerificationFailed",
        "firing",
        &[("app", "api"), ("severity", "critical")],
        "2026-11-28T10:00:00Z",
    )]);
    app.post_alerts_ok(&alert).await;
    app.post_alerts_ok(&alert).await;
    let fixes: Vec<Value> = app
        .tasks("execution")
        .await
        .into_iter()
        .filter(|t| t["kind"] == "fix")
        .collect();
    assert_eq!(fixes.len(), 1, "{fixes:#?}");
    assert_eq!(fixes[0]["title"], "FIX: Service crash in api/web");
    let c = &fixes[0]["context"];
    assert_eq!(c["reasons"][0]["reason"], "crash_loop", "{c:#}");
    assert!(
        c["log_tail"].as_str().is_some_and(|t| t.contains("panic")),
        "{c:#}"
    );
    assert_eq!(c["suspect_commits"]["to"], NEW, "{c:#}");
    assert!(c["verification"]["components"].is_array(), "{c:#}");
    let rollbacks: Vec<Value> = app
        .tasks("execution")
        .await
        .into_iter()
        .filter(|t| t["kind"] == "rollback")
        .collect();
    assert_eq!(rollbacks.len(), 1, "{rollbacks:#?}");
    let text = app
        .get("/api/v1/status?app=api")
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(text.contains("crash_loop"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn a_latency_regression_seen_through_prometheus_fails_the_release() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(30))
        .app("api", OLD)
        .script("api", NEW, Script::LatencyRegression)
        .start()
        .await;
    let query = "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{app=\"api\"}[1m])))";
    sim.script_query_on_regression(query, "api", 0.12, 0.31);
    let extra = format!(
        "prometheus_url = \"{}\"\n\n[[verification.queries]]\nname = \"p95_latency\"\nquery = '{query}'\nmax = 0.25\n",
        sim.url
    );
    let app = spawn_app(
        Kind::Sqlite,
        &toml(&sim.url, &extra),
        &[("DIGITALOCEAN_TOKEN", "sim-token")],
    )
    .await;
    let v = verdict(&app, "api", "failed").await;
    assert_eq!(reasons(&v), vec!["latency_regression"], "{v:#}");
    let alert = notification(&[(
        "DeploymentVerificationFailed",
        "firing",
        &[("app", "api"), ("severity", "critical")],
        "2026-11-28T10:00:00Z",
    )]);
    app.post_alerts_ok(&alert).await;
    let fixes: Vec<Value> = app
        .tasks("execution")
        .await
        .into_iter()
        .filter(|t| t["kind"] == "fix")
        .collect();
    assert_eq!(fixes.len(), 1, "{fixes:#?}");
    assert_eq!(fixes[0]["title"], "FIX: Performance regression in api");
    app.stop().await;
}

#[tokio::test]
async fn with_auto_rollback_a_failed_release_is_rolled_back_and_left_unpinned() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(30))
        .app("api", OLD)
        .script("api", NEW, Script::CrashLoop)
        .start()
        .await;
    let app = spawn_app(
        Kind::Sqlite,
        &toml(
            &sim.url,
            "auto_rollback = true\n\n[rollback]\nfollow_timeout = \"20s\"\nhealthy_for = \"500ms\"\ncooldown = \"1s\"\n",
        ),
        &[("DIGITALOCEAN_TOKEN", "sim-token")],
    )
    .await;
    verdict(&app, "api", "failed").await;
    let alert = notification(&[(
        "DeploymentVerificationFailed",
        "firing",
        &[("app", "api"), ("severity", "critical")],
        "2026-11-28T10:00:00Z",
    )]);
    app.post_alerts_ok(&alert).await;
    let s = until(
        "api is back on the previous commit and unpinned",
        Duration::from_secs(30),
        || async {
            let s = app.status().await;
            let a = s["apps"]
                .as_array()?
                .iter()
                .find(|a| a["name"] == "api")?
                .clone();
            (a["active"]["commit"] == OLD && a["pinned_deployment_id"].is_null()).then_some(a)
        },
    )
    .await;
    assert_eq!(s["active"]["commit"], OLD, "{s:#}");
    let rollbacks: Vec<Value> = app
        .tasks("execution")
        .await
        .into_iter()
        .filter(|t| t["kind"] == "rollback")
        .collect();
    assert_eq!(
        rollbacks.len(),
        1,
        "one rollback per episode: {rollbacks:#?}"
    );
    assert_eq!(rollbacks[0]["state"], "done", "{rollbacks:#?}");
    app.stop().await;
}

#[tokio::test]
async fn a_failed_migration_job_is_a_migration_issue_and_a_stuck_deployment_can_be_canceled() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(30))
        .app("api", OLD)
        .app("slow", OLD)
        .script("api", NEW, Script::FailingPreDeployJob)
        .start()
        .await;
    let app = spawn_app(
        Kind::Sqlite,
        &format!(
            "{}cancel_stuck = true\n",
            toml(&sim.url, "").replace(
                "budget_share = 1.0\n",
                "budget_share = 1.0\nstuck_after = \"1s\"\n"
            )
        ),
        &[("DIGITALOCEAN_TOKEN", "sim-token")],
    )
    .await;
    let failure = until(
        "api's failed deployment is classified",
        Duration::from_secs(20),
        || async {
            let s = app.status().await;
            let a = s["apps"]
                .as_array()?
                .iter()
                .find(|a| a["name"] == "api")?
                .clone();
            a["last_failure"]["class"]
                .as_str()
                .map(|_| a["last_failure"].clone())
        },
    )
    .await;
    assert_eq!(failure["class"], "database_migration_issue", "{failure:#}");

    // A deployment that never moves is canceled once it is stuck past its limit.
    let stuck = sim.deploy("slow", NEW, Script::Stuck).expect("deploy");
    let id = sim.app_id("slow").expect("app");
    let c = deploywatch::sources::digitalocean::client::Client::new(
        url::Url::parse(&sim.url).expect("url"),
        secrecy::SecretString::from("t".to_string()),
        Duration::from_secs(5),
        None,
    );
    until(
        "the stuck deployment is canceled",
        Duration::from_secs(20),
        || async {
            let d = c.get_deployment(&id, &stuck).await.ok()?;
            (d.phase == deploywatch::domain::Phase::Canceled).then_some(())
        },
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_burst_of_more_deployments_than_a_page_between_two_polls_is_counted_whole() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(20))
        .app("api", OLD)
        .start()
        .await;
    let app = spawn_app(
        Kind::Sqlite,
        &toml(&sim.url, "")
            .replace("poll_interval = \"300ms\"", "poll_interval = \"2s\"")
            .replace(
                "fast_poll_interval = \"100ms\"",
                "fast_poll_interval = \"2s\"",
            ),
        &[("DIGITALOCEAN_TOKEN", "sim-token")],
    )
    .await;
    app.until_metric(
        "deploywatch_deployments_total{app=\"api\",outcome=\"success\"}",
        1.0,
        Duration::from_secs(15),
    )
    .await;
    // 27 deployments land between two polls (2 s apart): more than the 20 of one page.
    for i in 0..27u64 {
        sim.deploy("api", &format!("{:040x}", 100 + i), Script::Success);
    }
    app.until_metric(
        "deploywatch_deployments_total{app=\"api\",outcome=\"success\"}",
        28.0,
        Duration::from_secs(30),
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn an_app_serving_another_commit_than_active_fails_with_serving_wrong_commit() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(30))
        .app("api", OLD)
        .script("api", NEW, Script::Success)
        .start()
        .await;
    // The app's health body keeps naming the old build after the new one went ACTIVE.
    sim.set_health("api", 200, Some(OLD));
    let target = format!(
        "\n[[health.targets]]\nname = \"api-commit\"\napp = \"api\"\nurl = \"{}\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nfailure_threshold = 1\nexpect_active_commit = \"commit\"\n",
        sim.health_url("api", "ready")
    );
    let app = spawn_app(
        Kind::Sqlite,
        &format!("{}{target}", toml(&sim.url, "")),
        &[("DIGITALOCEAN_TOKEN", "sim-token")],
    )
    .await;
    let v = verdict(&app, "api", "failed").await;
    assert!(
        reasons(&v).contains(&"serving_wrong_commit".to_string()),
        "{v:#}"
    );
    let evidence = v["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["reason"] == "serving_wrong_commit")
        .cloned()
        .unwrap_or_default();
    assert!(
        evidence.to_string().contains(OLD),
        "the served commit is the evidence: {evidence:#}"
    );
    app.stop().await;
}
