//! The deploy loop: every merged deploy task is followed to its end. Each cycle reads the open
//! deploy tasks from the store and the apps' views from the poller's snapshot, lets the pure
//! decisions (`tasks::deploy::decide`, `tasks::settle::settle`) judge each one, and settles the
//! decided ones with their follow-ups in one transaction each. It runs under the `deploys` lease;
//! a restart or a handover simply decides again (a settled task is no longer open).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::app::App;
use crate::domain::{AppView, DeploymentView};
use crate::store::PlaceOptions;
use crate::tasks::Task;
use crate::tasks::deploy::{Verdict, decide, watched};
use crate::tasks::settle::{Surroundings, Verification, settle};

/// After the deploy timeout the loop settles a watched task; its lease outlasts the timeout by
/// this much, so a slow cycle never hands a watched task back to the queue.
pub const LEASE_MARGIN: Duration = Duration::from_secs(120);

/// How often the loop looks without a lifecycle event to wake it: often enough that a deploy
/// task settles within a poll or two of its deployment ending.
fn cycle_interval(app: &App) -> Duration {
    app.config
        .digitalocean
        .poll_interval
        .min(Duration::from_secs(2))
}

/// What git says about each deployed commit of `view` containing `commit` (the mirror of the
/// app's repository). Empty without a mirror; `decide` then matches commits exactly.
pub async fn ancestry(
    app: &App,
    app_name: &str,
    view: Option<&AppView>,
    commit: &str,
) -> HashMap<String, Option<bool>> {
    let mut out = HashMap::new();
    let Some(v) = view else { return out };
    if app.config.git.repos.is_empty() {
        return out;
    }
    let deployed: Vec<&str> = [&v.in_progress, &v.latest, &v.last_ended, &v.active]
        .into_iter()
        .flatten()
        .filter_map(|d| d.commit.as_deref())
        .collect();
    for d in deployed {
        if !out.contains_key(d) {
            let known = crate::sources::git::ancestry::contains(app, app_name, d, commit).await;
            out.insert(d.to_string(), known);
        }
    }
    out
}

/// The verification hook: whether post-deploy verification is required for this deployment and,
/// if so, its verdict. Deploywatch has no post-deploy verification yet, so a deployment that went
/// live counts as verified; when `[verification]` lands, this is the one place to ask it.
pub fn verification(_app: &App, _task: &Task, _deployment: &DeploymentView) -> Verification {
    Verification::NotRequired
}

/// One look at every merged deploy task; returns how many settled.
pub async fn cycle(app: &App) -> usize {
    let tasks = match app.store.open_deploy_tasks().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "deploy loop: cannot read the deploy tasks; retrying next cycle");
            return 0;
        }
    };
    let now = chrono::Utc::now();
    let timeout = app.config.deploy.timeout;
    let notifiers = app.config.notifier_names();
    let opts = PlaceOptions {
        max_attempts: app.config.tasks.max_attempts as i64,
        reopen_window: Duration::ZERO,
        notifiers: &notifiers,
    };
    let mut settled = 0;
    for task in &tasks {
        let Some(w) = watched(task) else { continue };
        let app_name = w.app.clone().unwrap_or_default();
        let view = app.app_view(&app_name);
        let known = ancestry(app, &app_name, view.as_ref(), &w.commit).await;
        let verdict = decide(&w, now, timeout, view.as_ref(), &|d: &str| {
            known.get(d).copied().flatten()
        });
        let gate = match &verdict {
            Verdict::Deployed(d) => verification(app, task, d),
            _ => Verification::NotRequired,
        };
        let around = Surroundings {
            live_url: view.as_ref().and_then(|v| v.live_url.as_deref()),
            active_commit: view
                .as_ref()
                .and_then(|v| v.active.as_ref())
                .and_then(|d| d.commit.as_deref()),
            environment: app.config.deploy.environment_of(&app_name),
            timeout_text: humantime::format_duration(timeout).to_string(),
        };
        let Some(s) = settle(task, &w.commit, &app_name, &verdict, &gate, &around) else {
            let until = w.merged_at + timeout + LEASE_MARGIN;
            if let Err(e) = app
                .store
                .hold_deploy(&task.id, until.timestamp_millis())
                .await
            {
                tracing::warn!(task = %task.id, error = %e, "deploy loop: cannot extend the deploy task's lease");
            }
            continue;
        };
        match app.store.settle_deploy(&task.id, &s, &opts).await {
            Ok(Some(placed)) => {
                settled += 1;
                tracing::info!(task = %task.id, app = %app_name, commit = %w.commit, reason = %s.reason, followups = placed.len(), "deploy task settled");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(task = %task.id, error = %e, "deploy loop: cannot settle the deploy task; retrying next cycle");
            }
        }
    }
    if settled > 0 {
        app.metrics.changed();
    }
    settled
}

/// Runs the loop until `stop` (shutdown or a lost lease).
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut events = app.events.subscribe();
    loop {
        if app.checks.passed("schema") {
            cycle(&app).await;
        }
        tokio::select! {
            r = events.recv() => {
                if let Err(broadcast::error::RecvError::Closed) = r {
                    // No more events: keep to the interval alone.
                    events = app.events.subscribe();
                }
            }
            _ = tokio::time::sleep(cycle_interval(&app)) => {}
            _ = stop.changed() => return,
        }
    }
}
