//! The simulator's own tests: the scripted lifecycles as a table (pure), and the router answering
//! like the API (auth, faults consumed in order, counters, paging, the rollback flow), driven in
//! process without a socket.

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use chrono::{DateTime, TimeZone, Utc};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::state::SimDeployment;
use crate::{Fault, Script, Simulator, prefix};

const STEP: Duration = Duration::from_millis(1000);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn deployment(script: Script) -> SimDeployment {
    SimDeployment {
        id: "d".into(),
        script,
        created: t0(),
        commit: "c".into(),
        cause: "test".into(),
        cause_type: "GIT_PUSH".into(),
        canceled_at: None,
    }
}

/// `k.5` steps after creation, so no row sits on a boundary.
fn after(k: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::milliseconds(k * 1000 + 500)
}

#[test]
fn each_script_walks_its_phases_step_by_step() {
    use Script::*;
    let rows: [(Script, [&str; 7]); 5] = [
        (
            Success,
            [
                "PENDING_BUILD",
                "BUILDING",
                "BUILDING",
                "DEPLOYING",
                "DEPLOYING",
                "ACTIVE",
                "ACTIVE",
            ],
        ),
        (
            BuildFailure,
            [
                "PENDING_BUILD",
                "BUILDING",
                "BUILDING",
                "ERROR",
                "ERROR",
                "ERROR",
                "ERROR",
            ],
        ),
        (
            HealthCheckFailure,
            [
                "PENDING_BUILD",
                "BUILDING",
                "BUILDING",
                "DEPLOYING",
                "DEPLOYING",
                "ERROR",
                "ERROR",
            ],
        ),
        (
            Cancel,
            [
                "PENDING_BUILD",
                "BUILDING",
                "CANCELED",
                "CANCELED",
                "CANCELED",
                "CANCELED",
                "CANCELED",
            ],
        ),
        (
            Stuck,
            [
                "PENDING_BUILD",
                "BUILDING",
                "BUILDING",
                "DEPLOYING",
                "DEPLOYING",
                "DEPLOYING",
                "DEPLOYING",
            ],
        ),
    ];
    for (script, phases) in rows {
        let d = deployment(script);
        for (k, want) in phases.iter().enumerate() {
            let (phase, ended) = d.phase_at(after(k as i64), STEP);
            assert_eq!(phase, *want, "{script:?} after {k}.5 steps");
            let terminal = matches!(phase, "ACTIVE" | "ERROR" | "CANCELED");
            assert_eq!(ended.is_some(), terminal, "{script:?} after {k}.5 steps");
        }
    }
}

#[test]
fn outcomes_land_at_the_end_of_their_step() {
    let ms = |k: i64| Some(t0() + chrono::Duration::milliseconds(k * 1000));
    for (script, want) in [
        (Script::Success, ms(5)),
        (Script::BuildFailure, ms(3)),
        (Script::HealthCheckFailure, ms(5)),
        (Script::Cancel, ms(2)),
        (Script::Stuck, None),
    ] {
        assert_eq!(
            deployment(script).phase_at(after(9), STEP).1,
            want,
            "{script:?}"
        );
    }
}

#[test]
fn a_cancel_wins_over_the_script_once_it_has_happened() {
    let mut d = deployment(Script::Success);
    d.canceled_at = Some(after(1));
    assert_eq!(d.phase_at(after(0), STEP).0, "PENDING_BUILD");
    assert_eq!(d.phase_at(after(2), STEP), ("CANCELED", Some(after(1))));
    assert_eq!(d.phase_at(after(9), STEP).0, "CANCELED");
}

#[test]
fn failing_scripts_say_why_in_their_logs() {
    for (script, kind, needle) in [
        (Script::BuildFailure, "BUILD", "exited with code 1"),
        (Script::HealthCheckFailure, "DEPLOY", "failed health checks"),
        (Script::Success, "BUILD", "build complete"),
        (Script::BuildFailure, "DEPLOY", "build complete"),
    ] {
        let log = deployment(script).log_text(kind);
        assert!(log.contains(needle), "{script:?} {kind}: {log}");
        assert!(log.starts_with("[build] commit c\n"), "{log}");
    }
}

#[test]
fn prefixes_never_split_a_character() {
    for (s, n, want) in [
        ("9a4df0b8e1", 7, "9a4df0b"),
        ("abc", 7, "abc"),
        ("ééééééééé", 7, "ééééééé"),
        ("", 3, ""),
    ] {
        assert_eq!(prefix(s, n), want);
    }
}

#[test]
fn a_non_ascii_commit_is_deployed_without_panicking() {
    let sim = Simulator::new(STEP);
    sim.add_app("api", "ééééééééééé");
    assert!(sim.deploy("api", "ñññññññññ", Script::Success).is_some());
    assert!(sim.deploy("nosuch", "c", Script::Success).is_none());
}

async fn call(sim: &Simulator, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    call_req(sim, req.body(Body::empty()).expect("request")).await
}

async fn call_req(sim: &Simulator, req: Request<Body>) -> (u16, Value) {
    let resp = match sim.router().oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let status = resp.status().as_u16();
    assert!(
        resp.headers().contains_key("ratelimit-remaining"),
        "every answer carries the rate-limit headers"
    );
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

async fn post_json(sim: &Simulator, path: &str, body: &str) -> (u16, Value) {
    let req = Request::builder()
        .method("POST")
        .uri(path)
        .header("authorization", "Bearer t")
        .body(Body::from(body.to_string()))
        .expect("request");
    call_req(sim, req).await
}

#[tokio::test]
async fn requests_need_a_bearer_token_and_are_counted() {
    let sim = Simulator::new(STEP);
    sim.add_app("api", "1111111");
    assert_eq!(call(&sim, "GET", "/v2/apps", None).await.0, 401);
    assert_eq!(call(&sim, "GET", "/v2/apps", Some("")).await.0, 401);
    let (status, v) = call(&sim, "GET", "/v2/apps", Some("any")).await;
    assert_eq!(status, 200);
    assert_eq!(v["apps"][0]["spec"]["name"], "api");
    sim.require_token(Some("right"));
    assert_eq!(call(&sim, "GET", "/v2/apps", Some("any")).await.0, 401);
    assert_eq!(call(&sim, "GET", "/v2/apps", Some("right")).await.0, 200);
    // Rejected requests count too: the API bills them against the budget.
    assert_eq!(sim.requests(), 5);
    assert_eq!(sim.requests_to("/v2/apps"), 5);
    assert_eq!(sim.requests_to("/v2/apps/{id}"), 0);
}

#[tokio::test]
async fn queued_faults_are_consumed_one_request_at_a_time_in_order() {
    let sim = Simulator::new(STEP);
    sim.inject(Fault::RateLimited {
        retry_after_secs: 7,
    });
    sim.inject(Fault::ServerError);
    sim.inject(Fault::HtmlError);
    sim.inject(Fault::Truncated);
    let (s1, v1) = call(&sim, "GET", "/v2/apps", Some("t")).await;
    assert_eq!((s1, v1["id"].as_str()), (429, Some("too_many_requests")));
    assert_eq!(call(&sim, "GET", "/v2/apps", Some("t")).await.0, 500);
    let (s3, v3) = call(&sim, "GET", "/v2/apps", Some("t")).await;
    assert_eq!(s3, 502);
    assert!(v3.as_str().is_some_and(|s| s.contains("<html>")), "{v3}");
    let (s4, v4) = call(&sim, "GET", "/v2/apps", Some("t")).await;
    assert_eq!((s4, v4.as_str()), (200, Some("{\"apps\": [")));
    assert_eq!(call(&sim, "GET", "/v2/apps", Some("t")).await.0, 200);
    sim.inject(Fault::ServerError);
    sim.clear_faults();
    assert_eq!(call(&sim, "GET", "/v2/apps", Some("t")).await.0, 200);
}

#[tokio::test]
async fn the_app_list_pages_and_a_failing_page_fails_alone() {
    let sim = Simulator::new(STEP);
    for i in 0..5 {
        sim.add_app(&format!("app{i}"), "1111111");
    }
    let (_, p1) = call(&sim, "GET", "/v2/apps?per_page=2", Some("t")).await;
    assert_eq!(p1["apps"].as_array().map(Vec::len), Some(2));
    assert_eq!(p1["meta"]["total"], 5);
    assert!(
        p1["links"]["pages"]["next"]
            .as_str()
            .is_some_and(|n| n.ends_with("/v2/apps?page=2&per_page=2")),
        "{p1}"
    );
    let (_, p3) = call(&sim, "GET", "/v2/apps?per_page=2&page=3", Some("t")).await;
    assert_eq!(p3["apps"].as_array().map(Vec::len), Some(1));
    assert!(p3["links"]["pages"]["next"].is_null(), "{p3}");
    sim.fail_list_page(Some(2));
    assert_eq!(
        call(&sim, "GET", "/v2/apps?per_page=2&page=2", Some("t"))
            .await
            .0,
        500
    );
    assert_eq!(
        call(&sim, "GET", "/v2/apps?per_page=2&page=1", Some("t"))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn a_rollback_is_validated_pinned_then_committed_or_reverted() {
    let sim = Simulator::new(Duration::from_millis(1));
    let id = sim.add_app("api", "1111111111");
    let (_, deps) = call(
        &sim,
        "GET",
        &format!("/v2/apps/{id}/deployments"),
        Some("t"),
    )
    .await;
    let first = deps["deployments"][0]["id"]
        .as_str()
        .expect("deployment id")
        .to_string();
    assert_eq!(deps["deployments"][0]["phase"], "ACTIVE");
    let body = format!(r#"{{"deployment_id": "{first}"}}"#);

    let (s, v) = post_json(&sim, &format!("/v2/apps/{id}/rollback/validate"), &body).await;
    assert_eq!((s, &v["valid"]), (200, &Value::Bool(true)), "{v}");
    let (s, v) = post_json(&sim, &format!("/v2/apps/{id}/rollback"), "{}").await;
    assert_eq!(s, 400, "{v}");

    let (s, v) = post_json(&sim, &format!("/v2/apps/{id}/rollback"), &body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["deployment"]["cause_details"]["type"], "MANUAL_ROLLBACK");
    assert!(sim.is_pinned("api"));
    let (s, _) = post_json(&sim, &format!("/v2/apps/{id}/rollback/commit"), "").await;
    assert_eq!(s, 200);
    assert!(!sim.is_pinned("api"));
    let (s, v) = post_json(&sim, &format!("/v2/apps/{id}/rollback/commit"), "").await;
    assert_eq!(s, 400, "committing twice is refused: {v}");

    let (s, _) = post_json(&sim, &format!("/v2/apps/{id}/rollback"), &body).await;
    assert_eq!(s, 200);
    let (s, v) = post_json(&sim, &format!("/v2/apps/{id}/rollback/revert"), "").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["deployment"]["cause_details"]["type"], "ROLLBACK_REVERT");
    assert!(!sim.is_pinned("api"));

    // skip_pin rolls back without pinning.
    let skip = format!(r#"{{"deployment_id": "{first}", "skip_pin": true}}"#);
    let (s, _) = post_json(&sim, &format!("/v2/apps/{id}/rollback"), &skip).await;
    assert_eq!(s, 200);
    assert!(!sim.is_pinned("api"));
}

#[tokio::test]
async fn an_unfinished_deployment_cannot_be_rolled_back_to() {
    let sim = Simulator::new(Duration::from_secs(60));
    let id = sim.add_app("api", "1111111111");
    let dep = sim
        .deploy("api", "2222222222", Script::Success)
        .expect("deploy");
    let body = format!(r#"{{"deployment_id": "{dep}"}}"#);
    let (s, v) = post_json(&sim, &format!("/v2/apps/{id}/rollback/validate"), &body).await;
    assert_eq!(s, 200);
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"]["code"], "incompatible_result", "{v}");
}

#[tokio::test]
async fn app_health_reports_the_active_commit_unless_overridden() {
    let sim = Simulator::new(STEP);
    sim.add_app("api", "1111111111");
    let (s, v) = call(&sim, "GET", "/sim/apps/api/health/ready", None).await;
    assert_eq!((s, v["commit"].as_str()), (200, Some("1111111111")));
    sim.set_health("api", 503, Some("bad"));
    let (s, v) = call(&sim, "GET", "/sim/apps/api/health/ready", None).await;
    assert_eq!(
        (s, v["commit"].as_str(), v["status"].as_str()),
        (503, Some("bad"), Some("failing"))
    );
}
