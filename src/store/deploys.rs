//! The deploy queue's writes: tasks created through the API, a deploy task reported merged, and a
//! deploy task settled together with its follow-ups in one transaction.
//!
//! Settling is guarded by the deploy task's own state (only an open task settles), and follow-ups
//! are placed in the same transaction: a restart in the middle either settled everything or
//! nothing, so the deploy loop can simply decide again.

use std::time::Duration;

use sqlx::{Any, Row, Transaction};

use super::placement::enqueue_outbox;
use super::tasks::{TASK_COLUMNS, add_event, task_from_row};
use super::{PlaceOptions, Store, StoreError, TaskUpdateError, now_ms};
use crate::tasks::settle::Settlement;
use crate::tasks::{Kind, NewTask, State, Task};

/// How a follow-up landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    Created,
    /// An open task with its dedup key was still queued: it now carries this follow-up's title and
    /// context (the fixer's e2e-test task for the same deployment becomes the PR's).
    Enriched,
    /// A task with its key already exists (claimed or closed): nothing to do.
    Existing,
}

impl FollowUp {
    pub fn as_str(self) -> &'static str {
        match self {
            FollowUp::Created => "created",
            FollowUp::Enriched => "enriched",
            FollowUp::Existing => "existing",
        }
    }
}

/// Opens `t` if no task with its dedup key ever existed; enriches a queued one that has it. A
/// follow-up is made once per key, ever: it stands for one event that happened once.
async fn place_once(
    tx: &mut Transaction<'static, Any>,
    t: &NewTask,
    opts: &PlaceOptions<'_>,
    now: i64,
) -> Result<FollowUp, StoreError> {
    // Twice at most: on PostgreSQL another writer (the fixer placing its e2e-test task for the
    // same deployment) may commit the key between our looks and our insert; the insert then does
    // nothing, and the second look (a new statement, so it sees that commit) enriches its task.
    for _ in 0..2 {
        if enrich(tx, t, now).await? {
            return Ok(FollowUp::Enriched);
        }
        // Closed ones only: an open one that appears meanwhile makes the insert do nothing, and
        // the next look enriches it (or finds it claimed and leaves it).
        let ever = sqlx::query(
            "SELECT 1 AS one FROM tasks WHERE dedup_key = $1 AND open_key IS NULL LIMIT 1",
        )
        .bind(&t.dedup_key)
        .fetch_optional(&mut **tx)
        .await?;
        if ever.is_some() {
            return Ok(FollowUp::Existing);
        }
        if insert(tx, t, opts, now).await? {
            return Ok(FollowUp::Created);
        }
    }
    Ok(FollowUp::Existing)
}

/// Gives the queued open task with `t`'s key `t`'s title, priority and context (merged over its
/// own). Whether there was one.
async fn enrich(
    tx: &mut Transaction<'static, Any>,
    t: &NewTask,
    now: i64,
) -> Result<bool, StoreError> {
    let queued = sqlx::query(
        "SELECT id, context FROM tasks WHERE open_key = $1 AND state = 'queued' AND kind = $2",
    )
    .bind(&t.dedup_key)
    .bind(t.kind.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = queued else {
        return Ok(false);
    };
    let id: String = row.try_get("id")?;
    let before: String = row.try_get("context")?;
    let mut context: serde_json::Value =
        serde_json::from_str(&before).unwrap_or(serde_json::Value::Null);
    match (context.as_object_mut(), &t.context) {
        (Some(c), serde_json::Value::Object(extra)) => {
            c.extend(extra.clone());
        }
        _ => context = t.context.clone(),
    }
    sqlx::query(
        "UPDATE tasks SET title = $1, priority = $2, context = $3, updated_at = $4, last_seen_at = $4, \
         seen_count = seen_count + 1 WHERE id = $5",
    )
    .bind(&t.title)
    .bind(t.priority)
    .bind(context.to_string())
    .bind(now)
    .bind(&id)
    .execute(&mut **tx)
    .await?;
    add_event(
        tx,
        &id,
        now,
        "enriched",
        None,
        Some(&serde_json::json!({"parent_task_id": t.context["parent_task_id"]})),
    )
    .await?;
    Ok(true)
}

/// Inserts `t` as a new queued task (and its announcement into the outbox); false when an open
/// task took the key first.
async fn insert(
    tx: &mut Transaction<'static, Any>,
    t: &NewTask,
    opts: &PlaceOptions<'_>,
    now: i64,
) -> Result<bool, StoreError> {
    let id = super::new_row_id();
    let inserted = sqlx::query(
        "INSERT INTO tasks (id, queue, kind, title, priority, state, dedup_key, open_key, app, context, attempts, \
         max_attempts, created_at, updated_at, last_seen_at, seen_count) \
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $6, $7, $8, 0, $9, $10, $10, $10, 1) \
         ON CONFLICT (open_key) DO NOTHING",
    )
    .bind(&id)
    .bind(t.kind.queue().as_str())
    .bind(t.kind.as_str())
    .bind(&t.title)
    .bind(t.priority)
    .bind(&t.dedup_key)
    .bind(&t.app)
    .bind(t.context.to_string())
    .bind(opts.max_attempts)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    add_event(tx, &id, now, "created", None, None).await?;
    if t.kind == Kind::Announce {
        // The same payload the other announcements give the notifiers.
        enqueue_outbox(tx, opts.notifiers, t, now).await?;
    }
    Ok(true)
}

impl Store {
    /// Open deploy tasks (claimed, or returned to the queue by a lapsed lease), oldest first; the
    /// deploy loop keeps those reported merged.
    pub async fn open_deploy_tasks(&self) -> Result<Vec<Task>, StoreError> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE queue = 'deploy' AND state IN ('claimed', 'queued') \
             ORDER BY created_at, id LIMIT 1000"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// The open task holding `dedup_key`, or else the newest task that ever had it.
    pub async fn task_by_dedup_key(&self, dedup_key: &str) -> Result<Option<Task>, StoreError> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE dedup_key = $1 \
             ORDER BY CASE WHEN open_key IS NULL THEN 1 ELSE 0 END, created_at DESC, id LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(dedup_key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    /// The holder reports the deploy task's pull request merged: the task keeps its holder, its
    /// lease runs to `lease` from now (the deploy timeout and a margin), and `context` (with the
    /// commit) replaces the old one.
    pub async fn mark_merged(
        &self,
        id: &str,
        worker: &str,
        context: &serde_json::Value,
        lease: Duration,
    ) -> Result<Task, TaskUpdateError> {
        let until = now_ms() + lease.as_millis() as i64;
        self.holder_update(
            id,
            worker,
            "lease_expires_at = $4, context = $5",
            "merged",
            Some(&serde_json::json!({"commit": context["commit"]})),
            (Some(until), Some(context.to_string())),
        )
        .await
    }

    /// Keeps a watched deploy task held until `until_ms` (its merge plus the deploy timeout and a
    /// margin) when a heartbeat shortened its lease: the loop, not the lease sweeper, ends it.
    pub async fn hold_deploy(&self, id: &str, until_ms: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE tasks SET lease_expires_at = $1 WHERE id = $2 AND queue = 'deploy' \
             AND state = 'claimed' AND lease_expires_at < $1",
        )
        .bind(until_ms)
        .bind(id)
        .execute(&self.pool)
        .await;
        self.note_write(r.map(|r| r.rows_affected() == 1).map_err(StoreError::from))
    }

    /// Places follow-ups outside a settlement (an agent's structured fail reason), once per key.
    pub async fn place_followups(
        &self,
        tasks: &[NewTask],
        opts: &PlaceOptions<'_>,
    ) -> Result<Vec<FollowUp>, StoreError> {
        let r = async {
            let now = now_ms();
            let mut tx = self.pool.begin().await?;
            let mut out = Vec::with_capacity(tasks.len());
            for t in tasks {
                out.push(place_once(&mut tx, t, opts, now).await?);
            }
            tx.commit().await?;
            Ok(out)
        }
        .await;
        self.note_write(r)
    }

    /// Ends an open deploy task as `s` says and places its follow-ups, in one transaction. Returns
    /// `None` when the task was no longer open (settled before, or cancelled): nothing is placed.
    pub async fn settle_deploy(
        &self,
        id: &str,
        s: &Settlement,
        opts: &PlaceOptions<'_>,
    ) -> Result<Option<Vec<FollowUp>>, StoreError> {
        let r = async {
            let now = now_ms();
            let state = match s.state {
                State::Done => "done",
                _ => "failed",
            };
            let mut tx = self.pool.begin().await?;
            let closed = sqlx::query(
                "UPDATE tasks SET state = $1, open_key = NULL, lease_expires_at = NULL, closed_at = $2, \
                 closed_reason = $3, result = $4, updated_at = $2 \
                 WHERE id = $5 AND queue = 'deploy' AND state IN ('claimed', 'queued') RETURNING worker",
            )
            .bind(state)
            .bind(now)
            .bind(&s.reason)
            .bind(s.result.to_string())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = closed else {
                return Ok(None);
            };
            let worker: Option<String> = row.try_get("worker")?;
            let mut out = Vec::with_capacity(s.followups.len());
            for t in &s.followups {
                out.push(place_once(&mut tx, t, opts, now).await?);
            }
            let detail = serde_json::json!({
                "reason": s.reason,
                "result": s.result,
                "followups": s.followups.iter().zip(&out)
                    .map(|(t, placed)| serde_json::json!({"dedup_key": t.dedup_key, "placed": placed.as_str()}))
                    .collect::<Vec<_>>(),
            });
            let event = if s.state == State::Done {
                "deployed"
            } else {
                "deploy_failed"
            };
            add_event(&mut tx, id, now, event, worker.as_deref(), Some(&detail)).await?;
            tx.commit().await?;
            Ok(Some(out))
        }
        .await;
        self.note_write(r)
    }
}
