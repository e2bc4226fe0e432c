//! The alert-episode rules, told as whole stories (`tasks::episode::scenarios`), run against the
//! real stores: the same table the pure model passes must hold on SQLite and on PostgreSQL.

use std::time::Duration;

use deploywatch::store::{AlertRecord, NotificationRecord, PlaceOptions, Store, TaskFilter};
use deploywatch::tasks::episode::{Scenario, Step, scenarios};
use deploywatch::tasks::{Kind, NewTask, Queue, State};
use secrecy::SecretString;

use crate::helpers::{Kind as DbKind, db};

const MINUTE: i64 = 60_000;

/// One alert event as the webhook would store it: one fix action and one announcement, like the
/// shipped rules for DeploymentFailed.
fn record(fp: &str, firing: bool, starts: i64, ends: Option<i64>) -> AlertRecord {
    let status = if firing { "firing" } else { "resolved" };
    AlertRecord {
        fingerprint: fp.to_string(),
        alertname: "DeploymentFailed".into(),
        app: Some("api".into()),
        firing,
        starts_at_ms: starts,
        ends_at_ms: ends,
        labels_json: "{}".into(),
        annotations_json: "{}".into(),
        create: [
            firing.then(|| NewTask {
                kind: Kind::Fix,
                title: "FIX: Deployment error in api".into(),
                priority: 1,
                dedup_key: format!("fix:{fp}"),
                app: Some("api".into()),
                context: serde_json::json!({}),
            }),
            Some(NewTask {
                kind: Kind::Announce,
                title: format!("ANNOUNCE: DeploymentFailed {status} in api"),
                priority: 2,
                dedup_key: format!("announce:{status}:{fp}:{starts}"),
                app: Some("api".into()),
                context: serde_json::json!({}),
            }),
        ]
        .into_iter()
        .flatten()
        .collect(),
        cancel_keys: if firing {
            vec![]
        } else {
            vec![format!("fix:{fp}")]
        },
    }
}

/// The scenario's outcome on `store`, in the shape of its `Expect`.
async fn run(store: &Store, s: &Scenario, n: usize) -> deploywatch::tasks::episode::Expect {
    let fp = format!("scenario{n:02}");
    // The alert's clock an hour behind real time, as a real alert's startsAt is.
    let base = chrono::Utc::now().timestamp_millis() - 60 * MINUTE;
    let opts = PlaceOptions {
        max_attempts: 3,
        reopen_window: Duration::from_millis((s.reopen_window_minutes * MINUTE) as u64),
        notifiers: &[],
    };
    let (mut reopened, mut stale, mut duplicates, mut noted) = (0, 0, 0, 0);
    for (i, step) in s.steps.iter().enumerate() {
        // Closing times are real milliseconds: keep steps apart so "within the window" is decided
        // by the window, not by two steps sharing a millisecond.
        tokio::time::sleep(Duration::from_millis(3)).await;
        let a = match *step {
            Step::Fire(m) => record(&fp, true, base + m * MINUTE, None),
            Step::Resolve(a, b) => record(&fp, false, base + a * MINUTE, Some(base + b * MINUTE)),
            Step::Claim | Step::Complete => {
                let fix = fix_tasks(store, &fp).await;
                let open = fix
                    .iter()
                    .find(|t| matches!(t.state, State::Queued | State::Claimed))
                    .unwrap_or_else(|| panic!("{}: no open fix task to {step:?}", s.name));
                if *step == Step::Claim {
                    store
                        .claim_by_id(&open.id, "agent-1", Duration::from_secs(300))
                        .await
                        .expect("claim")
                        .expect("claimed");
                } else {
                    store
                        .complete(&open.id, "agent-1", &serde_json::json!({"fixed": true}))
                        .await
                        .expect("complete");
                }
                continue;
            }
        };
        let n = NotificationRecord {
            body_sha256: format!("{fp}-{i}"),
            receiver: "deploywatch".into(),
            status: if a.firing { "firing" } else { "resolved" }.into(),
            group_key: "{}".into(),
            alert_count: 1,
            body: "{}".into(),
        };
        let r = store
            .ingest_notification(n, vec![a], &opts)
            .await
            .unwrap_or_else(|e| panic!("{}: ingest: {e}", s.name));
        reopened += r.tasks_reopened;
        noted += r.tasks_noted;
        stale += r.stale_ignored;
        // A repeated resolve counts itself and nothing else; a repeated firing's absorbed tasks
        // are sightings, not duplicates of the event.
        if matches!(step, Step::Resolve(..)) {
            duplicates += r.duplicates_absorbed;
        }
    }
    let fix = fix_tasks(store, &fp).await;
    let all = store
        .list_tasks(&TaskFilter {
            queue: Some(Queue::Announce),
            state: None,
            app: None,
            limit: 1000,
        })
        .await
        .expect("list announcements");
    deploywatch::tasks::episode::Expect {
        fix_tasks: fix.iter().map(|t| t.state).collect(),
        announcements: all
            .iter()
            .filter(|t| t.dedup_key.contains(&format!(":{fp}:")))
            .count(),
        reopened,
        stale,
        duplicates,
        noted,
    }
}

/// The scenario's fix tasks, oldest first.
async fn fix_tasks(store: &Store, fp: &str) -> Vec<deploywatch::tasks::Task> {
    let mut t: Vec<_> = store
        .list_tasks(&TaskFilter {
            queue: Some(Queue::Execution),
            state: None,
            app: None,
            limit: 1000,
        })
        .await
        .expect("list tasks")
        .into_iter()
        .filter(|t| t.dedup_key == format!("fix:{fp}"))
        .collect();
    t.sort_by_key(|t| t.created_at);
    t
}

async fn every_scenario_holds_on(kind: DbKind) {
    let tdb = db(kind).await;
    let store = Store::connect(&SecretString::from(tdb.url.clone()), Duration::from_secs(5))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let table = scenarios();
    assert!(table.len() >= 10, "the table tells every rule");
    let mut failures = Vec::new();
    for (n, s) in table.iter().enumerate() {
        let got = run(&store, s, n).await;
        if got != s.expect {
            failures.push(format!(
                "{}:\n  want {:?}\n  got  {:?}",
                s.name, s.expect, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{kind:?}: scenarios that do not hold:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn every_episode_scenario_holds_on_sqlite() {
    every_scenario_holds_on(DbKind::Sqlite).await;
}

#[tokio::test]
async fn every_episode_scenario_holds_on_postgres() {
    every_scenario_holds_on(DbKind::Postgres).await;
}
