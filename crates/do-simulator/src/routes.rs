//! The HTTP routes: the App Platform API paths deploywatch reads and writes (apps, deployments,
//! logs, rollback), plus the simulated apps' own health endpoints and log files under `/sim/`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{Value, json};

use crate::Simulator;
use crate::answers::{not_found, ok_json};
use crate::faults::ratelimit_headers;
use crate::state::Script;
use crate::state::{SimDeployment, lock};

impl Simulator {
    /// The simulator as an axum router, for serving on a listener of the caller's choosing.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v2/apps", get(list_apps))
            .route("/v2/apps/{app_id}", get(get_app))
            .route("/v2/apps/{app_id}/deployments", get(list_deployments))
            .route(
                "/v2/apps/{app_id}/deployments/{dep_id}",
                get(get_deployment),
            )
            .route("/v2/apps/{app_id}/deployments/{dep_id}/logs", get(get_logs))
            .route(
                "/v2/apps/{app_id}/rollback/validate",
                post(validate_rollback),
            )
            .route("/v2/apps/{app_id}/rollback", post(rollback))
            .route("/v2/apps/{app_id}/rollback/commit", post(commit_rollback))
            .route("/v2/apps/{app_id}/rollback/revert", post(revert_rollback))
            .route("/sim/logs/{dep_id}/{kind}", get(log_file))
            .route("/sim/apps/{name}/health/{which}", get(app_health))
            .merge(crate::runtime_routes::routes())
            .merge(crate::prometheus::routes())
            .fallback(|| async { not_found("route") })
            .layer(axum::middleware::map_response(ratelimit_headers))
            .with_state(self.clone())
    }
}

async fn list_apps(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = sim.gate(&headers, "/v2/apps").await {
        return r;
    }
    let per_page: usize = q
        .get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .clamp(1, 200);
    let page: usize = q
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let s = lock(&sim.state);
    if s.failing_list_page == Some(page) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"id": "server_error", "message": "Server was unable to give you a response."})),
        )
            .into_response();
    }
    let now = Utc::now();
    let total = s.apps.len();
    let apps: Vec<Value> = s
        .apps
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|a| a.to_json(now, s.step, &s.base_url))
        .collect();
    let mut pages = json!({});
    if page * per_page < total {
        pages["next"] = json!(format!(
            "{}/v2/apps?page={}&per_page={per_page}",
            s.base_url,
            page + 1
        ));
    }
    ok_json(json!({"apps": apps, "links": {"pages": pages}, "meta": {"total": total}}))
}

async fn get_app(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
) -> Response {
    if let Err(r) = sim.gate(&headers, "/v2/apps/{id}").await {
        return r;
    }
    let s = lock(&sim.state);
    match s.apps.iter().find(|a| a.id == app_id) {
        Some(a) => ok_json(json!({"app": a.to_json(Utc::now(), s.step, &s.base_url)})),
        None => not_found("app"),
    }
}

async fn list_deployments(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = sim.gate(&headers, "/v2/apps/{id}/deployments").await {
        return r;
    }
    let param = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let per_page: usize = param("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .clamp(1, 200);
    let page: usize = param("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let types: Vec<&str> = pairs
        .iter()
        .filter(|(n, _)| n == "deployment_types")
        .map(|(_, v)| v.as_str())
        .collect();
    let s = lock(&sim.state);
    let now = Utc::now();
    let Some(a) = s.apps.iter().find(|a| a.id == app_id) else {
        return not_found("app");
    };
    let active_id = a.active(now, s.step).map(|d| d.id.clone());
    // The simulator's own GIT_PUSH cause is godo's DEPLOY_ON_PUSH.
    let wanted = |d: &&SimDeployment| {
        types.is_empty()
            || types.iter().any(|t| {
                *t == d.cause_type || (*t == "DEPLOY_ON_PUSH" && d.cause_type == "GIT_PUSH")
            })
    };
    let matching: Vec<&SimDeployment> = a.deployments.iter().filter(wanted).collect();
    let deps: Vec<Value> = matching
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|d| d.to_json(a, now, s.step, Some(&d.id) != active_id.as_ref()))
        .collect();
    let mut pages = json!({});
    if page * per_page < matching.len() {
        let filter: String = types
            .iter()
            .map(|t| format!("&deployment_types={t}"))
            .collect();
        pages["next"] = json!(format!(
            "{}/v2/apps/{app_id}/deployments?page={}&per_page={per_page}{filter}",
            s.base_url,
            page + 1
        ));
    }
    ok_json(
        json!({"deployments": deps, "links": {"pages": pages}, "meta": {"total": matching.len()}}),
    )
}

async fn get_deployment(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path((app_id, dep_id)): Path<(String, String)>,
) -> Response {
    if let Err(r) = sim.gate(&headers, "/v2/apps/{id}/deployments/{id}").await {
        return r;
    }
    let s = lock(&sim.state);
    let now = Utc::now();
    let Some(a) = s.apps.iter().find(|a| a.id == app_id) else {
        return not_found("app");
    };
    let active_id = a.active(now, s.step).map(|d| d.id.clone());
    match a.deployments.iter().find(|d| d.id == dep_id) {
        Some(d) => ok_json(
            json!({"deployment": d.to_json(a, now, s.step, Some(&d.id) != active_id.as_ref())}),
        ),
        None => not_found("deployment"),
    }
}

async fn get_logs(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path((app_id, dep_id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = sim
        .gate(&headers, "/v2/apps/{id}/deployments/{id}/logs")
        .await
    {
        return r;
    }
    let kind = q
        .get("type")
        .cloned()
        .unwrap_or_else(|| "BUILD".into())
        .to_ascii_uppercase();
    let s = lock(&sim.state);
    let exists = s
        .apps
        .iter()
        .any(|a| a.id == app_id && a.deployments.iter().any(|d| d.id == dep_id));
    if !exists {
        return not_found("deployment");
    }
    // Answer like the schema and godo (`live_url` + `historic_urls`); the client also accepts the
    // spec example's `url` + `historic_logs` (unit-tested against the fixture).
    ok_json(json!({
        "live_url": format!("{}/sim/logs/{dep_id}/{kind}", s.base_url),
        "historic_urls": [format!("{}/sim/logs/{dep_id}/{kind}", s.base_url)],
    }))
}

async fn log_file(
    State(sim): State<Simulator>,
    Path((dep_id, kind)): Path<(String, String)>,
) -> Response {
    let s = lock(&sim.state);
    for a in &s.apps {
        if let Some(d) = a.deployments.iter().find(|d| d.id == dep_id) {
            return (StatusCode::OK, d.log_text(&kind)).into_response();
        }
    }
    not_found("log")
}

#[derive(serde::Deserialize)]
struct RollbackBody {
    deployment_id: String,
    /// `true` rolls back without pinning the app (no commit or revert expected).
    #[serde(default)]
    skip_pin: bool,
}

fn parse_rollback_body(body: &[u8]) -> Result<RollbackBody, Box<Response>> {
    serde_json::from_slice(body).map_err(|_| {
        Box::new(
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"id": "bad_request", "message": "deployment_id is required"})),
            )
                .into_response(),
        )
    })
}

async fn validate_rollback(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = sim.gate(&headers, "/v2/apps/{id}/rollback/validate").await {
        return r;
    }
    let b = match parse_rollback_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let s = lock(&sim.state);
    let now = Utc::now();
    let Some(a) = s.apps.iter().find(|a| a.id == app_id) else {
        return not_found("app");
    };
    let Some(d) = a.deployments.iter().find(|d| d.id == b.deployment_id) else {
        return not_found("deployment");
    };
    let (phase, _) = d.phase_at(now, s.step);
    if phase != "ACTIVE" {
        return ok_json(
            json!({"valid": false, "error": {"code": "incompatible_result",
            "message": format!("deployment result \"{}\" is unsuitable for rollback", phase.to_ascii_lowercase())}}),
        );
    }
    ok_json(
        json!({"valid": true, "warnings": [{"code": "image_source_missing_digest", "components": ["web"],
        "message": "one or more components are missing an image digest and are not guaranteed rollback to the old version."}]}),
    )
}

async fn rollback(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = sim.gate(&headers, "/v2/apps/{id}/rollback").await {
        return r;
    }
    let b = match parse_rollback_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let mut s = lock(&sim.state);
    let now = Utc::now();
    let step = s.step;
    let new_id = Simulator::next_uuid(&mut s);
    let override_health = s.health_override.clone();
    let Some(a) = s.apps.iter_mut().find(|a| a.id == app_id) else {
        return not_found("app");
    };
    let Some(target) = a
        .deployments
        .iter()
        .find(|d| d.id == b.deployment_id)
        .cloned()
    else {
        return not_found("deployment");
    };
    let prev_active = a.active(now, step).map(|d| d.id.clone());
    // An app whose health endpoint is forced unhealthy fails the rollback's health check too.
    let script = match override_health.get(&a.name) {
        Some((status, _)) if *status >= 500 => Script::HealthCheckFailure,
        _ => Script::Success,
    };
    let dep = SimDeployment {
        id: new_id.clone(),
        script,
        created: now,
        commit: target.commit.clone(),
        cause: format!("rollback to deployment {}", target.id),
        // godo's DeploymentCauseDetailsType: a rollback is MANUAL_ROLLBACK or AUTO_ROLLBACK.
        cause_type: "MANUAL_ROLLBACK".into(),
        canceled_at: None,
    };
    a.deployments.insert(0, dep.clone());
    if !b.skip_pin {
        a.pinned = Some(new_id);
        a.before_rollback = prev_active;
    }
    let app = a.clone();
    ok_json(json!({"deployment": dep.to_json(&app, now, step, false)}))
}

async fn commit_rollback(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
) -> Response {
    if let Err(r) = sim.gate(&headers, "/v2/apps/{id}/rollback/commit").await {
        return r;
    }
    let mut s = lock(&sim.state);
    let Some(a) = s.apps.iter_mut().find(|a| a.id == app_id) else {
        return not_found("app");
    };
    if a.pinned.take().is_none() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"id": "bad_request", "message": "app is not pinned to a rollback"})),
        )
            .into_response();
    }
    a.before_rollback = None;
    // The API answers with no body although the spec says 200.
    StatusCode::OK.into_response()
}

async fn revert_rollback(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
) -> Response {
    if let Err(r) = sim.gate(&headers, "/v2/apps/{id}/rollback/revert").await {
        return r;
    }
    let mut s = lock(&sim.state);
    let now = Utc::now();
    let step = s.step;
    let new_id = Simulator::next_uuid(&mut s);
    let Some(a) = s.apps.iter_mut().find(|a| a.id == app_id) else {
        return not_found("app");
    };
    if a.pinned.is_none() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"id": "bad_request", "message": "app is not pinned to a rollback"})),
        )
            .into_response();
    }
    let commit = a
        .before_rollback
        .as_ref()
        .and_then(|id| a.deployments.iter().find(|d| &d.id == id))
        .map(|d| d.commit.clone())
        .unwrap_or_default();
    let dep = SimDeployment {
        id: new_id,
        script: Script::Success,
        created: now,
        commit,
        cause: "rollback reverted".into(),
        cause_type: "ROLLBACK_REVERT".into(),
        canceled_at: None,
    };
    a.deployments.insert(0, dep.clone());
    a.pinned = None;
    a.before_rollback = None;
    let app = a.clone();
    ok_json(json!({"deployment": dep.to_json(&app, now, step, false)}))
}

/// The simulated apps' own health endpoints (`/health/live`, `/health/ready`), reporting the
/// commit of the active deployment like a well-behaved app would.
async fn app_health(
    State(sim): State<Simulator>,
    Path((name, which)): Path<(String, String)>,
) -> Response {
    let s = lock(&sim.state);
    let now = Utc::now();
    let Some(a) = s.apps.iter().find(|a| a.name == name) else {
        return not_found("app");
    };
    let active_commit = a.active(now, s.step).map(|d| d.commit.clone());
    let (status, commit) = match s.health_override.get(&name) {
        Some((st, c)) => (*st, c.clone().or(active_commit)),
        None => (200, active_commit),
    };
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    (code, Json(json!({"status": if code.is_success() { "ok" } else { "failing" }, "check": which, "commit": commit}))).into_response()
}
