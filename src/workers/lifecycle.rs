//! Consumes lifecycle events from the poller and stores the tasks they produce.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::app::App;
use crate::domain::LifecycleEvent;
use crate::store::PlaceOptions;
use crate::tasks::lifecycle::tasks_for_event;

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
