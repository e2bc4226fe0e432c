//! Every metric deploywatch exports is declared here, in one place, so names, labels and help texts
//! can be reviewed together (and against the metric tables in `docs/METRICS.md`).
//!
//! Architecture Invariant: no label carries an unbounded value. Deployment ids, commit SHAs and URLs
//! appear only in `_info` series, one per app or ref, replaced (not accumulated) when they change.

use prometheus::{IntGauge, Registry};

use super::family::{Family, Kind};

pub const PREFIX: &str = "deploywatch";

/// Buckets for deployment durations and lead times: 30 s to a day.
const LONG_BUCKETS: &[f64] = &[
    30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
];
/// Buckets for deployment durations, fitted to App Platform's spread: builds and deploys take one
/// to fifteen minutes; past an hour a deployment has stalled (stuck detection covers it).
const DEPLOY_BUCKETS: &[f64] = &[60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0];
const STEP_BUCKETS: &[f64] = &[5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0];
/// Notifications per group commit: 1 (a lone notification) to the batch bound of 256.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

pub struct Metrics {
    pub(super) registry: Registry,
    /// The last result per source, as `/api/v1/status` shows it (kept beside the gauge so nobody
    /// reads a value back out of the registry).
    source_states: std::sync::Mutex<std::collections::BTreeMap<String, bool>>,
    /// The cached `/metrics` body (see `crate::telemetry::exposition`).
    pub exposition: crate::telemetry::exposition::Exposition,

    // Process-wide.
    pub(super) build_info: Family,
    pub(super) source_up: Family,
    pub(super) source_enabled: Family,
    pub(super) leader: Family,
    pub(super) lease_takeovers_total: Family,
    pub(super) source_last_success: Family,
    pub(super) startup_check_success: Family,

    // DigitalOcean deployments.
    pub(super) app_info: Family,
    pub(super) deployment_phase: Family,
    pub(super) deployments_total: Family,
    pub(super) deployment_duration: Family,
    pub(super) deployment_last_success: Family,
    pub(super) deployment_in_progress: Family,
    pub(super) deployment_last_outcome: Family,
    pub(super) deployment_info: Family,
    pub(super) active_deployment_info: Family,
    pub(super) pinned_deployment: Family,
    pub(super) step_duration: Family,
    pub(super) deployment_failed_step: Family,
    pub(super) deployment_stuck: Family,
    pub(super) do_requests_total: Family,
    pub(super) do_ratelimit_remaining: IntGauge,
    pub(super) do_parse_errors_total: Family,
    pub(super) do_poll_interval_seconds: prometheus::Gauge,

    // Health probes.
    pub(super) probe_success: Family,
    pub(super) probe_raw_success: Family,
    pub(super) probe_duration: Family,
    pub(super) probe_phase_duration: Family,
    pub(super) probe_status_code: Family,
    pub(super) probe_failure: Family,
    pub(super) probe_consecutive_failures: Family,
    pub(super) probe_tls_expiry: Family,
    pub(super) probes_total: Family,

    // Git refs and drift.
    pub(super) git_ref_commit_ts: Family,
    pub(super) git_ref_info: Family,
    pub(super) git_ref_ahead: Family,
    pub(super) git_ref_behind: Family,
    pub(super) app_commits_behind: Family,
    pub(super) app_undeployed_age: Family,

    // DORA.
    pub(super) dora_deployments_total: Family,
    pub(super) dora_change_failures_total: Family,
    pub(super) dora_changes_total: Family,
    pub(super) dora_lead_time: Family,
    pub(super) dora_recovery_time: Family,

    // Fixer.
    pub(super) webhook_alerts_total: Family,
    pub(super) webhook_requests_total: Family,
    pub(super) webhook_duplicates_total: prometheus::IntCounter,
    pub(super) webhook_sanitized_total: Family,
    pub(super) webhook_batch_size: Family,
    pub(super) webhook_batches_one_by_one_total: Family,
    pub(super) tasks: Family,
    pub(super) tasks_created_total: Family,
    pub(super) task_claims_total: Family,
    pub(super) task_lease_expiries_total: prometheus::IntCounter,
    pub(super) rollbacks_total: Family,
    pub(super) announcements_pending: IntGauge,

    // App migration checks.
    pub(super) migration_pending: Family,
    pub(super) migration_check_info: Family,

    // Post-deploy verification and runtime.
    pub(super) deployment_verification: Family,
    pub(super) deployment_verifications_total: Family,
    pub(super) app_component_restarts: Family,
    pub(super) app_component_cpu: Family,
    pub(super) app_component_memory: Family,
    pub(super) app_component_replicas: Family,
}

fn name(n: &str) -> String {
    format!("{PREFIX}_{n}")
}

struct Reg<'a>(&'a Registry);

// Names, labels and help texts are static and unique: a failure here is a programming error that
// every test run would hit at once, not a condition of the input.
#[allow(clippy::expect_used)]
impl Reg<'_> {
    fn family(&self, n: &str, help: &str, labels: &[&str], kind: Kind, buckets: &[f64]) -> Family {
        let f = Family::new(name(n), help, labels, kind, buckets).expect("valid metric");
        self.0.register(Box::new(f.clone())).expect("unique metric");
        f
    }
    fn gauge(&self, n: &str, help: &str, labels: &[&str]) -> Family {
        self.family(n, help, labels, Kind::Gauge, &[])
    }
    fn fgauge(&self, n: &str, help: &str, labels: &[&str]) -> Family {
        self.family(n, help, labels, Kind::Gauge, &[])
    }
    fn counter(&self, n: &str, help: &str, labels: &[&str]) -> Family {
        self.family(n, help, labels, Kind::Counter, &[])
    }
    fn histogram(&self, n: &str, help: &str, labels: &[&str], buckets: &[f64]) -> Family {
        self.family(n, help, labels, Kind::Histogram, buckets)
    }
}

impl Metrics {
    #[allow(clippy::expect_used, reason = "static metric definitions, see Reg")]
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // Process metrics change every scrape: rendered per scrape, outside the cached body.
        let process = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let pc = super::process::ProcessCollector::for_self().expect("static descriptors");
            process.register(Box::new(pc)).expect("process collector");
        }
        let r = Reg(&registry);
        const CACHED: &str = " (cached from the last poll; never fetched during a scrape)";
        let m = Metrics {
            build_info: r.gauge("build_info", "Always 1; the running deploywatch version.", &["version"]),
            source_up: r.gauge("source_up", "1 when the last poll of the source succeeded; only for enabled sources.", &["source"]),
            source_enabled: r.gauge("source_enabled", "1 when the source is configured; 0 when it is off (it then exports no source_up).", &["source"]),
            leader: r.gauge("leader", "1 while this replica holds the lease of the loop (digitalocean poller, outbox, rollback, sweeper).", &["source"]),
            lease_takeovers_total: r.counter("lease_takeovers_total", "Times this replica took a lease over from another holder (or a lapsed one).", &["source"]),
            source_last_success: r.fgauge(
                "source_last_success_timestamp_seconds",
                "Unix time of the source's last successful poll.",
                &["source"],
            ),
            startup_check_success: r.gauge("startup_check_success", "1 when the startup check passed on its last run.", &["check"]),
            app_info: r.gauge("app_info", &format!("Always 1 per DigitalOcean app{CACHED}."), &["app", "app_id", "region"]),
            deployment_phase: r.gauge(
                "deployment_phase",
                &format!("1 for the phase of the app's latest deployment, 0 for every other phase{CACHED}."),
                &["app", "phase"],
            ),
            deployments_total: r.counter(
                "deployments_total",
                "Deployments that ended, by outcome; each counted once, persisted across restarts.",
                &["app", "outcome"],
            ),
            deployment_duration: r.histogram(
                "deployment_duration_seconds",
                "Deployment duration from creation to its terminal phase.",
                &["app", "outcome"],
                DEPLOY_BUCKETS,
            ),
            deployment_last_success: r.fgauge(
                "deployment_last_success_timestamp_seconds",
                &format!("Unix time the app's last successful deployment ended{CACHED}."),
                &["app"],
            ),
            deployment_in_progress: r.gauge(
                "deployment_in_progress",
                &format!("1 while the app has a deployment building or deploying{CACHED}."),
                &["app"],
            ),
            deployment_last_outcome: r.gauge(
                "deployment_last_outcome",
                &format!("1 for the outcome of the app's newest ended deployment; stays through a later in-progress deployment{CACHED}."),
                &["app", "outcome"],
            ),
            deployment_info: r.gauge(
                "deployment_info",
                &format!("Always 1; the app's latest deployment: its id, commit and cause{CACHED}."),
                &["app", "deployment_id", "commit", "cause"],
            ),
            active_deployment_info: r.gauge(
                "active_deployment_info",
                &format!("Always 1; the app's ACTIVE (serving) deployment: its id and commit{CACHED}."),
                &["app", "deployment_id", "commit"],
            ),
            pinned_deployment: r.gauge(
                "pinned_deployment",
                &format!("1 while the app is pinned to a rolled-back deployment, blocking deploy-on-push{CACHED}."),
                &["app"],
            ),
            step_duration: r.histogram(
                "deployment_step_duration_seconds",
                "Duration of the top-level build and deploy steps of ended deployments.",
                &["app", "step"],
                STEP_BUCKETS,
            ),
            deployment_failed_step: r.gauge(
                "deployment_failed_step",
                &format!("1 for the step and reason code that failed the app's latest failed deployment{CACHED}."),
                &["app", "step", "reason"],
            ),
            deployment_stuck: r.gauge(
                "deployment_stuck",
                &format!("1 when the app's in-progress deployment has not progressed for longer than stuck_after{CACHED}."),
                &["app"],
            ),
            do_requests_total: r.counter(
                "digitalocean_requests_total",
                "DigitalOcean API requests, by endpoint template and HTTP status (or transport error).",
                &["endpoint", "code"],
            ),
            do_ratelimit_remaining: {
                // Registered by the client on DigitalOcean's first answer: absent means unknown, not 0.
                IntGauge::new(name("digitalocean_ratelimit_remaining"), "Requests left in the token's window, as DigitalOcean last reported.").expect("valid")
            },
            do_parse_errors_total: r.counter(
                "digitalocean_parse_errors_total",
                "Apps or deployments skipped because DigitalOcean sent something unparseable.",
                &["kind"],
            ),
            do_poll_interval_seconds: {
                let g = prometheus::Gauge::new(name("digitalocean_poll_interval_seconds"), "The poller's current adaptive interval.").expect("valid");
                registry.register(Box::new(g.clone())).expect("unique");
                g
            },
            probe_success: r.gauge(
                "health_probe_success",
                "1 when the target is considered healthy after failure/success thresholds.",
                &["app", "target"],
            ),
            probe_raw_success: r.gauge("health_probe_last_attempt_success", "1 when the last single probe attempt succeeded.", &["app", "target"]),
            probe_duration: r.fgauge("health_probe_duration_seconds", "Total duration of the last probe.", &["app", "target"]),
            probe_phase_duration: r.fgauge(
                "health_probe_phase_duration_seconds",
                "Duration of each phase of the last probe (dns, connect, tls, processing, transfer).",
                &["app", "target", "phase"],
            ),
            probe_status_code: r.gauge("health_probe_status_code", "HTTP status of the last probe (0 when none).", &["app", "target"]),
            probe_failure: r.gauge(
                "health_probe_failure",
                "1 for the reason the last probe failed (dns, connect, tls, timeout, status, body, refused), 0 for the others.",
                &["app", "target", "reason"],
            ),
            probe_consecutive_failures: r.gauge("health_probe_consecutive_failures", "Failed attempts in a row.", &["app", "target"]),
            probe_tls_expiry: r.fgauge(
                "health_probe_tls_cert_expiry_timestamp_seconds",
                "Unix time the target's leaf certificate expires.",
                &["app", "target"],
            ),
            probes_total: r.counter("health_probes_total", "Probe attempts by result.", &["app", "target", "result"]),
            git_ref_commit_ts: r.fgauge(
                "git_ref_commit_timestamp_seconds",
                &format!("Commit time of the branch head{CACHED}."),
                &["repo", "ref"],
            ),
            git_ref_info: r.gauge("git_ref_info", &format!("Always 1; the branch head commit{CACHED}."), &["repo", "ref", "commit"]),
            git_ref_ahead: r.gauge("git_ref_ahead", &format!("Commits on the local branch missing from its upstream{CACHED}."), &["repo", "ref"]),
            git_ref_behind: r.gauge("git_ref_behind", &format!("Commits on the upstream missing from the local branch{CACHED}."), &["repo", "ref"]),
            app_commits_behind: r.gauge(
                "app_commits_behind",
                &format!("Commits on the app's branch that its ACTIVE deployment lacks{CACHED}."),
                &["app"],
            ),
            app_undeployed_age: r.fgauge(
                "app_oldest_undeployed_commit_age_seconds",
                &format!("Age of the oldest commit on the app's branch that is not deployed (0 when none){CACHED}."),
                &["app"],
            ),
            dora_deployments_total: r.counter(
                "dora_deployments_total",
                "Successful deployments that count for DORA deployment frequency (excludes autoscale and maintenance).",
                &["app"],
            ),
            dora_change_failures_total: r.counter(
                "dora_change_failures_total",
                "Deployments that failed or were rolled back (DORA change failure rate numerator).",
                &["app"],
            ),
            dora_changes_total: r.counter(
                "dora_changes_total",
                "Deployments that ended in success or failure, rollbacks included, excluding autoscale and maintenance (DORA change failure rate denominator).",
                &["app"],
            ),
            dora_lead_time: r.histogram(
                "dora_lead_time_seconds",
                "Commit time to the deployment going ACTIVE.",
                &["app"],
                LONG_BUCKETS,
            ),
            dora_recovery_time: r.histogram(
                "dora_recovery_time_seconds",
                "Failed deployment to the next successful one.",
                &["app"],
                LONG_BUCKETS,
            ),
            webhook_alerts_total: r.counter("webhook_alerts_total", "Alerts received on the webhook, by status.", &["status"]),
            webhook_requests_total: r.counter("webhook_requests_total", "Webhook requests by HTTP answer.", &["code"]),
            webhook_duplicates_total: {
                let c = prometheus::IntCounter::new(name("webhook_duplicates_absorbed_total"), "Repeated or HA-duplicate alerts that changed nothing but a counter.").expect("valid");
                registry.register(Box::new(c.clone())).expect("unique");
                c
            },
            webhook_sanitized_total: r.counter("webhook_sanitized_total", "Alert fields changed so the store can take them, by reason (nul_byte: NUL bytes removed).", &["reason"]),
            webhook_batch_size: r.histogram(
                "webhook_batch_size",
                "Webhook notifications stored per group commit (one durable transaction).",
                &[],
                BATCH_BUCKETS,
            ),
            webhook_batches_one_by_one_total: r.counter(
                "webhook_batches_one_by_one_total",
                "Group commits stored one notification at a time instead of as one set, by reason (changed_meanwhile: a task changed between the batch's read and its write; refused: the store refused some input).",
                &["reason"],
            ),
            tasks: r.gauge("tasks", "Tasks by queue and state.", &["queue", "state"]),
            tasks_created_total: r.counter("tasks_created_total", "Tasks created, by queue and kind.", &["queue", "kind"]),
            task_claims_total: r.counter("task_claims_total", "Tasks claimed, by queue.", &["queue"]),
            task_lease_expiries_total: {
                let c = prometheus::IntCounter::new(name("task_lease_expiries_total"), "Claimed tasks returned to their queue because the lease ran out.").expect("valid");
                registry.register(Box::new(c.clone())).expect("unique");
                c
            },
            rollbacks_total: r.counter("rollbacks_total", "Automatic rollbacks by result (committed, reverted, failed, dry_run, skipped).", &["app", "result"]),
            announcements_pending: {
                let g = IntGauge::new(name("announcements_pending"), "Announcements waiting in the outbox for a notifier.").expect("valid");
                registry.register(Box::new(g.clone())).expect("unique");
                g
            },
            migration_pending: r.gauge("migration_pending", "Migrations the checked database has not applied.", &["check"]),
            migration_check_info: r.gauge("migration_check_info", "Always 1; which app each migration check belongs to.", &["check", "app"]),
            deployment_verification: r.gauge("deployment_verification", "The latest deployment's post-deploy verdict: 1 for its result (pending, passed, failed, inconclusive), 0 for the others.", &["app", "result"]),
            deployment_verifications_total: r.counter("deployment_verifications_total", "Verdicts of ended verification windows, once per deployment.", &["app", "result"]),
            app_component_restarts: r.fgauge("app_component_restarts", "Restarts of the component's instances in the current window (DigitalOcean monitoring): since ACTIVE inside a verification window, over the sweep window otherwise.", &["app", "component"]),
            app_component_cpu: r.fgauge("app_component_cpu_percent", "The component's CPU use, percent of its limit (latest sample, highest instance).", &["app", "component"]),
            app_component_memory: r.fgauge("app_component_memory_percent", "The component's memory use, percent of its limit (latest sample, highest instance).", &["app", "component"]),
            app_component_replicas: r.gauge("app_component_replicas", "The component's replicas: ready and desired (DigitalOcean app health).", &["app", "component", "state"]),
            exposition: crate::telemetry::exposition::Exposition::new(registry.clone(), process),
            registry,
            source_states: Default::default(),
        };
        m.build_info.set(&[env!("CARGO_PKG_VERSION")], 1.0);
        m
    }

    /// Text exposition of every family (the cached body plus this moment's process metrics).
    pub fn render(&self) -> Vec<u8> {
        self.exposition.text()
    }

    /// Tells `/metrics` that a writer changed something; the next scrape renders afresh.
    pub fn changed(&self) {
        self.exposition.changed();
    }

    /// Sets `source_up` and, on success, the last-success time.
    pub fn source_result(&self, source: &str, ok: bool) {
        self.source_states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(source.to_string(), ok);
        self.source_up.set(&[source], ok as i64 as f64);
        if ok {
            self.source_last_success.set(
                &[source],
                chrono::Utc::now().timestamp_millis() as f64 / 1000.0,
            );
        }
        self.changed();
    }
}

impl Metrics {
    /// The last result of a source: `None` before its first run.
    pub fn source_up(&self, source: &str) -> Option<bool> {
        self.source_states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(source)
            .copied()
    }

    /// Whether a source is configured (`source_enabled`), set once at start.
    pub fn source_enabled(&self, source: &str, on: bool) {
        self.source_enabled.set(&[source], (i64::from(on)) as f64);
        self.changed();
    }

    /// Whether this replica holds the lease `name`.
    pub fn leader(&self, name: &str, held: bool) {
        self.leader.set(&[name], (i64::from(held)) as f64);
        self.changed();
    }

    /// This replica took the lease `name` over from another holder.
    pub fn lease_takeover(&self, name: &str) {
        self.lease_takeovers_total.inc(&[name]);
        self.changed();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
