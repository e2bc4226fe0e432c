//! The runtime scripts (crash loop, memory leak, latency regression, failing PRE_DEPLOY job) as
//! tables, and the routes that show them (health, monitoring, app logs, job invocations, cancel,
//! paged deployments, the fake Prometheus), driven in process without a socket.

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use chrono::{DateTime, TimeZone, Utc};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::runtime::sample_times;
use crate::state::SimDeployment;
use crate::{Script, Simulator};

const STEP: Duration = Duration::from_millis(1000);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn deployment(script: Script) -> SimDeployment {
    SimDeployment {
        id: "0badc0de-0000-4000-8000-000000000001".into(),
        script,
        created: t0(),
        commit: "c".into(),
        cause: "test".into(),
        cause_type: "GIT_PUSH".into(),
        canceled_at: None,
    }
}

/// `k.5` steps after creation (ACTIVE lands at 5).
fn after(k: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::milliseconds(k * 1000 + 500)
}

#[test]
fn runtime_scripts_reach_their_phases() {
    for (script, phase) in [
        (Script::CrashLoop, "ACTIVE"),
        (Script::MemoryLeak, "ACTIVE"),
        (Script::LatencyRegression, "ACTIVE"),
        (Script::FailingPreDeployJob, "ERROR"),
    ] {
        let d = deployment(script);
        assert_eq!(d.phase_at(after(4), STEP).0, "DEPLOYING", "{script:?}");
        assert_eq!(d.phase_at(after(5), STEP).0, phase, "{script:?}");
    }
}

#[test]
fn each_runtime_script_shows_its_readings() {
    // (script, steps after ACTIVE, restarts, memory of instance 0, ready)
    let rows = [
        (Script::Success, 3, 0.0, 35.0, true),
        (Script::LatencyRegression, 9, 0.0, 35.0, true),
        (Script::CrashLoop, 0, 0.0, 18.0, false),
        (Script::CrashLoop, 4, 4.0, 18.0, false),
        (Script::MemoryLeak, 0, 0.0, 45.0, true),
        (Script::MemoryLeak, 5, 0.0, 95.0, true),
        (Script::MemoryLeak, 6, 1.0, 45.0, true),
        (Script::MemoryLeak, 13, 2.0, 55.0, true),
    ];
    for (script, k, restarts, memory, ready) in rows {
        let d = deployment(script);
        let r = d.readings_at(after(5 + k), STEP);
        assert_eq!(r.len(), 2, "{script:?}");
        assert_eq!(
            (r[0].restarts, r[0].memory_percent, r[0].ready),
            (restarts, memory, ready),
            "{script:?} +{k}"
        );
        assert_eq!(r[1].restarts, restarts, "every instance restarts alike");
    }
    assert!(
        deployment(Script::CrashLoop)
            .readings_at(after(3), STEP)
            .is_empty()
    );
}

#[test]
fn restarted_logs_say_why() {
    let crash = deployment(Script::CrashLoop).restarted_log(after(7), STEP);
    assert!(
        crash.contains("panic: runtime error") && crash.contains("back-off restarting"),
        "{crash}"
    );
    let leak = deployment(Script::MemoryLeak).restarted_log(after(12), STEP);
    assert!(
        leak.contains("OOMKilled") && leak.contains("exit code 137"),
        "{leak}"
    );
    assert_eq!(
        deployment(Script::Success).restarted_log(after(12), STEP),
        ""
    );
}

#[test]
fn the_pre_deploy_job_fails_the_deployment_at_its_step() {
    let d = deployment(Script::FailingPreDeployJob);
    let sim = Simulator::new(STEP);
    sim.add_app("api", "1111111");
    let app = crate::state::lock(&sim.state).apps[0].clone();
    let v = d.to_json(&app, after(6), STEP, false);
    assert_eq!(v["phase"], "ERROR");
    assert_eq!(v["spec"]["jobs"][0]["kind"], "PRE_DEPLOY");
    let comp = &v["progress"]["steps"][1]["steps"][1];
    assert_eq!(comp["status"], "ERROR", "{comp}");
    assert_eq!(comp["steps"][0]["component_name"], "migrate");
    assert_eq!(comp["reason"]["code"], "PreDeployJobFailed");
    assert!(d.log_text("DEPLOY").contains("relation \"match_records\""));
}

#[test]
fn sample_times_are_aligned_and_bounded() {
    let s = sample_times(t0(), t0() + chrono::Duration::seconds(10), STEP);
    assert_eq!(s.len(), 11);
    assert_eq!(s[0], t0());
    let s = sample_times(
        t0() + chrono::Duration::milliseconds(300),
        t0() + chrono::Duration::hours(5),
        STEP,
    );
    assert!(s.len() <= 500 && s.len() > 400, "{}", s.len());
    assert!(s[0] > t0());
    assert!(sample_times(after(2), after(1), STEP).is_empty());
}

async fn call(sim: &Simulator, method: &str, path: &str) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", "Bearer t")
        .body(Body::empty())
        .expect("request");
    let resp = match sim.router().oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned())),
    )
}

/// A simulator whose app `api` runs `script`, already ACTIVE for a while (1 ms steps).
fn running(script: Script) -> (Simulator, String, String) {
    let sim = Simulator::new(Duration::from_millis(1));
    let id = sim.add_app("api", "1111111111");
    let dep = sim.deploy("api", "2222222222", script).expect("deploy");
    std::thread::sleep(Duration::from_millis(40));
    (sim, id, dep)
}

#[tokio::test]
async fn a_crash_loop_shows_in_health_metrics_and_logs() {
    let (sim, id, _) = running(Script::CrashLoop);
    let (s, h) = call(&sim, "GET", &format!("/v2/apps/{id}/health")).await;
    assert_eq!(s, 200);
    let c = &h["components"][0];
    assert_eq!(
        (
            c["state"].as_str(),
            c["replicas_ready"].as_i64(),
            c["replicas_desired"].as_i64()
        ),
        (Some("UNHEALTHY"), Some(0), Some(2)),
        "{h}"
    );

    let now = Utc::now().timestamp();
    let (s, m) = call(&sim, "GET", &format!("/v2/monitoring/metrics/apps/restart_count?app_id={id}&app_component=web&start={}&end={}", now - 1, now + 1)).await;
    assert_eq!(
        (s, m["status"].as_str(), m["data"]["resultType"].as_str()),
        (200, Some("success"), Some("matrix")),
        "{m}"
    );
    let result = m["data"]["result"].as_array().expect("result");
    // One series per instance: the old release's two, then the crash-looping release's two.
    assert_eq!(result.len(), 4, "series: {}", result.len());
    let rising: Vec<&Value> = result
        .iter()
        .filter(|s| {
            let v: Vec<f64> = s["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p[1].as_str()?.parse().ok())
                .collect();
            v.len() >= 2 && v.last() > v.first()
        })
        .collect();
    assert_eq!(rising.len(), 2, "both new instances restart over and over");
    assert_eq!(rising[0]["metric"]["app_component"], "web");

    let (_, other) = call(&sim, "GET", &format!("/v2/monitoring/metrics/apps/memory_percentage?app_id={id}&app_component=worker&start={}&end={}", now - 1, now)).await;
    assert_eq!(other["data"]["result"], Value::Array(vec![]));
    assert_eq!(
        call(
            &sim,
            "GET",
            &format!("/v2/monitoring/metrics/apps/disk?app_id={id}")
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(&sim, "GET", "/v2/monitoring/metrics/apps/cpu_percentage")
            .await
            .0,
        400
    );

    let (s, logs) = call(
        &sim,
        "GET",
        &format!("/v2/apps/{id}/logs?type=RUN_RESTARTED&follow=false"),
    )
    .await;
    assert_eq!(s, 200);
    let url = logs["historic_urls"][0].as_str().expect("url").to_string();
    let path = url.trim_start_matches(&sim.base_url()).to_string();
    let (_, text) = call(&sim, "GET", &path).await;
    assert!(text.as_str().is_some_and(|t| t.contains("panic")), "{text}");
    assert!(sim.requests_to("/v2/monitoring/metrics/apps/restart_count") >= 1);

    let (_, inst) = call(&sim, "GET", &format!("/v2/apps/{id}/instances")).await;
    assert_eq!(
        inst["instances"].as_array().map(Vec::len),
        Some(2),
        "{inst}"
    );
}

#[tokio::test]
async fn a_memory_leak_climbs_towards_its_limit() {
    let sim = Simulator::new(Duration::from_millis(20));
    let id = sim.add_app("api", "1111111111");
    sim.deploy("api", "2222222222", Script::MemoryLeak);
    tokio::time::sleep(Duration::from_millis(260)).await;
    let now = Utc::now();
    let (_, m) = call(
        &sim,
        "GET",
        &format!(
            "/v2/monitoring/metrics/apps/memory_percentage?app_id={id}&start={}&end={}",
            (now - chrono::Duration::seconds(2)).timestamp(),
            now.timestamp() + 1
        ),
    )
    .await;
    let series = m["data"]["result"].as_array().cloned().unwrap_or_default();
    let leak = series
        .iter()
        .find(|s| {
            s["values"].as_array().is_some_and(|v| {
                v.iter().any(|p| {
                    p[1].as_str()
                        .and_then(|x| x.parse::<f64>().ok())
                        .is_some_and(|x| x >= 90.0)
                })
            })
        })
        .is_some();
    assert!(leak, "memory reaches 90%+ before the OOM kill: {m}");
    let (_, restarts) = call(
        &sim,
        "GET",
        &format!(
            "/v2/monitoring/metrics/apps/restart_count?app_id={id}&start={}&end={}",
            (now - chrono::Duration::seconds(2)).timestamp(),
            now.timestamp() + 1
        ),
    )
    .await;
    assert!(
        restarts["data"]["result"].to_string().contains("\"1\""),
        "{restarts}"
    );
}

#[tokio::test]
async fn a_failing_pre_deploy_job_has_a_failed_invocation() {
    let (sim, id, dep) = running(Script::FailingPreDeployJob);
    let (s, v) = call(
        &sim,
        "GET",
        &format!("/v2/apps/{id}/job-invocations?deployment_id={dep}"),
    )
    .await;
    assert_eq!(s, 200);
    let inv = &v["job_invocations"][0];
    assert_eq!(
        (
            inv["job_name"].as_str(),
            inv["phase"].as_str(),
            inv["deployment_id"].as_str()
        ),
        (Some("migrate"), Some("FAILED"), Some(dep.as_str())),
        "{v}"
    );
    let inv_id = inv["id"].as_str().expect("id").to_string();
    let (s, one) = call(
        &sim,
        "GET",
        &format!("/v2/apps/{id}/job-invocations/{inv_id}"),
    )
    .await;
    assert_eq!(
        (s, one["job_invocation"]["phase"].as_str()),
        (200, Some("FAILED"))
    );
    let (_, none) = call(
        &sim,
        "GET",
        &format!("/v2/apps/{id}/job-invocations?deployment_id=other"),
    )
    .await;
    assert_eq!(none["job_invocations"], Value::Array(vec![]));
    assert_eq!(
        call(&sim, "GET", &format!("/v2/apps/{id}/job-invocations/nope"))
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn only_a_running_deployment_can_be_canceled() {
    let sim = Simulator::new(Duration::from_secs(60));
    let id = sim.add_app("api", "1111111111");
    let dep = sim
        .deploy("api", "2222222222", Script::Stuck)
        .expect("deploy");
    let (s, v) = call(
        &sim,
        "POST",
        &format!("/v2/apps/{id}/deployments/{dep}/cancel"),
    )
    .await;
    assert_eq!(
        (s, v["deployment"]["phase"].as_str()),
        (200, Some("CANCELED")),
        "{v}"
    );
    let (s, v) = call(
        &sim,
        "POST",
        &format!("/v2/apps/{id}/deployments/{dep}/cancel"),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        call(
            &sim,
            "POST",
            &format!("/v2/apps/{id}/deployments/nope/cancel")
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn deployments_page_and_filter_by_type() {
    let sim = Simulator::new(Duration::from_millis(1));
    let id = sim.add_app("api", "1111111111");
    for i in 0..24 {
        sim.deploy("api", &format!("{i:010}"), Script::Success);
    }
    sim.deploy_with_cause("api", "3333333333", Script::Success, "MANUAL");
    let (_, p1) = call(&sim, "GET", &format!("/v2/apps/{id}/deployments")).await;
    assert_eq!(p1["deployments"].as_array().map(Vec::len), Some(20));
    assert_eq!(p1["meta"]["total"], 26);
    let next = p1["links"]["pages"]["next"]
        .as_str()
        .expect("next")
        .to_string();
    let (_, p2) = call(&sim, "GET", next.trim_start_matches(&sim.base_url())).await;
    assert_eq!(p2["deployments"].as_array().map(Vec::len), Some(6));
    assert!(p2["links"]["pages"]["next"].is_null());

    let (_, manual) = call(
        &sim,
        "GET",
        &format!("/v2/apps/{id}/deployments?deployment_types=MANUAL"),
    )
    .await;
    assert_eq!(manual["meta"]["total"], 1, "{manual}");
    let (_, pushes) = call(&sim, "GET", &format!("/v2/apps/{id}/deployments?per_page=10&deployment_types=DEPLOY_ON_PUSH&deployment_types=MANUAL_ROLLBACK")).await;
    assert_eq!(pushes["meta"]["total"], 25);
    let next = pushes["links"]["pages"]["next"].as_str().expect("next");
    assert!(
        next.contains("page=2")
            && next.contains("deployment_types=DEPLOY_ON_PUSH&deployment_types=MANUAL_ROLLBACK"),
        "{next}"
    );
}

#[tokio::test]
async fn the_fake_prometheus_answers_scripted_series() {
    let (sim, _, _) = running(Script::LatencyRegression);
    let switch = DateTime::from_timestamp(Utc::now().timestamp() - 60, 0).unwrap_or_default();
    sim.script_query("p95", 0.1, 0.3, Some(switch));
    let start = (switch - chrono::Duration::seconds(60)).timestamp();
    let (s, v) = call(
        &sim,
        "GET",
        &format!(
            "/api/v1/query_range?query=p95&start={start}&end={}&step=15s",
            start + 120
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let values: Vec<f64> = v["data"]["result"][0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .filter_map(|p| p[1].as_str()?.parse().ok())
        .collect();
    assert_eq!(values.len(), 9);
    assert!(
        values[..4].iter().all(|x| (0.094..=0.106).contains(x)),
        "{values:?}"
    );
    assert!(
        values[4..].iter().all(|x| (0.28..=0.32).contains(x)),
        "{values:?}"
    );

    let (_, i) = call(&sim, "GET", "/api/v1/query?query=p95").await;
    assert_eq!(i["data"]["resultType"], "vector");
    let (_, none) = call(
        &sim,
        "GET",
        &format!("/api/v1/query_range?query=other&start={start}&end={start}&step=1"),
    )
    .await;
    assert_eq!(none["data"]["result"], Value::Array(vec![]));
    for bad in [
        "/api/v1/query_range?query=p95&start=x&end=1&step=1",
        "/api/v1/query_range?start=1&end=2&step=1",
        "/api/v1/query_range?query=p95&start=0&end=100000&step=1",
    ] {
        let (s, e) = call(&sim, "GET", bad).await;
        assert_eq!(
            (s, e["errorType"].as_str()),
            (400, Some("bad_data")),
            "{bad}: {e}"
        );
    }

    // Tied to the release: baseline until the LatencyRegression deployment went ACTIVE.
    sim.script_query_on_regression("err", "api", 0.01, 0.2);
    assert!(
        sim.query_value("err", Utc::now() - chrono::Duration::hours(1))
            .is_some_and(|v| v < 0.02)
    );
    assert!(sim.query_value("err", Utc::now()).is_some_and(|v| v > 0.15));
    assert_eq!(sim.query_value("unknown", Utc::now()), None);
}
