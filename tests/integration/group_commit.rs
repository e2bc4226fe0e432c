//! Group commit of webhook notifications (issue 16): many notifications share one durable
//! transaction, each answered only after that commit, with Alertmanager's semantics unchanged
//! (dedup, ordering by the alerts' own times, one task per dedup key).

use std::time::Duration;

use deploywatch::store::{AlertRecord, NotificationRecord, PlaceOptions, Store};
use deploywatch::tasks::{Kind as TaskKind, NewTask};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::Row;

use crate::helpers::*;

const BACKENDS: [Kind; 2] = [Kind::Sqlite, Kind::Postgres];

fn alert(app: &str, status: &str) -> Value {
    notification(&[(
        "DeploymentFailed",
        status,
        &[("app", app), ("severity", "critical")],
        "2026-11-22T10:00:00Z",
    )])
}

/// The same alert as the HA peer sends it (another Alertmanager: another body, same labels).
fn from_peer(mut n: Value) -> Value {
    n["externalURL"] = json!("http://alertmanager-2:9093");
    n
}

/// Posts every body at once; the answers in the order of `bodies`.
async fn post_all(app: &TestApp, bodies: &[Value]) -> Vec<(u16, Value)> {
    let handles: Vec<_> = bodies
        .iter()
        .cloned()
        .map(|body| {
            let http = app.http.clone();
            let url = format!("{}/webhook/alertmanager", app.url);
            tokio::spawn(async move {
                let r = http.post(url).json(&body).send().await.expect("post");
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("join"));
    }
    out
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    sqlx::query(sql)
        .fetch_one(app.app().store.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .try_get::<i64, _>(0)
        .expect("a count")
}

/// Waits until the batch-size histogram has counted `stored` notifications; returns its
/// (commits, notifications).
async fn batches(app: &TestApp, stored: f64) -> (f64, f64) {
    app.until_metric(
        "deploywatch_webhook_batch_size_sum",
        stored,
        Duration::from_secs(10),
    )
    .await;
    let m = app.metrics().await;
    let commits = metric(&m, "deploywatch_webhook_batch_size_count").expect("count");
    (commits, stored)
}

#[tokio::test]
async fn concurrent_notifications_share_commits_with_alertmanager_semantics() {
    for kind in BACKENDS {
        let app = spawn_app(kind, "", &[]).await;
        let name = |i: usize| format!("app{i}");
        let mut bodies = Vec::new();
        // 24 episodes; 16 of them again from the HA peer, 8 repeated verbatim (Alertmanager's
        // retry), and the last 8 resolved (by both peers) while their firing is still in flight.
        for i in 0..24 {
            bodies.push(alert(&name(i), "firing"));
        }
        for i in 0..16 {
            bodies.push(from_peer(alert(&name(i), "firing")));
        }
        for i in 0..8 {
            bodies.push(alert(&name(i), "firing"));
        }
        for i in 16..24 {
            bodies.push(alert(&name(i), "resolved"));
            bodies.push(from_peer(alert(&name(i), "resolved")));
        }
        assert_eq!(bodies.len(), 64);
        let answers = post_all(&app, &bodies).await;
        for (i, (status, body)) in answers.iter().enumerate() {
            assert_eq!(*status, 200, "{kind:?} notification {i}: {body}");
        }

        assert_eq!(
            count(&app, "SELECT COUNT(*) FROM alerts").await,
            24,
            "{kind:?}"
        );
        assert_eq!(
            count(&app, "SELECT COUNT(*) FROM alerts WHERE status = 'firing'").await,
            16,
            "{kind:?}: the resolves win by their time, whatever the arrival order"
        );
        let firing: Vec<String> =
            sqlx::query("SELECT app FROM alerts WHERE status = 'firing' ORDER BY app")
                .fetch_all(app.app().store.pool())
                .await
                .expect("alerts")
                .iter()
                .map(|r| r.try_get("app").expect("app"))
                .collect();
        let mut want: Vec<String> = (0..16).map(name).collect();
        want.sort();
        assert_eq!(firing, want, "{kind:?}");
        // One task per dedup key, and the open fix tasks are those of the firing episodes.
        assert_eq!(
            count(
                &app,
                "SELECT COUNT(*) FROM (SELECT dedup_key FROM tasks GROUP BY dedup_key HAVING COUNT(*) > 1) AS d"
            )
            .await,
            0,
            "{kind:?}: a dedup key with two tasks"
        );
        let open = app.tasks_where("queue=execution&state=queued").await;
        assert_eq!(open.len(), 16, "{kind:?}: {open:?}");
        for t in &open {
            let app_name = t["app"].as_str().expect("app");
            assert!(want.iter().any(|w| w == app_name), "{kind:?}: {t}");
        }
        // Every body is one receipt; the verbatim repeats only counted.
        assert_eq!(
            count(&app, "SELECT COUNT(*) FROM notifications").await,
            56,
            "{kind:?}"
        );
        assert_eq!(
            count(
                &app,
                "SELECT CAST(SUM(seen_count) AS BIGINT) FROM notifications"
            )
            .await,
            64,
            "{kind:?}"
        );
        // Every stored notification was counted in exactly one commit, and at least one commit
        // held more than one.
        let (commits, stored) = batches(&app, 64.0).await;
        println!("{kind:?}: 64 notifications in {commits} commits");
        assert!(
            commits < stored,
            "{kind:?}: {commits} commits for {stored} notifications: no group commit happened"
        );
        app.stop().await;
    }
}

/// Makes the store refuse alerts of the app `unstorable` as input (a test trigger: the webhook
/// already makes every input it knows of storable, so the refusal is staged in the database).
async fn refuse_unstorable(app: &TestApp, kind: Kind) {
    let pool = app.app().store.pool();
    let stmts: &[&str] = match kind {
        Kind::Sqlite => &[
            "CREATE TRIGGER refuse_unstorable BEFORE INSERT ON alerts WHEN NEW.app = 'unstorable' \
             BEGIN SELECT RAISE(ABORT, 'this test refuses the app unstorable'); END",
        ],
        _ => &[
            "CREATE FUNCTION refuse_unstorable() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.app = 'unstorable' THEN RAISE EXCEPTION 'this test refuses the app unstorable' \
             USING ERRCODE = '22023'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER refuse_unstorable BEFORE INSERT ON alerts FOR EACH ROW \
             EXECUTE FUNCTION refuse_unstorable()",
        ],
    };
    for s in stmts {
        sqlx::query(*s).execute(pool).await.expect("test trigger");
    }
}

#[tokio::test]
async fn one_unstorable_notification_in_a_batch_is_refused_and_the_rest_stored() {
    for kind in BACKENDS {
        let app = spawn_app(kind, "", &[]).await;
        refuse_unstorable(&app, kind).await;
        let mut bodies: Vec<Value> = (0..63)
            .map(|i| alert(&format!("app{i}"), "firing"))
            .collect();
        // The refused notification also carries a storable alert: it is refused whole.
        let refused = notification(&[
            (
                "DeploymentFailed",
                "firing",
                &[("app", "partner"), ("severity", "critical")],
                "2026-11-22T10:00:00Z",
            ),
            (
                "DeploymentFailed",
                "firing",
                &[("app", "unstorable"), ("severity", "critical")],
                "2026-11-22T10:00:00Z",
            ),
        ]);
        bodies.insert(31, refused);
        let answers = post_all(&app, &bodies).await;
        for (i, (status, body)) in answers.iter().enumerate() {
            if i == 31 {
                assert_eq!(*status, 422, "{kind:?} the refused notification: {body}");
                assert_eq!(body["error"], "unstorable", "{kind:?}: {body}");
            } else {
                assert_eq!(*status, 200, "{kind:?} notification {i}: {body}");
            }
        }
        assert_eq!(
            count(&app, "SELECT COUNT(*) FROM alerts").await,
            63,
            "{kind:?}"
        );
        assert_eq!(
            count(
                &app,
                "SELECT COUNT(*) FROM alerts WHERE app IN ('partner', 'unstorable')"
            )
            .await,
            0,
            "{kind:?}: nothing of the refused notification is stored"
        );
        assert_eq!(
            count(&app, "SELECT COUNT(*) FROM notifications").await,
            63,
            "{kind:?}"
        );
        assert_eq!(
            app.tasks_where("queue=execution&state=queued").await.len(),
            63,
            "{kind:?}"
        );
        let (commits, _) = batches(&app, 63.0).await;
        println!("{kind:?}: 63 notifications stored in {commits} commits, one refused");
        // Later notifications are not blocked, and the store stays ready.
        app.post_alerts_ok(&alert("later", "firing")).await;
        assert_eq!(app.get("/health/ready").await.status(), 200, "{kind:?}");
        app.stop().await;
    }
}

fn record(app: &str, fp: &str) -> AlertRecord {
    AlertRecord {
        fingerprint: fp.to_string(),
        alertname: "DeploymentFailed".into(),
        app: Some(app.into()),
        firing: true,
        starts_at_ms: chrono::Utc::now().timestamp_millis() - 60_000,
        ends_at_ms: None,
        labels_json: "{}".into(),
        annotations_json: "{}".into(),
        create: vec![NewTask {
            kind: TaskKind::Fix,
            title: format!("FIX: Deployment error in {app}"),
            priority: 1,
            dedup_key: format!("fix:DeploymentFailed:{app}:{fp}"),
            app: Some(app.into()),
            context: json!({}),
        }],
        cancel_keys: vec![],
    }
}

fn receipt(sha: &str) -> NotificationRecord {
    NotificationRecord {
        body_sha256: sha.into(),
        receiver: "deploywatch".into(),
        status: "firing".into(),
        group_key: "{}".into(),
        alert_count: 1,
        body: "{}".into(),
    }
}

async fn store_count(store: &Store, sql: &'static str) -> i64 {
    sqlx::query(sql)
        .fetch_one(store.pool())
        .await
        .expect(sql)
        .try_get::<i64, _>(0)
        .expect("a count")
}

#[tokio::test]
async fn a_caller_that_gave_up_is_stored_once_or_not_at_all_and_its_retry_is_idempotent() {
    let tdb = sqlite_db();
    let store = Store::connect(
        &SecretString::from(tdb.url.clone()),
        Duration::from_secs(10),
    )
    .await
    .expect("connect");
    store.migrate().await.expect("migrate");
    let opts = PlaceOptions {
        max_attempts: 3,
        reopen_window: Duration::from_secs(600),
        notifiers: &[],
    };
    // The one SQLite connection is busy: the writer takes `first` and waits for it, so `late`
    // waits in the queue. Both callers give up before anything commits.
    let held = store.pool().acquire().await.expect("the one connection");
    let (first, late) = (record("first", "fp-first"), record("late", "fp-late"));
    for (sha, a) in [("sha-first", &first), ("sha-late", &late)] {
        let r = tokio::time::timeout(
            Duration::from_millis(200),
            store.ingest_notification(receipt(sha), vec![a.clone()], &opts),
        )
        .await;
        assert!(r.is_err(), "{sha}: the caller gave up: {r:?}");
    }
    drop(held);
    // Whatever each became (stored by a batch already taken, or skipped because its caller was
    // gone), Alertmanager's retry leaves one receipt, one episode and one task.
    for (sha, a) in [("sha-first", &first), ("sha-late", &late)] {
        let r = store
            .ingest_notification(receipt(sha), vec![a.clone()], &opts)
            .await
            .expect("the retry is stored");
        println!(
            "{sha}: retry created {} and absorbed {}",
            r.tasks_created, r.duplicates_absorbed
        );
    }
    assert_eq!(
        store_count(&store, "SELECT COUNT(*) FROM notifications").await,
        2
    );
    assert_eq!(store_count(&store, "SELECT COUNT(*) FROM alerts").await, 2);
    assert_eq!(
        store_count(&store, "SELECT COUNT(*) FROM tasks WHERE kind = 'fix'").await,
        2,
        "one fix task per episode"
    );
    assert_eq!(
        store_count(
            &store,
            "SELECT COUNT(*) FROM tasks WHERE kind = 'fix' AND open_key IS NOT NULL"
        )
        .await,
        2
    );
    store.close().await;
}

#[tokio::test]
async fn a_closed_store_answers_notifications_with_an_error_never_a_hang() {
    for kind in BACKENDS {
        let tdb = db(kind).await;
        let store = Store::connect(&SecretString::from(tdb.url.clone()), Duration::from_secs(5))
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        let opts = PlaceOptions {
            max_attempts: 3,
            reopen_window: Duration::from_secs(600),
            notifiers: &[],
        };
        store
            .ingest_notification(receipt("open"), vec![record("a", "fp-a")], &opts)
            .await
            .expect("stored while open");
        store.close().await;
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            store.ingest_notification(receipt("closed"), vec![record("b", "fp-b")], &opts),
        )
        .await
        .expect("an answer, not a hang");
        let e = r.expect_err("a closed store stores nothing");
        assert!(e.is_transient(), "{kind:?}: {e}");
    }
}

/// The rows of `alerts` in the SQLite database file alone, without its WAL: what checkpoints
/// have copied there. `None` while a copy cannot be read (taken mid-checkpoint).
async fn alerts_in_file_alone(db: &std::path::Path) -> Option<i64> {
    use sqlx::Connection;
    let dir = tempfile::tempdir().ok()?;
    let copy = dir.path().join("copy.db");
    std::fs::copy(db, &copy).ok()?;
    let mut c = sqlx::AnyConnection::connect(&format!("sqlite://{}", copy.display()))
        .await
        .ok()?;
    let n = sqlx::query("SELECT COUNT(*) FROM alerts")
        .fetch_one(&mut c)
        .await
        .ok()?
        .try_get::<i64, _>(0)
        .ok();
    let _ = c.close().await;
    n
}

/// Commits reach the SQLite database file through the background checkpointer, not through the
/// commit that takes the WAL past SQLite's default 1,000 pages (the writer's own checkpoint now
/// waits for 4,000 pages, as a backstop): twenty notifications, a few hundred WAL pages, are in
/// the file within seconds.
#[tokio::test]
async fn sqlite_commits_are_checkpointed_into_the_file_in_the_background() {
    sqlx::any::install_default_drivers();
    let db = sqlite_db();
    let path = std::path::PathBuf::from(db.url.trim_start_matches("sqlite://"));
    let app = spawn_app_on(db, "", &[], Default::default()).await;
    for i in 0..20 {
        let r = app.post_alerts(&alert(&format!("app{i}"), "firing")).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let wal = std::fs::metadata(format!("{}-wal", path.display()))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        wal < 1000 * 4096,
        "the burst stays under the default checkpoint threshold ({wal} bytes of WAL)"
    );
    until(
        "the twenty alerts in the database file itself",
        Duration::from_secs(15),
        || async {
            let n = alerts_in_file_alone(&path).await;
            seen(n == Some(20), n)
        },
    )
    .await;
    app.stop().await;
}
