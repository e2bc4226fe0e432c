//! The batch planner as tables: what a batch writes, given what the store held. (That these writes
//! leave the store as the one-by-one path does is `group_commit/equivalence.rs`.)

use std::time::Duration;

use super::*;

const NOW: i64 = 10_000_000;
const MIN: i64 = 60_000;

fn fix(fp: &str) -> NewTask {
    NewTask {
        kind: Kind::Fix,
        title: format!("FIX {fp}"),
        priority: 2,
        dedup_key: format!("fix:{fp}"),
        app: Some("api".into()),
        context: serde_json::json!({}),
    }
}

fn announce(key: &str) -> NewTask {
    NewTask {
        kind: Kind::Announce,
        dedup_key: key.into(),
        ..fix("x")
    }
}

/// A firing (`end` None) or a resolve of episode `fp`, minutes on the alert's clock.
fn alert(fp: &str, start: i64, end: Option<i64>) -> AlertRecord {
    let firing = end.is_none();
    AlertRecord {
        fingerprint: fp.into(),
        alertname: "DeploymentFailed".into(),
        app: Some("api".into()),
        firing,
        starts_at_ms: start * MIN,
        ends_at_ms: end.map(|e| e * MIN),
        labels_json: format!("{{\"start\":{start}}}"),
        annotations_json: "{}".into(),
        create: if firing {
            vec![fix(fp), announce(&format!("a:{fp}:{start}"))]
        } else {
            vec![announce(&format!("r:{fp}:{start}"))]
        },
        cancel_keys: if firing {
            Vec::new()
        } else {
            vec![format!("fix:{fp}")]
        },
    }
}

fn record(sha: &str) -> NotificationRecord {
    NotificationRecord {
        body_sha256: sha.into(),
        receiver: "dw".into(),
        status: "firing".into(),
        group_key: "g".into(),
        alert_count: 1,
        body: "{}".into(),
    }
}

/// Plans `batch` (body hash, alerts) over `known`, naming new rows `id1`, `id2`, ….
fn run(batch: &[(&str, Vec<AlertRecord>)], known: Known) -> Plan {
    let records: Vec<NotificationRecord> = batch.iter().map(|(sha, _)| record(sha)).collect();
    let notifiers = vec!["slack".to_string()];
    let notices: Vec<Notice<'_>> = batch
        .iter()
        .zip(&records)
        .map(|((_, alerts), n)| Notice {
            n,
            alerts,
            opts: PlaceOptions {
                max_attempts: 3,
                reopen_window: Duration::from_secs(3600),
                notifiers: &notifiers,
            },
        })
        .collect();
    let mut next = 0;
    let mut new_id = || {
        next += 1;
        format!("id{next}")
    };
    plan(&notices, known, NOW, &mut new_id)
}

fn stored_task(id: &str, state: State, closed_at: Option<i64>) -> KeyTask {
    KeyTask {
        id: id.into(),
        state,
        open: matches!(state, State::Queued | State::Claimed),
        closed_reason: closed_at.map(|_| "completed".to_string()),
        closed_at,
    }
}

fn known(episodes: &[(&str, EpisodeRow)], tasks: &[(&str, Vec<KeyTask>)]) -> Known {
    Known {
        episodes: episodes
            .iter()
            .map(|(fp, r)| (fp.to_string(), *r))
            .collect(),
        tasks: tasks
            .iter()
            .map(|(k, t)| (k.to_string(), t.clone()))
            .collect(),
    }
}

fn firing(start: i64) -> EpisodeRow {
    EpisodeRow {
        firing: true,
        starts_at: start * MIN,
        resolved_at: None,
    }
}

#[test]
fn reads_name_each_episode_and_key_once() {
    let alerts = vec![
        alert("a", 1, None),
        alert("a", 1, Some(2)),
        alert("b", 1, None),
    ];
    let n = record("x");
    let notices = [Notice {
        n: &n,
        alerts: &alerts,
        opts: PlaceOptions {
            max_attempts: 3,
            reopen_window: Duration::ZERO,
            notifiers: &[],
        },
    }];
    let (fps, keys) = reads(&notices);
    assert_eq!(fps, ["a", "b"]);
    assert_eq!(keys, ["a:a:1", "a:b:1", "fix:a", "fix:b", "r:a:1"]);
}

#[test]
fn the_same_body_twice_is_one_receipt_seen_twice() {
    let p = run(
        &[
            ("s1", vec![alert("a", 1, None)]),
            ("s1", vec![alert("a", 1, None)]),
        ],
        Known::default(),
    );
    assert_eq!(p.receipts.len(), 1);
    assert_eq!(p.receipts[0].n, 2);
    // The second is a repeat: its fix is absorbed into the task the first made, its
    // announcement is not made again.
    assert_eq!(p.task_inserts.len(), 2, "{:?}", p.task_inserts);
    let fix = p
        .task_inserts
        .iter()
        .find(|t| t.kind == "fix")
        .expect("fix");
    assert_eq!((fix.n, fix.state), (2, "queued"));
    assert_eq!(p.episode_inserts[0].n, 2);
    assert_eq!(p.reports[1].duplicates_absorbed, 2);
    assert_eq!(p.outbox.len(), 1, "one announcement, one notifier");
}

#[test]
fn fire_resolve_fire_in_one_batch_is_one_task_with_its_whole_history() {
    let p = run(
        &[
            ("s1", vec![alert("a", 1, None)]),
            ("s2", vec![alert("a", 1, Some(2))]),
            ("s3", vec![alert("a", 3, None)]),
        ],
        Known::default(),
    );
    let e = &p.episode_inserts[0];
    assert_eq!(
        (e.status, e.starts_at, e.resolved_at, e.n),
        ("firing", 3 * MIN, None, 3)
    );
    let fixes: Vec<&TaskInsert> = p.task_inserts.iter().filter(|t| t.kind == "fix").collect();
    assert_eq!(
        fixes.len(),
        1,
        "the resolve's cancel is undone by the reopen"
    );
    let f = fixes[0];
    assert_eq!((f.state, f.is_open, f.n), ("queued", 1, 2));
    assert_eq!(
        (f.closed_reason.as_deref(), f.closed_at, f.ar),
        (None, None, None)
    );
    let history: Vec<&str> = p
        .events
        .iter()
        .filter(|ev| ev.task_id == f.id)
        .map(|ev| ev.event)
        .collect();
    assert_eq!(history, ["created", "cancelled", "reopened"]);
    assert!(p.events.windows(2).all(|w| w[0].i < w[1].i));
    let r: Vec<(usize, usize, usize)> = p
        .reports
        .iter()
        .map(|r| (r.tasks_created, r.tasks_cancelled, r.tasks_reopened))
        .collect();
    assert_eq!(r, [(2, 0, 0), (1, 1, 0), (1, 0, 1)]);
    assert!(p.task_updates.is_empty() && p.episode_updates.is_empty());
}

#[test]
fn existing_tasks_are_written_only_from_the_state_they_were_read_in() {
    // (what, the stored fix task, the event, its update: was, state, requeued, seen, note)
    let done_in_episode = stored_task("t", State::Done, Some(NOW - MIN));
    let cases = [
        (
            "a resolve notes a claimed task",
            stored_task("t", State::Claimed, None),
            alert("a", 1, Some(2)),
            Some(("claimed", "claimed", 0, 0, 1)),
        ),
        (
            "a resolve cancels a queued task",
            stored_task("t", State::Queued, None),
            alert("a", 1, Some(2)),
            Some(("queued", "cancelled", 0, 0, 1)),
        ),
        (
            "a firing still there after the fix is done requeues it",
            done_in_episode,
            alert("a", 1, None),
            Some(("done", "queued", 1, 1, 0)),
        ),
    ];
    for (what, task, ev, want) in cases {
        let k = known(&[("a", firing(1))], &[("fix:a", vec![task])]);
        let p = run(&[("s", vec![ev])], k);
        let got = p
            .task_updates
            .first()
            .map(|u| (u.was, u.state, u.requeued, u.n, u.ar_set));
        assert_eq!(got, want, "{what}");
        assert!(
            p.task_inserts.iter().all(|t| t.kind != "fix"),
            "{what}: no new fix task"
        );
    }
}

#[test]
fn a_repeat_touches_without_writing_state() {
    let k = known(
        &[("a", firing(1))],
        &[
            ("fix:a", vec![stored_task("t", State::Claimed, None)]),
            ("a:a:1", vec![stored_task("ann", State::Done, Some(NOW))]),
        ],
    );
    let p = run(&[("s", vec![alert("a", 1, None)])], k);
    assert!(p.task_updates.is_empty(), "{:?}", p.task_updates);
    assert_eq!(
        p.task_touches,
        [Touch {
            id: "t".into(),
            n: 1
        }]
    );
    assert!(p.task_inserts.is_empty() && p.outbox.is_empty());
    let u = &p.episode_updates[0];
    assert_eq!(
        (u.n, u.labels.as_deref()),
        (1, None),
        "a touch keeps the labels"
    );
    assert_eq!(p.reports[0].duplicates_absorbed, 2);
}

#[test]
fn a_stale_event_writes_nothing_but_its_receipt() {
    let resolved = EpisodeRow {
        firing: false,
        starts_at: MIN,
        resolved_at: Some(5 * MIN),
    };
    let p = run(
        &[("s", vec![alert("a", 1, None)])],
        known(&[("a", resolved)], &[]),
    );
    assert_eq!(p.reports[0].stale_ignored, 1);
    assert_eq!(p.receipts.len(), 1);
    assert!(
        p.episode_inserts.is_empty()
            && p.episode_updates.is_empty()
            && p.task_inserts.is_empty()
            && p.events.is_empty()
    );
}

#[test]
fn an_announcement_made_long_ago_is_counted_on_its_whole_key() {
    let old = KeyTask {
        closed_reason: Some("delivered".into()),
        ..stored_task("old", State::Done, Some(0))
    };
    let resolved = EpisodeRow {
        firing: false,
        starts_at: 0,
        resolved_at: Some(MIN / 2),
    };
    let p = run(
        &[("s", vec![alert("a", 1, None)])],
        known(&[("a", resolved)], &[("a:a:1", vec![old])]),
    );
    assert_eq!(
        p.key_touches,
        [Touch {
            id: "a:a:1".into(),
            n: 1
        }]
    );
    assert_eq!(p.task_inserts.len(), 1, "only the fix is new");
}
