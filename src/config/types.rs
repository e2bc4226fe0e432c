//! The validated configuration the program runs on. Everything downstream receives these types and
//! never re-validates.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::domain::LabelValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifierKind {
    /// A Slack-compatible incoming webhook (`{"text": ...}`).
    Slack,
    /// The announcement as JSON.
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub origin: String,
    pub listen: SocketAddr,
    pub database_url: SecretString,
    pub environment: String,
    pub log_format: LogFormat,
    pub startup: StartupConfig,
    pub digitalocean: DigitalOceanConfig,
    pub health: HealthConfig,
    pub git: GitConfig,
    pub migration_checks: Vec<MigrationCheckConfig>,
    pub webhook: WebhookConfig,
    pub tasks: TasksConfig,
    pub rollback: RollbackConfig,
    pub notifiers: Vec<NotifierConfig>,
    pub http: crate::http::limits::HttpLimits,
    pub verification: VerificationConfig,
    /// Per-app settings (`[[apps]]`), by app name.
    pub apps: Vec<AppConfig>,
    /// `[deploy]`, `[[pipelines]]` (and each app's environment): the deploy loop.
    pub deploy: DeployConfig,
}

/// The post-deploy verification window (`[verification]`).
#[derive(Debug, Clone)]
pub struct VerificationConfig {
    /// How long after ACTIVE a deployment is watched; zero turns verification off.
    pub window: Duration,
    /// How often a deployment inside its window is sampled (60 s: four requests per app a minute).
    pub interval: Duration,
    pub auto_rollback: bool,
    /// The team's own Prometheus, for the regression queries.
    pub prometheus_url: Option<Url>,
    pub queries: Vec<VerificationQuery>,
    /// `DeploymentStuck` cancels a deployment stuck past `digitalocean.stuck_after`.
    pub cancel_stuck: bool,
    /// Restarts within the window that make a crash loop.
    pub crash_loop_restarts: u32,
    /// Memory (percent of the limit) before a restart that makes it an OOM kill.
    pub oom_memory_percent: f64,
    /// How often every app's restarts are read outside a window (`AppCrashLooping`); zero: never.
    pub sweep_interval: Duration,
}

/// A PromQL query compared with its own value over the window before the deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct VerificationQuery {
    pub name: LabelValue,
    pub query: String,
    pub limit: QueryLimit,
    pub kind: QueryKind,
}

/// The bound a query's value must keep: `max` (latency, error ratio) or `min` (throughput).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QueryLimit {
    Max(f64),
    Min(f64),
}

/// What a regression of the query means, for the verdict's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    Latency,
    ErrorRate,
}

/// One `[[apps]]` entry: the app's environment and its verification overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct AppConfig {
    pub name: String,
    pub environment: Option<String>,
    pub window: Option<Duration>,
    pub auto_rollback: Option<bool>,
}

impl Config {
    /// The app's `[[apps]]` entry, if any.
    pub fn app(&self, name: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.name == name)
    }

    /// The app's verification window (zero: not verified).
    pub fn verification_window(&self, app: &str) -> Duration {
        self.app(app)
            .and_then(|a| a.window)
            .unwrap_or(self.verification.window)
    }

    /// Whether a failed verification of the app rolls it back automatically.
    pub fn verification_auto_rollback(&self, app: &str) -> bool {
        self.app(app)
            .and_then(|a| a.auto_rollback)
            .unwrap_or(self.verification.auto_rollback)
    }

    /// The app's environment (`production`, `staging`, …) when configured.
    pub fn app_environment(&self, app: &str) -> Option<&str> {
        self.app(app).and_then(|a| a.environment.as_deref())
    }
}

#[derive(Debug, Clone)]
pub struct StartupConfig {
    /// Apply pending schema migrations at `serve` start.
    pub migrate: bool,
    /// How long app migration checks may fail at start before `/health/startup` reports the failure
    /// as final instead of "still waiting".
    pub grace: Duration,
    pub recheck_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct DigitalOceanConfig {
    /// `None` disables the source; the reason is logged at start.
    pub token: Option<SecretString>,
    pub api_url: Url,
    pub poll_interval: Duration,
    pub fast_poll_interval: Duration,
    /// Share of the token's hourly request budget the poller may use.
    pub budget_share: f64,
    pub request_timeout: Duration,
    pub stuck_after: Duration,
    pub log_tail_lines: usize,
    /// Length of the leases of the loops that run once among replicas (the poller, the outbox,
    /// the rollback worker, the sweeper). Default 3/4 of `poll_interval`, at least 1s.
    pub lease: Duration,
}

#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub targets: Vec<HealthTarget>,
    pub discover: bool,
    pub concurrency: usize,
    pub allow_link_local: bool,
}

#[derive(Debug, Clone)]
pub struct HealthTarget {
    pub name: LabelValue,
    pub app: LabelValue,
    pub url: Url,
    pub interval: Duration,
    pub timeout: Duration,
    pub accepted_status: Vec<u16>,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub body_checks: Vec<BodyCheck>,
    /// JSON field whose value must equal the commit of the app's ACTIVE deployment.
    pub expect_active_commit: Option<String>,
    pub allow_link_local: bool,
}

#[derive(Debug, Clone)]
pub struct BodyCheck {
    /// Dotted path into the JSON body (`checks.db.status`).
    pub field: String,
    pub equals: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct GitConfig {
    pub repos: Vec<GitRepo>,
    pub fetch_interval: Duration,
    pub mirror_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct GitRepo {
    pub name: LabelValue,
    pub url: String,
    pub branches: Vec<String>,
    pub app: Option<LabelValue>,
}

#[derive(Debug, Clone)]
pub struct MigrationCheckConfig {
    pub name: LabelValue,
    pub app: Option<LabelValue>,
    pub database_url: SecretString,
    pub required_tables: Vec<String>,
    pub required_columns: BTreeMap<String, Vec<String>>,
    pub migrations_dir: Option<PathBuf>,
    pub expected_version: Option<i64>,
    pub tracking_table: Option<String>,
    pub sql_checks: Vec<SqlCheck>,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct SqlCheck {
    pub name: String,
    pub sql: String,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Accepted bearer tokens: the current one and, during a rotation, the previous one.
    pub tokens: Vec<SecretString>,
    pub reopen_window: Duration,
    pub store_timeout: Duration,
    pub dashboard_url: Option<String>,
    pub rules: Vec<crate::tasks::rules::Rule>,
}

#[derive(Debug, Clone)]
pub struct TasksConfig {
    pub default_lease: Duration,
    pub max_attempts: u32,
    pub sweep_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct RollbackConfig {
    pub auto: Vec<AutoRollback>,
    pub cooldown: Duration,
    pub follow_timeout: Duration,
    pub healthy_for: Duration,
}

#[derive(Debug, Clone)]
pub struct AutoRollback {
    pub app: String,
    pub environment: Option<String>,
    pub dry_run: bool,
}

#[derive(Debug, Clone)]
pub struct NotifierConfig {
    pub name: String,
    pub kind: NotifierKind,
    pub url: SecretString,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9797";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://deploywatch.db";
pub const DEFAULT_DO_API_URL: &str = "https://api.digitalocean.com";

impl fmt::Display for Config {
    /// A summary safe to log: no secrets, only whether they are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "listen={} store={:?} digitalocean={} health_targets={} git_repos={} migration_checks={} webhook_auth={}",
            self.listen,
            self.database_kind(),
            if self.digitalocean.token.is_some() {
                "on"
            } else {
                "off"
            },
            self.health.targets.len(),
            self.git.repos.len(),
            self.migration_checks.len(),
            if self.webhook.tokens.is_empty() {
                "off"
            } else {
                "on"
            },
        )
    }
}

/// How long after a merge a deploy task waits for a deployment of its commit by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, PartialEq)]
pub struct DeployConfig {
    /// No deployment of a merged commit within this long: the deploy task fails `no_deployment`.
    pub timeout: Duration,
    pub apps: Vec<AppSettings>,
    pub pipelines: Vec<Pipeline>,
}

impl Default for DeployConfig {
    fn default() -> Self {
        DeployConfig {
            timeout: DEFAULT_TIMEOUT,
            apps: Vec::new(),
            pipelines: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppSettings {
    pub name: String,
    /// `production`, `staging`, or any other name (then fixes are of normal priority).
    pub environment: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub staging_app: String,
    pub production_app: String,
}

impl DeployConfig {
    /// The configured environment of `app`, if any.
    pub fn environment_of(&self, app: &str) -> Option<&str> {
        self.apps
            .iter()
            .find(|a| a.name == app)
            .and_then(|a| a.environment.as_deref())
    }

    /// The staging app that precedes `production_app` in a pipeline.
    pub fn staging_for(&self, production_app: &str) -> Option<&str> {
        self.pipelines
            .iter()
            .find(|p| p.production_app == production_app)
            .map(|p| p.staging_app.as_str())
    }
}
