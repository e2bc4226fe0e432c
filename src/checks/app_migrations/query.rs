//! The read-only catalog and history queries against the monitored app's database, per dialect.

use std::collections::BTreeSet;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Executor, Row};

use super::expected::History;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    MySql,
    Postgres,
    Sqlite,
}

impl Dialect {
    pub(super) fn from_url(url: &str) -> Option<Dialect> {
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

pub(super) fn truthy(r: &AnyRow) -> bool {
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

pub(super) async fn strings(
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

pub(super) async fn list_tables(
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

pub(super) async fn list_columns(
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

pub(super) async fn read_history(
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
