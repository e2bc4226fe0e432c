//! One trace per ended deployment: a root span following the OpenTelemetry CI/CD conventions and a
//! child span per progress step with its real start and end times. The trace id is derived from
//! the deployment id, so tasks link to it before the trace is even exported.

use std::time::SystemTime;

use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};

use super::types::{Deployment, Step};
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

/// Emits the trace of an ended deployment. Does nothing useful when no exporter is configured
/// (the global no-op tracer), which keeps callers simple.
pub fn emit_deployment_trace(app: &str, d: &Deployment, environment: &str) {
    let Some(start) = d.created_at else { return };
    let end = d.ended_at().unwrap_or(start).max(start);
    let t = tracer();
    let mut attrs = vec![
        KeyValue::new("cicd.pipeline.name", app.to_string()),
        KeyValue::new("cicd.pipeline.run.id", d.id.clone()),
        KeyValue::new("cicd.pipeline.result", result(d)),
        KeyValue::new("deployment.id", d.id.clone()),
        KeyValue::new("deployment.status", d.phase.as_str()),
        KeyValue::new("deployment.environment.name", environment.to_string()),
    ];
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
    let failed = d.failed_step();
    let cx = Context::new().with_span(root);
    if let Some(p) = &d.progress {
        for s in &p.steps {
            emit_step(&t, &cx, s, start, end);
        }
    }
    let span = cx.span();
    if d.phase.outcome() == Some(crate::domain::Outcome::Failure) {
        let msg = failed
            .map(|f| format!("{} failed: {}", f.step, f.reason_code.unwrap_or_default()))
            .unwrap_or_else(|| "deployment failed".into());
        span.set_status(Status::error(msg));
    } else if d.phase.outcome() == Some(crate::domain::Outcome::Success) {
        span.set_status(Status::Ok);
    }
    span.end_with_timestamp(st(end));
}

fn emit_step(
    t: &opentelemetry::global::BoxedTracer,
    parent: &Context,
    s: &Step,
    fallback_start: chrono::DateTime<chrono::Utc>,
    fallback_end: chrono::DateTime<chrono::Utc>,
) {
    // Steps that never started carry zero times; they have nothing to show.
    let Some(start) = s.started_at else { return };
    let end = s.ended_at.unwrap_or(fallback_end).max(start);
    let _ = fallback_start;
    let mut attrs = vec![
        KeyValue::new("cicd.pipeline.task.name", s.name.clone()),
        KeyValue::new(
            "deploywatch.step.status",
            s.status.clone().unwrap_or_default(),
        ),
    ];
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
        span.set_status(Status::error(reason));
    }
    let cx = parent.with_span(span);
    for child in &s.steps {
        emit_step(t, &cx, child, start, end);
    }
    cx.span().end_with_timestamp(st(end));
}
