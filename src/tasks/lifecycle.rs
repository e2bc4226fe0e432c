//! Deployment lifecycle events into tasks: an announcement per started, succeeded, failed or stuck
//! deployment and an e2e-test task after a success. Pure.

use serde_json::json;

use super::{Kind, NewTask};
use crate::domain::{LifecycleEvent, LifecycleKind};

/// What a lifecycle event produces. Pure.
pub fn tasks_for_event(e: &LifecycleEvent, dashboard: Option<&str>) -> Vec<NewTask> {
    let d = &e.deployment;
    let short = d
        .commit
        .as_deref()
        .map(|c| crate::domain::prefix(c, 7))
        .unwrap_or("unknown");
    let verb = match e.kind {
        LifecycleKind::Started => "started",
        LifecycleKind::Succeeded => "succeeded",
        LifecycleKind::Failed => "failed",
        LifecycleKind::Canceled => "was canceled",
        LifecycleKind::Stuck => "is stuck",
    };
    let is_rollback = d
        .cause
        .as_deref()
        .is_some_and(|c| c.to_ascii_lowercase().contains("rollback"));
    let title = if is_rollback && e.kind == LifecycleKind::Succeeded {
        format!("ANNOUNCE: {} rolled back to commit {short}", e.app)
    } else {
        format!("ANNOUNCE: Deployment of {} ({short}) {verb}", e.app)
    };
    let context = json!({
        "event": e.kind.as_str(),
        "app": e.app,
        "deployment": d,
        "commit": d.commit,
        "cause": d.cause,
        "duration_seconds": e.duration_seconds,
        "failure": e.failure,
        "trace_id": d.trace_id,
        "links": {"dashboard": dashboard.map(|u| format!("{u}?var-app={}", e.app))},
    });
    let priority = match e.kind {
        LifecycleKind::Failed | LifecycleKind::Stuck => 2,
        _ => 4,
    };
    let mut out = vec![NewTask {
        kind: Kind::Announce,
        title,
        priority,
        dedup_key: format!("announce:deployment:{}:{}", d.id, e.kind.as_str()),
        app: Some(e.app.clone()),
        context: context.clone(),
    }];
    if e.kind == LifecycleKind::Succeeded {
        out.push(NewTask {
            kind: Kind::E2eTest,
            title: format!("E2E: verify {} at {short}", e.app),
            priority: 3,
            dedup_key: format!("e2e:{}", d.id),
            app: Some(e.app.clone()),
            context,
        });
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DeploymentView;
    use crate::domain::Phase;

    fn event(kind: LifecycleKind, cause: &str) -> LifecycleEvent {
        LifecycleEvent {
            kind,
            app: "api".into(),
            deployment: DeploymentView {
                id: "d1".into(),
                phase: Phase::Active,
                cause: Some(cause.into()),
                commit: Some("9a4df0b8e161".into()),
                created_at: None,
                ended_at: None,
                trace_id: "t".into(),
                steps: vec![],
            },
            failure: None,
            duration_seconds: Some(42.0),
        }
    }

    #[test]
    fn events_become_announcements_and_e2e_tasks() {
        let ok = tasks_for_event(&event(LifecycleKind::Succeeded, "commit pushed"), None);
        assert_eq!(ok.len(), 2);
        assert_eq!(
            ok[0].title,
            "ANNOUNCE: Deployment of api (9a4df0b) succeeded"
        );
        assert_eq!(ok[1].kind, Kind::E2eTest);
        let failed = tasks_for_event(&event(LifecycleKind::Failed, "commit pushed"), None);
        assert_eq!(failed.len(), 1);
        assert_eq!(
            failed[0].title,
            "ANNOUNCE: Deployment of api (9a4df0b) failed"
        );
        let rb = tasks_for_event(
            &event(LifecycleKind::Succeeded, "rollback to deployment x"),
            None,
        );
        assert_eq!(rb[0].title, "ANNOUNCE: api rolled back to commit 9a4df0b");
        assert_ne!(ok[0].dedup_key, failed[0].dedup_key);
    }
}
