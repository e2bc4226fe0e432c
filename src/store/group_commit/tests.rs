use super::locks::{batch_keys, key_lists, lock_key};
use super::*;

fn load(notifications: usize, bytes: usize, alerts: usize) -> Load {
    Load {
        notifications,
        bytes,
        alerts,
    }
}

#[test]
fn batches_take_what_the_bounds_admit() {
    let b = Bounds {
        notifications: 3,
        bytes: 100,
        alerts: 10,
    };
    for (taken, next, want) in [
        (load(0, 0, 0), load(1, 10, 1), true),
        // The first notification is always taken, however large.
        (load(0, 0, 0), load(1, 1_000, 5_000), true),
        (load(2, 50, 5), load(1, 50, 5), true),
        (load(3, 30, 3), load(1, 1, 1), false),
        (load(1, 60, 1), load(1, 41, 1), false),
        (load(1, 10, 8), load(1, 10, 3), false),
    ] {
        assert_eq!(b.admits(taken, next), want, "{taken:?} + {next:?}");
    }
}

#[test]
fn lock_keys_are_stable_sorted_and_unique() {
    assert_eq!(lock_key("abc"), lock_key("abc"));
    assert_ne!(lock_key("abc"), lock_key("abd"));
    // Pinned: replicas running different builds must take the same locks.
    assert_eq!(lock_key("abc"), 7_798_228_009_517_828_734);
    let n = |sha: &str| NotificationRecord {
        body_sha256: sha.into(),
        receiver: String::new(),
        status: "firing".into(),
        group_key: String::new(),
        alert_count: 0,
        body: String::new(),
    };
    let (a, b) = (n("body-a"), n("body-b"));
    let keys = batch_keys([(&a, &[][..]), (&b, &[][..]), (&a, &[][..])].into_iter());
    assert_eq!(keys.len(), 2);
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
}

pub(super) fn job_of(sha: &str, bytes: usize, alerts: Vec<AlertRecord>) -> (Job, Answer) {
    let (reply, rx) = oneshot::channel();
    let job = Job {
        n: NotificationRecord {
            body_sha256: sha.into(),
            receiver: String::new(),
            status: "firing".into(),
            group_key: String::new(),
            alert_count: alerts.len() as i64,
            body: "x".repeat(bytes),
        },
        alerts,
        max_attempts: 3,
        reopen_window: Duration::from_secs(1),
        notifiers: Vec::new(),
        reply,
    };
    (job, rx)
}

pub(super) type Answer = oneshot::Receiver<Result<IngestReport, StoreError>>;

fn job(bytes: usize) -> (Job, Answer) {
    job_of("", bytes, Vec::new())
}

#[tokio::test]
async fn a_batch_is_what_is_queued_within_bounds_and_skips_callers_gone() {
    let (tx, rx) = mpsc::channel(16);
    let mut q = Queue { rx, carry: None };
    let b = Bounds {
        notifications: 3,
        bytes: 100,
        alerts: 10,
    };
    let mut waiting = Vec::new();
    for bytes in [10, 10, 10, 10, 90, 20] {
        let (j, r) = job(bytes);
        tx.send(j).await.expect("send");
        waiting.push(r);
    }
    // The caller of the second notification stopped waiting: it is not taken.
    drop(waiting.remove(1));
    let sizes = |batch: Vec<Job>| batch.iter().map(|j| j.n.body.len()).collect::<Vec<_>>();
    assert_eq!(sizes(q.take(b).await.expect("batch")), [10, 10, 10]);
    // 90 bytes would pass the byte bound: carried over as the first of the next batch.
    assert_eq!(sizes(q.take(b).await.expect("batch")), [90]);
    assert_eq!(sizes(q.take(b).await.expect("batch")), [20]);
    drop(tx);
    assert!(q.take(b).await.is_none(), "no senders: no batch");
}

/// A migrated SQLite store in `dir`.
pub(super) async fn sqlite_store(dir: &std::path::Path, name: &str) -> Store {
    let url = format!("sqlite://{}", dir.join(name).display());
    let store = Store::connect(&url.into(), Duration::from_secs(5))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    store
}

fn alert(app: &str) -> AlertRecord {
    AlertRecord {
        fingerprint: format!("fp-{app}"),
        alertname: "DeploymentFailed".into(),
        app: Some(app.into()),
        firing: true,
        starts_at_ms: 1,
        ends_at_ms: None,
        labels_json: "{}".into(),
        annotations_json: "{}".into(),
        create: Vec::new(),
        cancel_keys: Vec::new(),
    }
}

#[tokio::test]
async fn a_refused_notification_rolls_back_alone_inside_its_batch() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = sqlite_store(dir.path(), "dw.db").await;
    // The store refuses the app `bad` as input (a constraint, as SQLite reports one).
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON alerts WHEN NEW.app = 'bad' \
         BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .execute(store.pool())
    .await
    .expect("trigger");
    let (jobs, _answers): (Vec<Job>, Vec<Answer>) = [
        ("n1", vec![alert("a")]),
        ("n2", vec![alert("b"), alert("bad")]),
        ("n3", vec![alert("c")]),
    ]
    .into_iter()
    .map(|(sha, alerts)| job_of(sha, 10, alerts))
    .unzip();
    let committed = store.commit_batch(&jobs, true).await;
    assert_eq!(committed.one_by_one, Some("refused"));
    let got = committed.answers;
    assert!(got[0].is_ok() && got[2].is_ok(), "{got:?}");
    assert!(matches!(got[1], Err(StoreError::Rejected(_))), "{got:?}");
    let apps: Vec<String> = sqlx::query("SELECT app FROM alerts ORDER BY app")
        .fetch_all(store.pool())
        .await
        .expect("alerts")
        .iter()
        .map(|r| sqlx::Row::try_get(r, "app").expect("app"))
        .collect();
    assert_eq!(apps, ["a", "c"], "the refused notification left nothing");
    let receipts: i64 = sqlx::Row::try_get(
        &sqlx::query("SELECT COUNT(*) AS n FROM notifications")
            .fetch_one(store.pool())
            .await
            .expect("count"),
        "n",
    )
    .expect("n");
    assert_eq!(receipts, 2);
    store.close().await;
}

/// A fix task for episode `fp`, and its alert firing or resolved.
pub(super) fn episode_alert(fp: &str, firing: bool) -> AlertRecord {
    let fix = crate::tasks::NewTask {
        kind: crate::tasks::Kind::Fix,
        title: format!("FIX {fp}"),
        priority: 2,
        dedup_key: format!("fix:{fp}"),
        app: Some("api".into()),
        context: serde_json::json!({}),
    };
    AlertRecord {
        fingerprint: fp.into(),
        firing,
        ends_at_ms: (!firing).then_some(2),
        create: if firing { vec![fix] } else { Vec::new() },
        cancel_keys: if firing {
            Vec::new()
        } else {
            vec![format!("fix:{fp}")]
        },
        ..alert(fp)
    }
}

#[tokio::test]
async fn a_claim_between_the_batch_read_and_its_write_is_re_decided_one_by_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = sqlite_store(dir.path(), "dw.db").await;
    let (first, _a) = job_of("n1", 10, vec![episode_alert("x", true)]);
    let first = store.commit_batch(&[first], true).await;
    assert!(
        first.unflushed,
        "a SQLite file in WAL mode flushes after the commit"
    );
    assert!(first.answers[0].is_ok());
    assert_eq!(
        first.one_by_one, None,
        "nothing in the way: the set path stored it"
    );
    // An agent claims x's fix after the next batch read it as queued and before the batch writes
    // it: inserting episode y claims it (the set path writes y's new episode before x's task; one
    // by one, y arrives first and so is written first).
    sqlx::query(
        "CREATE TRIGGER agent AFTER INSERT ON alerts WHEN NEW.fingerprint = 'y' \
         BEGIN UPDATE tasks SET state = 'claimed', worker = 'agent' WHERE dedup_key = 'fix:x'; END",
    )
    .execute(store.pool())
    .await
    .expect("trigger");
    let (jobs, _answers): (Vec<Job>, Vec<Answer>) = [
        ("n2", vec![episode_alert("y", true)]),
        ("n3", vec![episode_alert("x", false)]),
    ]
    .into_iter()
    .map(|(sha, alerts)| job_of(sha, 10, alerts))
    .unzip();
    let committed = store.commit_batch(&jobs, true).await;
    assert_eq!(committed.one_by_one, Some("changed_meanwhile"));
    let got = committed.answers;
    assert!(got[0].is_ok(), "{got:?}");
    let resolve = got[1].as_ref().expect("stored");
    // Decided anew on what the store holds: the claimed task is told, not cancelled under the
    // agent's feet.
    assert_eq!((resolve.tasks_cancelled, resolve.tasks_noted), (0, 1));
    let row = sqlx::query("SELECT state, alert_resolved_at FROM tasks WHERE dedup_key = 'fix:x'")
        .fetch_one(store.pool())
        .await
        .expect("task");
    let state: String = sqlx::Row::try_get(&row, "state").expect("state");
    let resolved: Option<i64> = sqlx::Row::try_get(&row, "alert_resolved_at").expect("resolved");
    assert_eq!((state.as_str(), resolved), ("claimed", Some(2)));
    let events: Vec<String> = sqlx::query(
        "SELECT e.event FROM task_events e JOIN tasks t ON t.id = e.task_id \
         WHERE t.dedup_key = 'fix:x' ORDER BY e.id",
    )
    .fetch_all(store.pool())
    .await
    .expect("events")
    .iter()
    .map(|r| sqlx::Row::try_get(r, "event").expect("event"))
    .collect();
    assert_eq!(events, ["created", "note"]);
    store.close().await;
}

#[tokio::test]
async fn a_write_that_missed_its_rows_is_named_before_what_failed_after_it() {
    // SQLite runs the batch's writes as one query, each statement after the other. Another
    // writer opens z's fix between the batch's read and its writes (the trigger, fired by z's
    // episode insert): the task insert then touches no row, a miss, and the batch's event for the
    // task it meant to insert breaks the task_events foreign key. The miss is what happened; the
    // batch runs again one by one and finds z's fix open.
    let dir = tempfile::tempdir().expect("tmp");
    let store = sqlite_store(dir.path(), "dw.db").await;
    sqlx::query(
        "CREATE TRIGGER other AFTER INSERT ON alerts WHEN NEW.fingerprint = 'z' \
         BEGIN INSERT INTO tasks (id, queue, kind, title, priority, state, dedup_key, open_key, app, \
         context, attempts, max_attempts, created_at, updated_at, last_seen_at, seen_count) \
         VALUES ('other', 'execution', 'fix', 'FIX z', 2, 'queued', 'fix:z', 'fix:z', 'api', '{}', \
         0, 3, 1, 1, 1, 1); END",
    )
    .execute(store.pool())
    .await
    .expect("trigger");
    let (jobs, _answers): (Vec<Job>, Vec<Answer>) = [("n1", vec![episode_alert("z", true)])]
        .into_iter()
        .map(|(sha, alerts)| job_of(sha, 10, alerts))
        .unzip();
    let committed = store.commit_batch(&jobs, true).await;
    assert_eq!(committed.one_by_one, Some("changed_meanwhile"));
    let report = committed.answers[0].as_ref().expect("stored");
    assert_eq!(report.tasks_created, 0, "{report:?}");
    let ids: Vec<String> = sqlx::query("SELECT id FROM tasks WHERE dedup_key = 'fix:z'")
        .fetch_all(store.pool())
        .await
        .expect("tasks")
        .iter()
        .map(|r| sqlx::Row::try_get(r, "id").expect("id"))
        .collect();
    assert_eq!(ids, ["other"], "one open fix for z: the other writer's");
    store.close().await;
}

#[test]
fn lock_key_lists_stay_under_one_tls_record_and_keep_the_global_order() {
    for n in [0usize, 1, 10, 700, 5000] {
        let keys: Vec<i64> = (0..n as i64).map(|i| i * 7_919_000_000_000 - 1).collect();
        let lists = key_lists(&keys);
        assert!(
            lists
                .iter()
                .all(|l| !l.is_empty() && l.len() <= crate::store::ingest_batch::PG_CHUNK)
        );
        let back: Vec<i64> = lists
            .iter()
            .flat_map(|l| l.split(','))
            .map(|k| k.parse().expect("a key"))
            .collect();
        assert_eq!(back, keys, "{n} keys");
    }
}

async fn synchronous_level(store: &Store) -> i64 {
    sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(store.pool())
        .await
        .expect("synchronous")
}

#[tokio::test]
async fn a_batch_committed_at_normal_gives_the_connection_back_at_full() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = sqlite_store(dir.path(), "dw.db").await;
    assert_eq!(synchronous_level(&store).await, 2, "FULL before");
    let (j, _a) = job_of("n1", 10, vec![alert("a")]);
    let committed = store.commit_batch(&[j], true).await;
    assert!(committed.unflushed);
    assert!(committed.answers[0].is_ok());
    // The one pooled connection: the next user gets it back at FULL (2), not NORMAL (1).
    assert_eq!(synchronous_level(&store).await, 2, "FULL after");
    // A batch the set path gave back runs one by one at FULL and is answered at its commit.
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON alerts WHEN NEW.app = 'bad' \
         BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .execute(store.pool())
    .await
    .expect("trigger");
    let (j, _a) = job_of("n2", 10, vec![alert("bad")]);
    let committed = store.commit_batch(&[j], true).await;
    assert!(!committed.unflushed && committed.one_by_one.is_some());
    assert_eq!(synchronous_level(&store).await, 2, "FULL after a fallback");
    store.close().await;
}

#[tokio::test]
async fn notifications_are_answered_after_the_wal_flush_and_a_lost_wal_fails_them_until_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = sqlite_store(dir.path(), "dw.db").await;
    let opts = PlaceOptions {
        max_attempts: 3,
        reopen_window: Duration::from_secs(1),
        notifiers: &[],
    };
    let record = |sha: &str| NotificationRecord {
        body_sha256: sha.into(),
        receiver: String::new(),
        status: "firing".into(),
        group_key: String::new(),
        alert_count: 1,
        body: "{}".into(),
    };
    store
        .ingest_notification(record("n1"), vec![alert("a")], &opts)
        .await
        .expect("stored and flushed");
    assert!(store.flush_wal().await.is_ok());
    // The WAL deleted under the running server: SQLite writes on into the unlinked file, so
    // nothing committed from now on would survive a restart.
    let wal = crate::store::wal_sync::wal_file(&dir.path().join("dw.db"));
    std::fs::remove_file(&wal).expect("remove the WAL");
    let err = store
        .ingest_notification(record("n2"), vec![alert("b")], &opts)
        .await
        .expect_err("not acknowledged");
    assert!(err.is_transient(), "a 503, so Alertmanager retries: {err}");
    assert!(err.to_string().contains("restart deploywatch"), "{err}");
    // Lost until restart: later notifications and readiness say so too.
    let again = store
        .ingest_notification(record("n3"), vec![alert("c")], &opts)
        .await
        .expect_err("still refused");
    assert!(again.to_string().contains("-wal"), "{again}");
    assert!(store.write_problem().await.is_some());
    store.close().await;
}
