//! The follow-ups of an agent's structured fail reasons (`not_approved`, `merge_conflict`,
//! `merge_failed`): placed before the holder's fail is applied, once per task and reason.

use std::time::Duration;

use super::error::ApiError;
use crate::app::App;
use crate::store::PlaceOptions;

/// Placement for follow-ups the API creates: the configured attempt budget, no reopening.
pub(super) fn place_opts<'a>(app: &App, notifiers: &'a [String]) -> PlaceOptions<'a> {
    PlaceOptions {
        max_attempts: app.config.tasks.max_attempts as i64,
        reopen_window: Duration::ZERO,
        notifiers,
    }
}

/// Before a holder gives a task up with a structured reason, its follow-up is placed (once per
/// task and reason, so a retried call places nothing new). Returns whether the reason was one of
/// them: such a task is not returned to its queue (the follow-up is the next step).
pub(super) async fn fail_followup(
    app: &App,
    id: &str,
    worker: &str,
    reason: &str,
) -> Result<bool, ApiError> {
    if crate::tasks::followup::FailReason::parse(reason).is_none() {
        return Ok(false);
    }
    let Some(task) = app.store.get_task(id).await.map_err(ApiError::store)? else {
        return Ok(true);
    };
    let holder = task.state == crate::tasks::State::Claimed
        && task.worker.as_deref() == Some(worker)
        && task
            .lease_expires_at
            .is_some_and(|l| l >= chrono::Utc::now());
    // Not the holder: the fail itself answers 404/409 and nothing is placed.
    if !holder {
        return Ok(true);
    }
    if let Some(f) = crate::tasks::followup::followup(&task, reason) {
        let notifiers = app.config.notifier_names();
        let opts = place_opts(app, &notifiers);
        app.store
            .place_followups(std::slice::from_ref(&f), &opts)
            .await
            .map_err(ApiError::store)?;
    }
    Ok(true)
}
