//! Migration checks of a monitored app's database (MySQL/MariaDB, PostgreSQL, SQLite): required
//! tables and columns, the migration history against what is expected, custom SQL checks.
//!
//! Read-only and safe: every query runs inside a read-only transaction that is rolled back, with
//! connection and statement timeouts; credentials never appear in a result or a log line.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde_json::json;
use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, Connection, Executor};

mod expected;
mod query;

pub use expected::{Expected, Findings, History, compare, expected_from_dir};

use super::{Check, CheckResult};
use crate::config::MigrationCheckConfig;
use query::{Dialect, list_columns, list_tables, read_history, truthy};

pub struct AppMigrationCheck {
    pub cfg: MigrationCheckConfig,
}

#[async_trait]
impl Check for AppMigrationCheck {
    fn name(&self) -> &str {
        self.cfg.name.as_str()
    }
    fn required(&self) -> bool {
        false
    }
    fn timeout(&self) -> Duration {
        // Connect plus a handful of catalog queries, each bounded by the statement timeout.
        self.cfg.timeout * 3
    }
    async fn run(&self) -> CheckResult {
        let name = self.cfg.name.as_str();
        match self.inspect().await {
            Ok(f) if f.ok() => CheckResult::pass(name, json!(f)),
            Ok(f) => CheckResult::fail(name, f.reason(), json!(f)),
            Err(reason) => CheckResult::fail(name, reason, serde_json::Value::Null),
        }
    }
}

impl AppMigrationCheck {
    /// Connects, inspects inside a read-only transaction, rolls back. Errors are sentences without
    /// credentials.
    pub async fn inspect(&self) -> Result<Findings, String> {
        sqlx::any::install_default_drivers();
        let url = self.cfg.database_url.expose_secret();
        let dialect = Dialect::from_url(url).ok_or("unsupported database URL scheme")?;
        let mut url = url.replace("mariadb://", "mysql://");
        if dialect == Dialect::Sqlite && !url.contains("mode=") {
            url.push_str(if url.contains('?') {
                "&mode=ro"
            } else {
                "?mode=ro"
            });
        }
        let opts = AnyConnectOptions::from_str(&url)
            .map_err(|e| format!("invalid database_url: {}", scrub(&e.to_string())))?;
        let t = self.cfg.timeout;
        let mut conn = tokio::time::timeout(t, AnyConnection::connect_with(&opts))
            .await
            .map_err(|_| {
                format!(
                    "could not connect within {t:?}: the database is unreachable or not answering"
                )
            })?
            .map_err(|e| format!("could not connect: {}", scrub(&e.to_string())))?;
        let ms = t.as_millis().max(1);
        let begin: &'static str = match dialect {
            Dialect::Postgres => "BEGIN READ ONLY",
            Dialect::MySql => "START TRANSACTION READ ONLY",
            Dialect::Sqlite => "BEGIN",
        };
        let setup = async {
            match dialect {
                Dialect::Postgres => {
                    conn.execute(sqlx::AssertSqlSafe(format!("SET statement_timeout = {ms}")))
                        .await?;
                }
                Dialect::MySql => {
                    // MariaDB takes seconds; MySQL ignores the unknown variable name with an error,
                    // so try MariaDB's, then MySQL's.
                    let secs = (ms as f64 / 1000.0).max(0.001);
                    if conn
                        .execute(sqlx::AssertSqlSafe(format!(
                            "SET SESSION max_statement_time = {secs}"
                        )))
                        .await
                        .is_err()
                    {
                        let _ = conn
                            .execute(sqlx::AssertSqlSafe(format!(
                                "SET SESSION max_execution_time = {ms}"
                            )))
                            .await;
                    }
                }
                Dialect::Sqlite => {
                    conn.execute("PRAGMA query_only = ON").await?;
                }
            }
            conn.execute(begin).await?;
            Ok::<_, sqlx::Error>(())
        };
        tokio::time::timeout(t, setup)
            .await
            .map_err(|_| format!("the database did not answer within {t:?}"))?
            .map_err(|e| {
                format!(
                    "could not start a read-only transaction: {}",
                    scrub(&e.to_string())
                )
            })?;
        let result = tokio::time::timeout(t * 2, self.inspect_in(&mut conn, dialect))
            .await
            .map_err(|_| format!("the checks did not finish within {:?}", t * 2))
            .and_then(|r| r.map_err(|e| format!("query failed: {}", scrub(&e.to_string()))));
        let _ = conn.execute("ROLLBACK").await;
        let _ = conn.close().await;
        result
    }

    async fn inspect_in(
        &self,
        conn: &mut AnyConnection,
        d: Dialect,
    ) -> Result<Findings, sqlx::Error> {
        let mut f = Findings::default();
        let tables = list_tables(conn, d).await?;
        for t in &self.cfg.required_tables {
            if !tables.contains(&t.to_ascii_lowercase()) {
                f.missing_tables.push(t.clone());
            }
        }
        for (table, cols) in &self.cfg.required_columns {
            if !tables.contains(&table.to_ascii_lowercase()) {
                if !f.missing_tables.contains(table) {
                    f.missing_tables.push(table.clone());
                }
                continue;
            }
            let have = list_columns(conn, d, table).await?;
            for c in cols {
                if !have.contains(&c.to_ascii_lowercase()) {
                    f.missing_columns.push(format!("{table}.{c}"));
                }
            }
        }
        let expected = match &self.cfg.migrations_dir {
            Some(dir) => Some(expected_from_dir(dir).map_err(|e| {
                sqlx::Error::Configuration(
                    format!("cannot read migrations_dir {}: {e}", dir.display()).into(),
                )
            })?),
            None => None,
        };
        let style = match &self.cfg.tracking_table {
            Some(t) => Some(t.to_ascii_lowercase()),
            None => [
                "_sqlx_migrations",
                "__drizzle_migrations",
                "schema_migrations",
                "migrations",
            ]
            .into_iter()
            .find(|t| tables.contains(*t))
            .map(str::to_string),
        };
        if let Some(style) = &style {
            f.tracking_style = Some(style.clone());
            let history = read_history(conn, d, style, &tables).await?;
            compare(
                &mut f,
                &history,
                expected.as_ref(),
                self.cfg.expected_version,
            );
        } else if expected
            .as_ref()
            .is_some_and(|e| !e.versions.is_empty() || !e.names.is_empty())
            || self.cfg.expected_version.is_some()
        {
            // Migrations are expected but nothing records any: none ran.
            let e = expected.unwrap_or_default();
            f.pending = if e.versions.is_empty() {
                e.names.into_iter().collect()
            } else {
                e.versions.iter().map(|v| v.to_string()).collect()
            };
            if f.pending.is_empty()
                && let Some(v) = self.cfg.expected_version
            {
                f.pending.push(format!("up to {v}"));
            }
        }
        for c in &self.cfg.sql_checks {
            let row = conn
                .fetch_optional(sqlx::AssertSqlSafe(c.sql.clone()))
                .await;
            let truthy = match row {
                Ok(Some(r)) => truthy(&r),
                Ok(None) => false,
                Err(_) => false,
            };
            if !truthy {
                f.failed_sql_checks.push(c.name.clone());
            }
        }
        Ok(f)
    }
}

/// Database errors quote URLs; strip credentials (the store's own redaction).
fn scrub(s: &str) -> String {
    crate::store::redact(s)
}

/// Runs every configured check and returns results keyed by name (for `check` and tests).
pub async fn run_all(cfgs: &[MigrationCheckConfig]) -> BTreeMap<String, CheckResult> {
    let mut out = BTreeMap::new();
    for c in cfgs {
        let check = AppMigrationCheck { cfg: c.clone() };
        out.insert(c.name.as_str().to_string(), super::run_check(&check).await);
    }
    out
}
