//! Load benchmark of the built binary over HTTP on loopback (no timed assertions: it prints
//! figures for docs/BENCHMARKS.md). Every loop is bounded in count and time.
//!
//! Run: `cargo bench --bench load` (needs PostgreSQL on 127.0.0.1:5432 and Debian's `wrk` for
//! ingest and `/metrics`, `nginx` for `/metrics`, `pgbench` for claims and
//! `prometheus-blackbox-exporter` for probes; `scripts/bench.sh` installs and starts them).
//! Sections can be picked: `cargo bench --bench load -- startup ingest claims metrics budget probes`.
//! `DEPLOYWATCH_BIN=/path/to/deploywatch` runs that binary instead of the one cargo built.

// Test and benchmark code fails by panicking; that is how a failure is reported here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use do_simulator::{Script, Simulator};
use serde_json::{Value, json};
use sqlx::{Connection, Executor};

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn spawn(dir: &std::path::Path, envs: &[(&str, &str)], config: Option<&std::path::Path>) -> Server {
    let port = free_port();
    // DEPLOYWATCH_BIN: a copy of the binary under test, when the target dir is shared and another
    // build may replace target/release/deploywatch while the benchmark runs.
    let bin = std::env::var_os("DEPLOYWATCH_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_deploywatch").into());
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let child = cmd
        .current_dir(dir)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn wait_ready(c: &reqwest::Client, url: &str) -> Duration {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if c.get(format!("{url}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return t.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("not ready within 60s");
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// One `kB` field of `/proc/<pid>/status` (`VmRSS:`, `RssAnon:`, `RssFile:`).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident memory split: the process's own (anonymous) pages, and file pages it maps (mostly
/// the executable's code, whose count depends on how the kernel cached the file: see
/// docs/BENCHMARKS.md, "Memory").
fn rss_split(pid: u32) -> String {
    format!(
        "anonymous {:.1} MiB, file-backed {:.1} MiB",
        status_kib(pid, "RssAnon:") as f64 / 1024.0,
        status_kib(pid, "RssFile:") as f64 / 1024.0
    )
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn pct(v: &mut [f64], p: usize) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[(v.len() * p / 100).min(v.len() - 1)]
    }
}

async fn pg_db() -> (String, String) {
    let name = format!("dwbench_{}", uuid::Uuid::new_v4().simple());
    let mut c = sqlx::PgConnection::connect(PG_ADMIN)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    c.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create");
    (format!("postgres://postgres@127.0.0.1:5432/{name}"), name)
}

/// A store URL for `kind`: a SQLite file `file` in `dir`, or a fresh PostgreSQL database (its
/// name returned for `drop_pg`; empty for SQLite).
async fn bench_db(kind: &str, dir: &std::path::Path, file: &str) -> (String, String) {
    if kind == "sqlite" {
        (format!("sqlite://{}/{file}", dir.display()), String::new())
    } else {
        pg_db().await
    }
}

async fn drop_pg(name: &str) {
    if name.is_empty() {
        return;
    }
    if let Ok(mut c) = sqlx::PgConnection::connect(PG_ADMIN).await {
        let _ = c
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .await;
    }
}

async fn startup(c: &reqwest::Client) {
    println!("\n## Start to ready (process start until /health/ready is 200; 5 runs, median)\n");
    println!("| store | median | min | max |\n|---|---|---|---|");
    for kind in ["sqlite", "postgres"] {
        let mut times = Vec::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tmp");
            let (url, name) = bench_db(kind, dir.path(), "dw.db").await;
            let s = spawn(dir.path(), &[("DEPLOYWATCH_DATABASE_URL", &url)], None);
            times.push(wait_ready(c, &s.url).await.as_secs_f64() * 1000.0);
            drop(s);
            drop_pg(&name).await;
        }
        let (min, max) = (
            times.iter().cloned().fold(f64::MAX, f64::min),
            times.iter().cloned().fold(0.0, f64::max),
        );
        println!(
            "| {kind} (fresh database, migrations applied) | {:.0} ms | {min:.0} ms | {max:.0} ms |",
            pct(&mut times, 50)
        );
    }
}

fn notification(i: u64, alerts: usize) -> Value {
    let alerts: Vec<Value> = (0..alerts)
        .map(|k| json!({"status": "firing", "labels": {"alertname": "DeploymentFailed", "app": format!("app{i}-{k}"), "severity": "critical"}, "annotations": {"summary": "s"}, "startsAt": "2026-11-22T10:00:00Z", "fingerprint": format!("{i:x}{k:x}")}))
        .collect();
    json!({"version": "4", "groupKey": format!("g{i}"), "status": "firing", "receiver": "deploywatch", "alerts": alerts})
}

/// What one sustained ingest run measured.
struct IngestRun {
    /// Notifications answered 200 per second.
    nps: f64,
    p50: f64,
    p99: f64,
    /// Answers other than 200 (and transport errors).
    errors: u64,
}

/// wrk's script for ingest: every request a new notification of `alerts` alerts, the shape of
/// [`notification`] (a new group, app and episode each time), named by wrk thread and counter.
fn ingest_script(alerts: usize) -> String {
    format!(
        r#"local threads = 0
function setup(thread)
  thread:set("wid", threads)
  threads = threads + 1
end
local counter = 0
function request()
  counter = counter + 1
  local i = wid .. "-" .. counter
  local alerts = {{}}
  for k = 0, {last} do
    alerts[#alerts + 1] = '{{"status":"firing","labels":{{"alertname":"DeploymentFailed","app":"app' .. i .. '-' .. k .. '","severity":"critical"}},"annotations":{{"summary":"s"}},"startsAt":"2026-11-22T10:00:00Z","fingerprint":"' .. i .. '-' .. k .. '"}}'
  end
  local body = '{{"version":"4","groupKey":"g' .. i .. '","status":"firing","receiver":"deploywatch","alerts":[' .. table.concat(alerts, ",") .. ']}}'
  return wrk.format("POST", "/webhook/alertmanager", {{["Content-Type"] = "application/json"}}, body)
end
"#,
        last = alerts - 1
    )
}

/// Sustained ingest for `secs` with `conc` concurrent senders: wrk (C, one thread), as for
/// `/metrics`, so that the load generator leaves the two cores to the server. The in-process
/// reqwest generator used before session 12 spent about as much CPU per request as the server.
fn ingest_run(
    dir: &std::path::Path,
    url: &str,
    secs: u64,
    conc: usize,
    alerts: usize,
) -> IngestRun {
    let script = dir.join(format!("ingest-{alerts}.lua"));
    std::fs::write(&script, ingest_script(alerts)).expect("wrk script");
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{conc}"),
            &format!("-d{secs}s"),
            "--timeout",
            "60s",
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(format!("{url}/webhook/alertmanager"))
        .output()
        .expect("wrk (Debian package wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    let r = read_wrk(&text);
    IngestRun {
        nps: (r.requests - r.non_2xx) as f64 / r.secs,
        p50: r.p50,
        p99: r.p99,
        errors: r.non_2xx + r.socket_errors,
    }
}

/// The batch-size histogram's (sum, count): notifications stored and group commits so far.
async fn batch_totals(c: &reqwest::Client, url: &str) -> (f64, f64) {
    let text = c
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let read = |series: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        read("deploywatch_webhook_batch_size_sum"),
        read("deploywatch_webhook_batch_size_count"),
    )
}

/// The database's own durable single-row insert rate, one transaction per row, same settings.
async fn db_insert_rate(url: &str, secs: u64) -> f64 {
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(url).await.expect("connect");
    if url.starts_with("sqlite") {
        c.execute("PRAGMA journal_mode=WAL").await.expect("wal");
        c.execute("PRAGMA synchronous=FULL").await.expect("sync");
    }
    c.execute("CREATE TABLE bench_rows (id BIGINT PRIMARY KEY, body TEXT NOT NULL)")
        .await
        .expect("table");
    let t = Instant::now();
    let mut n: i64 = 0;
    while t.elapsed() < Duration::from_secs(secs) {
        let mut tx = c.begin().await.expect("begin");
        sqlx::query("INSERT INTO bench_rows (id, body) VALUES ($1, $2)")
            .bind(n)
            .bind("x".repeat(200))
            .execute(&mut *tx)
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
        n += 1;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

async fn ingest(c: &reqwest::Client) {
    const SECS: u64 = 20;
    println!(
        "\n## Webhook ingest ({SECS} s sustained per row, a fresh store each) vs the same store's durable single-row inserts\n"
    );
    println!(
        "Senders: wrk connections (one wrk thread), each request a new notification (new group, app and episode). \
         Reference: one 200-byte row per transaction, sequential, on the same backend and settings \
         (SQLite: a file beside the server's, WAL, synchronous=FULL), taken before and after the store's rows. \
         Ratio = notifications answered 200 per second ÷ the higher of the two.\n"
    );
    // The machine may be shared: its load before and after, beside the figures.
    let load = || {
        let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    };
    println!("Load average before: {}.\n", load());
    println!(
        "| store | alerts per notification | senders | notifications/s | alerts/s | p50 | p99 | notifications per commit | server CPU per notification | non-200 | reference inserts/s, before / after the rows | ratio (to the higher reference) |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for kind in ["sqlite", "postgres"] {
        let dir = tempfile::tempdir().expect("tmp");
        let (ref_url, ref_name) = bench_db(kind, dir.path(), "ref.db?mode=rwc").await;
        let before = db_insert_rate(&ref_url, 10).await;
        drop_pg(&ref_name).await;
        let mut rows = Vec::new();
        for (alerts, conc) in [(1, 32), (1, 64), (10, 8)] {
            let dir = tempfile::tempdir().expect("tmp");
            let (url, name) = bench_db(kind, dir.path(), "dw.db").await;
            let s = spawn(dir.path(), &[("DEPLOYWATCH_DATABASE_URL", &url)], None);
            wait_ready(c, &s.url).await;
            let before = batch_totals(c, &s.url).await;
            let cpu0 = cpu_seconds(s.child.id());
            let r = ingest_run(dir.path(), &s.url, SECS, conc, alerts);
            let cpu = cpu_seconds(s.child.id()) - cpu0;
            let after = batch_totals(c, &s.url).await;
            drop(s);
            drop_pg(&name).await;
            let per_commit = (after.0 - before.0) / (after.1 - before.1).max(1.0);
            // Server CPU (user + system) per stored notification; PostgreSQL's own is not in it.
            let cpu_us = cpu * 1e6 / (after.0 - before.0).max(1.0);
            rows.push((alerts, conc, r, per_commit, cpu_us));
        }
        // The disk's commit rate drifts between runs on a shared machine: the reference is taken
        // again after the rows, and each ratio is against the higher of the two.
        let dir = tempfile::tempdir().expect("tmp");
        let (ref_url, ref_name) = bench_db(kind, dir.path(), "ref.db?mode=rwc").await;
        let after = db_insert_rate(&ref_url, 10).await;
        drop_pg(&ref_name).await;
        let rate = before.max(after);
        for (alerts, conc, r, per_commit, cpu_us) in rows {
            println!(
                "| {kind} | {alerts} | {conc} | {:.0} | {:.0} | {:.1} ms | {:.1} ms | {per_commit:.1} | {cpu_us:.0} µs | {} | {before:.0} / {after:.0} | {:.2}× |",
                r.nps,
                r.nps * alerts as f64,
                r.p50,
                r.p99,
                r.errors,
                r.nps / rate
            );
        }
    }
    println!("\nLoad average after: {}.", load());
}

async fn claims(c: &reqwest::Client) {
    println!(
        "\n## Claim + complete with 16 concurrent workers (PostgreSQL, 10,000 queued tasks) vs pgbench -N -c 16\n"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let (url, name) = pg_db().await;
    let s = spawn(dir.path(), &[("DEPLOYWATCH_DATABASE_URL", &url)], None);
    wait_ready(c, &s.url).await;
    for i in 0..1000 {
        let r = c
            .post(format!("{}/webhook/alertmanager", s.url))
            .json(&notification(i, 10))
            .send()
            .await
            .expect("seed");
        assert_eq!(r.status(), 200);
    }
    let t = Instant::now();
    let mut hs = Vec::new();
    for w in 0..16 {
        let url = s.url.clone();
        hs.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut lat = Vec::new();
            loop {
                let st = Instant::now();
                let r = c
                    .post(format!("{url}/api/v1/tasks/claim"))
                    .json(&json!({"queue": "execution", "worker": format!("w{w}")}))
                    .send()
                    .await
                    .expect("claim");
                if r.status() == 204 {
                    return lat;
                }
                let task: Value = r.json().await.expect("task");
                let id = task["id"].as_str().expect("id");
                let done = c
                    .post(format!("{url}/api/v1/tasks/{id}/complete"))
                    .json(&json!({"worker": format!("w{w}")}))
                    .send()
                    .await
                    .expect("complete");
                assert_eq!(done.status(), 200);
                lat.push(st.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut lat = Vec::new();
    for h in hs {
        lat.extend(h.await.expect("join"));
    }
    let el = t.elapsed().as_secs_f64();
    drop(s);
    let alone = claims_sql_alone(&url, &name).await;
    let (_, pgb) = pg_db().await;
    let tps = pgbench_simple_update(&pgb);
    drop_pg(&pgb).await;
    println!(
        "| tasks | seconds | claim+complete/s | p50 | p99 | pgbench -N -c 16 tps | ratio (target 0.3×) | write statements/s (claim and complete each one) | ratio |\n|---|---|---|---|---|---|---|---|---|"
    );
    let rate = lat.len() as f64 / el;
    println!(
        "| {} | {el:.1} | {rate:.0} | {:.1} ms | {:.1} ms | {tps:.0} | {:.2}× | {:.0} | {:.2}× |",
        lat.len(),
        pct(&mut lat, 50),
        pct(&mut lat, 99),
        rate / tps,
        rate * 2.0,
        rate * 2.0 / tps
    );
    println!(
        "\nThe same two statements without HTTP or deploywatch (pgbench -f, 16 clients, prepared, 9,600 loops on the re-queued tasks): {alone:.0} loops/s, {:.2}× pgbench -N",
        alone / tps
    );
    drop_pg(&name).await;
}

/// deploywatch's claim and complete statements (as `store::tasks` sends them to PostgreSQL) run
/// by pgbench itself on the benchmark's database, its execution tasks queued again: how much of
/// the claims figure the SQL alone allows. Loops per second.
async fn claims_sql_alone(url: &str, db: &str) -> f64 {
    let cols = "id, queue, kind, title, priority, state, dedup_key, app, context, attempts, max_attempts, \
                worker, lease_expires_at, created_at, updated_at, seen_count, alert_resolved_at, closed_reason, result";
    let mut c = sqlx::PgConnection::connect(url).await.expect("bench db");
    for sql in [
        "UPDATE tasks SET state = 'queued', open_key = dedup_key, worker = NULL, lease_expires_at = NULL, \
         closed_at = NULL, closed_reason = NULL WHERE queue = 'execution'",
        "VACUUM ANALYZE tasks",
    ] {
        c.execute(sql).await.expect("re-queue");
    }
    drop(c);
    let script = format!(
        "WITH c AS (UPDATE tasks SET state = 'claimed', worker = 'w', lease_expires_at = 9000000000000, attempts = attempts + 1, updated_at = 1 \
         WHERE id = (SELECT id FROM tasks WHERE queue = 'execution' AND state = 'queued' ORDER BY priority, created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING {cols}), \
         e AS (INSERT INTO task_events (task_id, at, event, worker) SELECT id, 1, 'claimed', 'w' FROM c) SELECT * FROM c \\gset\n\
         WITH u AS (UPDATE tasks SET state = 'done', open_key = NULL, lease_expires_at = NULL, closed_at = 2, closed_reason = 'completed', result = '{{}}', updated_at = 2 \
         WHERE id = :id AND state = 'claimed' AND worker = 'w' AND lease_expires_at >= 2 RETURNING {cols}), \
         e AS (INSERT INTO task_events (task_id, at, event, worker, detail) SELECT id, 2, 'completed', 'w', NULL FROM u) SELECT * FROM u;\n"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("claim.sql");
    std::fs::write(&file, script).expect("script");
    let file = file.to_string_lossy();
    pgbench_tps(&[
        "-n", "-M", "prepared", "-c", "16", "-j", "2", "-t", "600", "-f", &file, db,
    ])
}

/// The `tps = …` pgbench reports for a run with `args` against the local server (NaN when the
/// run printed none, e.g. a script that aborted).
fn pgbench_tps(args: &[&str]) -> f64 {
    let out = Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-U", "postgres"])
        .args(args)
        .output()
        .expect("pgbench (Debian package postgresql-client)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// pgbench's simple-update (`-N`) tps with 16 clients for 15 s on its own database `db`.
fn pgbench_simple_update(db: &str) -> f64 {
    let base = ["-h", "127.0.0.1", "-U", "postgres"];
    let init = Command::new("pgbench")
        .args(base)
        .args(["-i", "-q", "-s", "10", db])
        .output()
        .expect("pgbench (Debian package postgresql-client)");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    pgbench_tps(&["-N", "-c", "16", "-j", "2", "-T", "15", db])
}

/// A tiny HTTP endpoint the probes hit.
async fn health_endpoint() -> String {
    let app = axum::Router::new().route(
        "/health/live",
        axum::routing::get(|| async { axum::Json(json!({"status": "ok"})) }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}/health/live")
}

/// `wrk` latency percentiles (p50, p99 in ms) and requests/s for `url` with `conns` connections.
fn wrk(url: &str, conns: u32, secs: u32, gzip: bool) -> (f64, f64, f64) {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t1",
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
        "--latency",
    ]);
    if gzip {
        cmd.args(["-H", "Accept-Encoding: gzip"]);
    }
    let out = cmd.arg(url).output().expect("wrk (Debian package wrk)");
    let r = read_wrk(&String::from_utf8_lossy(&out.stdout));
    (r.p50, r.p99, r.rps)
}

/// What `wrk --latency` printed.
struct WrkReport {
    /// Latency percentiles, ms.
    p50: f64,
    p99: f64,
    rps: f64,
    /// Responses of any status, and the seconds they took.
    requests: u64,
    secs: f64,
    non_2xx: u64,
    socket_errors: u64,
}

fn read_wrk(text: &str) -> WrkReport {
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_string()))
            .unwrap_or_default()
    };
    let ms = |v: String| -> f64 {
        let num = |suffix: &str| v.strip_suffix(suffix).and_then(|n| n.parse::<f64>().ok());
        num("us")
            .map(|n| n / 1000.0)
            .or_else(|| num("ms"))
            .or_else(|| num("s").map(|n| n * 1000.0))
            .unwrap_or(f64::NAN)
    };
    // "123456 requests in 20.00s, 12.34MB read"
    let summary = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .unwrap_or_default();
    let mut words = summary.split_whitespace();
    let requests = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    let secs = words
        .nth(2)
        .and_then(|w| w.trim_end_matches(',').strip_suffix('s')?.parse().ok())
        .unwrap_or(f64::NAN);
    WrkReport {
        p50: ms(field("50%")),
        p99: ms(field("99%")),
        rps: field("Requests/sec:").parse().unwrap_or(f64::NAN),
        requests,
        secs,
        non_2xx: field("Non-2xx or 3xx responses:").parse().unwrap_or(0),
        // "Socket errors: connect 0, read 0, write 0, timeout 0"
        socket_errors: field("Socket errors:")
            .split(',')
            .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
            .sum(),
    }
}

/// Debian's nginx serving `dir/metrics` (and `metrics.gz` to clients that accept gzip), its own
/// config, pid file and port in `dir`; stopped by its PID when dropped.
struct Nginx {
    child: Child,
    url: String,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx(dir: &std::path::Path) -> Nginx {
    let port = free_port();
    let conf = format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n\
         \n  server {{\n    listen 127.0.0.1:{port};\n    root {d};\n    gzip_static on;\n    default_type \"text/plain; version=0.0.4; charset=utf-8\";\n  }}\n}}\n",
        d = dir.display()
    );
    std::fs::create_dir_all(dir.join("tmp")).expect("nginx tmp");
    std::fs::write(dir.join("nginx.conf"), conf).expect("nginx conf");
    let child = Command::new("nginx")
        .args(["-e", &format!("{}/error.log", dir.display())])
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (Debian package nginx)");
    let url = format!("http://127.0.0.1:{port}/metrics");
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "nginx did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Nginx { child, url }
}

async fn metrics(c: &reqwest::Client) {
    println!(
        "\n## /metrics over HTTP vs nginx serving the same bytes (wrk, 5 s per row; N apps, N probes, 100 refs)\n"
    );
    println!(
        "| apps | encoding | connections | body bytes | deploywatch p50 | deploywatch p99 | nginx p50 | nginx p99 | p99 ratio | deploywatch req/s | nginx req/s |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let mut rss = Vec::new();
    for apps in [200usize, 1000] {
        rss.push(metrics_at(c, apps).await);
    }
    println!(
        "\n| apps | RSS idle (populated) | RSS after the wrk rows | RSS after 2,000 more scrapes | target | ratio (highest / target) |\n|---|---|---|---|---|---|"
    );
    for (apps, a, b, d) in &rss {
        let mib = |k: u64| k as f64 / 1024.0;
        let high = mib(*a.max(b).max(d));
        let target = if *apps <= 200 { "30 MiB" } else { "none set" };
        let ratio = if *apps <= 200 {
            format!("{:.2}×", high / 30.0)
        } else {
            "-".into()
        };
        println!(
            "| {apps} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {target} | {ratio} |",
            mib(*a),
            mib(*b),
            mib(*d)
        );
    }
    let dir = tempfile::tempdir().expect("tmp");
    let bare = spawn(
        dir.path(),
        &[(
            "DEPLOYWATCH_DATABASE_URL",
            &format!("sqlite://{}/bare.db", dir.path().display()),
        )],
        None,
    );
    wait_ready(c, &bare.url).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kib(bare.child.id()) as f64 / 1024.0;
    println!(
        "\nRSS of an idle `serve` with no sources: {idle:.1} MiB ({}), target 15 MiB, ratio {:.2}×",
        rss_split(bare.child.id()),
        idle / 15.0
    );
}

/// One populated server with `apps` apps and as many probe targets; returns RSS figures (KiB).
async fn metrics_at(c: &reqwest::Client, apps: usize) -> (usize, u64, u64, u64) {
    let sim = Simulator::new(Duration::from_secs(5));
    for i in 0..apps {
        sim.add_app(&format!("app{i:04}"), &format!("{:040x}", i + 1));
    }
    let (sim_addr, _) = sim
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("sim");
    let target = health_endpoint().await;
    let dir = tempfile::tempdir().expect("tmp");
    // One repository with 100 branches: 100 refs.
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).expect("repo");
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "b")
            .env("GIT_AUTHOR_EMAIL", "b@b")
            .env("GIT_COMMITTER_NAME", "b")
            .env("GIT_COMMITTER_EMAIL", "b@b")
            .output()
            .expect("git");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("f"), "x").expect("w");
    git(&["add", "f"]);
    git(&["commit", "-qm", "x"]);
    let branches: Vec<String> = (0..100).map(|i| format!("b{i:03}")).collect();
    for b in &branches {
        git(&["branch", b]);
    }
    let mut toml = format!(
        "[digitalocean]\napi_url = \"http://{sim_addr}\"\npoll_interval = \"60s\"\nbudget_share = 1.0\n\n[health]\ndiscover = false\nconcurrency = 64\n\n[git]\nfetch_interval = \"60s\"\n\n[[git.repos]]\nname = \"repo\"\nurl = \"{}\"\nbranches = [{}]\n",
        repo.display(),
        branches
            .iter()
            .map(|b| format!("\"{b}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for i in 0..apps {
        toml.push_str(&format!("\n[[health.targets]]\nname = \"t{i:04}\"\napp = \"app{i:04}\"\nurl = \"{target}\"\ninterval = \"15s\"\ntimeout = \"5s\"\n"));
    }
    let cfg = dir.path().join("bench.toml");
    std::fs::write(&cfg, toml).expect("config");
    let db = format!("sqlite://{}/dw.db", dir.path().display());
    let s = spawn(
        dir.path(),
        &[
            ("DEPLOYWATCH_DATABASE_URL", &db),
            ("DIGITALOCEAN_TOKEN", "bench"),
        ],
        Some(&cfg),
    );
    wait_ready(c, &s.url).await;
    let pid = s.child.id();
    // Wait until every family is populated.
    let t = Instant::now();
    loop {
        let body = c
            .get(format!("{}/metrics", s.url))
            .send()
            .await
            .expect("m")
            .text()
            .await
            .expect("t");
        let count = |p: &str| body.lines().filter(|l| l.starts_with(p)).count();
        let got = (
            count("deploywatch_app_info{"),
            count("deploywatch_health_probe_success{"),
            count("deploywatch_git_ref_commit_timestamp_seconds{"),
        );
        if got == (apps, apps, 100) || t.elapsed() > Duration::from_secs(180) {
            eprintln!(
                "populated: {got:?} (apps, probes, refs) after {:.1} s",
                t.elapsed().as_secs_f64()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kib(pid);
    // nginx serves the bytes deploywatch serves: the plain body and its gzip copy.
    let web = tempfile::tempdir().expect("tmp");
    let url = format!("{}/metrics", s.url);
    for (file, gzip) in [("metrics", false), ("metrics.gz", true)] {
        let mut r = c.get(&url);
        if gzip {
            r = r.header("accept-encoding", "gzip");
        }
        let b = r.send().await.expect("m").bytes().await.expect("b");
        std::fs::write(web.path().join(file), &b).expect("write body");
    }
    let ng = nginx(web.path());
    for gzip in [false, true] {
        let file = if gzip { "metrics.gz" } else { "metrics" };
        let bytes = std::fs::metadata(web.path().join(file))
            .map(|m| m.len())
            .unwrap_or(0);
        for conns in [1, 4] {
            let (d50, d99, drps) = wrk(&url, conns, 5, gzip);
            let (n50, n99, nrps) = wrk(&ng.url, conns, 5, gzip);
            println!(
                "| {apps} | {} | {conns} | {bytes} | {d50:.2} ms | {d99:.2} ms | {n50:.2} ms | {n99:.2} ms | {:.2}× | {drps:.0} | {nrps:.0} |",
                if gzip { "gzip" } else { "identity" },
                d99 / n99
            );
        }
    }
    drop(ng);
    let after_wrk = rss_kib(pid);
    for _ in 0..2000 {
        let _ = c
            .get(&url)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .expect("m")
            .bytes()
            .await;
    }
    let after_more = rss_kib(pid);
    eprintln!("{apps} apps, after the scrapes: {}", rss_split(pid));
    (apps, idle, after_wrk, after_more)
}

async fn budget() {
    println!(
        "\n## DigitalOcean requests at default settings (poll 30 s, fast 10 s, budget share 0.5), counted by the simulator\n"
    );
    println!(
        "| apps | initial read: requests | initial read: time | steady idle: requests in 120 s | per 30 s poll cycle | target | ratio | requests/hour | share of the 5,000/h limit |\n|---|---|---|---|---|---|---|---|---|"
    );
    for apps in [200usize] {
        let sim = Simulator::new(Duration::from_secs(5));
        for i in 0..apps {
            sim.add_app(&format!("app{i:03}"), &format!("{:040x}", i + 1));
        }
        let (addr, _) = sim
            .serve("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("sim");
        let dir = tempfile::tempdir().expect("tmp");
        let db = format!("sqlite://{}/dw.db", dir.path().display());
        let api = format!("http://{addr}");
        let t = Instant::now();
        let s = spawn(
            dir.path(),
            &[
                ("DEPLOYWATCH_DATABASE_URL", &db),
                ("DIGITALOCEAN_TOKEN", "bench"),
                ("DEPLOYWATCH_DO_API_URL", &api),
            ],
            None,
        );
        // The initial read: every app's deployments once, paced under the per-minute share.
        while (sim.requests_to("/v2/apps/{id}/deployments") as usize) < apps
            && t.elapsed() < Duration::from_secs(600)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let initial = sim.requests();
        let initial_time = t.elapsed();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let start = sim.requests();
        let window = Duration::from_secs(120);
        tokio::time::sleep(window).await;
        let n = sim.requests() - start;
        let per_hour = n as f64 * 3600.0 / window.as_secs_f64();
        let per_cycle = n as f64 / (window.as_secs_f64() / 30.0);
        println!(
            "| {apps} | {initial} | {:.0} s | {n} | {per_cycle:.2} | 1 | {:.2}× | {per_hour:.0} | {:.1}% |",
            initial_time.as_secs_f64(),
            per_cycle / 1.0,
            per_hour / 50.0
        );
        drop(s);
    }
}

/// 200 apps, 5 of them inside a verification window (deployed as the run starts), at default
/// settings: the poller, the verification reads and the slow runtime sweep together.
async fn budget_window() {
    println!(
        "\n## DigitalOcean requests with 200 apps, 5 inside a verification window (defaults: poll 30 s, verification every 60 s, runtime sweep off), counted by the simulator\n"
    );
    println!(
        "| requests in 180 s | by endpoint | requests/hour | share of the 5,000/h limit |\n|---|---|---|---|"
    );
    let sim = Simulator::new(Duration::from_secs(5));
    for i in 0..200usize {
        sim.add_app(&format!("app{i:03}"), &format!("{:040x}", i + 1));
    }
    let (addr, _) = sim
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("sim");
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}/dw.db", dir.path().display());
    let api = format!("http://{addr}");
    let s = spawn(
        dir.path(),
        &[
            ("DEPLOYWATCH_DATABASE_URL", &db),
            ("DIGITALOCEAN_TOKEN", "bench"),
            ("DEPLOYWATCH_DO_API_URL", &api),
        ],
        None,
    );
    let t = Instant::now();
    while (sim.requests_to("/v2/apps/{id}/deployments") as usize) < 200
        && t.elapsed() < Duration::from_secs(600)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..5usize {
        sim.deploy(
            &format!("app{i:03}"),
            &format!("{:040x}", 1000 + i),
            Script::Success,
        );
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    let endpoints = [
        "/v2/apps",
        "/v2/apps/{id}/deployments",
        "/v2/apps/{id}/health",
        "/v2/monitoring/metrics/apps/restart_count",
        "/v2/monitoring/metrics/apps/memory_percentage",
        "/v2/monitoring/metrics/apps/cpu_percentage",
    ];
    let before: Vec<u64> = endpoints.iter().map(|e| sim.requests_to(e)).collect();
    let start = sim.requests();
    let window = Duration::from_secs(180);
    tokio::time::sleep(window).await;
    let n = sim.requests() - start;
    let by: Vec<String> = endpoints
        .iter()
        .zip(before)
        .map(|(e, b)| format!("{e} {}", sim.requests_to(e) - b))
        .collect();
    let per_hour = n as f64 * 3600.0 / window.as_secs_f64();
    println!(
        "| {n} | {} | {per_hour:.0} | {:.1}% |",
        by.join(", "),
        per_hour / 50.0
    );
    drop(s);
}

async fn probes(c: &reqwest::Client) {
    println!("\n## CPU time and memory per 1,000 probes of one local endpoint\n");
    let target = health_endpoint().await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut toml = String::from("[health]\nconcurrency = 16\n");
    for i in 0..100 {
        toml.push_str(&format!("\n[[health.targets]]\nname = \"t{i:03}\"\napp = \"bench\"\nurl = \"{target}\"\ninterval = \"1s\"\ntimeout = \"1s\"\n"));
    }
    let cfg = dir.path().join("probes.toml");
    std::fs::write(&cfg, toml).expect("config");
    let s = spawn(
        dir.path(),
        &[(
            "DEPLOYWATCH_DATABASE_URL",
            &format!("sqlite://{}/dw.db", dir.path().display()),
        )],
        Some(&cfg),
    );
    wait_ready(c, &s.url).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = s.child.id();
    let count = |body: &str| -> f64 {
        body.lines()
            .filter(|l| l.starts_with("deploywatch_health_probes_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let m0 = count(
        &c.get(format!("{}/metrics", s.url))
            .send()
            .await
            .expect("m")
            .text()
            .await
            .expect("t"),
    );
    let cpu0 = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let m1 = count(
        &c.get(format!("{}/metrics", s.url))
            .send()
            .await
            .expect("m")
            .text()
            .await
            .expect("t"),
    );
    let cpu1 = cpu_seconds(pid);
    let n = m1 - m0;
    println!(
        "| prober | probes | CPU seconds | CPU ms per 1,000 probes | RSS |\n|---|---|---|---|---|"
    );
    println!(
        "| deploywatch (100 targets × 1 s, 20 s) | {n:.0} | {:.2} | {:.0} | {:.1} MiB |",
        cpu1 - cpu0,
        (cpu1 - cpu0) * 1e6 / n.max(1.0),
        rss_kib(pid) as f64 / 1024.0
    );
    drop(s);

    let bb_port = free_port();
    let bb_cfg = dir.path().join("blackbox.yml");
    std::fs::write(
        &bb_cfg,
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 1s\n",
    )
    .expect("bb config");
    let bb = Command::new("prometheus-blackbox-exporter")
        .args([
            format!("--config.file={}", bb_cfg.display()),
            format!("--web.listen-address=127.0.0.1:{bb_port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut bb) = bb else {
        println!(
            "| prometheus-blackbox-exporter | not installed (apt-get install prometheus-blackbox-exporter) | | | |"
        );
        return;
    };
    let bb_url = format!("http://127.0.0.1:{bb_port}");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20)
        && c.get(format!("{bb_url}/-/healthy")).send().await.is_err()
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = bb.id();
    let cpu0 = cpu_seconds(pid);
    let done = Arc::new(AtomicU64::new(0));
    let mut hs = Vec::new();
    for _ in 0..16 {
        let (done, url, target) = (done.clone(), bb_url.clone(), target.clone());
        hs.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            while done.fetch_add(1, Ordering::Relaxed) < 2000 {
                let mut u = url::Url::parse(&format!("{url}/probe")).expect("url");
                u.query_pairs_mut()
                    .append_pair("target", &target)
                    .append_pair("module", "http_2xx");
                let _ = c.get(u).send().await.map(|r| r.bytes());
            }
        }));
    }
    for h in hs {
        let _ = h.await;
    }
    let cpu1 = cpu_seconds(pid);
    println!(
        "| prometheus-blackbox-exporter (2,000 /probe requests, 16 concurrent) | 2000 | {:.2} | {:.0} | {:.1} MiB |",
        cpu1 - cpu0,
        (cpu1 - cpu0) * 1e6 / 2000.0,
        rss_kib(pid) as f64 / 1024.0
    );
    let _ = bb.kill();
    let _ = bb.wait();
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |s: &str| args.is_empty() || args.iter().any(|a| a == s);
    let c = reqwest::Client::new();
    println!(
        "# deploywatch load benchmark ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    if want("startup") {
        startup(&c).await;
    }
    if want("ingest") {
        ingest(&c).await;
    }
    if want("claims") {
        claims(&c).await;
    }
    if want("metrics") {
        metrics(&c).await;
    }
    if want("probes") {
        probes(&c).await;
    }
    if want("budget-window") {
        budget_window().await;
    }
    if want("budget") {
        budget().await;
    }
}
