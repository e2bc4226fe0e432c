//! The fixer's background work: lifecycle events into announcements and e2e-test tasks, the lease
//! sweeper and task gauges, the notifier outbox, and guarded automatic rollbacks.

pub mod outbox;
pub mod rollback;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{broadcast, watch};

use crate::app::App;
use crate::domain::{LifecycleEvent, LifecycleKind};
use crate::store::PlaceOptions;
use crate::tasks::{Kind, NewTask, Queue, State};

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

/// Consumes lifecycle events until shutdown.
pub async fn run_events(
    app: Arc<App>,
    mut rx: broadcast::Receiver<LifecycleEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let e = tokio::select! {
            r = rx.recv() => match r {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "fixer lagged behind lifecycle events");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        };
        let tasks = tasks_for_event(&e, app.config.webhook.dashboard_url.as_deref());
        let notifiers = app.config.notifier_names();
        let opts = PlaceOptions {
            max_attempts: app.config.tasks.max_attempts as i64,
            reopen_window: Duration::ZERO,
            notifiers: &notifiers,
        };
        // The store may be briefly down; retry a few times rather than lose the announcement.
        for attempt in 0..5u32 {
            match app.store.create_tasks(&tasks, &opts).await {
                Ok(r) => {
                    app.metrics.tasks_created(&r);
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, attempt, "cannot store lifecycle tasks; retrying");
                    tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await;
                }
            }
        }
    }
}

/// Returns expired leases to their queues (when `expire`: one replica does it) and refreshes the
/// task gauges (every replica, so any of them can be scraped).
pub async fn sweep_once(app: &App, expire: bool) {
    if expire {
        match app.store.expire_leases().await {
            Ok(n) if n > 0 => app.metrics.task_leases_expired(n),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "lease sweep failed"),
        }
    }
    if let Ok(counts) = app.store.task_counts().await {
        for q in Queue::ALL {
            for s in State::ALL {
                let n = counts
                    .iter()
                    .find(|(cq, cs, _)| cq == q.as_str() && cs == s.as_str())
                    .map(|c| c.2)
                    .unwrap_or(0);
                app.metrics.task_count(q.as_str(), s.as_str(), n);
            }
        }
    }
    if let Ok(n) = app.store.outbox_pending().await {
        app.metrics.announcements_pending(n);
    }
    app.metrics.changed();
}

pub async fn run_sweeper(
    app: Arc<App>,
    lead: crate::lease::Leadership,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        // Before the schema exists there is nothing to sweep.
        if app.checks.passed("schema") {
            sweep_once(&app, lead.generation().is_some()).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(app.config.tasks.sweep_interval) => {}
            _ = shutdown.changed() => return,
        }
    }
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
