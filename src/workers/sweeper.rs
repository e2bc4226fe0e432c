//! The lease sweeper: expired task leases go back to their queues, and the task gauges are counted
//! afresh.

use std::sync::Arc;

use tokio::sync::watch;

use crate::app::App;
use crate::tasks::{Queue, State};

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
    lead: crate::workers::lease::Leadership,
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
