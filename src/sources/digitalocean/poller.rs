//! The poll loop. One list-apps call a cycle carries each app's active, in-progress and pending
//! deployments; per-app calls happen only when something changed. With several replicas on one
//! PostgreSQL only the lease holder polls.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::client::{Client, DoError};
use super::schedule::{self, ScheduleInput};
use super::traces;
use super::types::{App as ApiApp, Deployment};
use super::view::{app_view, merge_listed};
use crate::app::App;
use crate::domain::classify;
use crate::domain::dora::DeploymentOutcome;
use crate::domain::{
    AppView, DeploymentView, FailureView, LabelValue, LifecycleEvent, LifecycleKind, Outcome,
    Snapshot,
};
use crate::telemetry::metrics::Exporter;

/// The lease (and `deploywatch_leader{source}` label) of the poller; the snapshot row it writes.
const LEASE_NAME: &str = "digitalocean";

#[derive(Default)]
struct AppTrack {
    /// Its deployments have been read at least once.
    initialized: bool,
    fingerprint: Option<(Option<String>, Option<String>, Option<String>)>,
    deployments: Vec<Deployment>,
    counted: HashSet<String>,
    started: HashSet<String>,
    stuck: HashSet<String>,
    last_failure: Option<FailureView>,
}

pub struct Poller {
    app: Arc<App>,
    client: Client,
    tracks: HashMap<String, AppTrack>,
    /// Per-app deployment reads left in this cycle; paces the initial read of a large account
    /// under the per-minute limit.
    detail_budget: usize,
    /// Requests the last list-apps call took (one per page).
    list_cost: usize,
    /// Requests of the recent cycles (the one-off full read at start is left out).
    recent_costs: std::collections::VecDeque<usize>,
    /// The deployment series this replica exports.
    exporter: Exporter,
}

#[derive(Debug, Default)]
pub struct CycleReport {
    pub apps: usize,
    pub requests: usize,
    pub newly_counted: usize,
    pub any_in_progress: bool,
    /// The cycle read some app's deployments for the first time (a one-off cost).
    pub full_read: bool,
    /// Apps whose deployments could not be read this cycle within the per-cycle budget.
    pub deferred: usize,
    /// Requests of the list-apps call (pages).
    pub list_requests: usize,
}

impl Poller {
    pub fn new(app: Arc<App>, client: Client) -> Poller {
        Poller {
            app,
            client,
            tracks: HashMap::new(),
            detail_budget: 0,
            list_cost: 1,
            recent_costs: std::collections::VecDeque::new(),
            exporter: Exporter::default(),
        }
    }

    /// Polls while this replica holds the poller lease, and otherwise serves the snapshot the
    /// holder stored, until `shutdown` turns true. Errors are recorded, never fatal.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let cfg = self.app.config.digitalocean.clone();
        let mut lead =
            crate::workers::lease::spawn(self.app.clone(), LEASE_NAME, cfg.lease, shutdown.clone());
        let mut seen_snapshot = 0i64;
        loop {
            let mut any_in_progress = false;
            let generation = lead.generation();
            if let Some(generation) = generation {
                match self.poll_once().await {
                    Ok(r) => {
                        any_in_progress = r.any_in_progress;
                        // A cycle that read apps for the first time costs what its list call cost;
                        // the one-off reads are paced by the per-minute share instead.
                        if self.recent_costs.len() == 5 {
                            self.recent_costs.pop_front();
                        }
                        self.recent_costs.push_back(if r.full_read {
                            r.list_requests
                        } else {
                            r.requests
                        });
                        self.app.metrics.source_result("digitalocean", true);
                        self.publish(generation).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "DigitalOcean poll failed; serving the last known values");
                        self.app.metrics.source_result("digitalocean", false);
                        let mut snap = self.app.do_snapshot_mut();
                        snap.last_error = Some(e.to_string());
                    }
                }
            } else {
                self.follow(&mut seen_snapshot).await;
            }
            if let Err(e) = crate::app::sync_outcome_metrics(&self.app).await {
                tracing::warn!(error = %e, "cannot read counted deployments from the store");
            }
            if let Err(e) = crate::app::sync_verification_metrics(&self.app).await {
                tracing::warn!(error = %e, "cannot read verdicts from the store");
            }
            let b = self.client.budget();
            let mut wait = schedule::next_interval(ScheduleInput {
                base: cfg.poll_interval,
                fast: cfg.fast_poll_interval,
                budget_share: cfg.budget_share,
                any_in_progress,
                requests_per_cycle: schedule::typical_cost(self.recent_costs.make_contiguous()),
                requests_last_hour: b.requests_last_hour,
                requests_last_minute: b.requests_last_minute,
                remaining: b.remaining,
                limit: b.limit,
            });
            if let Some(blocked) = b.blocked_for {
                // Honour retry-after exactly: the next request goes out once it has passed.
                wait = wait.max(blocked + Duration::from_millis(10));
            }
            if generation.is_none() {
                // Not polling: look for the holder's newer snapshot often (one cheap query).
                wait = wait.min(Duration::from_secs(1));
            }
            self.app.metrics.poll_interval(wait.as_secs_f64());
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // Just took the lease over: poll at once.
                _ = lead.changed() => {}
                // The lease keeper hands the lease over.
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Stores this cycle's view for the other replicas, fenced by the lease generation: a poll
    /// that outlived its lease does not overwrite its successor's snapshot.
    async fn publish(&self, generation: i64) {
        let body = match serde_json::to_string(&self.app.do_snapshot()) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot serialise the deployment snapshot");
                return;
            }
        };
        match self
            .app
            .store
            .put_snapshot(
                LEASE_NAME,
                &body,
                LEASE_NAME,
                &self.app.instance_id,
                generation,
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                generation,
                "the poller lease changed hands during this poll; its snapshot is not published"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot store the deployment snapshot"),
        }
    }

    /// Serves the lease holder's snapshot when it changed: the same view and the same series as
    /// on the polling replica.
    async fn follow(&mut self, seen: &mut i64) {
        let found = match self.app.store.snapshot_since(LEASE_NAME, *seen).await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the deployment snapshot");
                return;
            }
        };
        let Some((version, body)) = found else { return };
        match serde_json::from_str::<crate::domain::Snapshot>(&body) {
            Ok(snap) => {
                self.exporter.export(&self.app.metrics, &snap.apps, true);
                self.app.metrics.changed();
                *self.app.do_snapshot_mut() = snap;
                *seen = version;
            }
            Err(e) => tracing::warn!(error = %e, "the stored deployment snapshot does not parse"),
        }
    }

    fn requests_sent(&self) -> usize {
        self.client.budget().requests_last_hour
    }

    /// One poll cycle.
    pub async fn poll_once(&mut self) -> Result<CycleReport, DoError> {
        let before = self.requests_sent();
        let share = self.app.config.digitalocean.budget_share;
        // Per-app reads this cycle: at most half the per-minute share, and never past what the
        // last minute has left of it (one request is kept for the list call).
        let minute_share = (schedule::MINUTE_LIMIT * share) as usize;
        let used = self.client.budget().requests_last_minute;
        self.detail_budget = (minute_share / 2)
            .max(1)
            .min(minute_share.saturating_sub(used + self.list_cost));
        let listing = self.client.list_apps_partial().await?;
        let (apps, skipped) = (listing.apps, listing.skipped);
        let incomplete = listing.incomplete.map(|e| {
            tracing::warn!(error = %e, apps_read = apps.len(), "a later page of the app list failed; keeping the apps read and the last known state of the rest");
            format!("app list incomplete: {e}")
        });
        self.list_cost = self.requests_sent().saturating_sub(before).max(1);
        if skipped > 0 {
            self.app.metrics.do_parse_errors("app", skipped as u64);
        }
        let mut report = CycleReport {
            apps: apps.len(),
            list_requests: self.list_cost,
            ..Default::default()
        };
        let mut views = BTreeMap::new();
        let seen_ids: HashSet<String> = apps.iter().map(|a| a.id.clone()).collect();
        // An app missing from an incomplete list is not gone: keep what is known about it.
        if incomplete.is_none() {
            self.tracks.retain(|id, _| seen_ids.contains(id));
        }
        for api_app in &apps {
            let view = self.process_app(api_app, &mut report).await;
            views.insert(view.name.clone(), view);
        }
        if incomplete.is_some() {
            let snap = self.app.do_snapshot_mut();
            for (name, v) in &snap.apps {
                if !seen_ids.contains(&v.id) {
                    views.entry(name.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        report.any_in_progress = views.values().any(|v| v.in_progress.is_some());
        self.exporter
            .export(&self.app.metrics, &views, incomplete.is_none());
        self.app.metrics.changed();
        {
            let mut snap = self.app.do_snapshot_mut();
            *snap = Snapshot {
                apps: views,
                polled_at: Some(Utc::now()),
                last_error: incomplete,
            };
        }
        report.requests = self.requests_sent().saturating_sub(before).max(1);
        Ok(report)
    }

    async fn process_app(&mut self, a: &ApiApp, report: &mut CycleReport) -> AppView {
        let name = a.name().to_string();
        let fp = (
            a.active_deployment.as_ref().map(|d| d.id.clone()),
            a.in_progress_deployment.as_ref().map(|d| d.id.clone()),
            a.last_deployment_created_at.map(|t| t.to_rfc3339()),
        );
        let track = self.tracks.entry(a.id.clone()).or_default();
        let had_in_progress = track.fingerprint.as_ref().is_some_and(|f| f.1.is_some());
        let changed = track.fingerprint.as_ref() != Some(&fp);
        let initial = !track.initialized;
        let needs_detail =
            initial || changed || had_in_progress || a.in_progress_deployment.is_some();
        if !needs_detail {
            track.fingerprint = Some(fp);
        } else if self.detail_budget == 0 {
            // Out of reads for this cycle: the fingerprint stays stale, so the next cycle reads it.
            report.deferred += 1;
        } else {
            self.detail_budget -= 1;
            report.full_read |= initial;
            // After the first read, page back to the newest deployment already known, so a burst
            // of more than a page between two polls is not missed (one page in steady state).
            let newest_known = track.deployments.iter().filter_map(|d| d.created_at).max();
            let listing = match (initial, newest_known) {
                (false, Some(since)) => self
                    .client
                    .list_deployments_paged(&a.id, &[], Some(since), 20)
                    .await
                    .map(|l| (l.deployments, l.skipped)),
                _ => self.client.list_deployments(&a.id, 20).await,
            };
            match listing {
                Ok((deps, skipped)) => {
                    track.initialized = true;
                    track.fingerprint = Some(fp);
                    if skipped > 0 {
                        self.app
                            .metrics
                            .do_parse_errors("deployment", skipped as u64);
                    }
                    track.deployments = deps;
                }
                Err(e) => {
                    tracing::warn!(app = %name, error = %e, "cannot list deployments; keeping the last known ones")
                }
            }
        }
        merge_listed(&mut track.deployments, a);

        let deployments = track.deployments.clone();
        let origin = traces::Origin::new(&self.app.config.environment, &a.spec);
        // Oldest first, so DORA recovery sees a failure before the success that ends it.
        for d in deployments.iter().rev() {
            if d.phase.in_progress()
                && self
                    .tracks
                    .get_mut(&a.id)
                    .is_some_and(|t| t.started.insert(d.id.clone()))
            {
                self.app.publish(LifecycleEvent {
                    kind: LifecycleKind::Started,
                    app: name.clone(),
                    deployment: DeploymentView::from_api(d),
                    failure: None,
                    duration_seconds: None,
                });
            }
            let Some(outcome) = d.phase.outcome() else {
                continue;
            };
            let track = self.tracks.entry(a.id.clone()).or_default();
            if !track.counted.insert(d.id.clone()) {
                continue;
            }
            match self
                .count_deployment(&name, &a.id, d, outcome, initial, &origin)
                .await
            {
                Ok(true) => report.newly_counted += 1,
                Ok(false) => {}
                Err(e) => {
                    // Not counted yet: try again next cycle.
                    tracing::warn!(app = %name, deployment = %d.id, error = %e, "cannot record the deployment outcome");
                    if let Some(t) = self.tracks.get_mut(&a.id) {
                        t.counted.remove(&d.id);
                    }
                }
            }
        }

        let track = self.tracks.entry(a.id.clone()).or_default();
        let built = app_view(
            a,
            &deployments,
            track.last_failure.clone(),
            Utc::now(),
            self.app.config.digitalocean.stuck_after,
        );
        if let Some((d, stuck_for)) = built.stuck
            && track.stuck.insert(d.id.clone())
        {
            let id = d.id.clone();
            self.app.publish(LifecycleEvent {
                kind: LifecycleKind::Stuck,
                app: built.view.name.clone(),
                deployment: d,
                failure: None,
                duration_seconds: stuck_for,
            });
            // `[verification] cancel_stuck`: a deployment stuck past its limit is canceled, so the
            // app can take the next one (the previous deployment keeps serving).
            if self.app.config.verification.cancel_stuck {
                match self.client.cancel_deployment(&a.id, &id).await {
                    Ok(_) => {
                        tracing::warn!(app = %a.name(), deployment = %id, "canceled a stuck deployment")
                    }
                    Err(e) => {
                        tracing::warn!(app = %a.name(), deployment = %id, error = %e, "cannot cancel the stuck deployment")
                    }
                }
            }
        }
        built.view
    }

    /// Persists the outcome (exactly once across restarts and replicas), then traces it, fetches
    /// the failure's log tail and publishes the event. Returns whether this call counted it.
    async fn count_deployment(
        &mut self,
        app_name: &str,
        app_id: &str,
        d: &Deployment,
        outcome: Outcome,
        initial: bool,
        origin: &traces::Origin,
    ) -> Result<bool, crate::store::StoreError> {
        let ended = d.ended_at();
        let duration = match (d.created_at, ended) {
            (Some(c), Some(e)) if e >= c => Some((e - c).num_milliseconds() as f64 / 1000.0),
            _ => None,
        };
        let excluded = d.is_autoscale_or_maintenance();
        let ended_ms = ended.unwrap_or_else(Utc::now).timestamp_millis();
        let mut lead_time = None;
        let mut recovery = None;
        if outcome == Outcome::Success && !excluded {
            if let (Some(sha), Some(end)) = (d.commit(), ended)
                && let Some(ct) =
                    crate::sources::git::commit_time_for_app(&self.app, app_name, sha).await
            {
                lead_time = Some(((end - ct).num_milliseconds() as f64 / 1000.0).max(0.0));
            }
            if let Some(fail_ms) = self.app.store.open_failure_since(app_name).await? {
                recovery = Some(((ended_ms - fail_ms) as f64 / 1000.0).max(0.0));
            }
        }
        let rec = DeploymentOutcome {
            deployment_id: d.id.clone(),
            app: app_name.to_string(),
            outcome,
            duration_seconds: duration,
            lead_time_seconds: lead_time,
            recovery_seconds: recovery,
            excluded_from_dora: excluded,
            rollback: d.is_rollback(),
            ended_at_ms: ended_ms,
        };
        let newly = self.app.store.record_deployment_outcome(&rec).await?;
        if !newly {
            return Ok(false);
        }
        let label = LabelValue::sanitize(app_name);
        if let Some(p) = &d.progress {
            for s in &p.steps {
                if let (Some(st), Some(en)) = (s.started_at, s.ended_at)
                    && en >= st
                    && matches!(s.name.as_str(), "build" | "deploy")
                {
                    self.app.metrics.step_duration(
                        label.as_str(),
                        s.name.as_str(),
                        (en - st).num_milliseconds() as f64 / 1000.0,
                    );
                }
            }
        }
        traces::emit_deployment_trace(app_name, d, origin);
        let view = DeploymentView::from_api(d);
        let mut failure = None;
        if outcome == Outcome::Failure {
            let failed = d.failed_step();
            let log_type = match failed.as_ref().map(|f| f.top_step.as_str()) {
                Some("deploy") => "DEPLOY",
                _ => "BUILD",
            };
            let tail = match self
                .client
                .deployment_log_tail(
                    app_id,
                    &d.id,
                    log_type,
                    self.app.config.digitalocean.log_tail_lines,
                )
                .await
            {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::info!(app = %app_name, error = %e, "no log tail for the failed deployment");
                    None
                }
            };
            let mut class = classify::classify(failed.as_ref(), tail.as_deref());
            // Jobs run in the deploy step: one more request, only for a failed deploy step.
            if failed.as_ref().is_some_and(|f| f.top_step == "deploy") {
                match self.client.job_invocations(app_id, Some(&d.id)).await {
                    Ok(jobs) => {
                        let failed_jobs: Vec<String> = jobs
                            .iter()
                            .filter(|j| j.failed())
                            .filter_map(|j| j.job_name.clone())
                            .collect();
                        class = classify::with_failed_jobs(class, &failed_jobs);
                    }
                    Err(e) => {
                        tracing::info!(app = %app_name, error = %e, "no job invocations for the failed deployment")
                    }
                }
            }
            let f = FailureView {
                deployment_id: d.id.clone(),
                failed_step: failed,
                class,
                log_tail: tail,
                commit: d.commit().map(str::to_string),
                cause: d.cause.clone(),
                trace_id: view.trace_id.clone(),
                ended_at: view.ended_at,
            };
            if let Some(t) = self.tracks.get_mut(app_id) {
                t.last_failure = Some(f.clone());
            }
            failure = Some(f);
        }
        let kind = match outcome {
            Outcome::Success => LifecycleKind::Succeeded,
            Outcome::Failure => LifecycleKind::Failed,
            Outcome::Canceled => LifecycleKind::Canceled,
        };
        // Deployments that ended before deploywatch first saw the app are history, not news.
        if !initial || ended.is_some_and(|e| Utc::now() - e < chrono::Duration::minutes(10)) {
            self.app.publish(LifecycleEvent {
                kind,
                app: app_name.to_string(),
                deployment: view,
                failure,
                duration_seconds: duration,
            });
        }
        Ok(true)
    }
}
