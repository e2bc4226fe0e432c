//! Migration checks of a monitored app's database, against the real MariaDB and PostgreSQL.

use std::collections::BTreeMap;
use std::time::Duration;

use deploywatch::checks::app_migrations::{AppMigrationCheck, Findings};
use deploywatch::config::Config;
use serde_json::Value;
use sqlx::{AnyConnection, Connection, Executor, Row};

use crate::helpers::*;

const APP_TABLES: &str = "CREATE TABLE client_needs (id BIGINT PRIMARY KEY, need TEXT);
CREATE TABLE vendor_supply (id BIGINT PRIMARY KEY, supply TEXT);
CREATE TABLE match_records (id BIGINT PRIMARY KEY, client_id BIGINT, vendor_id BIGINT, score DOUBLE PRECISION);";

#[derive(Clone, Copy, Debug)]
enum Style {
    Sqlx,
    Drizzle,
    Rails,
    GolangMigrate,
}

async fn exec_all(conn: &mut AnyConnection, sql: &str) {
    for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        conn.execute(sqlx::AssertSqlSafe(stmt.to_string()))
            .await
            .unwrap_or_else(|e| panic!("{stmt}: {e}"));
    }
}

/// Creates the tracking table of `style` with `applied` versions (and `failed` for sqlx/golang).
async fn tracking(
    conn: &mut AnyConnection,
    kind: Kind,
    style: Style,
    applied: &[i64],
    failed: Option<i64>,
) {
    let boolean = if kind == Kind::MySql {
        "TINYINT(1)"
    } else {
        "BOOLEAN"
    };
    match style {
        Style::Sqlx => {
            exec_all(conn, &format!("CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, success {boolean} NOT NULL, checksum TEXT, execution_time BIGINT)")).await;
            for v in applied {
                exec_all(
                    conn,
                    &format!("INSERT INTO _sqlx_migrations VALUES ({v}, 'm{v}', TRUE, 'x', 1)"),
                )
                .await;
            }
            if let Some(f) = failed {
                exec_all(
                    conn,
                    &format!("INSERT INTO _sqlx_migrations VALUES ({f}, 'm{f}', FALSE, 'x', 1)"),
                )
                .await;
            }
        }
        Style::Drizzle => {
            exec_all(conn, "CREATE TABLE __drizzle_migrations (id BIGINT PRIMARY KEY, hash TEXT NOT NULL, created_at BIGINT)").await;
            for v in applied {
                exec_all(
                    conn,
                    &format!(
                        "INSERT INTO __drizzle_migrations VALUES ({v}, 'h{v}', {})",
                        1_700_000_000_000 + v
                    ),
                )
                .await;
            }
        }
        Style::Rails => {
            exec_all(
                conn,
                "CREATE TABLE schema_migrations (version VARCHAR(64) PRIMARY KEY)",
            )
            .await;
            for v in applied {
                exec_all(
                    conn,
                    &format!("INSERT INTO schema_migrations VALUES ('{v}')"),
                )
                .await;
            }
        }
        Style::GolangMigrate => {
            exec_all(conn, &format!("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, dirty {boolean} NOT NULL)")).await;
            let v = failed.or(applied.iter().max().copied()).unwrap_or(0);
            exec_all(
                conn,
                &format!(
                    "INSERT INTO schema_migrations VALUES ({v}, {})",
                    if failed.is_some() { "TRUE" } else { "FALSE" }
                ),
            )
            .await;
        }
    }
}

fn migrations_dir(style: Style, versions: &[i64]) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    for v in versions {
        std::fs::write(d.path().join(format!("{v:04}_step.sql")), "SELECT 1;").expect("write");
    }
    if let Style::Drizzle = style {
        std::fs::create_dir_all(d.path().join("meta")).expect("meta");
        let entries: Vec<Value> = versions.iter().map(|v| serde_json::json!({"idx": v, "tag": format!("{v:04}_step"), "when": 1_700_000_000_000i64 + v})).collect();
        std::fs::write(
            d.path().join("meta/_journal.json"),
            serde_json::json!({"entries": entries}).to_string(),
        )
        .expect("journal");
    }
    d
}

fn check_config(
    url: &str,
    dir: Option<&std::path::Path>,
    extra: &str,
) -> deploywatch::config::MigrationCheckConfig {
    let dir_line = dir
        .map(|d| format!("migrations_dir = \"{}\"\n", d.display()))
        .unwrap_or_default();
    let toml = format!(
        "[[migration_checks]]\nname = \"app-db\"\napp = \"api\"\ndatabase_url = \"{url}\"\nrequired_tables = [\"client_needs\", \"vendor_supply\", \"match_records\"]\ntimeout = \"3s\"\n{dir_line}{extra}"
    );
    Config::from_toml(&toml, &BTreeMap::new())
        .expect("valid")
        .migration_checks
        .remove(0)
}

/// Everything in the database that a write could change: tables, columns and every row.
async fn fingerprint(url: &str) -> String {
    sqlx::any::install_default_drivers();
    let mut c = AnyConnection::connect(url).await.expect("connect");
    let mysql = url.starts_with("mysql");
    let tables_sql = if mysql {
        "SELECT CONVERT(table_name USING utf8mb4) FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY 1"
    } else {
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1"
    };
    let tables: Vec<String> = sqlx::query(tables_sql)
        .fetch_all(&mut c)
        .await
        .expect("tables")
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
    let mut out = String::new();
    for t in tables {
        let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {t}")))
            .fetch_one(&mut c)
            .await
            .expect("count")
            .get(0);
        out.push_str(&format!("{t}:{n};"));
    }
    out
}

async fn inspect(cfg: deploywatch::config::MigrationCheckConfig) -> Result<Findings, String> {
    AppMigrationCheck { cfg }.inspect().await
}

#[tokio::test]
async fn every_tracking_style_on_mariadb_and_postgresql() {
    for kind in [Kind::MySql, Kind::Postgres] {
        for style in [
            Style::Sqlx,
            Style::Drizzle,
            Style::Rails,
            Style::GolangMigrate,
        ] {
            // (applied, failed, expected files) -> (pending, failed, unknown)
            let cases: Vec<(
                &[i64],
                Option<i64>,
                &[i64],
                Vec<String>,
                Vec<String>,
                Vec<String>,
            )> = match style {
                Style::Sqlx => vec![
                    (&[1, 2, 3], None, &[1, 2, 3], vec![], vec![], vec![]),
                    (
                        &[1],
                        None,
                        &[1, 2, 3],
                        vec!["2".into(), "3".into()],
                        vec![],
                        vec![],
                    ),
                    (
                        &[1, 2],
                        Some(3),
                        &[1, 2, 3],
                        vec![],
                        vec!["3".into()],
                        vec![],
                    ),
                    (&[1, 2, 9], None, &[1, 2], vec![], vec![], vec!["9".into()]),
                ],
                Style::Drizzle => vec![
                    (&[1, 2], None, &[1, 2], vec![], vec![], vec![]),
                    (
                        &[1],
                        None,
                        &[1, 2],
                        vec!["1700000000002".into()],
                        vec![],
                        vec![],
                    ),
                    (
                        &[1, 7],
                        None,
                        &[1],
                        vec![],
                        vec![],
                        vec!["1700000000007".into()],
                    ),
                ],
                Style::Rails => vec![
                    (&[1, 2], None, &[1, 2], vec![], vec![], vec![]),
                    (&[1], None, &[1, 2], vec!["2".into()], vec![], vec![]),
                    (&[1, 2, 5], None, &[1, 2], vec![], vec![], vec!["5".into()]),
                ],
                Style::GolangMigrate => vec![
                    (&[2], None, &[1, 2], vec![], vec![], vec![]),
                    (
                        &[1],
                        None,
                        &[1, 2, 3],
                        vec!["2".into(), "3".into()],
                        vec![],
                        vec![],
                    ),
                    (
                        &[],
                        Some(2),
                        &[1, 2, 3],
                        vec!["3".into()],
                        vec!["2".into()],
                        vec![],
                    ),
                    (&[8], None, &[1, 2], vec![], vec![], vec!["8".into()]),
                ],
            };
            for (applied, failed, files, want_pending, want_failed, want_unknown) in cases {
                let db = db(kind).await;
                sqlx::any::install_default_drivers();
                let mut c = AnyConnection::connect(&db.url).await.expect("connect");
                exec_all(&mut c, APP_TABLES).await;
                tracking(&mut c, kind, style, applied, failed).await;
                c.close().await.expect("close");
                let dir = migrations_dir(style, files);
                let before = fingerprint(&db.url).await;
                let f = inspect(check_config(&db.url, Some(dir.path()), ""))
                    .await
                    .unwrap_or_else(|e| panic!("{kind:?} {style:?}: {e}"));
                let label = format!(
                    "{kind:?} {style:?} applied={applied:?} failed={failed:?} files={files:?}"
                );
                assert_eq!(f.pending, want_pending, "{label}: pending");
                assert_eq!(f.failed, want_failed, "{label}: failed");
                assert_eq!(f.unknown, want_unknown, "{label}: unknown");
                assert!(f.missing_tables.is_empty(), "{label}");
                assert_eq!(
                    fingerprint(&db.url).await,
                    before,
                    "{label}: nothing written"
                );
            }
        }
    }
}

#[tokio::test]
async fn missing_tables_columns_and_sql_checks() {
    for kind in [Kind::MySql, Kind::Postgres] {
        let db = db(kind).await;
        let mut c = AnyConnection::connect(&db.url).await.expect("connect");
        exec_all(&mut c, "CREATE TABLE client_needs (id BIGINT PRIMARY KEY, need TEXT); CREATE TABLE vendor_supply (id BIGINT PRIMARY KEY)").await;
        exec_all(&mut c, "INSERT INTO client_needs VALUES (1, 'gpu')").await;
        c.close().await.expect("close");
        let before = fingerprint(&db.url).await;
        let cfg = check_config(
            &db.url,
            None,
            "[migration_checks.required_columns]\nclient_needs = [\"id\", \"need\", \"priority\"]\n\n[[migration_checks.sql_checks]]\nname = \"has-needs\"\nsql = \"SELECT COUNT(*) > 0 FROM client_needs\"\n\n[[migration_checks.sql_checks]]\nname = \"has-supply\"\nsql = \"SELECT COUNT(*) > 0 FROM vendor_supply\"\n",
        );
        let f = inspect(cfg.clone()).await.expect("inspects");
        assert_eq!(f.missing_tables, vec!["match_records"], "{kind:?}");
        assert_eq!(f.missing_columns, vec!["client_needs.priority"], "{kind:?}");
        assert_eq!(f.failed_sql_checks, vec!["has-supply"], "{kind:?}");
        assert!(!f.ok());
        assert!(
            f.reason().contains("missing tables: match_records"),
            "{}",
            f.reason()
        );
        assert_eq!(
            fingerprint(&db.url).await,
            before,
            "{kind:?}: nothing written"
        );
        // A check that tries to write is refused by the read-only transaction and counts as failed.
        let writer = check_config(
            &db.url,
            None,
            "[[migration_checks.sql_checks]]\nname = \"sneaky\"\nsql = \"INSERT INTO client_needs VALUES (2, 'x')\"\n",
        );
        let f = inspect(writer).await.expect("inspects");
        assert_eq!(f.failed_sql_checks, vec!["sneaky"]);
        assert_eq!(
            fingerprint(&db.url).await,
            before,
            "{kind:?}: the write was refused"
        );
    }
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_reason_not_a_hang() {
    // A server that accepts connections and never says a word (a black hole on loopback: tests
    // never send traffic off this machine).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hole = format!(
        "postgres://app:s3cret-pass@{}/app",
        silent.local_addr().expect("addr")
    );
    for url in [
        "mysql://app:s3cret-pass@127.0.0.1:1/app",
        "postgres://app:s3cret-pass@127.0.0.1:1/app",
        hole.as_str(),
    ] {
        let mut cfg = check_config(url, None, "");
        cfg.timeout = Duration::from_secs(1);
        let started = std::time::Instant::now();
        let r = deploywatch::checks::run_check(&AppMigrationCheck { cfg }).await;
        assert!(!r.ok);
        let reason = r.reason.unwrap_or_default();
        assert!(
            reason.contains("connect") || reason.contains("within"),
            "{url}: {reason}"
        );
        assert!(
            !reason.contains("s3cret-pass"),
            "credentials never appear: {reason}"
        );
        // Bounded by the check's own timeout (connect 1s, at most 3x overall), not by the OS.
        assert!(started.elapsed() < Duration::from_secs(10), "{url}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn startup_waits_for_the_app_database_and_a_failure_becomes_a_fix_task() {
    let appdb = mysql_db().await;
    let mut c = AnyConnection::connect(&appdb.url).await.expect("connect");
    exec_all(&mut c, "CREATE TABLE client_needs (id BIGINT PRIMARY KEY); CREATE TABLE vendor_supply (id BIGINT PRIMARY KEY)").await;
    let toml = format!(
        "[startup]\ngrace = \"10m\"\n\n[[migration_checks]]\nname = \"app-db\"\napp = \"api\"\ndatabase_url = \"{}\"\nrequired_tables = [\"client_needs\", \"vendor_supply\", \"match_records\"]\ninterval = \"1s\"\n",
        appdb.url
    );
    let app = spawn_app(Kind::Sqlite, &toml, &[]).await;
    app.until_metric(
        "deploywatch_startup_check_success{check=\"app-db\"}",
        0.0,
        Duration::from_secs(10),
    )
    .await;
    let r = app.get("/health/startup").await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.expect("json");
    let reasons = body["reasons"].to_string();
    assert!(
        reasons.contains("match_records"),
        "lists what is missing: {body}"
    );
    assert_eq!(app.get("/health/ready").await.status(), 503);
    assert!(
        app.metrics()
            .await
            .contains("deploywatch_migration_check_info{app=\"api\",check=\"app-db\"} 1")
    );

    // `deploywatch check` says the same and exits 1.
    let cfg_file = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(cfg_file.path(), &toml).expect("write");
    let out = Deploywatch::here()
        .args(&["check", "--config", &cfg_file.path().to_string_lossy()])
        .env("DEPLOYWATCH_DATABASE_URL", &app.db.url)
        .output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("app-db") && stdout.contains("missing tables: match_records"),
        "{stdout}"
    );

    // Alertmanager reports MigrationCheckFailed: the fix task names the missing table.
    let n = notification(&[(
        "MigrationCheckFailed",
        "firing",
        &[
            ("app", "api"),
            ("check", "app-db"),
            ("severity", "critical"),
        ],
        "2026-11-22T10:00:00Z",
    )]);
    assert_eq!(
        app.post_json("/webhook/alertmanager", &n, None)
            .await
            .status(),
        200
    );
    let t: Value = app
        .get("/api/v1/tasks?queue=execution")
        .await
        .json()
        .await
        .expect("json");
    let task = &t["tasks"][0];
    assert_eq!(task["title"], "FIX: Database migration issue in api");
    assert_eq!(
        task["context"]["missing_tables"],
        serde_json::json!(["match_records"]),
        "{task}"
    );

    // The migration runs: startup passes.
    exec_all(&mut c, "CREATE TABLE match_records (id BIGINT PRIMARY KEY)").await;
    until(
        "/health/startup to answer 200 once the table exists",
        Duration::from_secs(15),
        || async {
            let r = app.get("/health/startup").await;
            let status = r.status();
            seen(status == 200, (status, r.text().await.unwrap_or_default()))
        },
    )
    .await;
    assert_eq!(app.get("/health/ready").await.status(), 200);
    app.stop().await;
}
