//! Ingest of alert notifications: each alert episode's transition, and the tasks it opens or closes.
//!
//! Idempotency lives in the schema: `tasks.open_key` is unique and equals the dedup key while a task is
//! open, so repeats, HA duplicates and concurrent replicas can only ever touch the one open task.

use std::time::Duration;

use sqlx::{Any, Row, Transaction};

use super::tasks::add_event;
use super::{Backend, Store, StoreError, now_ms};
use crate::tasks::{Kind, NewTask, Queue};

/// One received notification, kept verbatim as a receipt.
#[derive(Debug, Clone)]
pub struct NotificationRecord {
    pub body_sha256: String,
    pub receiver: String,
    pub status: String,
    pub group_key: String,
    pub alert_count: i64,
    pub body: String,
}

/// One alert of a notification, with what the rules decided it causes.
#[derive(Debug, Clone)]
pub struct AlertRecord {
    pub fingerprint: String,
    pub alertname: String,
    pub app: Option<String>,
    pub firing: bool,
    pub starts_at_ms: i64,
    /// For a resolved alert: when it resolved.
    pub ends_at_ms: Option<i64>,
    pub labels_json: String,
    pub annotations_json: String,
    /// Tasks to open (firing) or announcements to make (resolved).
    pub create: Vec<NewTask>,
    /// Dedup keys of the open tasks a resolve closes.
    pub cancel_keys: Vec<String>,
}

impl AlertRecord {
    /// When this event happened by the alert's own clock.
    fn event_at(&self, now: i64) -> i64 {
        if self.firing {
            self.starts_at_ms
        } else {
            self.ends_at_ms.unwrap_or(now)
        }
    }
}

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

#[derive(Debug, PartialEq, Eq)]
enum Placed {
    Created(String),
    Reopened,
    Absorbed,
}

/// Opens `t` unless an open task with its dedup key exists (then that one is touched) or, for
/// announcements, any task with that key ever existed.
async fn place_task(
    tx: &mut Transaction<'static, Any>,
    t: &NewTask,
    max_attempts: i64,
    reopen_window: Duration,
    now: i64,
    episode_start: Option<i64>,
) -> Result<Placed, StoreError> {
    let touched = sqlx::query(
        "UPDATE tasks SET last_seen_at = $1, seen_count = seen_count + 1 WHERE open_key = $2",
    )
    .bind(now)
    .bind(&t.dedup_key)
    .execute(&mut **tx)
    .await?;
    if touched.rows_affected() > 0 {
        return Ok(Placed::Absorbed);
    }
    if t.kind == Kind::Announce {
        // An announcement is made once per event, whether or not an agent already handled it.
        let seen = sqlx::query(
            "UPDATE tasks SET last_seen_at = $1, seen_count = seen_count + 1 WHERE dedup_key = $2",
        )
        .bind(now)
        .bind(&t.dedup_key)
        .execute(&mut **tx)
        .await?;
        if seen.rows_affected() > 0 {
            return Ok(Placed::Absorbed);
        }
    } else {
        // A firing soon after its resolve reopens the task that resolve cancelled, keeping its history.
        let since = now - reopen_window.as_millis() as i64;
        let reopen_id: Option<String> = sqlx::query(
            "SELECT id FROM tasks WHERE dedup_key = $1 AND state = 'cancelled' AND closed_reason = 'alert resolved' \
             AND closed_at >= $2 ORDER BY closed_at DESC LIMIT 1",
        )
        .bind(&t.dedup_key)
        .bind(since)
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| r.try_get("id"))
        .transpose()?;
        if let Some(id) = reopen_id {
            sqlx::query(
                "UPDATE tasks SET state = 'queued', open_key = dedup_key, closed_reason = NULL, closed_at = NULL, \
                 alert_resolved_at = NULL, updated_at = $1, last_seen_at = $1, seen_count = seen_count + 1 WHERE id = $2",
            )
            .bind(now)
            .bind(&id)
            .execute(&mut **tx)
            .await?;
            add_event(
                tx,
                &id,
                now,
                "reopened",
                None,
                Some(&serde_json::json!({"reason": "alert fired again"})),
            )
            .await?;
            return Ok(Placed::Reopened);
        }
        if let Some(start) = episode_start
            && let Some(placed) = reopen_completed(tx, t, start, now).await?
        {
            return Ok(placed);
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
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
        return Ok(Placed::Absorbed);
    }
    add_event(tx, &id, now, "created", None, None).await?;
    Ok(Placed::Created(id))
}

/// The alert of this episode still fires after its task was completed during the episode: the fix
/// did not work, which is news for the same task. A fix task is queued again with its history, one
/// more attempt allowed and a note; a completed rollback is not repeated (rolling back further is a
/// decision for the fix task), so the repeat is absorbed.
async fn reopen_completed(
    tx: &mut Transaction<'static, Any>,
    t: &NewTask,
    episode_start: i64,
    now: i64,
) -> Result<Option<Placed>, StoreError> {
    let done = sqlx::query(
        "SELECT id FROM tasks WHERE dedup_key = $1 AND state = 'done' AND closed_at >= $2 \
         ORDER BY closed_at DESC LIMIT 1",
    )
    .bind(&t.dedup_key)
    .bind(episode_start)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(done) = done else { return Ok(None) };
    let id: String = done.try_get("id")?;
    if t.kind != Kind::Fix {
        sqlx::query(
            "UPDATE tasks SET last_seen_at = $1, seen_count = seen_count + 1 WHERE id = $2",
        )
        .bind(now)
        .bind(&id)
        .execute(&mut **tx)
        .await?;
        return Ok(Some(Placed::Absorbed));
    }
    sqlx::query(
        "UPDATE tasks SET state = 'queued', open_key = dedup_key, closed_reason = NULL, closed_at = NULL, \
         worker = NULL, lease_expires_at = NULL, max_attempts = CASE WHEN max_attempts > attempts THEN max_attempts ELSE attempts + 1 END, \
         updated_at = $1, last_seen_at = $1, seen_count = seen_count + 1 WHERE id = $2",
    )
    .bind(now)
    .bind(&id)
    .execute(&mut **tx)
    .await?;
    add_event(
        tx,
        &id,
        now,
        "reopened",
        None,
        Some(&serde_json::json!({"reason": "alert still firing after completion"})),
    )
    .await?;
    Ok(Some(Placed::Reopened))
}

/// An episode's stored state, as the transition decision reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EpisodeRow {
    pub firing: bool,
    pub starts_at: i64,
    pub resolved_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// The event is news: store it and act on it.
    Apply,
    /// Already known (a repeat, an HA duplicate): count it; a firing still touches its tasks.
    Repeat,
    /// Older than what is stored (a firing after its own resolve, a resolve of an earlier episode).
    Stale,
}

/// Orders events of one episode by the alert's own times, never by arrival. Pure.
pub(crate) fn transition(row: &EpisodeRow, a: &AlertRecord, now: i64) -> Transition {
    if a.firing {
        if row.resolved_at.is_some_and(|r| a.starts_at_ms <= r) {
            Transition::Stale
        } else if row.firing && a.starts_at_ms <= row.starts_at {
            Transition::Repeat
        } else {
            Transition::Apply
        }
    } else {
        let ends = a.ends_at_ms.unwrap_or(now);
        if row.resolved_at.is_some_and(|r| r >= ends) {
            Transition::Repeat
        } else if row.firing && row.starts_at > ends {
            // A later episode already fires: this resolve belongs to an earlier one.
            Transition::Stale
        } else {
            Transition::Apply
        }
    }
}

async fn enqueue_outbox(
    tx: &mut Transaction<'static, Any>,
    notifiers: &[String],
    t: &NewTask,
    now: i64,
) -> Result<(), StoreError> {
    for n in notifiers {
        sqlx::query("INSERT INTO outbox (id, notifier, payload, created_at, attempts, next_attempt_at) VALUES ($1, $2, $3, $4, 0, $4)")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(n)
            .bind(serde_json::json!({"title": t.title, "app": t.app, "context": t.context, "dedup_key": t.dedup_key}).to_string())
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Places each task and tallies what happened; new announcements also go to the outbox.
async fn place_all(
    tx: &mut Transaction<'static, Any>,
    tasks: &[NewTask],
    opts: &PlaceOptions<'_>,
    now: i64,
    episode_start: Option<i64>,
    report: &mut IngestReport,
) -> Result<(), StoreError> {
    for t in tasks {
        match place_task(
            tx,
            t,
            opts.max_attempts,
            opts.reopen_window,
            now,
            episode_start,
        )
        .await?
        {
            Placed::Created(_) => {
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

/// Options for [`Store::ingest_notification`] and [`Store::create_tasks`].
#[derive(Debug, Clone)]
pub struct PlaceOptions<'a> {
    pub max_attempts: i64,
    pub reopen_window: Duration,
    /// Outbound notifiers that get a copy of every new announcement.
    pub notifiers: &'a [String],
}

impl Store {
    /// Stores a notification and everything it causes in one transaction, and answers only once the
    /// commit is durable (for SQLite: in the file still at the configured path).
    pub async fn ingest_notification(
        &self,
        n: &NotificationRecord,
        alerts: &[AlertRecord],
        opts: &PlaceOptions<'_>,
    ) -> Result<IngestReport, StoreError> {
        let r = self.ingest_tx(n, alerts, opts).await;
        let r = r.and_then(|report| self.check_file().map(|()| report));
        self.note_write(r)
    }

    async fn ingest_tx(
        &self,
        n: &NotificationRecord,
        alerts: &[AlertRecord],
        opts: &PlaceOptions<'_>,
    ) -> Result<IngestReport, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO notifications (id, body_sha256, received_at, last_seen_at, seen_count, receiver, status, group_key, alert_count, body) \
             VALUES ($1, $2, $3, $3, 1, $4, $5, $6, $7, $8) \
             ON CONFLICT (body_sha256) DO UPDATE SET last_seen_at = excluded.last_seen_at, seen_count = notifications.seen_count + 1",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(&n.body_sha256)
        .bind(now)
        .bind(&n.receiver)
        .bind(&n.status)
        .bind(&n.group_key)
        .bind(n.alert_count)
        .bind(&n.body)
        .execute(&mut *tx)
        .await?;

        let mut report = IngestReport {
            alerts: alerts.len(),
            ..Default::default()
        };
        // Row locks are taken in one order (by episode key, then by time) so two deliveries touching
        // the same episodes in opposite orders cannot deadlock, and a resolve and a firing of one
        // notification apply in the order they happened.
        let mut ordered: Vec<&AlertRecord> = alerts.iter().collect();
        ordered.sort_by(|a, b| {
            (&a.fingerprint, a.event_at(now)).cmp(&(&b.fingerprint, b.event_at(now)))
        });
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE",
            Backend::Sqlite => "",
        };
        let select = format!(
            "SELECT resolved_at, starts_at, status FROM alerts WHERE fingerprint = $1 {lock}"
        );
        for a in ordered {
            // The row exists before it is read, so the read below can lock it: without a row there is
            // nothing to lock and two first deliveries would each decide alone.
            let inserted = sqlx::query(
                "INSERT INTO alerts (fingerprint, alertname, app, status, starts_at, resolved_at, first_seen_at, last_seen_at, seen_count, labels, annotations) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 1, $8, $9) ON CONFLICT (fingerprint) DO NOTHING",
            )
            .bind(&a.fingerprint)
            .bind(&a.alertname)
            .bind(&a.app)
            .bind(if a.firing { "firing" } else { "resolved" })
            .bind(a.starts_at_ms)
            .bind(if a.firing { None } else { Some(a.ends_at_ms.unwrap_or(now)) })
            .bind(now)
            .bind(&a.labels_json)
            .bind(&a.annotations_json)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            let prior = sqlx::query(sqlx::AssertSqlSafe(select.clone()))
                .bind(&a.fingerprint)
                .fetch_one(&mut *tx)
                .await?;
            let row = EpisodeRow {
                firing: prior.try_get::<String, _>("status")? == "firing",
                starts_at: prior.try_get("starts_at")?,
                resolved_at: prior.try_get("resolved_at")?,
            };
            let step = if inserted {
                Transition::Apply
            } else {
                transition(&row, a, now)
            };
            match step {
                Transition::Stale => {
                    report.stale_ignored += 1;
                    continue;
                }
                Transition::Repeat => {
                    sqlx::query("UPDATE alerts SET last_seen_at = $1, seen_count = seen_count + 1 WHERE fingerprint = $2")
                        .bind(now)
                        .bind(&a.fingerprint)
                        .execute(&mut *tx)
                        .await?;
                    if !a.firing {
                        report.duplicates_absorbed += 1;
                        continue;
                    }
                }
                Transition::Apply if inserted => {}
                Transition::Apply if a.firing => {
                    sqlx::query(
                        "UPDATE alerts SET status = 'firing', starts_at = $1, resolved_at = NULL, last_seen_at = $2, \
                         seen_count = seen_count + 1, labels = $3, annotations = $4 WHERE fingerprint = $5",
                    )
                    .bind(a.starts_at_ms)
                    .bind(now)
                    .bind(&a.labels_json)
                    .bind(&a.annotations_json)
                    .bind(&a.fingerprint)
                    .execute(&mut *tx)
                    .await?;
                }
                Transition::Apply => {
                    sqlx::query(
                        "UPDATE alerts SET status = 'resolved', resolved_at = $1, last_seen_at = $2, \
                         seen_count = seen_count + 1 WHERE fingerprint = $3",
                    )
                    .bind(a.ends_at_ms.unwrap_or(now))
                    .bind(now)
                    .bind(&a.fingerprint)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            if !a.firing {
                let ends = a.ends_at_ms.unwrap_or(now);
                for key in &a.cancel_keys {
                    let (c, noted) = close_on_resolve(&mut tx, key, ends, now).await?;
                    report.tasks_cancelled += c;
                    report.tasks_noted += noted;
                }
            }
            let episode = a.firing.then_some(a.starts_at_ms);
            place_all(&mut tx, &a.create, opts, now, episode, &mut report).await?;
        }
        tx.commit().await?;
        Ok(report)
    }

    /// Creates tasks outside an alert (deployment lifecycle events, rollbacks), idempotently.
    pub async fn create_tasks(
        &self,
        tasks: &[NewTask],
        opts: &PlaceOptions<'_>,
    ) -> Result<IngestReport, StoreError> {
        let r = self.create_tasks_tx(tasks, opts).await;
        self.note_write(r)
    }

    async fn create_tasks_tx(
        &self,
        tasks: &[NewTask],
        opts: &PlaceOptions<'_>,
    ) -> Result<IngestReport, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let mut report = IngestReport::default();
        place_all(&mut tx, tasks, opts, now, None, &mut report).await?;
        tx.commit().await?;
        Ok(report)
    }
}

/// Closes the open task of `key` for a resolve. Each branch is one conditional statement, so a claim
/// committing meanwhile turns the cancel into a note instead of cancelling a claimed task.
async fn close_on_resolve(
    tx: &mut Transaction<'static, Any>,
    key: &str,
    resolved_at: i64,
    now: i64,
) -> Result<(usize, usize), StoreError> {
    let cancelled = sqlx::query(
        "UPDATE tasks SET state = 'cancelled', open_key = NULL, closed_reason = 'alert resolved', closed_at = $1, \
         alert_resolved_at = $2, updated_at = $1 WHERE open_key = $3 AND state = 'queued' RETURNING id",
    )
    .bind(now)
    .bind(resolved_at)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = cancelled {
        let id: String = row.try_get("id")?;
        add_event(
            tx,
            &id,
            now,
            "cancelled",
            None,
            Some(&serde_json::json!({"reason": "alert resolved"})),
        )
        .await?;
        return Ok((1, 0));
    }
    // An agent is already working on it: tell it, don't pull the rug.
    let noted = sqlx::query(
        "UPDATE tasks SET alert_resolved_at = $1, updated_at = $2 WHERE open_key = $3 RETURNING id",
    )
    .bind(resolved_at)
    .bind(now)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = noted else { return Ok((0, 0)) };
    let id: String = row.try_get("id")?;
    add_event(
        tx,
        &id,
        now,
        "note",
        None,
        Some(&serde_json::json!({"note": "the alert resolved while this task was claimed"})),
    )
    .await?;
    Ok((0, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(firing: bool, starts: i64, ends: Option<i64>) -> AlertRecord {
        AlertRecord {
            fingerprint: "f".into(),
            alertname: "A".into(),
            app: None,
            firing,
            starts_at_ms: starts,
            ends_at_ms: ends,
            labels_json: "{}".into(),
            annotations_json: "{}".into(),
            create: Vec::new(),
            cancel_keys: Vec::new(),
        }
    }

    #[test]
    fn transitions_follow_the_alerts_own_times() {
        let firing = |s| EpisodeRow {
            firing: true,
            starts_at: s,
            resolved_at: None,
        };
        let resolved = |s, r| EpisodeRow {
            firing: false,
            starts_at: s,
            resolved_at: Some(r),
        };
        use Transition::*;
        let cases = [
            ("repeat firing", firing(10), ev(true, 10, None), Repeat),
            (
                "HA peer, older startsAt",
                firing(10),
                ev(true, 9, None),
                Repeat,
            ),
            (
                "resolve of the firing episode",
                firing(10),
                ev(false, 10, Some(20)),
                Apply,
            ),
            (
                "firing after its own resolve",
                resolved(10, 20),
                ev(true, 10, None),
                Stale,
            ),
            (
                "new episode after a resolve",
                resolved(10, 20),
                ev(true, 30, None),
                Apply,
            ),
            (
                "repeated resolve",
                resolved(10, 20),
                ev(false, 10, Some(20)),
                Repeat,
            ),
            (
                "resolve of an earlier episode",
                firing(30),
                ev(false, 10, Some(20)),
                Stale,
            ),
        ];
        for (what, row, a, want) in cases {
            assert_eq!(transition(&row, &a, 1_000), want, "{what}");
        }
    }
}
