//! The set-oriented path must leave the store exactly as the one-by-one path does. Pseudo-random
//! workloads (firings, resolves, repeats, HA duplicates, identical bodies, several alerts per
//! notification, agents claiming and completing in between) go to two stores of the same backend,
//! batch by batch: one through `ingest_set` (which must not give any batch back), the other through
//! `batch_tx_one_by_one`. The reports and every table the ingest writes must agree.

use std::time::Duration;

use sqlx::{Connection, Row};

use super::tests::{Answer, episode_alert, job_of, sqlite_store};
use super::*;
use crate::tasks::{Kind, NewTask};

/// A small deterministic generator (xorshift), so a failure names a seed that reproduces it.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const BASE: i64 = 1_700_000_000_000;
const MIN: i64 = 60_000;

fn task(kind: Kind, key: String, app: &str) -> NewTask {
    NewTask {
        kind,
        title: format!("{} {key}", kind.as_str()),
        priority: 2,
        dedup_key: key,
        app: Some(app.into()),
        context: serde_json::json!({"app": app}),
    }
}

/// One alert of the workload: fingerprint `f`, firing from minute `s` or resolved at minute `e`.
fn alert(f: u64, s: i64, end: Option<i64>) -> AlertRecord {
    let app = format!("app{f}");
    let fp = format!("fp{f}");
    let (firing, create, cancel_keys) = match end {
        None => {
            let mut create = vec![
                task(Kind::Fix, format!("fix:{fp}"), &app),
                task(Kind::Announce, format!("announce:{fp}:fire:{s}"), &app),
            ];
            if f.is_multiple_of(2) {
                create.push(task(Kind::Rollback, format!("rollback:{fp}"), &app));
            }
            (true, create, Vec::new())
        }
        Some(e) => (
            false,
            vec![task(
                Kind::Announce,
                format!("announce:{fp}:resolve:{e}"),
                &app,
            )],
            vec![format!("fix:{fp}"), format!("rollback:{fp}")],
        ),
    };
    AlertRecord {
        fingerprint: fp,
        alertname: "DeploymentFailed".into(),
        app: Some(app),
        firing,
        starts_at_ms: BASE + s * MIN,
        ends_at_ms: end.map(|e| BASE + e * MIN),
        labels_json: format!(r#"{{"start":"{s}"}}"#),
        annotations_json: "{}".into(),
        create,
        cancel_keys,
    }
}

/// A notification of 1–3 alerts over 4 episodes, their times moving with the round; the body hash is the content's, so a repeat of
/// the same content is the same receipt.
fn notification(rng: &mut Rng, round: i64) -> (String, Vec<AlertRecord>) {
    let mut alerts = Vec::new();
    let mut what = String::new();
    for _ in 0..=rng.below(3) {
        let f = rng.below(4);
        // Mostly the current episode, sometimes a late one (stale or a repeat).
        let s = (round - rng.below(3) as i64).max(0) * 3 + rng.below(2) as i64;
        let end = (rng.below(2) == 0).then(|| s + 1 + rng.below(2) as i64);
        what.push_str(&format!("{f}/{s}/{end:?};"));
        alerts.push(alert(f, s, end));
    }
    (what, alerts)
}

fn jobs(batch: &[(String, Vec<AlertRecord>)]) -> (Vec<Job>, Vec<Answer>) {
    batch
        .iter()
        .map(|(sha, alerts)| {
            let (mut job, rx) = job_of(sha, 10, alerts.clone());
            job.reopen_window = Duration::from_secs(3600);
            job.notifiers = vec!["slack".into()];
            (job, rx)
        })
        .unzip()
}

async fn strings(store: &Store, sql: &str) -> Vec<String> {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(store.pool())
        .await
        .expect("snapshot query")
        .iter()
        .map(|r| r.try_get::<String, _>(0).expect("one text column"))
        .collect()
}

/// What the ingest wrote, without what differs by design (row ids, the clock).
async fn snapshot(store: &Store) -> Vec<Vec<String>> {
    let c = |col: &str| format!("COALESCE(CAST({col} AS TEXT), '-')");
    vec![
        strings(
            store,
            &format!(
                "SELECT body_sha256 || ' ' || {} FROM notifications ORDER BY body_sha256",
                c("seen_count")
            ),
        )
        .await,
        strings(
            store,
            &format!(
                "SELECT fingerprint || ' ' || status || ' ' || {} || ' ' || {} || ' ' || {} || ' ' || labels || ' ' || alertname \
                 FROM alerts ORDER BY fingerprint",
                c("starts_at"),
                c("resolved_at"),
                c("seen_count")
            ),
        )
        .await,
        // Tasks in the order they were made, per key.
        strings(
            store,
            &format!(
                "SELECT dedup_key || ' ' || kind || ' ' || state || ' ' || {} || ' ' || {} || ' ' || {} || ' ' || {} || ' ' || \
                 CASE WHEN closed_at IS NULL THEN 'open' ELSE 'closed' END || ' ' || {} || ' ' || {} || ' ' || {} || ' ' || title || ' ' || context \
                 FROM tasks ORDER BY dedup_key, created_at, (SELECT MIN(e.id) FROM task_events e WHERE e.task_id = tasks.id)",
                c("open_key"),
                c("seen_count"),
                c("closed_reason"),
                c("alert_resolved_at"),
                c("max_attempts"),
                c("attempts"),
                c("worker")
            ),
        )
        .await,
        // Each task's history, in order.
        strings(
            store,
            &format!(
                "SELECT t.dedup_key || ' ' || e.event || ' ' || {} FROM task_events e JOIN tasks t ON t.id = e.task_id \
                 ORDER BY t.dedup_key, e.id",
                c("e.detail")
            ),
        )
        .await,
        strings(
            store,
            "SELECT notifier || ' ' || payload FROM outbox ORDER BY payload",
        )
        .await,
    ]
}

/// An agent's move, the same on both stores: claim the queued fix of an episode, or complete the
/// claimed one.
async fn agent(store: &Store, key: &str, complete: bool) {
    let state = if complete { "claimed" } else { "queued" };
    let ids = strings(
        store,
        &format!("SELECT id FROM tasks WHERE open_key = '{key}' AND state = '{state}'"),
    )
    .await;
    for id in ids {
        if complete {
            store
                .complete(&id, "agent", &serde_json::json!({}))
                .await
                .expect("complete");
        } else {
            store
                .claim_by_id(&id, "agent", Duration::from_secs(600))
                .await
                .expect("claim");
        }
    }
}

/// Runs `rounds` batches from `seed` on two fresh stores, compares after each, and returns the
/// history the run made (so the test can check the workload reached every rule).
async fn run(seed: u64, rounds: usize, set: &Store, one: &Store) -> String {
    let mut rng = Rng(seed);
    for round in 0..rounds {
        let size = 1 + rng.below(6) as usize;
        let mut batch: Vec<(String, Vec<AlertRecord>)> = (0..size)
            .map(|_| notification(&mut rng, round as i64))
            .collect();
        // An HA peer or a retry: the same notification twice in one batch.
        if rng.below(4) == 0 {
            batch.push(batch[0].clone());
        }
        let (a, _ra) = jobs(&batch);
        let (b, _rb) = jobs(&batch);
        let mut tx = set.pool.begin().await.expect("begin");
        if set.backend == Backend::Postgres {
            super::locks::lock_keys(&mut tx, &job_keys(&a))
                .await
                .expect("locks");
        }
        let notices: Vec<Notice<'_>> = a.iter().map(Job::notice).collect();
        let got = match set.ingest_set(&mut tx, &notices).await {
            Ok(r) => r,
            Err(e) => panic!("seed {seed} round {round}: the set path gave the batch back: {e}"),
        };
        tx.commit().await.expect("commit");
        let want: Vec<IngestReport> = one
            .batch_tx_one_by_one(&b)
            .await
            .expect("one by one")
            .into_iter()
            .map(|r| r.expect("stored"))
            .collect();
        assert_eq!(got, want, "seed {seed} round {round}: reports");
        let (sa, sb) = (snapshot(set).await, snapshot(one).await);
        for (x, y) in sa.iter().zip(&sb) {
            let only = |p: &[String], q: &[String]| {
                p.iter()
                    .filter(|l| !q.contains(l))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            assert!(
                x == y,
                "seed {seed} round {round}, batch {:?}:\n set path only: {:?}\n one by one only: {:?}",
                batch.iter().map(|b| &b.0).collect::<Vec<_>>(),
                only(x, y),
                only(y, x)
            );
        }
        let key = format!("fix:fp{}", rng.below(4));
        let complete = rng.below(2) == 0;
        if rng.below(3) != 0 {
            agent(set, &key, complete).await;
            agent(one, &key, complete).await;
        }
    }
    snapshot(set).await[3].join("\n")
}

/// Every rule the workload must have reached, as the history shows it.
fn assert_reached(history: &str) {
    for rule in [
        "created",
        "cancelled",
        "note",
        "alert fired again",
        "still firing after completion",
    ] {
        assert!(
            history.contains(rule),
            "the workload never reached `{rule}`"
        );
    }
}

#[tokio::test]
async fn the_set_path_stores_what_one_by_one_stores_on_sqlite() {
    let mut history = String::new();
    for seed in [1, 7, 42, 1234] {
        let dir = tempfile::tempdir().expect("tmp");
        let set = sqlite_store(dir.path(), "set.db").await;
        let one = sqlite_store(dir.path(), "one.db").await;
        history += &run(seed, 40, &set, &one).await;
        set.close().await;
        one.close().await;
    }
    assert_reached(&history);
}

/// A fresh PostgreSQL database on the test server (`DEPLOYWATCH_TEST_PG_URL`, as the integration
/// tests use), dropped after.
async fn pg_store(admin: &str) -> (Store, String) {
    let name = format!("dw_{}", uuid::Uuid::new_v4().simple());
    let mut c = sqlx::PgConnection::connect(admin)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (run scripts/services.sh)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .expect("create database");
    let mut u = url::Url::parse(admin).expect("url");
    u.set_path(&format!("/{name}"));
    let store = Store::connect(&u.to_string().into(), Duration::from_secs(5))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    (store, name)
}

#[tokio::test]
async fn the_set_path_stores_what_one_by_one_stores_on_postgres() {
    let admin = std::env::var("DEPLOYWATCH_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut history = String::new();
    for seed in [3, 99] {
        let (set, a) = pg_store(&admin).await;
        let (one, b) = pg_store(&admin).await;
        history += &run(seed, 30, &set, &one).await;
        set.close().await;
        one.close().await;
        let mut c = sqlx::PgConnection::connect(&admin).await.expect("admin");
        for name in [a, b] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
                .execute(&mut c)
                .await
                .expect("drop");
        }
    }
    assert_reached(&history);
}

#[tokio::test]
async fn a_postgres_batch_larger_than_one_tls_record_is_stored_whole_by_the_set_path() {
    let admin = std::env::var("DEPLOYWATCH_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (store, name) = pg_store(&admin).await;
    // 150 notifications of 600-byte bodies, two episodes each: every row set is several times
    // `ingest_batch::PG_CHUNK`, so each statement runs in chunks.
    let (jobs, _answers): (Vec<Job>, Vec<Answer>) = (0..150)
        .map(|i| {
            job_of(
                &format!("big{i}"),
                600,
                vec![
                    episode_alert(&format!("e{i}a"), true),
                    episode_alert(&format!("e{i}b"), true),
                ],
            )
        })
        .unzip();
    let committed = store.commit_batch(&jobs, false).await;
    assert_eq!(committed.one_by_one, None, "the set path stored it");
    assert!(committed.answers.iter().all(Result::is_ok));
    let count = |sql: &'static str| {
        let pool = store.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .expect("count")
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM notifications").await, 150);
    assert_eq!(count("SELECT COUNT(*) FROM alerts").await, 300);
    assert_eq!(
        count("SELECT COUNT(*) FROM tasks WHERE state = 'queued'").await,
        300
    );
    store.close().await;
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&admin).await.expect("admin");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
        .execute(&mut c)
        .await
        .expect("drop");
}
