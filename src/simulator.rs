//! A DigitalOcean App Platform simulator, built from the public OpenAPI spec's paths and example
//! payloads: the one fake in deploywatch's tests, and the data source of `deploywatch demo`.
//!
//! Deployments follow scripted lifecycles whose phase is computed from elapsed time, so a test can
//! predict exactly what the poller must see. Faults (429 with `retry-after`, 5xx streaks, hangs,
//! malformed, truncated or HTML bodies) are queued and consumed one request at a time. Every API
//! request is counted so tests and benchmarks can check the request budget.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// How a simulated deployment unfolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Success,
    BuildFailure,
    /// Builds, then fails its health check while deploying.
    HealthCheckFailure,
    /// Canceled while building.
    Cancel,
    /// Stays in DEPLOYING.
    Stuck,
}

/// A fault the next API request receives instead of a normal answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    RateLimited { retry_after_secs: u64 },
    ServerError,
    Hang(Duration),
    Malformed,
    Truncated,
    HtmlError,
}

#[derive(Debug, Clone)]
struct SimDeployment {
    id: String,
    script: Script,
    created: DateTime<Utc>,
    commit: String,
    cause: String,
    cause_type: String,
    canceled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct SimApp {
    id: String,
    name: String,
    region: String,
    branch: String,
    repo: String,
    /// Newest first.
    deployments: Vec<SimDeployment>,
    pinned: Option<String>,
    /// The deployment that was ACTIVE before a rollback, for revert.
    before_rollback: Option<String>,
}

struct SimState {
    apps: Vec<SimApp>,
    step: Duration,
    faults: VecDeque<Fault>,
    requests: u64,
    requests_by_path: HashMap<String, u64>,
    base_url: String,
    /// Commit served by each app's health endpoint when it differs from the active one.
    health_override: HashMap<String, (u16, Option<String>)>,
    next_id: u64,
    /// A page of `GET /v2/apps` that answers 500 until cleared.
    failing_list_page: Option<usize>,
    /// When set, only this bearer token is accepted (else any non-empty one).
    valid_token: Option<String>,
}

/// A handle to the simulator's state; cheap to clone.
#[derive(Clone)]
pub struct Simulator {
    state: Arc<Mutex<SimState>>,
}

fn lock(m: &Mutex<SimState>) -> std::sync::MutexGuard<'_, SimState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepStatus {
    Pending,
    Running,
    Success,
    Error,
}

impl StepStatus {
    fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "PENDING",
            StepStatus::Running => "RUNNING",
            StepStatus::Success => "SUCCESS",
            StepStatus::Error => "ERROR",
        }
    }
}

impl SimDeployment {
    /// Build runs over [1, 3) steps, deploy over [3, 5); the outcome lands at the end of its step.
    fn phase_at(
        &self,
        now: DateTime<Utc>,
        step: Duration,
    ) -> (&'static str, Option<DateTime<Utc>>) {
        let step_ms = step.as_millis().max(1) as i64;
        let at = |k: i64| self.created + chrono::Duration::milliseconds(k * step_ms);
        let elapsed = (now - self.created).num_milliseconds();
        let k = elapsed / step_ms;
        if let Some(c) = self.canceled_at.filter(|c| *c <= now) {
            return ("CANCELED", Some(c));
        }
        match self.script {
            Script::Cancel if k >= 2 => ("CANCELED", Some(at(2))),
            Script::BuildFailure if k >= 3 => ("ERROR", Some(at(3))),
            Script::HealthCheckFailure if k >= 5 => ("ERROR", Some(at(5))),
            Script::Success if k >= 5 => ("ACTIVE", Some(at(5))),
            _ if k < 1 => ("PENDING_BUILD", None),
            _ if k < 3 => ("BUILDING", None),
            Script::Stuck => ("DEPLOYING", None),
            _ => ("DEPLOYING", None),
        }
    }

    fn to_json(&self, app: &SimApp, now: DateTime<Utc>, step: Duration, superseded: bool) -> Value {
        let (mut phase, ended) = self.phase_at(now, step);
        if superseded && phase == "ACTIVE" {
            phase = "SUPERSEDED";
        }
        let step_ms = step.as_millis().max(1) as i64;
        let at = |k: i64| self.created + chrono::Duration::milliseconds(k * step_ms);
        let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let ended_at = ended.unwrap_or(now);
        // Status of a sub-interval [from, to) in steps, given the terminal outcome.
        let status =
            |from: i64, to: i64, fails: bool| -> (StepStatus, Option<String>, Option<String>) {
                let start = at(from);
                let end = at(to);
                if ended.is_some_and(|e| e <= start) || (now < start) {
                    return (StepStatus::Pending, None, None);
                }
                if fails && ended.is_some_and(|e| e <= end) {
                    return (StepStatus::Error, Some(ts(start)), ended.map(ts));
                }
                if now >= end && !(self.script == Script::Stuck && to > 3) {
                    return (StepStatus::Success, Some(ts(start)), Some(ts(end)));
                }
                (StepStatus::Running, Some(ts(start)), None)
            };
        let build_fails =
            matches!(self.script, Script::BuildFailure) || (self.script == Script::Cancel);
        let deploy_fails = self.script == Script::HealthCheckFailure;
        let (b_init, bi_s, bi_e) = status(1, 2, false);
        let (b_comp, bc_s, bc_e) = status(2, 3, build_fails);
        let (build, b_s, b_e) = status(1, 3, build_fails);
        let (d_init, di_s, di_e) = status(3, 4, false);
        let (d_comp, dc_s, dc_e) = status(4, 5, deploy_fails);
        let (deploy, d_s, d_e) = status(3, 5, deploy_fails);
        let reason = |st: StepStatus, code: &str, msg: &str| {
            if st == StepStatus::Error && self.script != Script::Cancel {
                json!({"code": code, "message": msg})
            } else {
                Value::Null
            }
        };
        let step_json = |name: &str,
                         st: StepStatus,
                         s: Option<String>,
                         e: Option<String>,
                         children: Value,
                         reason: Value| {
            let mut v = json!({"name": name, "status": st.as_str(), "steps": children,
                "started_at": s.unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                "ended_at": e.unwrap_or_else(|| "0001-01-01T00:00:00Z".into())});
            if !reason.is_null() {
                v["reason"] = reason;
            }
            v
        };
        let steps = json!([
            step_json(
                "build",
                build,
                b_s,
                b_e,
                json!([
                    step_json("initialize", b_init, bi_s, bi_e, json!([]), Value::Null),
                    step_json(
                        "components",
                        b_comp,
                        bc_s.clone(),
                        bc_e.clone(),
                        json!([
                            {"name": "web", "status": b_comp.as_str(), "component_name": "web", "message_base": "Building service",
                             "reason": reason(b_comp, "BuildJobFailed", "build job exited with code 1")}
                        ]),
                        reason(b_comp, "BuildJobFailed", "build job exited with code 1")
                    ),
                ]),
                reason(build, "BuildJobFailed", "build job exited with code 1")
            ),
            step_json(
                "deploy",
                deploy,
                d_s,
                d_e,
                json!([
                    step_json("initialize", d_init, di_s, di_e, json!([]), Value::Null),
                    step_json(
                        "components",
                        d_comp,
                        dc_s.clone(),
                        dc_e.clone(),
                        json!([
                            {"name": "web", "status": d_comp.as_str(), "component_name": "web", "steps": [
                                {"name": "deploy", "status": if d_comp == StepStatus::Pending { "PENDING" } else { "SUCCESS" }, "component_name": "web", "message_base": "Deploying service"},
                                {"name": "wait", "status": d_comp.as_str(), "component_name": "web", "message_base": "Waiting for service",
                                 "reason": reason(d_comp, "DeployHealthChecksFailed", "readiness probe failed: GET /health/ready returned 503")}
                            ]}
                        ]),
                        reason(
                            d_comp,
                            "DeployHealthChecksFailed",
                            "readiness probe failed: GET /health/ready returned 503"
                        )
                    ),
                ]),
                reason(
                    deploy,
                    "DeployHealthChecksFailed",
                    "readiness probe failed: GET /health/ready returned 503"
                )
            ),
        ]);
        let count = |want: StepStatus| {
            [b_init, b_comp, d_init, d_comp]
                .iter()
                .filter(|s| **s == want)
                .count()
        };
        json!({
            "id": self.id,
            "spec": app.spec_json(),
            "services": [{"name": "web", "source_commit_hash": self.commit}],
            "phase_last_updated_at": ended.map(ts).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "created_at": ts(self.created),
            "updated_at": ts(ended_at.max(self.created)),
            "cause": self.cause,
            "cause_details": {"type": self.cause_type},
            "progress": {
                "pending_steps": count(StepStatus::Pending),
                "running_steps": count(StepStatus::Running),
                "success_steps": count(StepStatus::Success),
                "error_steps": count(StepStatus::Error),
                "total_steps": 4,
                "steps": steps,
            },
            "phase": phase,
            "tier_slug": "basic",
        })
    }

    fn log_text(&self, kind: &str) -> String {
        let mut lines = vec![
            format!("[build] commit {}", self.commit),
            "[build] detecting buildpacks...".to_string(),
            "[build] installing dependencies".to_string(),
        ];
        match (self.script, kind) {
            (Script::BuildFailure, "BUILD") => {
                lines.push("npm ERR! code ERESOLVE".into());
                lines.push(
                    "npm ERR! ERESOLVE could not resolve dependency: peer react@\"^17\"".into(),
                );
                lines.push("error: build job exited with code 1".into());
            }
            (Script::HealthCheckFailure, "DEPLOY") => {
                lines.push("[web] listening on :8080".into());
                lines.push("[web] GET /health/ready 503 (database: relation \"match_records\" does not exist)".into());
                lines.push("ERROR failed health checks after 3 attempts".into());
            }
            _ => lines.push("[build] build complete".into()),
        }
        lines.join("\n") + "\n"
    }
}

impl SimApp {
    fn spec_json(&self) -> Value {
        json!({
            "name": self.name,
            "region": self.region,
            "services": [{
                "name": "web",
                "github": {"repo": self.repo, "branch": self.branch, "deploy_on_push": true},
                "http_port": 8080,
                "health_check": {"http_path": "/health/ready", "failure_threshold": 3, "success_threshold": 1},
                "liveness_health_check": {"http_path": "/health/live"},
                "routes": [{"path": "/"}],
            }],
        })
    }

    /// The deployment serving traffic: the pinned one, else the newest that went ACTIVE.
    fn active(&self, now: DateTime<Utc>, step: Duration) -> Option<&SimDeployment> {
        if let Some(p) = &self.pinned
            && let Some(d) = self.deployments.iter().find(|d| &d.id == p)
            && d.phase_at(now, step).0 == "ACTIVE"
        {
            return Some(d);
        }
        self.deployments
            .iter()
            .find(|d| d.phase_at(now, step).0 == "ACTIVE")
    }

    fn to_json(&self, now: DateTime<Utc>, step: Duration, base_url: &str) -> Value {
        let active = self.active(now, step);
        let in_progress = self.deployments.iter().find(|d| {
            matches!(
                d.phase_at(now, step).0,
                "PENDING_BUILD" | "BUILDING" | "PENDING_DEPLOY" | "DEPLOYING"
            )
        });
        let mut v = json!({
            "id": self.id,
            "owner_uuid": "ff36cbc6fd350fe12577f5123133bb5ba01a2419",
            "spec": self.spec_json(),
            "default_ingress": format!("{base_url}/sim/apps/{}", self.name),
            "live_url": format!("{base_url}/sim/apps/{}", self.name),
            "live_url_base": format!("{base_url}/sim/apps/{}", self.name),
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": now.to_rfc3339(),
            "region": {"slug": self.region, "label": "Simulated", "flag": "", "continent": "Europe", "data_centers": [format!("{}1", self.region)]},
            "tier_slug": "basic",
        });
        if let Some(a) = active {
            v["active_deployment"] = a.to_json(self, now, step, false);
        }
        if let Some(p) = in_progress {
            v["in_progress_deployment"] = p.to_json(self, now, step, false);
        }
        if let Some(pin) = self
            .pinned
            .as_ref()
            .and_then(|p| self.deployments.iter().find(|d| &d.id == p))
        {
            v["pinned_deployment"] = pin.to_json(self, now, step, false);
        }
        if let Some(newest) = self.deployments.first() {
            v["last_deployment_created_at"] = json!(newest.created.to_rfc3339());
        }
        v
    }
}

impl Simulator {
    /// A simulator whose deployments advance one lifecycle step every `step`.
    pub fn new(step: Duration) -> Simulator {
        Simulator {
            state: Arc::new(Mutex::new(SimState {
                apps: Vec::new(),
                step,
                faults: VecDeque::new(),
                requests: 0,
                requests_by_path: HashMap::new(),
                base_url: String::new(),
                health_override: HashMap::new(),
                next_id: 1,
                failing_list_page: None,
                valid_token: None,
            })),
        }
    }

    fn next_uuid(s: &mut SimState) -> String {
        s.next_id += 1;
        // Deterministic ids keep test output stable and look like the API's UUIDs.
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            s.next_id * 7919,
            s.next_id % 65536,
            s.next_id % 4096,
            (s.next_id * 31) % 4096,
            s.next_id * 104729
        )
    }

    /// Adds an app with one ACTIVE deployment of `commit`, ended long enough ago to be settled.
    pub fn add_app(&self, name: &str, commit: &str) -> String {
        let mut s = lock(&self.state);
        let id = Self::next_uuid(&mut s);
        let dep = SimDeployment {
            id: Self::next_uuid(&mut s),
            script: Script::Success,
            created: Utc::now() - chrono::Duration::hours(1),
            commit: commit.to_string(),
            cause: format!(
                "commit {} pushed to github/acme/{name}",
                crate::domain::prefix(commit, 7)
            ),
            cause_type: "GIT_PUSH".into(),
            canceled_at: None,
        };
        s.apps.push(SimApp {
            id: id.clone(),
            name: name.to_string(),
            region: "ams".into(),
            branch: "main".into(),
            repo: format!("acme/{name}"),
            deployments: vec![dep],
            pinned: None,
            before_rollback: None,
        });
        id
    }

    /// Starts a new deployment of `commit` following `script`; returns its id.
    pub fn deploy(&self, app: &str, commit: &str, script: Script) -> Option<String> {
        self.deploy_with_cause(app, commit, script, "GIT_PUSH")
    }

    pub fn deploy_with_cause(
        &self,
        app: &str,
        commit: &str,
        script: Script,
        cause_type: &str,
    ) -> Option<String> {
        let mut s = lock(&self.state);
        let id = Self::next_uuid(&mut s);
        let a = s.apps.iter_mut().find(|a| a.name == app || a.id == app)?;
        let cause = match cause_type {
            "GIT_PUSH" => format!(
                "commit {} pushed to github/{}",
                crate::domain::prefix(commit, 7),
                a.repo
            ),
            other => other.to_ascii_lowercase().replace('_', " "),
        };
        a.deployments.insert(
            0,
            SimDeployment {
                id: id.clone(),
                script,
                created: Utc::now(),
                commit: commit.to_string(),
                cause,
                cause_type: cause_type.to_string(),
                canceled_at: None,
            },
        );
        Some(id)
    }

    pub fn cancel(&self, app: &str, deployment_id: &str) {
        let mut s = lock(&self.state);
        if let Some(a) = s.apps.iter_mut().find(|a| a.name == app || a.id == app)
            && let Some(d) = a.deployments.iter_mut().find(|d| d.id == deployment_id)
        {
            d.canceled_at = Some(Utc::now());
        }
    }

    pub fn app_id(&self, name: &str) -> Option<String> {
        lock(&self.state)
            .apps
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.id.clone())
    }

    pub fn is_pinned(&self, app: &str) -> bool {
        lock(&self.state)
            .apps
            .iter()
            .any(|a| (a.name == app || a.id == app) && a.pinned.is_some())
    }

    pub fn inject(&self, fault: Fault) {
        lock(&self.state).faults.push_back(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    pub fn requests(&self) -> u64 {
        lock(&self.state).requests
    }

    pub fn requests_to(&self, path_prefix: &str) -> u64 {
        lock(&self.state)
            .requests_by_path
            .iter()
            .filter(|(p, _)| p.starts_with(path_prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// Makes an app's health endpoint answer `status` and report `commit` (or the active one).
    pub fn set_health(&self, app: &str, status: u16, commit: Option<&str>) {
        lock(&self.state)
            .health_override
            .insert(app.to_string(), (status, commit.map(str::to_string)));
    }

    /// Accepts only `token` from now on (`None`: any non-empty token).
    pub fn require_token(&self, token: Option<&str>) {
        lock(&self.state).valid_token = token.map(str::to_string);
    }

    /// Makes page `page` (1-based) of the app list answer 500 until called with `None`.
    pub fn fail_list_page(&self, page: Option<usize>) {
        lock(&self.state).failing_list_page = page;
    }

    pub fn set_step(&self, step: Duration) {
        lock(&self.state).step = step;
    }

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
            .fallback(|| async { not_found("route") })
            .layer(axum::middleware::map_response(ratelimit_headers))
            .with_state(self.clone())
    }

    /// Serves on `addr` (port 0 for any); returns the bound address.
    pub async fn serve(
        &self,
        addr: SocketAddr,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        lock(&self.state).base_url = format!("http://{local}");
        let router = self.router();
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok((local, handle))
    }

    pub fn base_url(&self) -> String {
        lock(&self.state).base_url.clone()
    }

    /// Counts the request, checks the token, and applies a queued fault if there is one.
    async fn gate(&self, headers: &HeaderMap, path: &str) -> Result<(), Response> {
        let (fault, valid) = {
            let mut s = lock(&self.state);
            s.requests += 1;
            *s.requests_by_path.entry(path.to_string()).or_default() += 1;
            (s.faults.pop_front(), s.valid_token.clone())
        };
        let authed = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| !t.is_empty() && valid.as_deref().is_none_or(|v| v == t));
        if !authed {
            return Err((
                StatusCode::UNAUTHORIZED,
                Json(json!({"id": "unauthorized", "message": "Unable to authenticate you."})),
            )
                .into_response());
        }
        let remaining = [
            ("ratelimit-limit", "5000".to_string()),
            ("ratelimit-remaining", "4999".to_string()),
        ];
        match fault {
            None => Ok(()),
            Some(Fault::RateLimited { retry_after_secs }) => Err((
                StatusCode::TOO_MANY_REQUESTS,
                [
                    ("retry-after", retry_after_secs.to_string()),
                    ("ratelimit-limit", "5000".to_string()),
                    ("ratelimit-remaining", "0".to_string()),
                ],
                Json(json!({"id": "too_many_requests", "message": "API rate limit exceeded."})),
            )
                .into_response()),
            Some(Fault::ServerError) => Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                remaining,
                Json(json!({"id": "server_error", "message": "Server was unable to give you a response."})),
            )
                .into_response()),
            Some(Fault::Hang(d)) => {
                tokio::time::sleep(d).await;
                Err((StatusCode::GATEWAY_TIMEOUT, "timeout").into_response())
            }
            Some(Fault::Malformed) => Err((StatusCode::OK, [("content-type", "application/json")], "{\"apps\": [{\"id\": 42, \"spec\": ").into_response()),
            Some(Fault::Truncated) => Err((StatusCode::OK, [("content-type", "application/json")], "{\"apps\": [").into_response()),
            Some(Fault::HtmlError) => Err((
                StatusCode::BAD_GATEWAY,
                [("content-type", "text/html")],
                "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
            )
                .into_response()),
        }
    }
}

/// Like the API, every answer (401, 404 and 429 included) carries the rate-limit headers.
async fn ratelimit_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let reset = (Utc::now().timestamp() + 60).to_string();
    for (k, v) in [
        ("ratelimit-limit", "5000".to_string()),
        ("ratelimit-remaining", "4999".to_string()),
        ("ratelimit-reset", reset),
    ] {
        if !h.contains_key(k)
            && let Ok(v) = axum::http::HeaderValue::from_str(&v)
        {
            h.insert(k, v);
        }
    }
    r
}

fn ok_json(v: Value) -> Response {
    (
        StatusCode::OK,
        [("ratelimit-limit", "5000"), ("ratelimit-remaining", "4999")],
        Json(v),
    )
        .into_response()
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"id": "not_found", "message": format!("{what} not found")})),
    )
        .into_response()
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
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = sim.gate(&headers, "/v2/apps/{id}/deployments").await {
        return r;
    }
    let per_page: usize = q
        .get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .clamp(1, 200);
    let s = lock(&sim.state);
    let now = Utc::now();
    let Some(a) = s.apps.iter().find(|a| a.id == app_id) else {
        return not_found("app");
    };
    let active_id = a.active(now, s.step).map(|d| d.id.clone());
    let deps: Vec<Value> = a
        .deployments
        .iter()
        .take(per_page)
        .map(|d| d.to_json(a, now, s.step, Some(&d.id) != active_id.as_ref()))
        .collect();
    ok_json(
        json!({"deployments": deps, "links": {"pages": {}}, "meta": {"total": a.deployments.len()}}),
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
