//! Placing tasks and closing them on a resolve, as `tasks::episode` decides: the facts of a dedup
//! key are read in one query, the decision is pure, and each write is conditional so a claim that
//! commits meanwhile makes the write miss (then the facts are read again and decided anew).

use std::time::Duration;

use sqlx::{Any, Row, Transaction};

use super::StoreError;
use super::tasks::add_event;
use crate::tasks::episode::{self, KeyFacts, KeyTask, OnResolve, Placement, RESOLVED};
use crate::tasks::{Kind, NewTask, Queue, State};

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestReport {
    pub alerts: usize,
    pub tasks_created: usize,
    pub tasks_reopened: usize,
    pub duplicates_absorbed: usize,
    pub stale_ignored: usize,
    pub tasks_cancelled: usize,
    pub tasks_noted: usize,
    pub created: Vec<(Queue, Kind)>,
}

/// Options for [`Store::ingest_notification`] and [`Store::create_tasks`].
#[derive(Debug, Clone)]
pub struct PlaceOptions<'a> {
    pub max_attempts: i64,
    pub reopen_window: Duration,
    /// Outbound notifiers that get a copy of every new announcement.
    pub notifiers: &'a [String],
}

/// The history details and announcement payload a placement writes; the set-oriented planner
/// (`ingest_plan`) writes the same ones.
pub(super) fn cancelled_detail() -> serde_json::Value {
    serde_json::json!({"reason": RESOLVED})
}

pub(super) fn noted_detail() -> serde_json::Value {
    serde_json::json!({"note": "the alert resolved while this task was claimed"})
}

pub(super) fn reopened_detail() -> serde_json::Value {
    serde_json::json!({"reason": "alert fired again"})
}

pub(super) fn requeued_detail() -> serde_json::Value {
    serde_json::json!({"reason": "alert still firing after completion"})
}

pub(super) fn outbox_payload(t: &NewTask) -> String {
    serde_json::json!({"title": t.title, "app": t.app, "context": t.context, "dedup_key": t.dedup_key})
        .to_string()
}

/// How often a placement is decided anew when a concurrent write made it miss.
const ATTEMPTS: usize = 3;

/// The newest tasks of a key: the facts a placement needs are always among them (a key holds at
/// most one open task, and the reopen window and the episode are recent).
async fn key_tasks(
    tx: &mut Transaction<'static, Any>,
    key: &str,
) -> Result<Vec<KeyTask>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, state, open_key, closed_reason, closed_at FROM tasks WHERE dedup_key = $1 \
         ORDER BY created_at DESC LIMIT 32",
    )
    .bind(key)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(key_task).collect()
}

/// A task row (`id, state, open_key, closed_reason, closed_at`) as the placement decision reads it.
pub(super) fn key_task(r: &sqlx::any::AnyRow) -> Result<KeyTask, StoreError> {
    let state: String = r.try_get("state")?;
    let open: Option<String> = r.try_get("open_key")?;
    Ok(KeyTask {
        id: r.try_get("id")?,
        // An unknown state (a newer version's) reads as closed: never reopened or absorbed.
        state: State::parse(&state).unwrap_or(State::Failed),
        open: open.is_some(),
        closed_reason: r.try_get("closed_reason")?,
        closed_at: r.try_get("closed_at")?,
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Placed {
    Created,
    Reopened,
    Absorbed,
}

/// Places `t` where the episode rules say.
async fn place_task(
    tx: &mut Transaction<'static, Any>,
    t: &NewTask,
    opts: &PlaceOptions<'_>,
    now: i64,
    episode_start: Option<i64>,
) -> Result<Placed, StoreError> {
    let since =
        now.saturating_sub(i64::try_from(opts.reopen_window.as_millis()).unwrap_or(i64::MAX));
    for _ in 0..ATTEMPTS {
        let facts = KeyFacts::from_tasks(&key_tasks(tx, &t.dedup_key).await?, since, episode_start);
        let hit = match episode::place(t.kind, &facts) {
            Placement::Absorb(id) => {
                absorb(tx, &id, &t.dedup_key, now).await?;
                return Ok(Placed::Absorbed);
            }
            Placement::Reopen(id) => reopen(tx, &id, now).await?.then_some(Placed::Reopened),
            Placement::Requeue(id) => requeue(tx, &id, now).await?.then_some(Placed::Reopened),
            Placement::Create => create(tx, t, opts.max_attempts, now).await?,
        };
        if let Some(p) = hit {
            return Ok(p);
        }
    }
    // The key kept changing under us (a busy key): the open task, if any, absorbs this one.
    absorb(tx, "", &t.dedup_key, now).await?;
    Ok(Placed::Absorbed)
}

/// Counts a sighting on the task (or, with no id, on every task of the key).
async fn absorb(
    tx: &mut Transaction<'static, Any>,
    id: &str,
    key: &str,
    now: i64,
) -> Result<(), StoreError> {
    let q = if id.is_empty() {
        sqlx::query(
            "UPDATE tasks SET last_seen_at = $1, seen_count = seen_count + 1 WHERE dedup_key = $2",
        )
        .bind(now)
        .bind(key)
    } else {
        sqlx::query("UPDATE tasks SET last_seen_at = $1, seen_count = seen_count + 1 WHERE id = $2")
            .bind(now)
            .bind(id)
    };
    q.execute(&mut **tx).await?;
    Ok(())
}

/// A firing soon after its resolve brings back the task that resolve cancelled, with its history.
async fn reopen(
    tx: &mut Transaction<'static, Any>,
    id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "UPDATE tasks SET state = 'queued', open_key = dedup_key, closed_reason = NULL, closed_at = NULL, \
         alert_resolved_at = NULL, updated_at = $1, last_seen_at = $1, seen_count = seen_count + 1 \
         WHERE id = $2 AND state = 'cancelled'",
    )
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await;
    if !reopened(r)? {
        return Ok(false);
    }
    add_event(tx, id, now, "reopened", None, Some(&reopened_detail())).await?;
    Ok(true)
}

/// The fix did not work (its alert still fires in the same episode): queue it again with its
/// history, one more attempt allowed and a note.
async fn requeue(
    tx: &mut Transaction<'static, Any>,
    id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "UPDATE tasks SET state = 'queued', open_key = dedup_key, closed_reason = NULL, closed_at = NULL, \
         worker = NULL, lease_expires_at = NULL, max_attempts = CASE WHEN max_attempts > attempts THEN max_attempts ELSE attempts + 1 END, \
         updated_at = $1, last_seen_at = $1, seen_count = seen_count + 1 WHERE id = $2 AND state = 'done'",
    )
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await;
    if !reopened(r)? {
        return Ok(false);
    }
    add_event(tx, id, now, "reopened", None, Some(&requeued_detail())).await?;
    Ok(true)
}

/// Whether a reopening write took. A unique violation on `open_key` means another task of the key
/// opened meanwhile: a miss, decided anew.
fn reopened(r: Result<sqlx::any::AnyQueryResult, sqlx::Error>) -> Result<bool, StoreError> {
    match r {
        Ok(r) => Ok(r.rows_affected() == 1),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Inserts the task unless an open one with its key appeared meanwhile (then that one counts the
/// sighting, and this is a miss).
async fn create(
    tx: &mut Transaction<'static, Any>,
    t: &NewTask,
    max_attempts: i64,
    now: i64,
) -> Result<Option<Placed>, StoreError> {
    let id = super::new_row_id();
    let row = sqlx::query(
        "INSERT INTO tasks (id, queue, kind, title, priority, state, dedup_key, open_key, app, context, attempts, \
         max_attempts, created_at, updated_at, last_seen_at, seen_count) \
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $6, $7, $8, 0, $9, $10, $10, $10, 1) \
         ON CONFLICT (open_key) DO UPDATE SET last_seen_at = excluded.last_seen_at, seen_count = tasks.seen_count + 1 \
         RETURNING id",
    )
    .bind(&id)
    .bind(t.kind.queue().as_str())
    .bind(t.kind.as_str())
    .bind(&t.title)
    .bind(t.priority)
    .bind(&t.dedup_key)
    .bind(&t.app)
    .bind(t.context.to_string())
    .bind(max_attempts)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    let got: String = row.try_get("id")?;
    if got != id {
        return Ok(Some(Placed::Absorbed));
    }
    add_event(tx, &id, now, "created", None, None).await?;
    Ok(Some(Placed::Created))
}

/// Queues a new announcement for every outbound notifier, in the transaction that made it.
pub(super) async fn enqueue_outbox(
    tx: &mut Transaction<'static, Any>,
    notifiers: &[String],
    t: &NewTask,
    now: i64,
) -> Result<(), StoreError> {
    for n in notifiers {
        sqlx::query("INSERT INTO outbox (id, notifier, payload, created_at, attempts, next_attempt_at) VALUES ($1, $2, $3, $4, 0, $4)")
            .bind(super::new_row_id())
            .bind(n)
            .bind(outbox_payload(t))
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Places each task and tallies what happened; new announcements also go to the outbox.
pub(super) async fn place_all(
    tx: &mut Transaction<'static, Any>,
    tasks: &[NewTask],
    opts: &PlaceOptions<'_>,
    now: i64,
    episode_start: Option<i64>,
    report: &mut IngestReport,
) -> Result<(), StoreError> {
    for t in tasks {
        match place_task(tx, t, opts, now, episode_start).await? {
            Placed::Created => {
                report.tasks_created += 1;
                report.created.push((t.kind.queue(), t.kind));
                if t.kind == Kind::Announce {
                    enqueue_outbox(tx, opts.notifiers, t, now).await?;
                }
            }
            Placed::Reopened => report.tasks_reopened += 1,
            Placed::Absorbed => report.duplicates_absorbed += 1,
        }
    }
    Ok(())
}

/// Closes the open task of `key` for a resolve: cancels it while queued, notes it while claimed.
/// The cancel is conditional on `queued`, so a claim that commits meanwhile turns it into a note.
pub(super) async fn close_on_resolve(
    tx: &mut Transaction<'static, Any>,
    key: &str,
    resolved_at: i64,
    now: i64,
) -> Result<(usize, usize), StoreError> {
    for _ in 0..ATTEMPTS {
        let open = key_tasks(tx, key).await?.into_iter().find(|t| t.open);
        match episode::on_resolve(open.as_ref().map(|t| t.state)) {
            OnResolve::Nothing => return Ok((0, 0)),
            OnResolve::Cancel => {
                let id = open.map(|t| t.id).unwrap_or_default();
                let done = sqlx::query(
                    "UPDATE tasks SET state = 'cancelled', open_key = NULL, closed_reason = $4, closed_at = $1, \
                     alert_resolved_at = $2, updated_at = $1 WHERE id = $3 AND state = 'queued'",
                )
                .bind(now)
                .bind(resolved_at)
                .bind(&id)
                .bind(RESOLVED)
                .execute(&mut **tx)
                .await?;
                if done.rows_affected() == 1 {
                    add_event(tx, &id, now, "cancelled", None, Some(&cancelled_detail())).await?;
                    return Ok((1, 0));
                }
            }
            OnResolve::Note => {
                // An agent is already working on it: tell it, don't pull the rug.
                let id = open.map(|t| t.id).unwrap_or_default();
                let done = sqlx::query(
                    "UPDATE tasks SET alert_resolved_at = $1, updated_at = $2 WHERE id = $3 AND open_key IS NOT NULL",
                )
                .bind(resolved_at)
                .bind(now)
                .bind(&id)
                .execute(&mut **tx)
                .await?;
                if done.rows_affected() == 1 {
                    add_event(tx, &id, now, "note", None, Some(&noted_detail())).await?;
                    return Ok((0, 1));
                }
            }
        }
    }
    Ok((0, 0))
}
