//! The configuration file as written. Every struct denies unknown fields so a typo is an error,
//! not a silent default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

use super::error::ConfigError;
use super::types::{LogFormat, NotifierKind};

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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) listen: Option<String>,
    pub(super) database_url: Option<SecretString>,
    /// `deployment.environment.name` of deploywatch itself, for its own telemetry.
    pub(super) environment: Option<String>,
    pub(super) log_format: Option<LogFormat>,
    #[serde(default)]
    pub(super) startup: StartupFile,
    pub(super) digitalocean: Option<DigitalOceanFile>,
    #[serde(default)]
    pub(super) health: HealthFile,
    #[serde(default)]
    pub(super) git: GitFile,
    #[serde(default)]
    pub(super) migration_checks: Vec<MigrationCheckFile>,
    #[serde(default)]
    pub(super) webhook: WebhookFile,
    #[serde(default)]
    pub(super) tasks: TasksFile,
    #[serde(default)]
    pub(super) rollback: RollbackFile,
    #[serde(default)]
    pub(super) notifiers: Vec<NotifierFile>,
    #[serde(default)]
    pub(super) http: HttpFile,
    #[serde(default)]
    pub(super) verification: VerificationFile,
    #[serde(default)]
    pub(super) apps: Vec<AppFile>,
    #[serde(default)]
    pub(super) deploy: DeployFile,
    #[serde(default)]
    pub(super) pipelines: Vec<PipelineFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VerificationFile {
    pub(super) window: Option<HumanDuration>,
    pub(super) interval: Option<HumanDuration>,
    pub(super) auto_rollback: Option<bool>,
    pub(super) prometheus_url: Option<String>,
    pub(super) cancel_stuck: Option<bool>,
    pub(super) crash_loop_restarts: Option<u32>,
    pub(super) oom_memory_percent: Option<f64>,
    pub(super) sweep_interval: Option<HumanDuration>,
    #[serde(default)]
    pub(super) queries: Vec<VerificationQueryFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VerificationQueryFile {
    pub(super) name: String,
    pub(super) query: String,
    pub(super) max: Option<f64>,
    pub(super) min: Option<f64>,
    pub(super) kind: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AppFile {
    pub(super) name: String,
    pub(super) environment: Option<String>,
    pub(super) window: Option<HumanDuration>,
    pub(super) auto_rollback: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpFile {
    pub(super) header_timeout: Option<HumanDuration>,
    pub(super) body_timeout: Option<HumanDuration>,
    pub(super) max_body_bytes_in_flight: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StartupFile {
    pub(super) migrate: Option<bool>,
    pub(super) grace: Option<HumanDuration>,
    pub(super) recheck_interval: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DigitalOceanFile {
    pub(super) api_url: Option<String>,
    pub(super) token: Option<SecretString>,
    pub(super) poll_interval: Option<HumanDuration>,
    pub(super) fast_poll_interval: Option<HumanDuration>,
    pub(super) budget_share: Option<f64>,
    pub(super) request_timeout: Option<HumanDuration>,
    pub(super) stuck_after: Option<HumanDuration>,
    pub(super) log_tail_lines: Option<usize>,
    pub(super) lease: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HealthFile {
    #[serde(default)]
    pub(super) targets: Vec<HealthTargetFile>,
    pub(super) discover: Option<bool>,
    pub(super) concurrency: Option<usize>,
    pub(super) allow_link_local: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HealthTargetFile {
    pub(super) name: String,
    pub(super) app: Option<String>,
    pub(super) url: String,
    pub(super) interval: Option<HumanDuration>,
    pub(super) timeout: Option<HumanDuration>,
    #[serde(default)]
    pub(super) accepted_status: Vec<u16>,
    pub(super) failure_threshold: Option<u32>,
    pub(super) success_threshold: Option<u32>,
    #[serde(default)]
    pub(super) body_checks: Vec<BodyCheckFile>,
    pub(super) expect_active_commit: Option<String>,
    pub(super) allow_link_local: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BodyCheckFile {
    pub(super) field: String,
    pub(super) equals: serde_json::Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GitFile {
    #[serde(default)]
    pub(super) repos: Vec<GitRepoFile>,
    pub(super) fetch_interval: Option<HumanDuration>,
    pub(super) mirror_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GitRepoFile {
    pub(super) name: String,
    pub(super) url: String,
    #[serde(default)]
    pub(super) branches: Vec<String>,
    pub(super) app: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MigrationCheckFile {
    pub(super) name: String,
    pub(super) app: Option<String>,
    pub(super) database_url: SecretString,
    #[serde(default)]
    pub(super) required_tables: Vec<String>,
    #[serde(default)]
    pub(super) required_columns: BTreeMap<String, Vec<String>>,
    pub(super) migrations_dir: Option<PathBuf>,
    pub(super) expected_version: Option<i64>,
    pub(super) tracking_table: Option<String>,
    #[serde(default)]
    pub(super) sql_checks: Vec<SqlCheckFile>,
    pub(super) interval: Option<HumanDuration>,
    pub(super) timeout: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SqlCheckFile {
    pub(super) name: String,
    pub(super) sql: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookFile {
    pub(super) token: Option<SecretString>,
    pub(super) previous_token: Option<SecretString>,
    pub(super) reopen_window: Option<HumanDuration>,
    pub(super) store_timeout: Option<HumanDuration>,
    pub(super) dashboard_url: Option<String>,
    #[serde(default)]
    pub(super) rules: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleFile {
    pub(super) alertname: String,
    #[serde(default)]
    pub(super) match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) actions: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TasksFile {
    pub(super) default_lease: Option<HumanDuration>,
    pub(super) max_attempts: Option<u32>,
    pub(super) sweep_interval: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackFile {
    #[serde(default)]
    pub(super) auto: Vec<AutoRollbackFile>,
    pub(super) cooldown: Option<HumanDuration>,
    pub(super) follow_timeout: Option<HumanDuration>,
    pub(super) healthy_for: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AutoRollbackFile {
    pub(super) app: String,
    pub(super) environment: Option<String>,
    #[serde(default)]
    pub(super) dry_run: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NotifierFile {
    pub(super) name: String,
    pub(super) kind: NotifierKind,
    pub(super) url: SecretString,
}

pub(super) fn parse_file(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeployFile {
    pub(super) timeout: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PipelineFile {
    pub(super) staging_app: String,
    pub(super) production_app: String,
}
