//! Guarded automatic rollback. Off by default; opt-in per app (and environment), with a dry-run
//! mode, a cooldown and one rollback in flight per app. Every step goes into the task's history and
//! is announced. App Platform pins an app after a rollback (deploy-on-push stops until commit or
//! revert), so every path out of here commits, reverts, or announces loudly that the app is pinned.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::app::App;
use crate::config::AutoRollback;
use crate::domain::Phase;
use crate::sources::digitalocean::client::Client;
use crate::store::{PlaceOptions, TaskFilter};
use crate::tasks::{Kind, NewTask, Queue, State, Task};

const WORKER: &str = "deploywatch-auto-rollback";

/// A rollback task of a failed post-deploy verification runs automatically when the app's
/// verification has `auto_rollback` (under `[verification]` or `[[apps]]`). Pure.
pub fn verification_policy(cfg: &crate::config::Config, task: &Task) -> Option<AutoRollback> {
    let app = task.app.as_deref()?;
    let from_verification =
        task.context["alert"]["name"].as_str() == Some("DeploymentVerificationFailed");
    (from_verification && cfg.verification_auto_rollback(app)).then(|| AutoRollback {
        app: app.to_string(),
        environment: None,
        dry_run: false,
    })
}

/// Whether a rollback task may run automatically, and how. Pure.
pub fn policy_for<'a>(rules: &'a [AutoRollback], task: &Task) -> Option<&'a AutoRollback> {
    let app = task.app.as_deref()?;
    let env = task.context["alert"]["labels"]["environment"].as_str();
    rules
        .iter()
        .find(|r| r.app == app && r.environment.as_deref().is_none_or(|e| Some(e) == env))
}

#[derive(Debug, Clone, PartialEq)]
pub enum RollbackOutcome {
    DryRun,
    Committed,
    Reverted(String),
    Invalid(String),
    Failed(String),
}

impl RollbackOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            RollbackOutcome::DryRun => "dry_run",
            RollbackOutcome::Committed => "committed",
            RollbackOutcome::Reverted(_) => "reverted",
            RollbackOutcome::Invalid(_) => "invalid",
            RollbackOutcome::Failed(_) => "failed",
        }
    }
}

#[derive(Clone)]
pub struct Executor {
    app: Arc<App>,
    client: Client,
    last_run: Arc<Mutex<HashMap<String, Instant>>>,
    poll: Duration,
}

impl Executor {
    pub fn new(app: Arc<App>, client: Client) -> Executor {
        Executor {
            app,
            client,
            last_run: Arc::new(Mutex::new(HashMap::new())),
            poll: Duration::from_millis(500),
        }
    }

    pub fn with_poll(mut self, poll: Duration) -> Executor {
        self.poll = poll;
        self
    }

    async fn note(&self, task: &Task, event: &str, detail: Value) {
        let _ = self
            .app
            .store
            .add_task_event(&task.id, event, &detail)
            .await;
        tracing::info!(task = %task.id, app = ?task.app, event, %detail, "rollback step");
    }

    async fn announce(&self, task: &Task, what: &str, detail: Value) {
        let app = task.app.clone().unwrap_or_default();
        let notifiers = self.app.config.notifier_names();
        let t = NewTask {
            kind: Kind::Announce,
            title: format!("ANNOUNCE: rollback of {app} {what}"),
            priority: 1,
            dedup_key: format!("announce:rollback:{}:{what}", task.id),
            app: Some(app),
            context: json!({"rollback_task": task.id, "detail": detail}),
        };
        let opts = PlaceOptions {
            max_attempts: 1,
            reopen_window: Duration::ZERO,
            notifiers: &notifiers,
        };
        let _ = self.app.store.create_tasks(&[t], &opts).await;
    }

    /// Looks for queued rollback tasks of opted-in apps and runs them.
    pub async fn run_once(&self) -> Vec<(String, RollbackOutcome)> {
        let rules = &self.app.config.rollback.auto;
        let verification_on = self.app.config.verification.auto_rollback
            || self
                .app
                .config
                .apps
                .iter()
                .any(|a| a.auto_rollback == Some(true));
        if rules.is_empty() && !verification_on {
            return vec![];
        }
        let f = TaskFilter {
            queue: Some(Queue::Execution),
            state: Some(State::Queued),
            app: None,
            limit: 100,
        };
        let Ok(tasks) = self.app.store.list_tasks(&f).await else {
            return vec![];
        };
        let mut out = Vec::new();
        for t in tasks.into_iter().filter(|t| t.kind == Kind::Rollback) {
            let Some(policy) = policy_for(rules, &t)
                .cloned()
                .or_else(|| verification_policy(&self.app.config, &t))
            else {
                continue;
            };
            let app_name = t.app.clone().unwrap_or_default();
            let cooling = self
                .last_run
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&app_name)
                .is_some_and(|at| at.elapsed() < self.app.config.rollback.cooldown);
            if cooling {
                continue;
            }
            // Claiming is the lock: another replica or agent holding it means it is in flight.
            let lease = self.app.config.rollback.follow_timeout
                + self.app.config.rollback.healthy_for
                + Duration::from_secs(60);
            let Ok(Some(task)) = self.app.store.claim_by_id(&t.id, WORKER, lease).await else {
                continue;
            };
            self.last_run
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(app_name.clone(), Instant::now());
            let outcome = self.execute(&task, policy.dry_run).await;
            self.app.metrics.rollback(&app_name, outcome.label());
            let result = json!({"outcome": outcome.label(), "detail": format!("{outcome:?}")});
            match &outcome {
                RollbackOutcome::DryRun | RollbackOutcome::Committed => {
                    let _ = self.app.store.complete(&task.id, WORKER, &result).await;
                }
                RollbackOutcome::Reverted(r)
                | RollbackOutcome::Invalid(r)
                | RollbackOutcome::Failed(r) => {
                    let _ = self.app.store.fail(&task.id, WORKER, r, false).await;
                }
            }
            out.push((task.id.clone(), outcome));
        }
        out
    }

    async fn execute(&self, task: &Task, dry_run: bool) -> RollbackOutcome {
        let app_name = task.app.clone().unwrap_or_default();
        let Some(target) = task.context["rollback_target"].as_str().map(str::to_string) else {
            return RollbackOutcome::Invalid("the task names no rollback target".into());
        };
        let Some(view) = self.app.app_view(&app_name) else {
            return RollbackOutcome::Failed(format!(
                "app {app_name} is not in the DigitalOcean snapshot"
            ));
        };
        let app_id = view.id.clone();
        let validation = match self.client.validate_rollback(&app_id, &target).await {
            Ok(v) => v,
            Err(e) => return RollbackOutcome::Failed(format!("validate failed: {e}")),
        };
        self.note(task, "validated", json!(validation)).await;
        if !validation.valid {
            let why = validation
                .error
                .and_then(|e| e.message)
                .unwrap_or_else(|| "rollback is not valid".into());
            self.announce(task, "refused by DigitalOcean", json!({"reason": why}))
                .await;
            return RollbackOutcome::Invalid(why);
        }
        if !validation.warnings.is_empty() {
            self.announce(
                task,
                "has warnings",
                json!({"warnings": validation.warnings}),
            )
            .await;
        }
        if dry_run {
            self.note(task, "dry_run", json!({"would_roll_back_to": target}))
                .await;
            self.announce(task, "dry run: would roll back", json!({"target": target}))
                .await;
            return RollbackOutcome::DryRun;
        }
        let dep = match self.client.rollback(&app_id, &target).await {
            Ok(d) => d,
            Err(e) => return RollbackOutcome::Failed(format!("rollback request failed: {e}")),
        };
        self.note(
            task,
            "rolled_back",
            json!({"deployment_id": dep.id, "target": target}),
        )
        .await;
        self.announce(
            task,
            "started",
            json!({"deployment_id": dep.id, "target": target}),
        )
        .await;

        let healthy = self.follow(task, &app_id, &app_name, &dep.id).await;
        match healthy {
            Ok(()) => match self.client.commit_rollback(&app_id).await {
                Ok(()) => {
                    self.note(task, "committed", json!({"deployment_id": dep.id}))
                        .await;
                    self.announce(task, "committed", json!({"deployment_id": dep.id}))
                        .await;
                    RollbackOutcome::Committed
                }
                Err(e) => {
                    self.revert(task, &app_id, format!("commit failed: {e}"))
                        .await
                }
            },
            Err(why) => self.revert(task, &app_id, why).await,
        }
    }

    async fn revert(&self, task: &Task, app_id: &str, why: String) -> RollbackOutcome {
        match self.client.revert_rollback(app_id).await {
            Ok(d) => {
                self.note(
                    task,
                    "reverted",
                    json!({"reason": why, "deployment_id": d.id}),
                )
                .await;
                self.announce(task, "reverted", json!({"reason": why}))
                    .await;
                RollbackOutcome::Reverted(why)
            }
            Err(e) => {
                let msg = format!(
                    "{why}; revert failed too ({e}): the app stays PINNED and deploy-on-push is blocked until someone commits or reverts the rollback"
                );
                self.note(task, "pinned", json!({"reason": msg})).await;
                self.announce(task, "left the app PINNED", json!({"reason": msg}))
                    .await;
                RollbackOutcome::Failed(msg)
            }
        }
    }

    /// Follows the rollback deployment to its end, then watches the app's probes for `healthy_for`.
    async fn follow(
        &self,
        task: &Task,
        app_id: &str,
        app_name: &str,
        dep_id: &str,
    ) -> Result<(), String> {
        let cfg = &self.app.config.rollback;
        let deadline = Instant::now() + cfg.follow_timeout;
        loop {
            if Instant::now() > deadline {
                return Err(format!(
                    "the rollback deployment did not finish within {:?}",
                    cfg.follow_timeout
                ));
            }
            match self.client.get_deployment(app_id, dep_id).await {
                Ok(d) if d.phase == Phase::Active => break,
                Ok(d) if matches!(d.phase, Phase::Error | Phase::Canceled) => {
                    let step = d
                        .failed_step()
                        .map(|f| format!("{} ({})", f.step, f.reason_code.unwrap_or_default()))
                        .unwrap_or_default();
                    return Err(format!(
                        "the rollback deployment ended {} {step}",
                        d.phase.as_str()
                    ));
                }
                Ok(_) => {}
                Err(e) => tracing::info!(error = %e, "following rollback deployment"),
            }
            let _ = self
                .app
                .store
                .heartbeat(
                    &task.id,
                    WORKER,
                    cfg.follow_timeout + cfg.healthy_for + Duration::from_secs(60),
                )
                .await;
            tokio::time::sleep(self.poll).await;
        }
        self.note(task, "deployment_active", json!({"deployment_id": dep_id}))
            .await;
        let until = Instant::now() + cfg.healthy_for;
        while Instant::now() < until {
            let probes: Vec<_> = self
                .app
                .probes
                .all()
                .into_iter()
                .filter(|p| p.app == app_name)
                .collect();
            if let Some(bad) = probes.iter().find(|p| !p.healthy) {
                return Err(format!(
                    "probe {} is failing after the rollback",
                    bad.target
                ));
            }
            tokio::time::sleep(self.poll).await;
        }
        Ok(())
    }
}

pub async fn run(exec: Executor, mut shutdown: watch::Receiver<bool>) {
    loop {
        exec.run_once().await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(app: &str, env: Option<&str>) -> Task {
        let mut labels = serde_json::Map::new();
        if let Some(e) = env {
            labels.insert("environment".into(), json!(e));
        }
        Task {
            id: "t".into(),
            queue: Queue::Execution,
            kind: Kind::Rollback,
            title: "ROLLBACK".into(),
            priority: 1,
            state: State::Queued,
            dedup_key: "k".into(),
            app: Some(app.into()),
            context: json!({"alert": {"labels": labels}}),
            attempts: 0,
            max_attempts: 3,
            worker: None,
            lease_expires_at: None,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            seen_count: 1,
            alert_resolved_at: None,
            closed_reason: None,
            result: None,
        }
    }

    #[test]
    fn opt_in_per_app_and_environment() {
        let rules = vec![
            AutoRollback {
                app: "api".into(),
                environment: Some("production".into()),
                dry_run: false,
            },
            AutoRollback {
                app: "web".into(),
                environment: None,
                dry_run: true,
            },
        ];
        assert!(policy_for(&rules, &task("api", Some("production"))).is_some());
        assert!(policy_for(&rules, &task("api", Some("staging"))).is_none());
        assert!(policy_for(&rules, &task("api", None)).is_none());
        assert!(policy_for(&rules, &task("web", Some("staging"))).is_some_and(|r| r.dry_run));
        assert!(policy_for(&rules, &task("other", None)).is_none());
        assert!(
            policy_for(&[], &task("api", None)).is_none(),
            "off by default"
        );
    }
}
