//! One trace per ended deployment: a root span following the OpenTelemetry CI/CD, VCS and
//! deployment semantic conventions, and a child span per progress step with its real start and end
//! times. The trace id is derived from the deployment id, so tasks link to it before the trace is
//! even exported.
//!
//! Conventions used: `cicd.pipeline.{name,run.id,result}`, `cicd.pipeline.task.{name,run.result}`,
//! `deployment.{id,status,environment.name}` (`status` is `succeeded` or `failed`, the
//! DigitalOcean phase goes to `digitalocean.deployment.phase`), `vcs.repository.url.full`,
//! `vcs.ref.head.{name,revision}`, and `error.type` on failed spans.

use std::time::SystemTime;

use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};

use super::types::{AppSpec, Deployment, Step};
use crate::telemetry::{deployment_trace_id, tracer, with_trace_id};

fn st(t: chrono::DateTime<chrono::Utc>) -> SystemTime {
    SystemTime::from(t)
}

fn result(d: &Deployment) -> &'static str {
    match d.phase.outcome() {
        Some(crate::domain::Outcome::Success) => "success",
        Some(crate::domain::Outcome::Failure) => "failure",
        Some(crate::domain::Outcome::Canceled) => "cancellation",
        None => "timeout",
    }
}

/// `deployment.status` allows `succeeded` and `failed` only; a canceled or unfinished deployment
/// did not succeed.
fn deployment_status(d: &Deployment) -> &'static str {
    match d.phase.outcome() {
        Some(crate::domain::Outcome::Success) => "succeeded",
        _ => "failed",
    }
}

/// `cicd.pipeline.task.run.result` for a step, from its App Platform status.
fn step_result(status: Option<&str>) -> Option<&'static str> {
    match status? {
        "SUCCESS" => Some("success"),
        "ERROR" => Some("failure"),
        "CANCELED" => Some("cancellation"),
        "SKIPPED" => Some("skip"),
        _ => None,
    }
}

/// What a deployment's trace says beyond the deployment itself: the environment, and where the
/// deployed code came from (the app spec's first git source).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Origin {
    pub environment: String,
    pub repository_url: Option<String>,
    pub branch: Option<String>,
}

impl Origin {
    pub fn new(environment: &str, spec: &AppSpec) -> Origin {
        Origin {
            environment: environment.to_string(),
            ..Origin::from_spec(spec)
        }
    }

    fn from_spec(spec: &AppSpec) -> Origin {
        for c in spec.components() {
            let hosted = [
                (&c.github, "https://github.com/"),
                (&c.gitlab, "https://gitlab.com/"),
            ];
            for (src, host) in hosted {
                if let Some(g) = src {
                    return Origin {
                        repository_url: g.repo.as_ref().map(|r| format!("{host}{r}")),
                        branch: g.branch.clone(),
                        ..Origin::default()
                    };
                }
            }
            if let Some(g) = &c.git {
                return Origin {
                    repository_url: g.repo_clone_url.clone(),
                    branch: g.branch.clone(),
                    ..Origin::default()
                };
            }
        }
        Origin::default()
    }
}

/// The root span's error description: the failed step and its reason, never an empty reason.
fn failure_message(d: &Deployment) -> (String, String) {
    match d.failed_step() {
        Some(f) => {
            let why = f
                .reason_message
                .clone()
                .filter(|m| !m.is_empty())
                .or(f.reason_code.clone())
                .unwrap_or_else(|| "no reason given by the API".into());
            let error_type = f
                .reason_code
                .unwrap_or_else(|| format!("{}_failed", f.top_step));
            (
                format!("{}/{} failed: {why}", f.top_step, f.step),
                error_type,
            )
        }
        None => ("deployment failed".into(), "deployment_failed".into()),
    }
}

/// Emits the trace of an ended deployment. Does nothing useful when no exporter is configured
/// (the global no-op tracer), which keeps callers simple.
pub fn emit_deployment_trace(app: &str, d: &Deployment, vcs: &Origin) {
    let Some(start) = d.created_at else { return };
    let end = d.ended_at().unwrap_or(start).max(start);
    let t = tracer();
    let mut attrs = vec![
        KeyValue::new("cicd.pipeline.name", app.to_string()),
        KeyValue::new("cicd.pipeline.run.id", d.id.clone()),
        KeyValue::new("cicd.pipeline.result", result(d)),
        KeyValue::new("deployment.id", d.id.clone()),
        KeyValue::new("deployment.status", deployment_status(d)),
        KeyValue::new("deployment.environment.name", vcs.environment.clone()),
        KeyValue::new("digitalocean.deployment.phase", d.phase.as_str()),
    ];
    if let Some(u) = &vcs.repository_url {
        attrs.push(KeyValue::new("vcs.repository.url.full", u.clone()));
    }
    if let Some(b) = &vcs.branch {
        attrs.push(KeyValue::new("vcs.ref.head.name", b.clone()));
    }
    let failure =
        (d.phase.outcome() == Some(crate::domain::Outcome::Failure)).then(|| failure_message(d));
    if let Some((_, error_type)) = &failure {
        attrs.push(KeyValue::new("error.type", error_type.clone()));
    }
    if let Some(c) = d.commit() {
        attrs.push(KeyValue::new("vcs.ref.head.revision", c.to_string()));
    }
    if let Some(c) = &d.cause {
        attrs.push(KeyValue::new("deploywatch.deployment.cause", c.clone()));
    }
    let root = with_trace_id(deployment_trace_id(&d.id), || {
        t.span_builder(format!("deploy {app}"))
            .with_kind(SpanKind::Internal)
            .with_start_time(st(start))
            .with_attributes(attrs)
            .start_with_context(&t, &Context::new())
    });
    let cx = Context::new().with_span(root);
    if let Some(p) = &d.progress {
        for s in &p.steps {
            emit_step(&t, &cx, s, start, end);
        }
    }
    let span = cx.span();
    if let Some((msg, _)) = failure {
        span.set_status(Status::error(msg));
    } else if d.phase.outcome() == Some(crate::domain::Outcome::Success) {
        span.set_status(Status::Ok);
    }
    span.end_with_timestamp(st(end));
}

/// The `verify` span of a deployment's post-deploy window, in the deployment's own trace: from
/// ACTIVE to the verdict, with the result and reasons; error status when it failed.
pub fn emit_verify_span(
    app: &str,
    deployment_id: &str,
    start: Time,
    end: Time,
    result: &str,
    reasons: &[String],
) {
    let t = tracer();
    let mut span = with_trace_id(deployment_trace_id(deployment_id), || {
        t.span_builder(format!("verify {app}"))
            .with_kind(SpanKind::Internal)
            .with_start_time(st(start))
            .with_attributes(vec![
                KeyValue::new("deployment.id", deployment_id.to_string()),
                KeyValue::new("cicd.pipeline.name", app.to_string()),
                KeyValue::new("deploywatch.verification.result", result.to_string()),
                KeyValue::new("deploywatch.verification.reasons", reasons.join(",")),
            ])
            .start_with_context(&t, &Context::new())
    });
    if result == "failed" {
        span.set_status(Status::error(format!(
            "verification failed: {}",
            reasons.join(", ")
        )));
    } else if result == "passed" {
        span.set_status(Status::Ok);
    }
    span.end_with_timestamp(st(end.max(start)));
}

type Time = chrono::DateTime<chrono::Utc>;

/// A step's span times and whether the API gave them. A step that finished but came without times
/// (the API's own example does this) still gets a span, zero-length at the end of its parent and
/// marked, so its failure reaches the trace. A step that never ran has nothing to show. Pure.
fn step_times(
    started: Option<Time>,
    ended: Option<Time>,
    finished: bool,
    parent_start: Time,
    parent_end: Time,
) -> Option<(Time, Time, bool)> {
    match started {
        Some(st) => Some((st, ended.unwrap_or(parent_end).max(st), true)),
        None if finished => {
            let at = parent_end.max(parent_start);
            Some((at, at, false))
        }
        None => None,
    }
}

fn emit_step(
    t: &opentelemetry::global::BoxedTracer,
    parent: &Context,
    s: &Step,
    fallback_start: chrono::DateTime<chrono::Utc>,
    fallback_end: chrono::DateTime<chrono::Utc>,
) {
    let result = step_result(s.status.as_deref());
    let Some((start, end, timed)) = step_times(
        s.started_at,
        s.ended_at,
        result.is_some(),
        fallback_start,
        fallback_end,
    ) else {
        return;
    };
    let mut attrs = vec![
        KeyValue::new("cicd.pipeline.task.name", s.name.clone()),
        KeyValue::new(
            "deploywatch.step.status",
            s.status.clone().unwrap_or_default(),
        ),
    ];
    if let Some(r) = result {
        attrs.push(KeyValue::new("cicd.pipeline.task.run.result", r));
    }
    if !timed {
        attrs.push(KeyValue::new("deploywatch.step.times_unknown", true));
    }
    if let Some(c) = &s.component_name {
        attrs.push(KeyValue::new("deploywatch.component", c.clone()));
    }
    let mut span = t
        .span_builder(s.name.clone())
        .with_start_time(st(start))
        .with_attributes(attrs)
        .start_with_context(t, parent);
    if s.status.as_deref() == Some("ERROR") {
        let reason = s
            .reason
            .as_ref()
            .map(|r| {
                format!(
                    "{}: {}",
                    r.code.clone().unwrap_or_default(),
                    r.message.clone().unwrap_or_default()
                )
            })
            .unwrap_or_else(|| "step failed".into());
        span.set_attribute(KeyValue::new(
            "error.type",
            s.reason
                .as_ref()
                .and_then(|r| r.code.clone())
                .unwrap_or_else(|| "step_failed".into()),
        ));
        span.set_status(Status::error(reason));
    }
    let cx = parent.with_span(span);
    for child in &s.steps {
        emit_step(t, &cx, child, start, end);
    }
    cx.span().end_with_timestamp(st(end));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Time {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&chrono::Utc)
    }

    #[test]
    fn finished_steps_without_times_still_get_a_span() {
        let (a, b, c) = (
            t("2026-11-28T10:00:00Z"),
            t("2026-11-28T10:01:00Z"),
            t("2026-11-28T10:02:00Z"),
        );
        let table = [
            (Some(a), Some(b), true, Some((a, b, true))),
            (Some(a), None, false, Some((a, c, true))),
            (None, None, true, Some((c, c, false))),
            (None, Some(b), true, Some((c, c, false))),
            (None, None, false, None),
        ];
        for (i, (started, ended, finished, want)) in table.into_iter().enumerate() {
            assert_eq!(step_times(started, ended, finished, a, c), want, "row {i}");
        }
    }

    #[test]
    fn step_results_and_deployment_status_follow_the_conventions() {
        assert_eq!(step_result(Some("SUCCESS")), Some("success"));
        assert_eq!(step_result(Some("ERROR")), Some("failure"));
        assert_eq!(step_result(Some("RUNNING")), None);
        assert_eq!(step_result(None), None);
        let mut d = Deployment::default();
        for (phase, want) in [
            (crate::domain::Phase::Active, "succeeded"),
            (crate::domain::Phase::Error, "failed"),
            (crate::domain::Phase::Canceled, "failed"),
        ] {
            d.phase = phase;
            assert_eq!(deployment_status(&d), want);
        }
    }
}
