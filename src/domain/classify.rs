//! Names the kind of a deployment failure from its failed step, reason code and log tail, so the
//! fix task's title and instructions fit the problem. Pure; tested with a table.

use serde::{Deserialize, Serialize};

/// The step a failed deployment failed in, as the API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedStep {
    /// `build` or `deploy` (the top-level step).
    pub top_step: String,
    pub step: String,
    pub component: Option<String>,
    pub reason_code: Option<String>,
    pub reason_message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    BuildError,
    DependencyIssue,
    ConfigurationError,
    HealthCheckFailure,
    ServiceCrash,
    DatabaseMigrationIssue,
    DeploymentError,
}

impl FailureClass {
    /// The words in `FIX: <title> in <app>`.
    pub fn title(self) -> &'static str {
        match self {
            FailureClass::BuildError => "Build error",
            FailureClass::DependencyIssue => "Dependency issue",
            FailureClass::ConfigurationError => "Configuration error",
            FailureClass::HealthCheckFailure => "Health check failure",
            FailureClass::ServiceCrash => "Service crash",
            FailureClass::DatabaseMigrationIssue => "Database migration issue",
            FailureClass::DeploymentError => "Deployment error",
        }
    }

    /// What an agent should do first.
    pub fn instructions(self) -> &'static str {
        match self {
            FailureClass::BuildError => {
                "Read the build log tail, reproduce the build locally with the same commit, fix the compile or build script error, push."
            }
            FailureClass::DependencyIssue => {
                "A dependency could not be resolved or installed: check the lock file and version constraints in the failing commit, pin or update the dependency, push."
            }
            FailureClass::ConfigurationError => {
                "The app spec or environment is wrong (missing variable, bad run command, port or instance size): compare the spec with the last good deployment and fix it."
            }
            FailureClass::HealthCheckFailure => {
                "The new version did not pass its health check: call its /health/ready and /health/live, read the deploy log tail, fix the failing dependency or roll back."
            }
            FailureClass::ServiceCrash => {
                "The service exits or is killed after start (crash loop, out of memory): read the deploy log tail for the panic or OOM, fix, push; roll back if production is affected."
            }
            FailureClass::DatabaseMigrationIssue => {
                "The database schema does not match the code: run or fix the pending migration (see the missing tables and versions in the context), then redeploy."
            }
            FailureClass::DeploymentError => {
                "Read the failed step, reason and log tail in the context and the deployment trace; fix and push, or roll back."
            }
        }
    }
}

fn has_any(hay: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| hay.contains(n))
}

/// Log patterns outrank reason codes (a health check can fail *because* a migration is missing);
/// reason codes outrank the bare step name.
pub fn classify(step: Option<&FailedStep>, log_tail: Option<&str>) -> FailureClass {
    let log = log_tail.unwrap_or("").to_ascii_lowercase();
    let code = step
        .and_then(|s| s.reason_code.as_deref())
        .unwrap_or("")
        .to_ascii_lowercase();
    let msg = step
        .and_then(|s| s.reason_message.as_deref())
        .unwrap_or("")
        .to_ascii_lowercase();
    let text = format!("{log}\n{msg}");
    if has_any(
        &text,
        &[
            "relation \"",
            "no such table",
            "doesn't exist",
            "does not exist",
            "migration",
            "schema_migrations",
            "_sqlx_migrations",
            "unknown column",
        ],
    ) && has_any(&text, &["relation", "table", "migration", "column"])
    {
        return FailureClass::DatabaseMigrationIssue;
    }
    if has_any(
        &text,
        &[
            "eresolve",
            "could not resolve dependency",
            "no matching version",
            "failed to select a version",
            "could not find a version",
            "module not found",
            "cannot find module",
            "no matching distribution",
            "dependency resolution",
            "failed to fetch",
        ],
    ) {
        return FailureClass::DependencyIssue;
    }
    if has_any(
        &text,
        &[
            "oomkilled",
            "out of memory",
            "panicked at",
            "segmentation fault",
            "exited with code 137",
            "crashloop",
            "container exited",
            "killed",
        ],
    ) || code.contains("crash")
    {
        return FailureClass::ServiceCrash;
    }
    if has_any(&code, &["config", "spec", "envvar", "invalid"])
        || has_any(
            &text,
            &[
                "environment variable",
                "invalid app spec",
                "run command",
                "is not set",
            ],
        )
    {
        return FailureClass::ConfigurationError;
    }
    if code.contains("health")
        || has_any(
            &text,
            &[
                "health check",
                "readiness probe",
                "liveness probe",
                "failed health checks",
            ],
        )
    {
        return FailureClass::HealthCheckFailure;
    }
    match step.map(|s| s.top_step.as_str()) {
        Some("build") => FailureClass::BuildError,
        _ if code.contains("build") => FailureClass::BuildError,
        _ => FailureClass::DeploymentError,
    }
}

/// A deployment whose PRE_DEPLOY or POST_DEPLOY job failed: a failed job that migrates (the usual
/// home of migrations) makes it a migration issue, whatever the step said. Pure.
pub fn with_failed_jobs(class: FailureClass, failed_jobs: &[String]) -> FailureClass {
    let migrates = |n: &String| {
        let n = n.to_ascii_lowercase();
        n.contains("migrat") || n.contains("schema")
    };
    if failed_jobs.iter().any(migrates) {
        FailureClass::DatabaseMigrationIssue
    } else {
        class
    }
}

#[cfg(test)]
mod job_tests {
    use super::*;

    #[test]
    fn a_failed_migration_job_is_a_migration_issue() {
        let jobs = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let cases = [
            (
                FailureClass::DeploymentError,
                jobs(&["migrate"]),
                FailureClass::DatabaseMigrationIssue,
            ),
            (
                FailureClass::DeploymentError,
                jobs(&["db-Migrations"]),
                FailureClass::DatabaseMigrationIssue,
            ),
            (
                FailureClass::DeploymentError,
                jobs(&["warm-cache"]),
                FailureClass::DeploymentError,
            ),
            (
                FailureClass::BuildError,
                jobs(&[]),
                FailureClass::BuildError,
            ),
        ];
        for (class, failed, want) in cases {
            assert_eq!(with_failed_jobs(class, &failed), want, "{failed:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(top: &str, code: &str) -> FailedStep {
        FailedStep {
            top_step: top.into(),
            step: "web".into(),
            component: Some("web".into()),
            reason_code: Some(code.into()),
            reason_message: None,
        }
    }

    #[test]
    fn classification_table() {
        let cases: &[(Option<FailedStep>, Option<&str>, FailureClass)] = &[
            (
                Some(step("build", "BuildJobFailed")),
                Some("error: expected `;`"),
                FailureClass::BuildError,
            ),
            (
                Some(step("build", "BuildJobFailed")),
                Some("npm ERR! ERESOLVE could not resolve dependency"),
                FailureClass::DependencyIssue,
            ),
            (
                Some(step("deploy", "DeployHealthChecksFailed")),
                Some("GET /health/ready 503"),
                FailureClass::HealthCheckFailure,
            ),
            (
                Some(step("deploy", "DeployHealthChecksFailed")),
                Some("GET /health/ready 503 (database: relation \"match_records\" does not exist)"),
                FailureClass::DatabaseMigrationIssue,
            ),
            (
                Some(step("deploy", "DeployContainerExited")),
                Some("thread 'main' panicked at src/main.rs:3"),
                FailureClass::ServiceCrash,
            ),
            (
                Some(step("deploy", "InvalidAppSpec")),
                None,
                FailureClass::ConfigurationError,
            ),
            (
                Some(step("deploy", "")),
                Some("DATABASE_URL is not set"),
                FailureClass::ConfigurationError,
            ),
            (None, None, FailureClass::DeploymentError),
            (
                Some(step("deploy", "Unknown")),
                Some(""),
                FailureClass::DeploymentError,
            ),
        ];
        for (s, log, want) in cases {
            assert_eq!(classify(s.as_ref(), *log), *want, "{s:?} {log:?}");
        }
    }
}
