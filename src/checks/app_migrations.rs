//! Migration checks of a monitored app's database (MySQL/MariaDB, PostgreSQL, SQLite): required
//! tables and columns, the migration history against what is expected, custom SQL checks.
//!
//! Read-only and safe: every query runs inside a read-only transaction that is rolled back, with
//! connection and statement timeouts; credentials never appear in a result or a log line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::json;
use sqlx::any::{AnyConnectOptions, AnyRow};
use sqlx::{AnyConnection, Connection, Executor, Row};

use super::{Check, CheckResult};
use crate::config::MigrationCheckConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    MySql,
    Postgres,
    Sqlite,
}

impl Dialect {
    fn from_url(url: &str) -> Option<Dialect> {
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Some(Dialect::MySql)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Dialect::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Dialect::Sqlite)
        } else {
            None
        }
    }
}

/// What a check found, as its result's details and the fix task's context.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Findings {
    pub missing_tables: Vec<String>,
    pub missing_columns: Vec<String>,
    pub tracking_style: Option<String>,
    pub pending: Vec<String>,
    pub failed: Vec<String>,
    pub unknown: Vec<String>,
    pub failed_sql_checks: Vec<String>,
}

impl Findings {
    pub fn ok(&self) -> bool {
        self.missing_tables.is_empty()
            && self.missing_columns.is_empty()
            && self.pending.is_empty()
            && self.failed.is_empty()
            && self.failed_sql_checks.is_empty()
    }

    /// One sentence naming every problem.
    pub fn reason(&self) -> String {
        let mut parts = Vec::new();
        let list = |v: &[String]| v.join(", ");
        if !self.missing_tables.is_empty() {
            parts.push(format!("missing tables: {}", list(&self.missing_tables)));
        }
        if !self.missing_columns.is_empty() {
            parts.push(format!("missing columns: {}", list(&self.missing_columns)));
        }
        if !self.pending.is_empty() {
            parts.push(format!("pending migrations: {}", list(&self.pending)));
        }
        if !self.failed.is_empty() {
            parts.push(format!("failed migrations: {}", list(&self.failed)));
        }
        if !self.failed_sql_checks.is_empty() {
            parts.push(format!(
                "failed SQL checks: {}",
                list(&self.failed_sql_checks)
            ));
        }
        parts.join("; ")
    }
}

/// What the migrations directory says should be applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expected {
    /// Numeric versions (sqlx, golang-migrate, Rails, numbered files).
    pub versions: BTreeSet<i64>,
    /// File stems, for tables that record names.
    pub names: BTreeSet<String>,
    /// drizzle's journal `when` values, if there is a journal.
    pub drizzle_when: BTreeSet<i64>,
}

/// Reads numbered `.sql` files (`0001_init.sql`, `20240101_x.up.sql`); `.down.sql` files are undo
/// scripts, not migrations.
pub fn expected_from_dir(dir: &Path) -> std::io::Result<Expected> {
    let mut e = Expected::default();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".sql") || name.ends_with(".down.sql") {
            continue;
        }
        let stem = name
            .trim_end_matches(".sql")
            .trim_end_matches(".up")
            .to_string();
        let digits: String = stem.chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(v) = digits.parse::<i64>() {
            e.versions.insert(v);
        }
        e.names.insert(stem);
    }
    let journal = dir.join("meta").join("_journal.json");
    if let Ok(text) = std::fs::read_to_string(journal)
        && let Ok(j) = serde_json::from_str::<serde_json::Value>(&text)
    {
        for entry in j["entries"].as_array().into_iter().flatten() {
            if let Some(w) = entry["when"].as_i64() {
                e.drizzle_when.insert(w);
            }
        }
    }
    Ok(e)
}

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

fn truthy(r: &AnyRow) -> bool {
    if let Ok(v) = r.try_get::<i64, _>(0) {
        return v != 0;
    }
    if let Ok(v) = r.try_get::<bool, _>(0) {
        return v;
    }
    if let Ok(v) = r.try_get::<i32, _>(0) {
        return v != 0;
    }
    if let Ok(v) = r.try_get::<String, _>(0) {
        return matches!(v.to_ascii_lowercase().as_str(), "1" | "t" | "true" | "yes");
    }
    false
}

async fn strings(
    conn: &mut AnyConnection,
    sql: &'static str,
    bind: Option<&str>,
) -> Result<Vec<String>, sqlx::Error> {
    let mut q = sqlx::query(sql);
    if let Some(b) = bind {
        q = q.bind(b.to_string());
    }
    let rows = q.fetch_all(&mut *conn).await?;
    rows.iter().map(|r| r.try_get::<String, _>(0)).collect()
}

async fn list_tables(
    conn: &mut AnyConnection,
    d: Dialect,
) -> Result<BTreeSet<String>, sqlx::Error> {
    let sql = match d {
        Dialect::Postgres => {
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()"
        }
        Dialect::MySql => {
            "SELECT CONVERT(table_name USING utf8mb4) FROM information_schema.tables WHERE table_schema = DATABASE()"
        }
        Dialect::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
    };
    Ok(strings(conn, sql, None)
        .await?
        .into_iter()
        .map(|s| s.to_ascii_lowercase())
        .collect())
}

async fn list_columns(
    conn: &mut AnyConnection,
    d: Dialect,
    table: &str,
) -> Result<BTreeSet<String>, sqlx::Error> {
    let sql = match d {
        Dialect::Postgres => {
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1"
        }
        Dialect::MySql => {
            "SELECT CONVERT(column_name USING utf8mb4) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?"
        }
        Dialect::Sqlite => "SELECT name FROM pragma_table_info($1)",
    };
    Ok(strings(conn, sql, Some(table))
        .await?
        .into_iter()
        .map(|s| s.to_ascii_lowercase())
        .collect())
}

/// The app's migration history as recorded by its tool.
#[derive(Debug, Default, PartialEq)]
pub struct History {
    pub applied_versions: BTreeSet<i64>,
    pub applied_names: BTreeSet<String>,
    pub failed: BTreeSet<String>,
    /// golang-migrate keeps only the current version and a dirty flag.
    pub current_version: Option<i64>,
    pub drizzle_when: BTreeSet<i64>,
}

async fn read_history(
    conn: &mut AnyConnection,
    d: Dialect,
    table: &str,
    tables: &BTreeSet<String>,
) -> Result<History, sqlx::Error> {
    let _ = tables;
    let mut h = History::default();
    let text = |col: &str| match d {
        Dialect::MySql => format!("CONVERT(CAST({col} AS CHAR) USING utf8mb4)"),
        _ => format!("CAST({col} AS TEXT)"),
    };
    crate::domain::validate_identifier(table).map_err(|e| sqlx::Error::Configuration(e.into()))?;
    let cols_sql: &'static str = match d {
        Dialect::Postgres => {
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1"
        }
        Dialect::MySql => {
            "SELECT CONVERT(column_name USING utf8mb4) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?"
        }
        Dialect::Sqlite => "SELECT name FROM pragma_table_info($1)",
    };
    let cols: BTreeSet<String> = strings(conn, cols_sql, Some(table))
        .await?
        .into_iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if table == "_sqlx_migrations" {
        let sql = format!(
            "SELECT {}, {} FROM _sqlx_migrations",
            text("version"),
            text("CASE WHEN success THEN 1 ELSE 0 END")
        );
        for r in conn.fetch_all(sqlx::AssertSqlSafe(sql)).await? {
            let v: String = r.try_get(0)?;
            let ok: String = r.try_get(1)?;
            if ok.trim() == "1" {
                if let Ok(n) = v.trim().parse() {
                    h.applied_versions.insert(n);
                }
            } else {
                h.failed.insert(v.trim().to_string());
            }
        }
    } else if table == "__drizzle_migrations" {
        let sql = format!("SELECT {} FROM __drizzle_migrations", text("created_at"));
        for r in conn.fetch_all(sqlx::AssertSqlSafe(sql)).await? {
            let v: String = r.try_get(0)?;
            if let Ok(n) = v.trim().parse() {
                h.drizzle_when.insert(n);
            }
        }
    } else if cols.contains("dirty") && cols.contains("version") {
        let sql = format!(
            "SELECT {}, {} FROM {table}",
            text("version"),
            text("CASE WHEN dirty THEN 1 ELSE 0 END")
        );
        if let Some(r) = conn.fetch_optional(sqlx::AssertSqlSafe(sql)).await? {
            let v: String = r.try_get(0)?;
            let dirty: String = r.try_get(1)?;
            let v: i64 = v.trim().parse().unwrap_or(0);
            h.current_version = Some(v);
            if dirty.trim() == "1" {
                h.failed.insert(v.to_string());
            }
        }
    } else {
        let col = ["version", "migration", "name"]
            .into_iter()
            .find(|c| cols.contains(*c))
            .unwrap_or("version");
        let sql = format!("SELECT {} FROM {table}", text(col));
        for r in conn.fetch_all(sqlx::AssertSqlSafe(sql)).await? {
            let v: String = r.try_get(0)?;
            let v = v.trim().to_string();
            let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
            if col == "version"
                && let Ok(n) = digits.parse()
            {
                h.applied_versions.insert(n);
            }
            h.applied_names.insert(v);
        }
    }
    Ok(h)
}

/// Pending, failed and unknown migrations. Pure.
pub fn compare(
    f: &mut Findings,
    h: &History,
    expected: Option<&Expected>,
    expected_version: Option<i64>,
) {
    f.failed = h.failed.iter().cloned().collect();
    if let Some(e) = expected {
        if !e.drizzle_when.is_empty() || !h.drizzle_when.is_empty() {
            f.pending = e
                .drizzle_when
                .difference(&h.drizzle_when)
                .map(|v| v.to_string())
                .collect();
            f.unknown = h
                .drizzle_when
                .difference(&e.drizzle_when)
                .map(|v| v.to_string())
                .collect();
            if e.drizzle_when.is_empty() {
                // No journal: compare counts of files and rows.
                let missing = e.names.len().saturating_sub(h.drizzle_when.len());
                f.pending = e.names.iter().rev().take(missing).rev().cloned().collect();
                f.unknown.clear();
            }
        } else if let Some(cur) = h.current_version {
            f.pending = e
                .versions
                .iter()
                .filter(|v| **v > cur)
                .map(|v| v.to_string())
                .collect();
            if !e.versions.contains(&cur) && cur != 0 {
                f.unknown.push(cur.to_string());
            }
        } else if !h.applied_versions.is_empty() || h.applied_names.is_empty() {
            let failed: BTreeSet<i64> = h.failed.iter().filter_map(|v| v.parse().ok()).collect();
            f.pending = e
                .versions
                .iter()
                .filter(|v| !h.applied_versions.contains(v) && !failed.contains(v))
                .map(|v| v.to_string())
                .collect();
            f.unknown = h
                .applied_versions
                .difference(&e.versions)
                .map(|v| v.to_string())
                .collect();
        } else {
            f.pending = e.names.difference(&h.applied_names).cloned().collect();
            f.unknown = h.applied_names.difference(&e.names).cloned().collect();
        }
    }
    if let Some(want) = expected_version {
        let have = h
            .current_version
            .or_else(|| h.applied_versions.iter().max().copied())
            .unwrap_or(0);
        if have < want && f.pending.is_empty() {
            f.pending.push(format!("{} to {want}", have + 1));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for (s, ok) in [
            ("client_needs", true),
            ("_t1", true),
            ("1abc", false),
            ("a;drop", false),
            ("", false),
            ("a b", false),
        ] {
            assert_eq!(crate::domain::validate_identifier(s).is_ok(), ok, "{s}");
        }
    }

    fn exp(v: &[i64]) -> Expected {
        Expected {
            versions: v.iter().copied().collect(),
            ..Default::default()
        }
    }

    #[test]
    fn comparison_table() {
        // (history, expected, expected_version) -> (pending, failed, unknown)
        let sqlx_like = History {
            applied_versions: [1, 2].into(),
            failed: ["3".to_string()].into(),
            ..Default::default()
        };
        let golang_dirty = History {
            current_version: Some(2),
            failed: ["2".to_string()].into(),
            ..Default::default()
        };
        let unknown = History {
            applied_versions: [1, 2, 9].into(),
            ..Default::default()
        };
        let cases: Vec<(
            &str,
            History,
            Option<Expected>,
            Option<i64>,
            Vec<&str>,
            Vec<&str>,
            Vec<&str>,
        )> = vec![
            (
                "all applied",
                History {
                    applied_versions: [1, 2, 3].into(),
                    ..Default::default()
                },
                Some(exp(&[1, 2, 3])),
                None,
                vec![],
                vec![],
                vec![],
            ),
            (
                "pending",
                History {
                    applied_versions: [1].into(),
                    ..Default::default()
                },
                Some(exp(&[1, 2, 3])),
                None,
                vec!["2", "3"],
                vec![],
                vec![],
            ),
            (
                "failed is not pending",
                sqlx_like,
                Some(exp(&[1, 2, 3])),
                None,
                vec![],
                vec!["3"],
                vec![],
            ),
            (
                "golang-migrate dirty",
                golang_dirty,
                Some(exp(&[1, 2, 3])),
                None,
                vec!["3"],
                vec!["2"],
                vec![],
            ),
            (
                "unknown applied",
                unknown,
                Some(exp(&[1, 2])),
                None,
                vec![],
                vec![],
                vec!["9"],
            ),
            (
                "expected version only",
                History {
                    applied_versions: [1, 2].into(),
                    ..Default::default()
                },
                None,
                Some(4),
                vec!["3 to 4"],
                vec![],
                vec![],
            ),
        ];
        for (name, h, e, ev, pending, failed, unknown) in cases {
            let mut f = Findings::default();
            compare(&mut f, &h, e.as_ref(), ev);
            assert_eq!(f.pending, pending, "{name}: pending");
            assert_eq!(f.failed, failed, "{name}: failed");
            assert_eq!(f.unknown, unknown, "{name}: unknown");
        }
    }

    #[test]
    fn reads_numbered_files() {
        let d = tempfile::tempdir().expect("tempdir");
        for f in [
            "0001_init.sql",
            "0002_more.up.sql",
            "0002_more.down.sql",
            "README.md",
        ] {
            std::fs::write(d.path().join(f), "--").expect("write");
        }
        let e = expected_from_dir(d.path()).expect("read");
        assert_eq!(e.versions, [1, 2].into());
        assert_eq!(
            e.names,
            ["0001_init".to_string(), "0002_more".to_string()].into()
        );
    }

    #[test]
    fn scrubs_credentials() {
        assert_eq!(
            scrub("mysql://app:s3cret@db/app failed"),
            "mysql://app:***@db/app failed"
        );
    }
}
