//! Configuration: a TOML file plus the contract's environment variables, parsed once at startup into
//! typed values. Everything downstream receives these types and never re-validates.
//!
//! Strictness follows blackbox_exporter: an unknown key or a bad value stops the process with a message
//! that names the file and the key, and `deploywatch check` reports the same errors without starting.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use url::Url;

use crate::domain::LabelValue;

pub mod deploy;

/// A configuration problem, always naming where it came from and which key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: key `{key}`: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
}

/// A duration written the human way (`"30s"`, `"5m"`, `"1h 30m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {s:?} ({e}); write it like \"30s\", \"5m\" or \"1h\""
                ))
            })
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written. Every struct denies unknown fields so a typo is an error, not a silent default.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    database_url: Option<SecretString>,
    /// `deployment.environment.name` of deploywatch itself, for its own telemetry.
    environment: Option<String>,
    log_format: Option<LogFormat>,
    #[serde(default)]
    startup: StartupFile,
    digitalocean: Option<DigitalOceanFile>,
    #[serde(default)]
    health: HealthFile,
    #[serde(default)]
    git: GitFile,
    #[serde(default)]
    migration_checks: Vec<MigrationCheckFile>,
    #[serde(default)]
    webhook: WebhookFile,
    #[serde(default)]
    tasks: TasksFile,
    #[serde(default)]
    rollback: RollbackFile,
    #[serde(default)]
    notifiers: Vec<NotifierFile>,
    #[serde(default)]
    http: HttpFile,
    #[serde(default)]
    deploy: deploy::DeployFile,
    #[serde(default)]
    apps: Vec<deploy::AppFile>,
    #[serde(default)]
    pipelines: Vec<deploy::PipelineFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    header_timeout: Option<HumanDuration>,
    body_timeout: Option<HumanDuration>,
    max_body_bytes_in_flight: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartupFile {
    migrate: Option<bool>,
    grace: Option<HumanDuration>,
    recheck_interval: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DigitalOceanFile {
    api_url: Option<String>,
    token: Option<SecretString>,
    poll_interval: Option<HumanDuration>,
    fast_poll_interval: Option<HumanDuration>,
    budget_share: Option<f64>,
    request_timeout: Option<HumanDuration>,
    stuck_after: Option<HumanDuration>,
    log_tail_lines: Option<usize>,
    lease: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthFile {
    #[serde(default)]
    targets: Vec<HealthTargetFile>,
    discover: Option<bool>,
    concurrency: Option<usize>,
    allow_link_local: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthTargetFile {
    name: String,
    app: Option<String>,
    url: String,
    interval: Option<HumanDuration>,
    timeout: Option<HumanDuration>,
    #[serde(default)]
    accepted_status: Vec<u16>,
    failure_threshold: Option<u32>,
    success_threshold: Option<u32>,
    #[serde(default)]
    body_checks: Vec<BodyCheckFile>,
    expect_active_commit: Option<String>,
    allow_link_local: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyCheckFile {
    field: String,
    equals: serde_json::Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GitFile {
    #[serde(default)]
    repos: Vec<GitRepoFile>,
    fetch_interval: Option<HumanDuration>,
    mirror_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GitRepoFile {
    name: String,
    url: String,
    #[serde(default)]
    branches: Vec<String>,
    app: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrationCheckFile {
    name: String,
    app: Option<String>,
    database_url: SecretString,
    #[serde(default)]
    required_tables: Vec<String>,
    #[serde(default)]
    required_columns: BTreeMap<String, Vec<String>>,
    migrations_dir: Option<PathBuf>,
    expected_version: Option<i64>,
    tracking_table: Option<String>,
    #[serde(default)]
    sql_checks: Vec<SqlCheckFile>,
    interval: Option<HumanDuration>,
    timeout: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlCheckFile {
    name: String,
    sql: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFile {
    token: Option<SecretString>,
    previous_token: Option<SecretString>,
    reopen_window: Option<HumanDuration>,
    store_timeout: Option<HumanDuration>,
    dashboard_url: Option<String>,
    #[serde(default)]
    rules: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    alertname: String,
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    actions: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TasksFile {
    default_lease: Option<HumanDuration>,
    max_attempts: Option<u32>,
    sweep_interval: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackFile {
    #[serde(default)]
    auto: Vec<AutoRollbackFile>,
    cooldown: Option<HumanDuration>,
    follow_timeout: Option<HumanDuration>,
    healthy_for: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AutoRollbackFile {
    app: String,
    environment: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifierFile {
    name: String,
    kind: NotifierKind,
    url: SecretString,
}

// ---------------------------------------------------------------------------------------------
// The validated configuration the program runs on.
// ---------------------------------------------------------------------------------------------

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
    /// `[deploy]`, `[[apps]]`, `[[pipelines]]`: the deploy loop.
    pub deploy: deploy::DeployConfig,
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

/// The environment as the loader sees it; tests pass a map instead of mutating the process env.
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;

    /// For a secret: why `KEY` (or `KEY_FILE`) is set but unusable (blank, or an unreadable
    /// file), so the loader refuses instead of silently treating it as unset.
    fn blank_secret(&self, key: &str) -> Option<String>;
}

/// Pure: the reason a raw secret value is unusable.
fn blank_reason(name: &str, value: &str) -> Option<String> {
    value.trim().is_empty().then(|| {
        format!("{name} is set but empty or whitespace-only; set a real token or unset {name}")
    })
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    /// `KEY`, or the contents of the file named by `KEY_FILE` (Docker and Kubernetes secrets).
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| {
                let path = std::env::var(format!("{key}_FILE"))
                    .ok()
                    .filter(|v| !v.is_empty())?;
                std::fs::read_to_string(path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|v| !v.is_empty())
            })
    }

    fn blank_secret(&self, key: &str) -> Option<String> {
        if let Some(v) = std::env::var_os(key) {
            return blank_reason(key, &v.to_string_lossy());
        }
        let file_key = format!("{key}_FILE");
        let path = std::env::var_os(&file_key)?;
        if let Some(r) = blank_reason(&file_key, &path.to_string_lossy()) {
            return Some(r);
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => blank_reason(&format!("{file_key} ({})", path.to_string_lossy()), &text),
            Err(e) => Some(format!(
                "{file_key}: cannot read {}: {e}; fix the path or unset {file_key}",
                path.to_string_lossy()
            )),
        }
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned().filter(|v| !v.is_empty())
    }

    fn blank_secret(&self, key: &str) -> Option<String> {
        if let Some(v) = self.get(key) {
            return blank_reason(key, v);
        }
        let file_key = format!("{key}_FILE");
        blank_reason(&file_key, self.get(&file_key)?)
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9797";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://deploywatch.db";
pub const DEFAULT_DO_API_URL: &str = "https://api.digitalocean.com";

impl Config {
    /// Loads from `path` (or `DEPLOYWATCH_CONFIG`) and the environment.
    pub fn load(path: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
        let path: Option<PathBuf> = path
            .map(Path::to_path_buf)
            .or_else(|| env.var("DEPLOYWATCH_CONFIG").map(PathBuf::from));
        let (file, origin) = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                (
                    parse_file(&text, p)?,
                    format!("config file {}", p.display()),
                )
            }
            None => (FileConfig::default(), "configuration".to_string()),
        };
        build(file, origin, env)
    }

    /// Parses TOML text; used by tests and by `load`.
    pub fn from_toml(text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
        let file = parse_file(text, Path::new("<inline>"))?;
        build(file, "config file <inline>".into(), env)
    }

    /// Names of the outbound notifiers, for the outbox.
    pub fn notifier_names(&self) -> Vec<String> {
        self.notifiers.iter().map(|n| n.name.clone()).collect()
    }

    pub fn database_kind(&self) -> crate::store::Backend {
        crate::store::Backend::from_url(self.database_url.expose_secret())
            .unwrap_or(crate::store::Backend::Sqlite)
    }
}

fn parse_file(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

/// An optional duration key, or its default (zero allowed).
fn duration_or(d: Option<HumanDuration>, default: Duration) -> Duration {
    d.map(|d| d.0).unwrap_or(default)
}

struct Ctx<'a> {
    origin: &'a str,
}

impl Ctx<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_string(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn label(&self, key: &str, value: &str) -> Result<LabelValue, ConfigError> {
        LabelValue::parse(value).map_err(|m| self.err(key, m))
    }

    fn positive(
        &self,
        key: &str,
        d: Option<HumanDuration>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let d = duration_or(d, default);
        if d.is_zero() {
            return Err(self.err(key, "must be greater than zero"));
        }
        Ok(d)
    }
}

fn build(file: FileConfig, origin: String, env: &dyn Env) -> Result<Config, ConfigError> {
    let cx = Ctx { origin: &origin };
    let env_cx = Ctx {
        origin: "environment",
    };

    let listen_text = env
        .var("DEPLOYWATCH_LISTEN")
        .map(|v| (v, &env_cx, "DEPLOYWATCH_LISTEN"))
        .or_else(|| file.listen.clone().map(|v| (v, &cx, "listen")))
        .unwrap_or_else(|| (DEFAULT_LISTEN.to_string(), &cx, "listen"));
    let listen: SocketAddr = listen_text.0.parse().map_err(|_| {
        listen_text.1.err(
            listen_text.2,
            format!(
                "{:?} is not a socket address; write it like \"127.0.0.1:9797\"",
                listen_text.0
            ),
        )
    })?;

    let database_url = match env.var("DEPLOYWATCH_DATABASE_URL") {
        Some(v) => SecretString::from(v),
        None => file
            .database_url
            .clone()
            .unwrap_or_else(|| SecretString::from(DEFAULT_DATABASE_URL)),
    };
    if crate::store::Backend::from_url(database_url.expose_secret()).is_none() {
        return Err(cx.err(
            "database_url",
            "must start with sqlite:// or postgres:// (set it in the file or DEPLOYWATCH_DATABASE_URL)",
        ));
    }

    let startup = StartupConfig {
        migrate: file.startup.migrate.unwrap_or(true),
        grace: duration_or(file.startup.grace, Duration::from_secs(300)),
        recheck_interval: cx.positive(
            "startup.recheck_interval",
            file.startup.recheck_interval,
            Duration::from_secs(60),
        )?,
    };

    let dof = file.digitalocean.unwrap_or_default();
    let api_text = env
        .var("DEPLOYWATCH_DO_API_URL")
        .or(dof.api_url)
        .unwrap_or_else(|| DEFAULT_DO_API_URL.to_string());
    let api_url = Url::parse(&api_text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            cx.err(
                "digitalocean.api_url",
                format!("{api_text:?} is not an http(s) URL"),
            )
        })?;
    let token = env
        .var("DIGITALOCEAN_TOKEN")
        .map(SecretString::from)
        .or(dof.token);
    let budget_share = dof.budget_share.unwrap_or(0.5);
    if !(budget_share > 0.0 && budget_share <= 1.0) {
        return Err(cx.err("digitalocean.budget_share", "must be a fraction in (0, 1]"));
    }
    let poll_interval = cx.positive(
        "digitalocean.poll_interval",
        dof.poll_interval,
        Duration::from_secs(30),
    )?;
    let digitalocean = DigitalOceanConfig {
        token,
        api_url,
        poll_interval,
        fast_poll_interval: cx.positive(
            "digitalocean.fast_poll_interval",
            dof.fast_poll_interval,
            Duration::from_secs(10).min(poll_interval),
        )?,
        budget_share,
        request_timeout: cx.positive(
            "digitalocean.request_timeout",
            dof.request_timeout,
            Duration::from_secs(15),
        )?,
        stuck_after: cx.positive(
            "digitalocean.stuck_after",
            dof.stuck_after,
            Duration::from_secs(30 * 60),
        )?,
        log_tail_lines: dof.log_tail_lines.unwrap_or(50).min(1000),
        // Short enough that a takeover after a crash (lease + a quarter lease) fits in one poll
        // interval after the missed one.
        lease: cx.positive(
            "digitalocean.lease",
            dof.lease,
            poll_interval.mul_f64(0.75).max(Duration::from_secs(1)),
        )?,
    };
    if digitalocean.lease < Duration::from_millis(500) {
        return Err(cx.err(
            "digitalocean.lease",
            "must be at least 500ms (it is renewed every third of its length)",
        ));
    }

    let allow_ll_global = file.health.allow_link_local.unwrap_or(false);
    let mut targets = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, t) in file.health.targets.into_iter().enumerate() {
        let k = |f: &str| format!("health.targets[{i}].{f}");
        let name = cx.label(&k("name"), &t.name)?;
        if !seen.insert(name.as_str().to_string()) {
            return Err(cx.err(k("name"), format!("duplicate target name {:?}", t.name)));
        }
        let url = Url::parse(&t.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| {
                cx.err(
                    k("url"),
                    format!("{:?} is not an http(s) URL with a host", t.url),
                )
            })?;
        let app = cx.label(&k("app"), t.app.as_deref().unwrap_or(t.name.as_str()))?;
        let interval = cx.positive(&k("interval"), t.interval, Duration::from_secs(15))?;
        let timeout = cx.positive(&k("timeout"), t.timeout, Duration::from_secs(5))?;
        if timeout > interval {
            return Err(cx.err(
                k("timeout"),
                "must not be longer than the target's interval",
            ));
        }
        if let Some(bad) = t.accepted_status.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(cx.err(
                k("accepted_status"),
                format!("{bad} is not an HTTP status code"),
            ));
        }
        let ft = t.failure_threshold.unwrap_or(3);
        let st = t.success_threshold.unwrap_or(1);
        if ft == 0 || st == 0 {
            return Err(cx.err(k("failure_threshold"), "thresholds must be at least 1"));
        }
        targets.push(HealthTarget {
            name,
            app,
            url,
            interval,
            timeout,
            accepted_status: t.accepted_status,
            failure_threshold: ft,
            success_threshold: st,
            body_checks: t
                .body_checks
                .into_iter()
                .map(|b| BodyCheck {
                    field: b.field,
                    equals: b.equals,
                })
                .collect(),
            expect_active_commit: t.expect_active_commit,
            allow_link_local: t.allow_link_local.unwrap_or(allow_ll_global),
        });
    }
    let health = HealthConfig {
        targets,
        discover: file.health.discover.unwrap_or(true),
        concurrency: file.health.concurrency.unwrap_or(32).clamp(1, 1024),
        allow_link_local: allow_ll_global,
    };

    let mut repos = Vec::new();
    for (i, r) in file.git.repos.into_iter().enumerate() {
        let k = |f: &str| format!("git.repos[{i}].{f}");
        let name = cx.label(&k("name"), &r.name)?;
        if r.url.trim().is_empty() {
            return Err(cx.err(k("url"), "must be a local path or a remote URL"));
        }
        let branches = if r.branches.is_empty() {
            vec!["main".to_string()]
        } else {
            r.branches
        };
        for b in &branches {
            if b.is_empty()
                || b.contains("..")
                || b.starts_with('-')
                || b.contains(char::is_whitespace)
            {
                return Err(cx.err(k("branches"), format!("{b:?} is not a branch name")));
            }
        }
        let app = r
            .app
            .as_deref()
            .map(|a| cx.label(&k("app"), a))
            .transpose()?;
        repos.push(GitRepo {
            name,
            url: r.url,
            branches,
            app,
        });
    }
    let git = GitConfig {
        repos,
        fetch_interval: cx.positive(
            "git.fetch_interval",
            file.git.fetch_interval,
            Duration::from_secs(60),
        )?,
        mirror_dir: file
            .git
            .mirror_dir
            .unwrap_or_else(|| PathBuf::from("deploywatch-git")),
    };

    let mut migration_checks = Vec::new();
    for (i, m) in file.migration_checks.into_iter().enumerate() {
        let k = |f: &str| format!("migration_checks[{i}].{f}");
        let name = cx.label(&k("name"), &m.name)?;
        let url = m.database_url.expose_secret();
        if ![
            "mysql://",
            "mariadb://",
            "postgres://",
            "postgresql://",
            "sqlite:",
        ]
        .iter()
        .any(|p| url.starts_with(p))
        {
            return Err(cx.err(
                k("database_url"),
                "must start with mysql://, postgres:// or sqlite:",
            ));
        }
        for t in m.required_tables.iter().chain(m.required_columns.keys()) {
            crate::checks::app_migrations::validate_identifier(t)
                .map_err(|msg| cx.err(k("required_tables"), msg))?;
        }
        if let Some(t) = &m.tracking_table {
            crate::checks::app_migrations::validate_identifier(t)
                .map_err(|msg| cx.err(k("tracking_table"), msg))?;
        }
        let app = m
            .app
            .as_deref()
            .map(|a| cx.label(&k("app"), a))
            .transpose()?;
        migration_checks.push(MigrationCheckConfig {
            name,
            app,
            database_url: m.database_url,
            required_tables: m.required_tables,
            required_columns: m.required_columns,
            migrations_dir: m.migrations_dir,
            expected_version: m.expected_version,
            tracking_table: m.tracking_table,
            sql_checks: m
                .sql_checks
                .into_iter()
                .map(|s| SqlCheck {
                    name: s.name,
                    sql: s.sql,
                })
                .collect(),
            interval: cx.positive(&k("interval"), m.interval, Duration::from_secs(60))?,
            timeout: cx.positive(&k("timeout"), m.timeout, Duration::from_secs(5))?,
        });
    }

    // A blank token would silently turn authentication off: refuse to start instead.
    for (var, key, from_file) in [
        (
            "DEPLOYWATCH_WEBHOOK_TOKEN",
            "webhook.token",
            &file.webhook.token,
        ),
        (
            "DEPLOYWATCH_WEBHOOK_PREVIOUS_TOKEN",
            "webhook.previous_token",
            &file.webhook.previous_token,
        ),
    ] {
        if let Some(m) = env.blank_secret(var) {
            return Err(ConfigError::Invalid {
                origin: "environment".into(),
                key: var.into(),
                message: m,
            });
        }
        if let Some(t) = from_file
            && t.expose_secret().trim().is_empty()
        {
            return Err(cx.err(
                key,
                format!("{key} is empty or whitespace-only; set a real token or remove the key"),
            ));
        }
    }
    let mut tokens = Vec::new();
    if let Some(t) = env
        .var("DEPLOYWATCH_WEBHOOK_TOKEN")
        .map(SecretString::from)
        .or(file.webhook.token)
    {
        tokens.push(t);
    }
    if let Some(t) = env
        .var("DEPLOYWATCH_WEBHOOK_PREVIOUS_TOKEN")
        .map(SecretString::from)
        .or(file.webhook.previous_token)
    {
        tokens.push(t);
    }
    let mut rules = Vec::new();
    for (i, r) in file.webhook.rules.into_iter().enumerate() {
        let actions = r
            .actions
            .iter()
            .map(|a| {
                a.parse::<crate::tasks::rules::Action>()
                    .map_err(|m| cx.err(format!("webhook.rules[{i}].actions"), m))
            })
            .collect::<Result<Vec<_>, _>>()?;
        rules.push(crate::tasks::rules::Rule {
            alertname: r.alertname,
            match_labels: r.match_labels,
            actions,
        });
    }
    let webhook = WebhookConfig {
        tokens,
        reopen_window: duration_or(file.webhook.reopen_window, Duration::from_secs(15 * 60)),
        store_timeout: cx.positive(
            "webhook.store_timeout",
            file.webhook.store_timeout,
            Duration::from_secs(3),
        )?,
        dashboard_url: file.webhook.dashboard_url,
        rules,
    };

    let tasks = TasksConfig {
        default_lease: cx.positive(
            "tasks.default_lease",
            file.tasks.default_lease,
            Duration::from_secs(300),
        )?,
        max_attempts: file.tasks.max_attempts.unwrap_or(3).max(1),
        sweep_interval: cx.positive(
            "tasks.sweep_interval",
            file.tasks.sweep_interval,
            Duration::from_secs(5),
        )?,
    };

    let rollback = RollbackConfig {
        auto: file
            .rollback
            .auto
            .into_iter()
            .map(|a| AutoRollback {
                app: a.app,
                environment: a.environment,
                dry_run: a.dry_run,
            })
            .collect(),
        cooldown: duration_or(file.rollback.cooldown, Duration::from_secs(30 * 60)),
        follow_timeout: cx.positive(
            "rollback.follow_timeout",
            file.rollback.follow_timeout,
            Duration::from_secs(20 * 60),
        )?,
        healthy_for: duration_or(file.rollback.healthy_for, Duration::from_secs(120)),
    };

    let mut notifiers = Vec::new();
    for (i, n) in file.notifiers.into_iter().enumerate() {
        let ok = Url::parse(n.url.expose_secret())
            .map(|u| matches!(u.scheme(), "http" | "https"))
            .unwrap_or(false);
        if !ok {
            return Err(cx.err(format!("notifiers[{i}].url"), "is not an http(s) URL"));
        }
        notifiers.push(NotifierConfig {
            name: n.name,
            kind: n.kind,
            url: n.url,
        });
    }

    let log_format = match env.var("DEPLOYWATCH_LOG_FORMAT").as_deref() {
        Some("json") => LogFormat::Json,
        Some("text") => LogFormat::Text,
        Some(other) => {
            return Err(env_cx.err(
                "DEPLOYWATCH_LOG_FORMAT",
                format!("{other:?} is neither \"text\" nor \"json\""),
            ));
        }
        None => file.log_format.unwrap_or_default(),
    };

    let d = crate::http::limits::HttpLimits::default();
    let http = crate::http::limits::HttpLimits {
        header_timeout: cx.positive(
            "http.header_timeout",
            file.http.header_timeout,
            d.header_timeout,
        )?,
        body_timeout: cx.positive("http.body_timeout", file.http.body_timeout, d.body_timeout)?,
        max_body_bytes_in_flight: match file.http.max_body_bytes_in_flight {
            Some(n) if n < crate::http::limits::BODY_LIMIT => {
                return Err(cx.err(
                    "http.max_body_bytes_in_flight",
                    format!(
                        "must be at least the body limit, {} bytes",
                        crate::http::limits::BODY_LIMIT
                    ),
                ));
            }
            Some(n) => n,
            None => d.max_body_bytes_in_flight,
        },
    };

    let deploy = deploy::build(&origin, &file.deploy, file.apps, file.pipelines)?;

    Ok(Config {
        http,
        deploy,
        origin,
        listen,
        database_url,
        environment: file.environment.unwrap_or_else(|| "production".into()),
        log_format,
        startup,
        digitalocean,
        health,
        git,
        migration_checks,
        webhook,
        tasks,
        rollback,
        notifiers,
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn secrets_never_show_in_debug_or_display() {
        let cfg = Config::from_toml(
            "database_url = \"postgres://dw:db-canary@h/dw\"\n[[notifiers]]\nname = \"n\"\nkind = \"json\"\nurl = \"https://hooks/notifier-canary\"\n",
            &env(&[("DIGITALOCEAN_TOKEN", "do-canary"), ("DEPLOYWATCH_WEBHOOK_TOKEN", "hook-canary")]),
        )
        .expect("valid");
        let shown = format!("{cfg:?} {cfg}");
        for canary in ["db-canary", "do-canary", "hook-canary", "notifier-canary"] {
            assert!(!shown.contains(canary), "{canary} leaked: {shown}");
        }
        assert!(cfg.digitalocean.token.is_some());
    }

    #[test]
    fn environment_overrides_the_file_and_defaults_apply() {
        let cfg = Config::from_toml(
            "listen = \"127.0.0.1:1\"\n[digitalocean]\npoll_interval = \"2m\"\n",
            &env(&[
                ("DEPLOYWATCH_LISTEN", "127.0.0.1:2"),
                ("DEPLOYWATCH_DO_API_URL", "http://sim:1"),
            ]),
        )
        .expect("valid");
        assert_eq!(cfg.listen.port(), 2);
        assert_eq!(cfg.digitalocean.api_url.as_str(), "http://sim:1/");
        assert_eq!(cfg.digitalocean.poll_interval, Duration::from_secs(120));
        assert_eq!(cfg.digitalocean.fast_poll_interval, Duration::from_secs(10));
        assert!(cfg.digitalocean.token.is_none());
        assert_eq!(cfg.database_kind(), crate::store::Backend::Sqlite);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                "[digitalocean]\npoll_interval = \"0s\"\n",
                "digitalocean.poll_interval",
            ),
            (
                "[[health.targets]]\nname = \"a\"\nurl = \"http://x/\"\ninterval = \"1s\"\ntimeout = \"2s\"\n",
                "health.targets[0].timeout",
            ),
            (
                "[[health.targets]]\nname = \"a\"\nurl = \"http://x/\"\naccepted_status = [999]\n",
                "health.targets[0].accepted_status",
            ),
            (
                "[[git.repos]]\nname = \"r\"\nurl = \"/x\"\nbranches = [\"..\"]\n",
                "git.repos[0].branches",
            ),
            ("unknown_key = 1\n", "unknown_key"),
        ];
        for (text, key) in cases {
            let e = Config::from_toml(text, &env(&[]))
                .expect_err(text)
                .to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }
}
