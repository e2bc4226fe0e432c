//! Task persistence: the claimable queue, leases, task history (ingest of alerts: `ingest.rs`).
//!
//! Idempotency lives in the schema: `tasks.open_key` is unique and equals the dedup key while a task is
//! open, so repeats, HA duplicates and concurrent replicas can only ever touch the one open task.

use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Backend, Store, StoreError, now_ms};
use crate::tasks::{Kind, Queue, State, Task, TaskEvent};

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub queue: Option<Queue>,
    pub state: Option<State>,
    pub app: Option<String>,
    pub limit: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum TaskUpdateError {
    #[error("no task with id {0}")]
    NotFound(String),
    #[error(
        "task {id} is not leased to worker {worker} (its lease expired or another worker holds it)"
    )]
    NotLeaseHolder { id: String, worker: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for TaskUpdateError {
    fn from(e: sqlx::Error) -> Self {
        TaskUpdateError::Store(e.into())
    }
}

pub(super) const TASK_COLUMNS: &str = "id, queue, kind, title, priority, state, dedup_key, app, context, attempts, max_attempts, \
     worker, lease_expires_at, created_at, updated_at, seen_count, alert_resolved_at, closed_reason, result";

fn ts(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub(super) fn task_from_row(r: &AnyRow) -> Result<Task, StoreError> {
    let corrupt =
        |what: &str, v: &str| StoreError::Corrupt(format!("task has unknown {what} {v:?}"));
    let queue: String = r.try_get("queue")?;
    let kind: String = r.try_get("kind")?;
    let state: String = r.try_get("state")?;
    let context: String = r.try_get("context")?;
    let result: Option<String> = r.try_get("result")?;
    Ok(Task {
        id: r.try_get("id")?,
        queue: Queue::parse(&queue).ok_or_else(|| corrupt("queue", &queue))?,
        kind: Kind::parse(&kind).ok_or_else(|| corrupt("kind", &kind))?,
        title: r.try_get("title")?,
        priority: r.try_get("priority")?,
        state: State::parse(&state).ok_or_else(|| corrupt("state", &state))?,
        dedup_key: r.try_get("dedup_key")?,
        app: r.try_get("app")?,
        context: serde_json::from_str(&context).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        worker: r.try_get("worker")?,
        lease_expires_at: r.try_get::<Option<i64>, _>("lease_expires_at")?.map(ts),
        created_at: ts(r.try_get("created_at")?),
        updated_at: ts(r.try_get("updated_at")?),
        seen_count: r.try_get("seen_count")?,
        alert_resolved_at: r.try_get::<Option<i64>, _>("alert_resolved_at")?.map(ts),
        closed_reason: r.try_get("closed_reason")?,
        result: result.and_then(|s| serde_json::from_str(&s).ok()),
    })
}

pub(super) async fn add_event(
    tx: &mut Transaction<'static, Any>,
    task_id: &str,
    now: i64,
    event: &str,
    worker: Option<&str>,
    detail: Option<&serde_json::Value>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO task_events (task_id, at, event, worker, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(task_id)
    .bind(now)
    .bind(event)
    .bind(worker)
    .bind(detail.map(|d| d.to_string()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    pub async fn list_tasks(&self, f: &TaskFilter) -> Result<Vec<Task>, StoreError> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE ($1 IS NULL OR queue = $1) AND ($2 IS NULL OR state = $2) \
             AND ($3 IS NULL OR app = $3) ORDER BY created_at DESC, id LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(f.queue.map(|q| q.as_str()))
            .bind(f.state.map(|s| s.as_str()))
            .bind(f.app.as_deref())
            .bind(if f.limit <= 0 { 100 } else { f.limit.min(1000) })
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(task_from_row).collect()
    }

    pub async fn get_task(&self, id: &str) -> Result<Option<Task>, StoreError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    pub async fn task_events(&self, id: &str) -> Result<Vec<TaskEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, event, worker, detail FROM task_events WHERE task_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let detail: Option<String> = r.try_get("detail")?;
                Ok(TaskEvent {
                    at: ts(r.try_get("at")?),
                    event: r.try_get("event")?,
                    worker: r.try_get("worker")?,
                    detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Adds a history entry to a task (rollback progress, notes).
    pub async fn add_task_event(
        &self,
        id: &str,
        event: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        add_event(&mut tx, id, now_ms(), event, None, Some(detail)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Returns expired leases to their queue (or fails the task when its attempts are spent).
    pub async fn expire_leases(&self) -> Result<u64, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT id, worker, attempts, max_attempts FROM tasks WHERE state = 'claimed' AND lease_expires_at < $1",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut n = 0;
        for r in &rows {
            let id: String = r.try_get("id")?;
            let worker: Option<String> = r.try_get("worker")?;
            let spent = r.try_get::<i64, _>("attempts")? >= r.try_get::<i64, _>("max_attempts")?;
            let res = if spent {
                sqlx::query(
                    "UPDATE tasks SET state = 'failed', open_key = NULL, worker = NULL, lease_expires_at = NULL, \
                     closed_reason = 'lease expired with no attempts left', closed_at = $1, updated_at = $1 \
                     WHERE id = $2 AND state = 'claimed' AND lease_expires_at < $1",
                )
            } else {
                sqlx::query(
                    "UPDATE tasks SET state = 'queued', worker = NULL, lease_expires_at = NULL, updated_at = $1 \
                     WHERE id = $2 AND state = 'claimed' AND lease_expires_at < $1",
                )
            }
            .bind(now)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            if res.rows_affected() == 1 {
                n += 1;
                add_event(&mut tx, &id, now, "lease_expired", worker.as_deref(), None).await?;
            }
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Atomically hands the most urgent queued task of `queue` to `worker`.
    ///
    /// PostgreSQL: one statement (claim and its history row in one CTE, `FOR UPDATE SKIP LOCKED` so
    /// concurrent workers never wait on each other's candidate). SQLite: the same `UPDATE …
    /// RETURNING` and the history row in one transaction on the single writer connection.
    pub async fn claim(
        &self,
        queue: Queue,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Task>, StoreError> {
        let now = now_ms();
        self.expire_leases_if_due(now).await?;
        let update = format!(
            "UPDATE tasks SET state = 'claimed', worker = $1, lease_expires_at = $2, attempts = attempts + 1, updated_at = $3 \
             WHERE id = (SELECT id FROM tasks WHERE queue = $4 AND state = 'queued' ORDER BY priority, created_at, id LIMIT 1 {}) \
             RETURNING {TASK_COLUMNS}",
            match self.backend {
                Backend::Postgres => "FOR UPDATE SKIP LOCKED",
                // One connection is the single writer; nothing to lock against.
                Backend::Sqlite => "",
            }
        );
        let q = |sql: String| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(worker.to_owned())
                .bind(now + lease.as_millis() as i64)
                .bind(now)
                .bind(queue.as_str())
        };
        if self.backend == Backend::Postgres {
            let sql = format!(
                "WITH c AS ({update}), \
                 e AS (INSERT INTO task_events (task_id, at, event, worker) SELECT id, $3, 'claimed', $1 FROM c) \
                 SELECT * FROM c"
            );
            let row = q(sql).fetch_optional(&self.pool).await?;
            let task = row.as_ref().map(task_from_row).transpose()?;
            self.lease_granted(task.as_ref());
            return Ok(task);
        }
        let mut tx = self.pool.begin().await?;
        let row = q(update).fetch_optional(&mut *tx).await?;
        let task = row.as_ref().map(task_from_row).transpose()?;
        if let Some(t) = &task {
            add_event(&mut tx, &t.id, now, "claimed", Some(worker), None).await?;
        }
        tx.commit().await?;
        self.lease_granted(task.as_ref());
        Ok(task)
    }

    /// Sweeps expired leases before a claim, but only once the earliest lease this process knows
    /// of can have expired: a claim in steady state is one statement. The watermark is read from
    /// the store at the first claim and after each sweep, and lowered by every lease this process
    /// grants; a lease another replica grants is swept by that replica's claims or by the sweeper.
    async fn expire_leases_if_due(&self, now: i64) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let seen = self.lease_watermark.load(Ordering::Acquire);
        if now < seen {
            return Ok(());
        }
        self.expire_leases().await?;
        let next: Option<i64> =
            sqlx::query("SELECT MIN(lease_expires_at) AS next FROM tasks WHERE state = 'claimed'")
                .fetch_one(&self.pool)
                .await?
                .try_get("next")?;
        // A lease granted meanwhile lowered the watermark: keep that (the next claim re-reads).
        let _ = self.lease_watermark.compare_exchange(
            seen,
            next.unwrap_or(i64::MAX),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        Ok(())
    }

    /// Lowers the watermark to a lease this process just granted or extended.
    pub(super) fn lease_granted(&self, task: Option<&Task>) {
        if let Some(until) = task.and_then(|t| t.lease_expires_at) {
            self.lease_watermark.fetch_min(
                until.timestamp_millis(),
                std::sync::atomic::Ordering::AcqRel,
            );
        }
    }

    /// Claims one specific queued task (the rollback executor picks its own).
    pub async fn claim_by_id(
        &self,
        id: &str,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Task>, StoreError> {
        let now = now_ms();
        let sql = format!(
            "UPDATE tasks SET state = 'claimed', worker = $1, lease_expires_at = $2, attempts = attempts + 1, updated_at = $3 \
             WHERE id = $4 AND state = 'queued' RETURNING {TASK_COLUMNS}"
        );
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(worker)
            .bind(now + lease.as_millis() as i64)
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let task = row.as_ref().map(task_from_row).transpose()?;
        if task.is_some() {
            add_event(&mut tx, id, now, "claimed", Some(worker), None).await?;
        }
        tx.commit().await?;
        self.lease_granted(task.as_ref());
        Ok(task)
    }

    /// One statement on PostgreSQL (the update and its history row in one CTE); the update and
    /// the history row in one transaction on SQLite. The "why not" query runs only on refusal.
    pub(super) async fn holder_update(
        &self,
        id: &str,
        worker: &str,
        set: &'static str,
        event: &str,
        detail: Option<&serde_json::Value>,
        binds: (Option<i64>, Option<String>),
    ) -> Result<Task, TaskUpdateError> {
        let now = now_ms();
        let update = format!(
            "UPDATE tasks SET {set}, updated_at = $1 WHERE id = $2 AND state = 'claimed' AND worker = $3 AND lease_expires_at >= $1 \
             RETURNING {TASK_COLUMNS}"
        );
        let row = if self.backend == Backend::Postgres {
            let sql = format!(
                "WITH u AS ({update}), \
                 e AS (INSERT INTO task_events (task_id, at, event, worker, detail) SELECT id, $1, $6, $3, $7 FROM u) \
                 SELECT * FROM u"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(id)
                .bind(worker)
                .bind(binds.0)
                .bind(binds.1)
                .bind(event)
                .bind(detail.map(|d| d.to_string()))
                .fetch_optional(&self.pool)
                .await?
        } else {
            let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
            let row = sqlx::query(sqlx::AssertSqlSafe(update))
                .bind(now)
                .bind(id)
                .bind(worker)
                .bind(binds.0)
                .bind(binds.1)
                .fetch_optional(&mut *tx)
                .await?;
            if row.is_some() {
                add_event(&mut tx, id, now, event, Some(worker), detail).await?;
                tx.commit().await.map_err(StoreError::from)?;
            }
            row
        };
        let Some(row) = row else {
            let exists = sqlx::query("SELECT 1 AS one FROM tasks WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            return Err(match exists {
                Some(_) => TaskUpdateError::NotLeaseHolder {
                    id: id.into(),
                    worker: worker.into(),
                },
                None => TaskUpdateError::NotFound(id.into()),
            });
        };
        Ok(task_from_row(&row)?)
    }

    pub async fn heartbeat(
        &self,
        id: &str,
        worker: &str,
        lease: Duration,
    ) -> Result<Task, TaskUpdateError> {
        let until = now_ms() + lease.as_millis() as i64;
        self.holder_update(
            id,
            worker,
            "lease_expires_at = COALESCE($4, lease_expires_at), result = COALESCE($5, result)",
            "heartbeat",
            None,
            (Some(until), None),
        )
        .await
        .inspect(|t| self.lease_granted(Some(t)))
    }

    pub async fn complete(
        &self,
        id: &str,
        worker: &str,
        result: &serde_json::Value,
    ) -> Result<Task, TaskUpdateError> {
        self.holder_update(
            id,
            worker,
            "state = 'done', open_key = NULL, lease_expires_at = NULL, closed_at = $1, closed_reason = 'completed', \
             result = COALESCE($5, result), attempts = attempts + COALESCE($4, 0)",
            "completed",
            Some(result),
            (None, Some(result.to_string())),
        )
        .await
    }

    /// Closes the queued announcement with `dedup_key` once an outbound notifier delivered it: a
    /// delivered announcement is not open work. One an agent already claimed is left to it.
    pub async fn close_delivered_announcement(
        &self,
        dedup_key: &str,
        notifier: &str,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE tasks SET state = 'done', open_key = NULL, closed_reason = 'delivered', closed_at = $1, \
             updated_at = $1 WHERE open_key = $2 AND kind = 'announce' AND state = 'queued' RETURNING id",
        )
        .bind(now)
        .bind(dedup_key)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        let id: String = row.try_get("id")?;
        add_event(
            &mut tx,
            &id,
            now,
            "delivered",
            None,
            Some(&serde_json::json!({"notifier": notifier})),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Fails the attempt; the task goes back to its queue while attempts remain (and `retry` is set).
    pub async fn fail(
        &self,
        id: &str,
        worker: &str,
        reason: &str,
        retry: bool,
    ) -> Result<Task, TaskUpdateError> {
        let detail = serde_json::json!({"reason": reason, "retry": retry});
        self.holder_update(
            id,
            worker,
            "state = CASE WHEN $4 = 1 AND attempts < max_attempts THEN 'queued' ELSE 'failed' END, \
             open_key = CASE WHEN $4 = 1 AND attempts < max_attempts THEN open_key ELSE NULL END, \
             closed_at = CASE WHEN $4 = 1 AND attempts < max_attempts THEN NULL ELSE $1 END, \
             closed_reason = CASE WHEN $4 = 1 AND attempts < max_attempts THEN NULL ELSE $5 END, \
             worker = CASE WHEN $4 = 1 AND attempts < max_attempts THEN NULL ELSE worker END, \
             lease_expires_at = NULL",
            "failed_attempt",
            Some(&detail),
            (Some(retry as i64), Some(reason.to_string())),
        )
        .await
    }

    /// Counts for the `deploywatch_tasks{queue,state}` gauge.
    pub async fn task_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows =
            sqlx::query("SELECT queue, state, COUNT(*) AS n FROM tasks GROUP BY queue, state")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("queue")?, r.try_get("state")?, r.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Alerts currently firing, for `status`.
    pub async fn firing_alerts(
        &self,
        app: Option<&str>,
    ) -> Result<Vec<(String, Option<String>, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT alertname, app, starts_at FROM alerts WHERE status = 'firing' AND ($1 IS NULL OR app = $1) ORDER BY starts_at",
        )
        .bind(app)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("alertname")?,
                    r.try_get("app")?,
                    r.try_get("starts_at")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
