//! Test helpers: a fresh database per test (PostgreSQL, MariaDB or a SQLite file), `spawn_app`
//! on port 0, and small HTTP conveniences.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use deploywatch::config::Config;
use deploywatch::server::{Running, ServeOptions};
use sqlx::Connection;

pub use crate::harness::*;

/// Admin URLs of the servers the tests make their databases on: `DEPLOYWATCH_TEST_PG_URL` and
/// `DEPLOYWATCH_TEST_MYSQL_URL`, defaulting to the local servers `scripts/services.sh` starts.
pub static PG_ADMIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::env::var("DEPLOYWATCH_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
});
pub static MYSQL_ADMIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::env::var("DEPLOYWATCH_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
});

/// The admin URL with its database replaced by `name`.
fn with_database(admin: &str, name: &str) -> String {
    let mut u = url::Url::parse(admin).expect("a valid test database URL");
    u.set_path(&format!("/{name}"));
    u.to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
    MySql,
}

/// A database made for one test, dropped when the value is.
pub struct TestDb {
    pub url: String,
    name: String,
    kind: Kind,
    _dir: Option<tempfile::TempDir>,
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

pub async fn pg_db() -> TestDb {
    let name = unique("dw");
    let mut c = sqlx::PgConnection::connect(&PG_ADMIN)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (run scripts/services.sh)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .expect("create database");
    TestDb {
        url: with_database(&PG_ADMIN, &name),
        name,
        kind: Kind::Postgres,
        _dir: None,
    }
}

pub async fn mysql_db() -> TestDb {
    let name = unique("dw");
    let mut c = sqlx::MySqlConnection::connect(&MYSQL_ADMIN)
        .await
        .expect("MariaDB on 127.0.0.1:3306 (run scripts/services.sh)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .expect("create database");
    TestDb {
        url: with_database(&MYSQL_ADMIN, &name),
        name,
        kind: Kind::MySql,
        _dir: None,
    }
}

pub fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("deploywatch.db");
    TestDb {
        url: format!("sqlite://{}", path.display()),
        name: String::new(),
        kind: Kind::Sqlite,
        _dir: Some(dir),
    }
}

pub async fn db(kind: Kind) -> TestDb {
    match kind {
        Kind::Sqlite => sqlite_db(),
        Kind::Postgres => pg_db().await,
        Kind::MySql => mysql_db().await,
    }
}

impl TestDb {
    /// Another handle on a database some other `TestDb` owns; dropping it drops nothing.
    pub fn borrowed(url: &str) -> TestDb {
        TestDb {
            url: url.to_string(),
            name: String::new(),
            kind: Kind::Sqlite,
            _dir: None,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.kind == Kind::Sqlite {
            return;
        }
        let (kind, name) = (self.kind, self.name.clone());
        // Drop runs outside async; do the cleanup on a thread with its own small runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                match kind {
                    Kind::Postgres => {
                        if let Ok(mut c) = sqlx::PgConnection::connect(&PG_ADMIN).await {
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .execute(&mut c)
                            .await;
                        }
                    }
                    Kind::MySql => {
                        if let Ok(mut c) = sqlx::MySqlConnection::connect(&MYSQL_ADMIN).await {
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name}"
                            )))
                            .execute(&mut c)
                            .await;
                        }
                    }
                    Kind::Sqlite => {}
                }
            });
        })
        .join();
    }
}

pub struct TestApp {
    pub url: String,
    pub running: Option<Running>,
    pub http: reqwest::Client,
    pub db: TestDb,
    /// The webhook token the app was started with, sent by the typed calls in `harness::api`.
    pub token: Option<String>,
}

impl TestApp {
    pub fn app(&self) -> &std::sync::Arc<deploywatch::app::App> {
        &self.running.as_ref().expect("running").app
    }

    pub async fn stop(mut self) -> TestDb {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        std::mem::replace(&mut self.db, sqlite_db())
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("request")
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut r = self.http.post(format!("{}{path}", self.url)).json(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("request")
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.expect("text")
    }
}

/// Value of one series in a text exposition, e.g. `deploywatch_deployments_total{app="api",outcome="success"}`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.trim().split(' ').next()?.parse().ok())
    })
}

pub fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Starts a server on 127.0.0.1:0 with `toml` (plus the test database) and waits for startup.
pub async fn spawn_app_on(
    db: TestDb,
    toml: &str,
    vars: &[(&str, &str)],
    opts: ServeOptions,
) -> TestApp {
    let mut e = env(vars);
    e.insert("DEPLOYWATCH_DATABASE_URL".into(), db.url.clone());
    let mut cfg = Config::from_toml(toml, &e).expect("test config is valid");
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.git.mirror_dir =
        std::env::temp_dir().join(format!("dw-mirrors-{}", uuid::Uuid::new_v4().simple()));
    let token = {
        use secrecy::ExposeSecret;
        cfg.webhook
            .tokens
            .first()
            .map(|t| t.expose_secret().to_string())
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .expect("bind");
    let running = deploywatch::server::start(cfg, listener, opts)
        .await
        .expect("server starts");
    let url = running.url();
    let app = TestApp {
        url,
        running: Some(running),
        http: reqwest::Client::new(),
        db,
        token,
    };
    until(
        "startup (/health/startup 200, or the schema check passed)",
        Duration::from_secs(30),
        || async {
            let status = app.get("/health/startup").await.status();
            seen(
                status == 200 || app.app().checks.passed("schema"),
                format!("/health/startup {status}"),
            )
        },
    )
    .await;
    app
}

pub async fn spawn_app(kind: Kind, toml: &str, vars: &[(&str, &str)]) -> TestApp {
    spawn_app_on(db(kind).await, toml, vars, ServeOptions::default()).await
}

/// Polls `f` until true or the deadline; panics with the elapsed time otherwise. New tests use
/// `until`, which names what it waited for and what it saw last.
pub async fn wait_for<F, Fut>(limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not met within {limit:?}");
}

/// An Alertmanager v4 notification with the given alerts `(name, status, labels, startsAt)`.
pub fn notification(alerts: &[(&str, &str, &[(&str, &str)], &str)]) -> serde_json::Value {
    let alerts: Vec<serde_json::Value> = alerts
        .iter()
        .map(|(name, status, labels, starts)| {
            let mut l: serde_json::Map<String, serde_json::Value> = labels.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect();
            l.insert("alertname".into(), serde_json::json!(name));
            let fp = format!("{:x}", md5_like(&format!("{name}{labels:?}")));
            serde_json::json!({
                "status": status, "labels": l, "annotations": {"summary": "test", "runbook_url": "https://runbooks/x"},
                "startsAt": starts,
                "endsAt": if *status == "resolved" { "2026-11-22T12:00:00Z" } else { "0001-01-01T00:00:00Z" },
                "generatorURL": "http://prometheus/graph", "fingerprint": fp,
            })
        })
        .collect();
    let status = if alerts.iter().any(|a| a["status"] == "firing") {
        "firing"
    } else {
        "resolved"
    };
    serde_json::json!({
        "version": "4", "groupKey": "{}:{alertname=\"x\"}", "truncatedAlerts": 0, "status": status,
        "receiver": "deploywatch", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "alerts": alerts,
    })
}

fn md5_like(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// A free TCP port on loopback (bound and released; good enough for child processes).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The built binary, for tests that need a separate process (kill -9, OTLP env, CLI).
pub fn bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_deploywatch"))
}

/// Runs `promtool check metrics` on an exposition and fails the test on any finding.
pub fn promtool_check_metrics(body: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test.sh installs it)");
    p.stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write");
    let out = p.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
