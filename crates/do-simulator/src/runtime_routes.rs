//! The App Platform routes of a running app: component health, the monitoring matrices
//! (`restart_count`, `cpu_percentage`, `memory_percentage`), instances, the app's aggregate logs
//! (`RUN_RESTARTED`), job invocations, and cancelling a deployment.

use std::collections::{BTreeMap, HashMap};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::Simulator;
use crate::answers::{not_found, ok_json};
use crate::runtime::{REPLICAS, sample_times};
use crate::state::{SimDeployment, lock};

pub(crate) fn routes() -> Router<Simulator> {
    Router::new()
        .route("/v2/apps/{app_id}/health", get(health))
        .route("/v2/apps/{app_id}/instances", get(instances))
        .route("/v2/monitoring/metrics/apps/{metric}", get(metric))
        .route("/v2/apps/{app_id}/logs", get(app_logs))
        .route("/sim/applogs/{app_id}/{kind}", get(app_log_file))
        .route("/v2/apps/{app_id}/job-invocations", get(job_invocations))
        .route(
            "/v2/apps/{app_id}/job-invocations/{inv_id}",
            get(job_invocation),
        )
        .route(
            "/v2/apps/{app_id}/deployments/{dep_id}/cancel",
            post(cancel),
        )
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"id": "bad_request", "message": message})),
    )
        .into_response()
}

async fn health(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
) -> Response {
    if let Err(r) = sim.gate(&headers, "/v2/apps/{id}/health").await {
        return r;
    }
    let s = lock(&sim.state);
    let now = Utc::now();
    let Some(a) = s.apps.iter().find(|a| a.id == app_id) else {
        return not_found("app");
    };
    let readings = a
        .active(now, s.step)
        .map(|d| d.readings_at(now, s.step))
        .unwrap_or_default();
    let n = readings.len().max(1) as f64;
    let ready = readings.iter().filter(|r| r.ready).count();
    let state = match (readings.is_empty(), ready == REPLICAS) {
        (true, _) => "UNKNOWN",
        (false, true) => "HEALTHY",
        (false, false) => "UNHEALTHY",
    };
    // The spec example's shape: `components` at the top.
    ok_json(json!({"components": [{
        "name": "web",
        "state": state,
        "cpu_usage_percent": readings.iter().map(|r| r.cpu_percent).sum::<f64>() / n,
        "memory_usage_percent": readings.iter().map(|r| r.memory_percent).sum::<f64>() / n,
        "replicas_desired": REPLICAS,
        "replicas_ready": ready,
    }]}))
}

async fn instances(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
) -> Response {
    if let Err(r) = sim.gate(&headers, "/v2/apps/{id}/instances").await {
        return r;
    }
    let s = lock(&sim.state);
    let Some(a) = s.apps.iter().find(|a| a.id == app_id) else {
        return not_found("app");
    };
    let list: Vec<Value> = a
        .active(Utc::now(), s.step)
        .map(|d| {
            (0..REPLICAS)
                .map(|i| {
                    json!({"component_name": "web", "instance_name": d.instance_name(i),
                        "instance_alias": format!("web-{i}"), "component_type": "SERVICE"})
                })
                .collect()
        })
        .unwrap_or_default();
    ok_json(json!({"instances": list}))
}

/// Unix seconds as sent (`1634052360`) or with a fraction.
fn parse_secs(v: Option<&String>) -> Option<DateTime<Utc>> {
    let secs: f64 = v?.trim().parse().ok().filter(|s: &f64| s.is_finite())?;
    DateTime::from_timestamp_millis((secs * 1000.0).round() as i64)
}

fn wire_time(t: DateTime<Utc>) -> Value {
    let ms = t.timestamp_millis();
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

async fn metric(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(metric): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = sim
        .gate(&headers, &format!("/v2/monitoring/metrics/apps/{metric}"))
        .await
    {
        return r;
    }
    if !matches!(
        metric.as_str(),
        "restart_count" | "cpu_percentage" | "memory_percentage"
    ) {
        return not_found("metric");
    }
    let Some(app_id) = q.get("app_id") else {
        return bad_request("app_id is required");
    };
    let now = Utc::now();
    let end = parse_secs(q.get("end")).unwrap_or(now).min(now);
    let Some(start) = parse_secs(q.get("start")).or(Some(end - chrono::Duration::minutes(30)))
    else {
        return bad_request("start is not a Unix time");
    };
    let s = lock(&sim.state);
    let Some(a) = s.apps.iter().find(|a| &a.id == app_id) else {
        return not_found("app");
    };
    let wants_web = q.get("app_component").is_none_or(|c| c == "web");
    let mut series: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    if wants_web {
        for t in sample_times(start, end, s.step) {
            let Some(d) = a.serving_at(t, s.step) else {
                continue;
            };
            for r in d.readings_at(t, s.step) {
                let v = match metric.as_str() {
                    "restart_count" => r.restarts,
                    "cpu_percentage" => r.cpu_percent,
                    _ => r.memory_percent,
                };
                series
                    .entry(r.instance)
                    .or_default()
                    .push(json!([wire_time(t), format!("{v}")]));
            }
        }
    }
    let result: Vec<Value> = series
        .into_iter()
        .map(|(instance, values)| {
            json!({"metric": {"app_component": "web", "app_component_instance": instance,
                "app_uuid": a.id}, "values": values})
        })
        .collect();
    ok_json(json!({"status": "success", "data": {"resultType": "matrix", "result": result}}))
}

async fn app_logs(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = sim.gate(&headers, "/v2/apps/{id}/logs").await {
        return r;
    }
    let kind = q
        .get("type")
        .cloned()
        .unwrap_or_else(|| "RUN".into())
        .to_ascii_uppercase();
    let s = lock(&sim.state);
    if !s.apps.iter().any(|a| a.id == app_id) {
        return not_found("app");
    }
    let url = format!("{}/sim/applogs/{app_id}/{kind}", s.base_url);
    ok_json(json!({"live_url": url, "historic_urls": [url]}))
}

async fn app_log_file(
    State(sim): State<Simulator>,
    Path((app_id, kind)): Path<(String, String)>,
) -> Response {
    let s = lock(&sim.state);
    let now = Utc::now();
    let Some(a) = s.apps.iter().find(|a| a.id == app_id) else {
        return not_found("log");
    };
    let text = match (a.active(now, s.step), kind.as_str()) {
        (Some(d), "RUN_RESTARTED") => d.restarted_log(now, s.step),
        (Some(d), _) => format!("[web] serving commit {}\n", d.commit),
        (None, _) => String::new(),
    };
    (StatusCode::OK, text).into_response()
}

/// A deployment's PRE_DEPLOY job run, if its script has one.
fn invocation(d: &SimDeployment, now: DateTime<Utc>, step: std::time::Duration) -> Option<Value> {
    if !d.script.has_pre_deploy_job() {
        return None;
    }
    let step_ms = step.as_millis().max(1) as i64;
    let at = |k: i64| d.created + chrono::Duration::milliseconds(k * step_ms);
    let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let zero = "0001-01-01T00:00:00Z".to_string();
    let canceled = d.canceled_at.filter(|c| *c <= now && *c < at(5));
    let (phase, started, completed) = match canceled {
        Some(c) => ("CANCELED", (c > at(4)).then(|| ts(at(4))), Some(ts(c))),
        None if now < at(4) => ("PENDING", None, None),
        None if now < at(5) => ("RUNNING", Some(ts(at(4))), None),
        None => ("FAILED", Some(ts(at(4))), Some(ts(at(5)))),
    };
    Some(json!({
        "id": format!("{}-migrate", d.id),
        "job_name": "migrate",
        "deployment_id": d.id,
        "phase": phase,
        "created_at": ts(at(4).min(now).max(d.created)),
        "started_at": started.unwrap_or_else(|| zero.clone()),
        "completed_at": completed.unwrap_or(zero),
        "trigger": {"type": "UNKNOWN"},
    }))
}

async fn job_invocations(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = sim.gate(&headers, "/v2/apps/{id}/job-invocations").await {
        return r;
    }
    let s = lock(&sim.state);
    let now = Utc::now();
    let Some(a) = s.apps.iter().find(|a| a.id == app_id) else {
        return not_found("app");
    };
    let list: Vec<Value> = a
        .deployments
        .iter()
        .filter(|d| q.get("deployment_id").is_none_or(|id| &d.id == id))
        .filter_map(|d| invocation(d, now, s.step))
        .collect();
    let total = list.len();
    ok_json(json!({"job_invocations": list, "links": {"pages": {}}, "meta": {"total": total}}))
}

async fn job_invocation(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path((app_id, inv_id)): Path<(String, String)>,
) -> Response {
    if let Err(r) = sim
        .gate(&headers, "/v2/apps/{id}/job-invocations/{id}")
        .await
    {
        return r;
    }
    let s = lock(&sim.state);
    let now = Utc::now();
    let Some(a) = s.apps.iter().find(|a| a.id == app_id) else {
        return not_found("app");
    };
    match a
        .deployments
        .iter()
        .filter_map(|d| invocation(d, now, s.step))
        .find(|i| i["id"] == inv_id.as_str())
    {
        Some(i) => ok_json(json!({"job_invocation": i})),
        None => not_found("job invocation"),
    }
}

async fn cancel(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path((app_id, dep_id)): Path<(String, String)>,
) -> Response {
    if let Err(r) = sim
        .gate(&headers, "/v2/apps/{id}/deployments/{id}/cancel")
        .await
    {
        return r;
    }
    let mut s = lock(&sim.state);
    let now = Utc::now();
    let step = s.step;
    let Some(a) = s.apps.iter_mut().find(|a| a.id == app_id) else {
        return not_found("app");
    };
    let Some(d) = a.deployments.iter_mut().find(|d| d.id == dep_id) else {
        return not_found("deployment");
    };
    let (phase, _) = d.phase_at(now, step);
    if matches!(phase, "ACTIVE" | "ERROR" | "CANCELED" | "SUPERSEDED") {
        return bad_request(&format!(
            "deployment is {}; only a pending or running deployment can be canceled",
            phase.to_ascii_lowercase()
        ));
    }
    d.canceled_at = Some(now);
    let d = d.clone();
    let app = a.clone();
    let active_id = app.active(now, step).map(|x| x.id.clone());
    ok_json(json!({"deployment": d.to_json(&app, now, step, Some(&d.id) != active_id.as_ref())}))
}
