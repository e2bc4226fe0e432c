//! The store: everything deploywatch must not lose (alerts received, tasks, counted deployments, the
//! outbox, the poller lease). One interface, two backends: embedded SQLite (the default) and
//! PostgreSQL (several replicas sharing one database).
//!
//! Both backends run through sqlx's `Any` driver with one set of queries; the schema keeps to types
//! both share (BIGINT milliseconds, TEXT JSON) and the few statements that must differ (the claim
//! query, connection pragmas) branch on [`Backend`]. Each backend has its own migrations folder.

mod checkpointer;
mod deploys;
mod group_commit;
mod health;
mod ingest;
mod ingest_batch;
mod ingest_plan;
mod leases;
mod migrations;
mod placement;
mod pool;
mod redaction;
pub mod sqlite_file;
mod tasks;
mod verifications;
mod wal_sync;

pub use deploys::FollowUp;
pub use group_commit::BatchCommitted;
pub use ingest::{AlertRecord, NotificationRecord};
pub use placement::{IngestReport, PlaceOptions};
pub use redaction::redact;
pub use tasks::{TaskFilter, TaskUpdateError};
pub use verifications::VerificationRow;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::any::AnyConnectOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};

use crate::domain::Outcome;
use crate::domain::dora::DeploymentOutcome;

use migrations::{POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    fn migrator(self) -> &'static Migrator {
        match self {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unreachable: {0}")]
    Unavailable(String),
    #[error("the database answered too slowly (over {0:?})")]
    Timeout(Duration),
    #[error(
        "the database schema is at version {db} but this binary knows versions up to {binary}; \
         run a newer deploywatch or restore the matching database"
    )]
    SchemaTooNew { db: i64, binary: i64 },
    #[error("the database schema has pending migrations ({pending}); run `deploywatch migrate`")]
    SchemaPending { pending: usize },
    #[error("migration failed: {0}")]
    Migrate(String),
    /// PostgreSQL chose this transaction as a deadlock victim or failed it for serialization: it
    /// was rolled back whole, so running it again is safe.
    #[error("the transaction lost a lock race and was rolled back: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Query(String),
    /// The database refused the data itself (too long for an index, an invalid byte, a limit):
    /// retrying the same input can never succeed.
    #[error("the database cannot store this input: {0}")]
    Rejected(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(redact(&e.to_string())),
            sqlx::Error::Database(db) => {
                let msg = redact(&db.to_string());
                if db.code().is_some_and(|c| input_error_code(&c)) {
                    StoreError::Rejected(msg)
                } else if db.code().is_some_and(|c| conflict_code(&c)) {
                    StoreError::Conflict(msg)
                } else {
                    // Disk full, read-only, I/O, busy, deadlock, serialization, timeouts, a lost
                    // connection and codes not known here: the store, not the data, is at fault.
                    StoreError::Unavailable(msg)
                }
            }
            other => StoreError::Query(redact(&other.to_string())),
        }
    }
}

/// Database error codes that blame the input, never the store. PostgreSQL SQLSTATE classes 22 (data
/// exception: NUL byte, bad encoding, value too long), 23 (integrity) and 54 (program limit: index
/// row size, too many columns); SQLite's TOOBIG (18), CONSTRAINT (19), MISMATCH (20), RANGE (25).
fn input_error_code(code: &str) -> bool {
    matches!(code.get(..2), Some("22" | "23" | "54")) && code.len() == 5
        || matches!(code, "18" | "19" | "20" | "25")
        || code
            .parse::<u32>()
            .is_ok_and(|c| matches!(c & 0xff, 18 | 19 | 20 | 25))
}

/// PostgreSQL's deadlock victim (40P01) and serialization failure (40001): the transaction was
/// rolled back whole and may run again.
fn conflict_code(code: &str) -> bool {
    matches!(code, "40P01" | "40001")
}

impl StoreError {
    /// Whether the caller (Alertmanager) should retry: the data was fine, the store was not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Timeout(_) | StoreError::Conflict(_)
        )
    }
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    health: Arc<health::WriteHealth>,
    sqlite_path: Option<std::path::PathBuf>,
    /// No lease in the store expires before this (Unix ms), as far as this process knows; a claim
    /// sweeps expired leases only once it has passed (see `tasks.rs`).
    lease_watermark: Arc<std::sync::atomic::AtomicI64>,
    /// The webhook's group-commit queue and its writers (`group_commit.rs`).
    group: Arc<group_commit::GroupCommit>,
    /// SQLite file databases: WAL checkpoints off the commit path (`checkpointer.rs`).
    checkpointer: Option<Arc<checkpointer::Checkpointer>>,
    /// SQLite: whether group commits may flush the WAL after COMMIT (`wal_sync.rs`).
    wal: Arc<wal_sync::WalSync>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

/// Migration state as `check` and `/health/startup` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    pub applied: i64,
    pub known: i64,
    pub pending: usize,
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A new row id: a time-ordered UUID (v7), so rows made together sit together at the end of the
/// primary key and of every index that ends in the id. With random (v4) ids every insert dirtied
/// its own random page of each such index, a whole page written to SQLite's WAL per row.
pub(crate) fn new_row_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl Store {
    /// Connects lazily-checked: the pool is created at once, and the first query reports reachability.
    pub async fn connect(
        url: &SecretString,
        acquire_timeout: Duration,
    ) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let raw = url.expose_secret();
        let backend = Backend::from_url(raw)
            .ok_or_else(|| StoreError::Unavailable("unsupported database URL scheme".into()))?;
        let url = match backend {
            Backend::Sqlite if !raw.contains("mode=") => {
                let sep = if raw.contains('?') { '&' } else { '?' };
                format!("{raw}{sep}mode=rwc")
            }
            _ => raw.to_string(),
        };
        let opts = AnyConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Unavailable(redact(&e.to_string())))?;
        let health = Arc::new(health::WriteHealth::default());
        let sqlite_path = health::sqlite_path(raw);
        // A file database (not an in-memory one) has a WAL to checkpoint.
        let checkpointer = sqlite_path
            .is_some()
            .then(|| Arc::new(checkpointer::Checkpointer::start(opts.clone())));
        let wal = Arc::new(wal_sync::WalSync::default());
        let pool = pool::build(
            backend,
            opts,
            acquire_timeout,
            health.clone(),
            checkpointer.clone(),
            wal.clone(),
        );
        Ok(Store {
            pool,
            backend,
            health,
            sqlite_path,
            // Unknown until the first claim reads it.
            lease_watermark: Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN)),
            group: Arc::new(group_commit::GroupCommit::new(backend)),
            checkpointer,
            wal,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes the pool; a notification queued or submitted from now on is answered with an error.
    pub async fn close(&self) {
        self.group.close();
        if let Some(c) = &self.checkpointer {
            c.close();
        }
        self.pool.close().await;
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Applies pending migrations. Safe when several replicas start at once on PostgreSQL: sqlx takes
    /// an advisory lock around the run.
    pub async fn migrate(&self) -> Result<SchemaStatus, StoreError> {
        let status = self.schema_status().await?;
        if status.applied > status.known {
            return Err(StoreError::SchemaTooNew {
                db: status.applied,
                binary: status.known,
            });
        }
        self.backend
            .migrator()
            .run(&self.pool)
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => StoreError::from(e),
                other => StoreError::Migrate(redact(&other.to_string())),
            })?;
        self.schema_status().await
    }

    /// Compares what the database has applied with what this binary knows.
    pub async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        let migrator = self.backend.migrator();
        let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        let table_exists = match self.backend {
            Backend::Sqlite => {
                sqlx::query("SELECT COUNT(*) AS n FROM sqlite_master WHERE type='table' AND name='_sqlx_migrations'")
                    .fetch_one(&self.pool)
                    .await?
                    .try_get::<i64, _>("n")?
            }
            Backend::Postgres => {
                sqlx::query("SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = current_schema() AND table_name='_sqlx_migrations'")
                    .fetch_one(&self.pool)
                    .await?
                    .try_get::<i64, _>("n")?
            }
        };
        let applied_versions: Vec<i64> = if table_exists > 0 {
            sqlx::query("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>("version"))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let applied = applied_versions.iter().copied().max().unwrap_or(0);
        let pending = migrator
            .iter()
            .filter(|m| !applied_versions.contains(&m.version))
            .count();
        Ok(SchemaStatus {
            applied,
            known,
            pending,
        })
    }

    /// Fails unless the schema is exactly what this binary expects.
    pub async fn verify_schema(&self) -> Result<SchemaStatus, StoreError> {
        let s = self.schema_status().await?;
        if s.applied > s.known {
            return Err(StoreError::SchemaTooNew {
                db: s.applied,
                binary: s.known,
            });
        }
        if s.pending > 0 {
            return Err(StoreError::SchemaPending { pending: s.pending });
        }
        Ok(s)
    }

    /// SQLite's own integrity check; PostgreSQL guarantees this itself, so it answers ok.
    pub async fn integrity_check(&self) -> Result<(), StoreError> {
        if self.backend == Backend::Sqlite {
            let row = sqlx::query("PRAGMA integrity_check")
                .fetch_one(&self.pool)
                .await?;
            let verdict: String = row.try_get(0)?;
            if verdict != "ok" {
                return Err(StoreError::Corrupt(verdict));
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------------------
    // Deployments counted once each, so counters survive restarts.
    // ---------------------------------------------------------------------------------------------

    /// Records a deployment's end. Returns false when it was already counted (by this or another
    /// replica), so the caller increments counters exactly once.
    pub async fn record_deployment_outcome(
        &self,
        o: &DeploymentOutcome,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "INSERT INTO deployment_outcomes (deployment_id, app, outcome, duration_seconds, lead_time_seconds, \
             recovery_seconds, excluded_from_dora, rollback, ended_at, counted_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (deployment_id) DO NOTHING",
        )
        .bind(&o.deployment_id)
        .bind(&o.app)
        .bind(o.outcome.as_str())
        .bind(o.duration_seconds)
        .bind(o.lead_time_seconds)
        .bind(o.recovery_seconds)
        .bind(o.excluded_from_dora as i64)
        .bind(o.rollback as i64)
        .bind(o.ended_at_ms)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Every recorded outcome, oldest first. A row whose outcome this version does not know (written
    /// by a newer one) is skipped with a warning, not an error: the rest still count.
    pub async fn deployment_outcomes(&self) -> Result<Vec<DeploymentOutcome>, StoreError> {
        let rows = sqlx::query(
            "SELECT deployment_id, app, outcome, duration_seconds, lead_time_seconds, recovery_seconds, \
             excluded_from_dora, rollback, ended_at FROM deployment_outcomes ORDER BY ended_at",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let text: String = r.try_get("outcome")?;
            let Some(outcome) = Outcome::parse(&text) else {
                tracing::warn!(outcome = ?text, "unknown deployment outcome in the store; not counted");
                continue;
            };
            out.push(DeploymentOutcome {
                deployment_id: r.try_get("deployment_id")?,
                app: r.try_get("app")?,
                outcome,
                duration_seconds: r.try_get("duration_seconds")?,
                lead_time_seconds: r.try_get("lead_time_seconds")?,
                recovery_seconds: r.try_get("recovery_seconds")?,
                excluded_from_dora: r.try_get::<i64, _>("excluded_from_dora")? != 0,
                rollback: r.try_get::<i64, _>("rollback")? != 0,
                ended_at_ms: r.try_get("ended_at")?,
            });
        }
        Ok(out)
    }

    /// The end of the app's most recent failure that no success has followed yet, for DORA recovery time.
    pub async fn open_failure_since(&self, app: &str) -> Result<Option<i64>, StoreError> {
        let last_success: Option<i64> = sqlx::query(
            "SELECT MAX(ended_at) AS t FROM deployment_outcomes WHERE app = $1 AND outcome = 'success' AND excluded_from_dora = 0",
        )
        .bind(app)
        .fetch_one(&self.pool)
        .await?
        .try_get("t")?;
        let first_failure: Option<i64> = sqlx::query(
            "SELECT MIN(ended_at) AS t FROM deployment_outcomes WHERE app = $1 AND outcome = 'failure' AND ended_at > $2",
        )
        .bind(app)
        .bind(last_success.unwrap_or(i64::MIN))
        .fetch_one(&self.pool)
        .await?
        .try_get("t")?;
        Ok(first_failure)
    }

    // Leases (with their fencing generations) live in `leases.rs`.

    // ---------------------------------------------------------------------------------------------
    // Outbox: announcements for outbound notifiers, retried until delivered.
    // ---------------------------------------------------------------------------------------------

    pub async fn outbox_due(&self, now: i64, limit: i64) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, notifier, payload, attempts FROM outbox WHERE sent_at IS NULL AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxItem {
                    id: r.try_get("id")?,
                    notifier: r.try_get("notifier")?,
                    payload: r.try_get("payload")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    pub async fn outbox_mark_sent(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET sent_at = $1, attempts = attempts + 1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn outbox_mark_failed(
        &self,
        id: &str,
        next_attempt_at: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 WHERE id = $3")
            .bind(next_attempt_at)
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn outbox_pending(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL")
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?,
        )
    }
}

#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: String,
    pub notifier: String,
    pub payload: String,
    pub attempts: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_are_told_from_store_errors() {
        for (code, input) in [
            ("22021", true),  // PostgreSQL: NUL byte / invalid byte sequence
            ("54000", true),  // PostgreSQL: index row size exceeded
            ("23505", true),  // PostgreSQL: unique violation
            ("53100", false), // PostgreSQL: disk full
            ("40P01", false), // PostgreSQL: deadlock
            ("40001", false), // PostgreSQL: serialization failure
            ("57014", false), // PostgreSQL: statement timeout
            ("13", false),    // SQLite: FULL
            ("8", false),     // SQLite: READONLY
            ("10", false),    // SQLite: IOERR
            ("1032", false),  // SQLite: READONLY_DBMOVED
            ("18", true),     // SQLite: TOOBIG
            ("2067", true),   // SQLite: CONSTRAINT_UNIQUE
        ] {
            assert_eq!(input_error_code(code), input, "{code}");
            assert!(!(input && conflict_code(code)), "{code}");
        }
        assert!(conflict_code("40P01") && conflict_code("40001"));
        assert!(!conflict_code("53100") && !conflict_code("13"));
    }

    #[test]
    fn backends_from_urls() {
        assert_eq!(Backend::from_url("sqlite://x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::from_url("postgres://h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("mysql://h/db"), None);
    }
}
