//! The deploy loop's routes: create a task (`POST /api/v1/tasks`) and report a deploy task's pull
//! request merged (`POST /api/v1/tasks/{id}/merged`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::access::ApiPath;
use super::error::{ApiError, json_body};
use super::fail_reasons::place_opts;
use crate::app::{App, AppState};
use crate::tasks::impact::Target;
use crate::tasks::{Kind, NewTask, Queue, Task};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    queue: String,
    title: String,
    kind: Option<String>,
    priority: Option<i64>,
    app: Option<String>,
    context: Option<Value>,
    /// Idempotency: with a key, a repeat returns the open task that has it (200) instead of a new one.
    dedup_key: Option<String>,
}

fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

fn printable(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control)
}

/// The default kind of each queue (execution holds fixes and rollbacks; a fix unless told).
fn default_kind(q: Queue) -> Kind {
    match q {
        Queue::Execution => Kind::Fix,
        Queue::Announce => Kind::Announce,
        Queue::E2eTest => Kind::E2eTest,
        Queue::Deploy => Kind::Deploy,
    }
}

/// Checks a create request and turns it into a task to place. Pure.
fn new_task(b: CreateBody) -> Result<NewTask, ApiError> {
    let queue = Queue::parse(&b.queue).ok_or_else(|| {
        invalid(
            "invalid_queue",
            format!(
                "queue: unknown queue {:?}; use execution, announce, e2e-test or deploy",
                b.queue
            ),
        )
    })?;
    let kind = match b.kind.as_deref() {
        None => default_kind(queue),
        Some(k) => Kind::parse(k).ok_or_else(|| {
            invalid(
                "invalid_kind",
                format!(
                    "kind: unknown kind {k:?}; use fix, rollback, announce, e2e-test or deploy"
                ),
            )
        })?,
    };
    // The rollback executor acts on rollback tasks of opted-in apps by itself; their target must
    // come from deploywatch's own view of the app, never from a request.
    if kind == Kind::Rollback {
        return Err(invalid(
            "invalid_kind",
            "kind: rollback tasks are made by deploywatch from alerts (their target comes from its own view of the app); create a fix task instead",
        ));
    }
    if kind.queue() != queue {
        return Err(invalid(
            "invalid_kind",
            format!(
                "kind: a {} task belongs in queue {}, not {}",
                kind.as_str(),
                kind.queue().as_str(),
                queue.as_str()
            ),
        ));
    }
    if !printable(&b.title, 500) {
        return Err(invalid(
            "invalid_title",
            "title: must be 1 to 500 printable characters, e.g. \"DEPLOY: PR #42 - search filters\"",
        ));
    }
    let priority = b.priority.unwrap_or(3);
    if !(1..=5).contains(&priority) {
        return Err(invalid(
            "invalid_priority",
            "priority: must be 1 (most urgent) to 5",
        ));
    }
    let context = match b.context {
        None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
        Some(v @ Value::Object(_)) => v,
        Some(_) => {
            return Err(invalid("invalid_context", "context: must be a JSON object"));
        }
    };
    let context_app = context.get("app").and_then(Value::as_str);
    let app = match (b.app, context_app) {
        (Some(a), Some(c)) if a != c => {
            return Err(invalid(
                "invalid_app",
                format!("app: {a:?} differs from context.app {c:?}; give one app"),
            ));
        }
        (Some(a), _) => Some(a),
        (None, c) => c.map(str::to_string),
    };
    if let Some(a) = &app
        && !printable(a, 200)
    {
        return Err(invalid(
            "invalid_app",
            "app: must be 1 to 200 printable characters",
        ));
    }
    if kind == Kind::Deploy {
        check_deploy_context(&context)?;
        if app.is_none() {
            return Err(invalid(
                "invalid_app",
                "app: a deploy task needs the app that deploys the commit (app or context.app), so deploywatch can follow it",
            ));
        }
    }
    let dedup_key = match b.dedup_key {
        Some(k) if printable(&k, 200) => k,
        Some(_) => {
            return Err(invalid(
                "invalid_dedup_key",
                "dedup_key: must be 1 to 200 printable characters",
            ));
        }
        None => format!("api:{}", uuid::Uuid::new_v4()),
    };
    Ok(NewTask {
        kind,
        title: b.title,
        priority,
        dedup_key,
        app,
        context,
    })
}

/// The deploy fields of a context, when present, must be what the deploy loop reads.
fn check_deploy_context(c: &Value) -> Result<(), ApiError> {
    let bad =
        |field: &str, what: &str| invalid("invalid_context", format!("context.{field}: {what}"));
    if let Some(t) = c.get("target").filter(|v| !v.is_null())
        && t.as_str().and_then(Target::parse).is_none()
    {
        return Err(bad("target", "must be \"staging\" or \"production\""));
    }
    if let Some(n) = c.get("pr_number").filter(|v| !v.is_null())
        && n.as_u64().is_none_or(|n| n == 0)
    {
        return Err(bad("pr_number", "must be a positive integer"));
    }
    for field in ["pr_url", "branch", "commit_build_task_id", "app"] {
        if let Some(v) = c.get(field).filter(|v| !v.is_null())
            && !v.as_str().is_some_and(|s| printable(s, 2000))
        {
            return Err(bad(field, "must be a non-empty string"));
        }
    }
    if let Some(v) = c.get("commit").filter(|v| !v.is_null())
        && !v.as_str().is_some_and(crate::tasks::deploy::valid_commit)
    {
        return Err(bad("commit", "must be a commit SHA (7 to 64 hex digits)"));
    }
    Ok(())
}

pub(super) async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b: CreateBody = json_body(&headers, &body?)?;
    let t = new_task(b)?;
    let notifiers = app.config.notifier_names();
    let opts = place_opts(&app, &notifiers);
    let report = app
        .store
        .create_tasks(std::slice::from_ref(&t), &opts)
        .await
        .map_err(ApiError::store)?;
    app.metrics.tasks_created(&report);
    let stored = app
        .store
        .task_by_dedup_key(&t.dedup_key)
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                "the task was stored but cannot be read back; report it",
            )
        })?;
    let status = if report.tasks_created > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(stored)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MergedBody {
    worker: String,
    commit: String,
}

/// The pipeline warning for a production deploy of `commit` to `app_name`, if a staging app
/// precedes it and did not go live with the commit.
async fn pipeline_warning(app: &App, task: &Task, app_name: &str, commit: &str) -> Option<String> {
    let production = task.context["target"]
        .as_str()
        .or(app.config.deploy.environment_of(app_name))
        .and_then(Target::parse)
        == Some(Target::Production);
    let staging = app.config.deploy.staging_for(app_name)?;
    if !production {
        return None;
    }
    let view = app.app_view(staging);
    let known = crate::workers::deploys::ancestry(app, staging, view.as_ref(), commit).await;
    crate::tasks::deploy::pipeline_warning(commit, staging, view.as_ref(), &|d: &str| {
        known.get(d).copied().flatten()
    })
}

pub(super) async fn merged(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b: MergedBody = json_body(&headers, &body?)?;
    super::tasks::worker_ok(&b.worker)?;
    if !crate::tasks::deploy::valid_commit(&b.commit) {
        return Err(invalid(
            "invalid_commit",
            "commit: must be the merged commit's SHA (7 to 64 hex digits)",
        ));
    }
    let task = app
        .store
        .get_task(&id)
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no task with id {id}"),
            )
        })?;
    if task.kind != Kind::Deploy {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_a_deploy_task",
            format!(
                "task {id} is a {} task; only deploy tasks are reported merged",
                task.kind.as_str()
            ),
        ));
    }
    let app_name = task
        .app
        .clone()
        .or_else(|| task.context["app"].as_str().map(str::to_string))
        .unwrap_or_default();
    let warning = pipeline_warning(&app, &task, &app_name, &b.commit).await;
    let context = crate::tasks::deploy::merged_context(
        &task.context,
        &b.commit,
        chrono::Utc::now(),
        warning.as_deref(),
    );
    let lease = app.config.deploy.timeout + crate::workers::deploys::LEASE_MARGIN;
    let t = app
        .store
        .mark_merged(&id, &b.worker, &context, lease)
        .await
        .map_err(super::tasks::update_error)?;
    Ok(Json(t).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> CreateBody {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("shape: {e}"))
    }

    #[test]
    fn create_requests_are_checked_field_by_field() {
        let ok = serde_json::json!({"queue": "deploy", "title": "DEPLOY: PR #42 - search", "app": "api",
            "context": {"pr_number": 42, "target": "production", "pr_url": "https://x/pr/42"}});
        let t = new_task(body(ok.clone())).unwrap_or_else(|e| panic!("valid: {}", e.message));
        assert_eq!(t.kind, Kind::Deploy);
        assert_eq!(t.priority, 3);
        assert!(t.dedup_key.starts_with("api:"));
        let cases = [
            (
                serde_json::json!({"queue": "nope"}),
                "invalid_queue",
                "queue",
            ),
            (serde_json::json!({"kind": "fix"}), "invalid_kind", "kind"),
            (
                serde_json::json!({"queue": "execution", "kind": "rollback"}),
                "invalid_kind",
                "kind",
            ),
            (serde_json::json!({"title": " "}), "invalid_title", "title"),
            (
                serde_json::json!({"priority": 0}),
                "invalid_priority",
                "priority",
            ),
            (
                serde_json::json!({"context": [1]}),
                "invalid_context",
                "context",
            ),
            (
                serde_json::json!({"context": {"target": "moon"}}),
                "invalid_context",
                "context.target",
            ),
            (
                serde_json::json!({"context": {"pr_number": -1}}),
                "invalid_context",
                "context.pr_number",
            ),
            (
                serde_json::json!({"context": {"app": "web"}}),
                "invalid_app",
                "app",
            ),
            (serde_json::json!({"app": null}), "invalid_app", "app"),
            (
                serde_json::json!({"dedup_key": ""}),
                "invalid_dedup_key",
                "dedup_key",
            ),
        ];
        for (patch, code, field) in cases {
            let mut b = ok.clone();
            if let (Some(o), Value::Object(p)) = (b.as_object_mut(), patch.clone()) {
                for (k, v) in p {
                    if k == "context" && v.is_object() && !v["app"].is_string() {
                        let mut c = ok["context"].clone();
                        if let (Some(co), Value::Object(vo)) = (c.as_object_mut(), v) {
                            co.extend(vo);
                        }
                        o.insert(k, c);
                    } else {
                        o.insert(k, v);
                    }
                }
            }
            match new_task(body(b)) {
                Ok(_) => panic!("{patch} was accepted"),
                Err(e) => {
                    assert_eq!(e.code, code, "{patch}: {}", e.message);
                    assert!(e.message.starts_with(field), "{patch}: {}", e.message);
                }
            }
        }
        let fix = new_task(body(
            serde_json::json!({"queue": "execution", "title": "FIX: thing"}),
        ))
        .unwrap_or_else(|e| panic!("a fix needs no app: {}", e.message));
        assert_eq!(fix.kind, Kind::Fix);
    }
}
