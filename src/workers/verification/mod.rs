//! The post-deploy verification window: for each app whose ACTIVE deployment is younger than its
//! window, read DigitalOcean's app health and monitoring (restarts, memory, CPU), the app's probes
//! and the configured PromQL queries (against the same queries over the window before), judge
//! them (`domain::verification::judge`, pure) and store the verdict (final once). Outside the
//! windows, a slow sweep (off by default, `[verification] sweep_interval`) reads every app's
//! restarts for `AppCrashLooping`.
//!
//! Budget: extra DigitalOcean requests only for apps inside a window (four per app per interval:
//! health and three monitoring series; the RUN_RESTARTED log once per failed crash or OOM verdict),
//! and the sweep, when on, reads one app per `sweep_interval / apps` so it is spread evenly. Off,
//! an idle account costs the poller's one request per cycle and nothing more.
//!
//! Runs on one replica (lease `verification`); every replica reads the verdicts from the store.

mod readings;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::watch;

use crate::app::App;
use crate::config::{QueryKind as CfgKind, QueryLimit};
use crate::domain::AppView;
use crate::domain::verification::{
    self, Inputs, Limit, ProbeReading, QueryInput, QueryKind, ReasonKind, ReplicaReading, Rules,
    Verdict, VerdictResult, Window,
};
use crate::domain::window::{self, WindowTarget};
use crate::sources::digitalocean::client::Client;
use crate::sources::digitalocean::types::AppMetric;
use crate::sources::prometheus::PromClient;
use crate::store::VerificationRow;
use crate::telemetry::metrics::ComponentReading;
use readings::{Kind, add_health, add_matrix, commit_reading, latest_max, restarts_since};

/// Windows read per interval at most (the newest first): a burst of deployments, or a restart of
/// deploywatch while many are young, cannot spend the request budget.
const MAX_WINDOWS_PER_TICK: usize = 8;

/// What the worker remembers of one deployment's window between readings.
#[derive(Debug, Default)]
struct Tracked {
    replicas: BTreeMap<String, Vec<ReplicaReading>>,
    probes: Vec<ProbeReading>,
    commits: Vec<verification::CommitReading>,
    log_tail: Option<String>,
    /// The previous reading already failed: a failure is final only when two readings in a row
    /// say so (one early sample cannot fail a release, and the second carries more evidence).
    failed_before: bool,
    done: bool,
}

pub struct Verifier {
    app: Arc<App>,
    client: Client,
    prom: PromClient,
    tracked: HashMap<String, Tracked>,
    /// The next app the sweep reads, and when it last read one.
    sweep_next: usize,
    sweep_last: Option<tokio::time::Instant>,
}

impl Verifier {
    pub fn new(app: Arc<App>, client: Client) -> Verifier {
        Verifier {
            prom: PromClient::new(Duration::from_secs(10)),
            app,
            client,
            tracked: HashMap::new(),
            sweep_next: 0,
            sweep_last: None,
        }
    }

    fn rules(&self) -> Rules {
        let v = &self.app.config.verification;
        Rules {
            crash_loop_restarts: v.crash_loop_restarts,
            oom_memory_percent: v.oom_memory_percent,
            ..Rules::default()
        }
    }

    /// Whether the token's budget has room for the extra reads: nothing while DigitalOcean asks
    /// to wait, and nothing once the last hour used the configured share of the hourly limit.
    fn budget_allows(&self) -> bool {
        let b = self.client.budget();
        let share = self.app.config.digitalocean.budget_share;
        let hourly = b.limit.unwrap_or(5_000) as f64 * share;
        b.blocked_for.is_none() && (b.requests_last_hour as f64) < hourly
    }

    /// One pass: the apps inside their window (the newest windows first, at most
    /// `MAX_WINDOWS_PER_TICK`), then one step of the sweep.
    pub async fn tick(&mut self) {
        let snap = self.app.do_snapshot();
        let now = Utc::now();
        let grace = self.app.config.verification.interval * 2;
        let mut targets: Vec<WindowTarget> = snap
            .apps
            .values()
            .filter_map(|view| {
                let w = self.app.config.verification_window(&view.name);
                window::target(view, w, grace, now)
            })
            .collect();
        let in_window: std::collections::HashSet<String> =
            targets.iter().map(|t| t.app.clone()).collect();
        let live: Vec<String> = targets.iter().map(|t| t.deployment_id.clone()).collect();
        targets.retain(|t| !self.tracked.get(&t.deployment_id).is_some_and(|t| t.done));
        targets.sort_by_key(|t| std::cmp::Reverse(t.start));
        if targets.len() > MAX_WINDOWS_PER_TICK {
            tracing::info!(
                windows = targets.len(),
                read = MAX_WINDOWS_PER_TICK,
                "more verification windows than one interval reads; the newest first"
            );
            targets.truncate(MAX_WINDOWS_PER_TICK);
        }
        for t in &targets {
            if !self.budget_allows() {
                tracing::warn!(
                    "the DigitalOcean budget is spent; verification waits for the next interval"
                );
                break;
            }
            self.verify(t, now).await;
        }
        self.tracked.retain(|d, _| live.contains(d));
        if self.budget_allows() {
            self.sweep(&snap.apps, &in_window).await;
        }
    }

    /// Reads, judges and stores one window.
    async fn verify(&mut self, t: &WindowTarget, now: DateTime<Utc>) {
        let mut components = BTreeMap::new();
        let default_component = t.app.clone();
        let health = self.client.app_health(&t.app_id).await;
        for (metric, kind) in [
            (AppMetric::RestartCount, Kind::Restarts),
            (AppMetric::MemoryPercentage, Kind::Memory),
            (AppMetric::CpuPercentage, Kind::Cpu),
        ] {
            // From a little before ACTIVE, so a counter's value at the start is known.
            let from = t.start - chrono::Duration::seconds(5);
            match self
                .client
                .app_metric(metric, &t.app_id, None, from, now)
                .await
            {
                Ok(m) => add_matrix(&mut components, &m, kind, &default_component),
                Err(e) => {
                    tracing::info!(app = %t.app, error = %e, "no monitoring series for the verification window")
                }
            }
        }
        let tracked = self.tracked.entry(t.deployment_id.clone()).or_default();
        if let Ok(h) = &health {
            add_health(&mut components, &mut tracked.replicas, h, now);
        }
        for (name, r) in &tracked.replicas {
            if let Some(c) = components.get_mut(name) {
                c.replicas = r.clone();
            }
        }
        for p in self.app.probes.all().into_iter().filter(|p| p.app == t.app) {
            if let Some(at) = p.checked_at.filter(|at| *at >= t.start)
                && !tracked.probes.iter().any(|r| r.at == at)
            {
                tracked.probes.push(ProbeReading { at, ok: p.healthy });
                // The serving-commit check: a probe configured with `expect_active_commit`.
                let checks_commit = self
                    .app
                    .config
                    .health
                    .targets
                    .iter()
                    .any(|h| h.name.as_str() == p.target && h.expect_active_commit.is_some());
                if checks_commit
                    && let Some(expected) = &t.commit
                    && let Some(c) = commit_reading(&p, expected)
                {
                    tracked.commits.push(c);
                }
            }
        }
        let probes = tracked.probes.clone();
        let commits = tracked.commits.clone();
        let queries = self.queries(t, now).await;
        let inputs = Inputs {
            window: Window {
                start: t.start,
                end: t.end,
                now,
            },
            components: components.values().cloned().collect(),
            probes,
            commits,
            queries,
        };
        let mut verdict = verification::judge(&inputs, &self.rules());
        let tracked = self.tracked.entry(t.deployment_id.clone()).or_default();
        let confirmed = verdict.result != VerdictResult::Failed
            || tracked.failed_before
            || !inputs.window.is_open();
        tracked.failed_before = verdict.result == VerdictResult::Failed;
        if !confirmed {
            verdict.result = VerdictResult::Pending;
        }
        for c in components.values() {
            let ready = c.replicas.last();
            self.app.metrics.component_runtime(
                &t.app,
                &c.name,
                &ComponentReading {
                    restarts: Some(restarts_since(c, t.start)),
                    cpu_percent: latest_max(&c.cpu_percent),
                    memory_percent: latest_max(&c.memory_percent),
                    replicas_ready: ready.map(|r| r.ready),
                    replicas_desired: ready.map(|r| r.desired),
                },
            );
        }
        let crashed = verdict
            .reasons
            .iter()
            .any(|r| matches!(r.kind, ReasonKind::CrashLoop | ReasonKind::Oom));
        let final_ = verdict.result.is_final() || verdict.result == VerdictResult::Failed;
        let tracked = self.tracked.entry(t.deployment_id.clone()).or_default();
        if final_ && crashed && tracked.log_tail.is_none() {
            let lines = self.app.config.digitalocean.log_tail_lines;
            match self.client.run_restarted_log_tail(&t.app_id, lines).await {
                Ok(tail) => tracked.log_tail = Some(tail),
                Err(e) => {
                    tracing::info!(app = %t.app, error = %e, "no RUN_RESTARTED log for the verdict")
                }
            }
        }
        let row = VerificationRow {
            deployment_id: t.deployment_id.clone(),
            app: t.app.clone(),
            result: verdict.result.as_str().to_string(),
            detail: detail(t, &verdict, &components, tracked.log_tail.as_deref()),
            started_at_ms: t.start.timestamp_millis(),
            ended_at_ms: final_.then(|| now.timestamp_millis()),
        };
        match self.app.store.save_verification(&row).await {
            Ok(newly_final) => {
                tracked.done = final_;
                if newly_final {
                    tracing::info!(app = %t.app, deployment = %t.deployment_id, result = %row.result, "verification window ended");
                    let reasons: Vec<String> = verdict
                        .reasons
                        .iter()
                        .map(|r| r.kind.as_str().to_string())
                        .collect();
                    crate::sources::digitalocean::traces::emit_verify_span(
                        &t.app,
                        &t.deployment_id,
                        t.start,
                        now,
                        &row.result,
                        &reasons,
                    );
                }
            }
            Err(e) => {
                tracing::warn!(app = %t.app, error = %e, "cannot store the verification verdict; trying again next interval")
            }
        }
        if let Err(e) = crate::app::sync_verification_metrics(&self.app).await {
            tracing::warn!(error = %e, "cannot read verdicts from the store");
        }
    }

    /// Each configured query over the window and over the same span before the deployment.
    async fn queries(&self, t: &WindowTarget, now: DateTime<Utc>) -> Vec<QueryInput> {
        let cfg = &self.app.config.verification;
        let Some(url) = &cfg.prometheus_url else {
            return Vec::new();
        };
        let span = t.end - t.start;
        let step =
            (span.to_std().unwrap_or(Duration::from_secs(600)) / 40).max(Duration::from_secs(1));
        let mut out = Vec::new();
        for q in &cfg.queries {
            let query = q.query.replace("$app", &t.app);
            let baseline = self
                .prom
                .query_range(url, &query, t.start - span, t.start, step)
                .await;
            let current = self
                .prom
                .query_range(url, &query, t.start, now.min(t.end), step)
                .await;
            match (baseline, current) {
                (Ok(baseline), Ok(current)) => out.push(QueryInput {
                    name: q.name.as_str().to_string(),
                    kind: match q.kind {
                        CfgKind::Latency => QueryKind::Latency,
                        CfgKind::ErrorRate => QueryKind::ErrorRate,
                    },
                    limit: match q.limit {
                        QueryLimit::Max(m) => Limit::Max(m),
                        QueryLimit::Min(m) => Limit::Min(m),
                    },
                    baseline,
                    current,
                }),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(query = %q.name, error = %e, "verification query failed; judged without it")
                }
            }
        }
        out
    }

    /// One step of the slow sweep: the restarts of the next app outside a window, over the last
    /// sweep interval, for `AppCrashLooping`.
    async fn sweep(
        &mut self,
        apps: &BTreeMap<String, AppView>,
        in_window: &std::collections::HashSet<String>,
    ) {
        let outside: Vec<&AppView> = apps
            .values()
            .filter(|a| !in_window.contains(&a.name) && a.active.is_some())
            .collect();
        if outside.is_empty() || self.app.config.verification.sweep_interval.is_zero() {
            return;
        }
        let every = self.app.config.verification.sweep_interval / (outside.len() as u32).max(1);
        if self.sweep_last.is_some_and(|l| l.elapsed() < every) {
            return;
        }
        self.sweep_last = Some(tokio::time::Instant::now());
        let a = outside[self.sweep_next % outside.len()];
        self.sweep_next = self.sweep_next.wrapping_add(1);
        let now = Utc::now();
        let span = chrono::Duration::from_std(self.app.config.verification.sweep_interval)
            .unwrap_or(chrono::Duration::minutes(15));
        match self
            .client
            .app_metric(AppMetric::RestartCount, &a.id, None, now - span - span, now)
            .await
        {
            Ok(m) => {
                let mut components = BTreeMap::new();
                add_matrix(&mut components, &m, Kind::Restarts, &a.name);
                for c in components.values() {
                    self.app.metrics.component_runtime(
                        &a.name,
                        &c.name,
                        &ComponentReading {
                            restarts: Some(restarts_since(c, now - span)),
                            ..Default::default()
                        },
                    );
                }
            }
            Err(e) => tracing::debug!(app = %a.name, error = %e, "runtime sweep skipped an app"),
        }
    }
}

/// The verdict's detail as stored and shown: reasons with evidence, per-component readings, the
/// suspect commit range and the log tail.
fn detail(
    t: &WindowTarget,
    v: &Verdict,
    components: &BTreeMap<String, verification::ComponentInput>,
    log_tail: Option<&str>,
) -> serde_json::Value {
    json!({
        "deployment_id": t.deployment_id,
        "commit": t.commit,
        "window": {"start": t.start, "end": t.end},
        "suspect_commits": {"from": t.previous_commit, "to": t.commit},
        "reasons": v.reasons.iter().map(|r| json!({
            "reason": r.kind.as_str(),
            "subject": r.subject,
            "summary": r.summary(),
            "evidence": r.evidence,
        })).collect::<Vec<_>>(),
        "components": components.values().map(|c| json!({
            "name": c.name,
            "restarts": restarts_since(c, t.start),
            "cpu_percent": latest_max(&c.cpu_percent),
            "memory_percent": latest_max(&c.memory_percent),
            "replicas": c.replicas.last().map(|r| json!({"ready": r.ready, "desired": r.desired})),
        })).collect::<Vec<_>>(),
        "log_tail": log_tail,
    })
}

/// Verifies until shutdown, every `[verification] interval`.
pub async fn run(mut v: Verifier, mut shutdown: watch::Receiver<bool>) {
    loop {
        v.tick().await;
        tokio::select! {
            _ = tokio::time::sleep(v.app.config.verification.interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}
