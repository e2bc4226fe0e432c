//! Ingest of alert notifications: each alert episode's transition, and the tasks it opens or closes.
//! What happens is decided by the pure state machine in `tasks::episode`; this file reads what the
//! store knows and executes the decision inside a transaction (`placement.rs` places and closes
//! tasks; `group_commit.rs` commits many notifications in one transaction).
//!
//! Idempotency lives in the schema: `tasks.open_key` is unique and equals the dedup key while a task is
//! open, so repeats, HA duplicates and concurrent replicas can only ever touch the one open task.

use sqlx::{Any, Row, Transaction};

use super::placement::{IngestReport, PlaceOptions, close_on_resolve, place_all};
use super::{Backend, Store, StoreError, now_ms};
use crate::tasks::NewTask;
use crate::tasks::episode::{self, AlertEvent, EpisodeRow, RowWrite, Tally, Transition};

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
    /// The event as the episode state machine reads it.
    pub fn event(&self) -> AlertEvent {
        AlertEvent {
            firing: self.firing,
            starts_at: self.starts_at_ms,
            ends_at: self.ends_at_ms,
        }
    }
}

impl Store {
    /// Stores one notification and everything it causes inside `tx`, an open transaction that the
    /// caller commits (`group_commit.rs`: many notifications, each in its own savepoint).
    pub(super) async fn ingest_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        n: &NotificationRecord,
        alerts: &[AlertRecord],
        opts: &PlaceOptions<'_>,
    ) -> Result<IngestReport, StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO notifications (id, body_sha256, received_at, last_seen_at, seen_count, receiver, status, group_key, alert_count, body) \
             VALUES ($1, $2, $3, $3, 1, $4, $5, $6, $7, $8) \
             ON CONFLICT (body_sha256) DO UPDATE SET last_seen_at = excluded.last_seen_at, seen_count = notifications.seen_count + 1",
        )
        .bind(super::new_row_id())
        .bind(&n.body_sha256)
        .bind(now)
        .bind(&n.receiver)
        .bind(&n.status)
        .bind(&n.group_key)
        .bind(n.alert_count)
        .bind(&n.body)
        .execute(&mut **tx)
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
            (&a.fingerprint, a.event().at(now)).cmp(&(&b.fingerprint, b.event().at(now)))
        });
        for a in ordered {
            self.ingest_alert(tx, a, opts, now, &mut report).await?;
        }
        Ok(report)
    }

    /// One alert of a notification: its episode's transition, then what the plan says.
    async fn ingest_alert(
        &self,
        tx: &mut Transaction<'static, Any>,
        a: &AlertRecord,
        opts: &PlaceOptions<'_>,
        now: i64,
        report: &mut IngestReport,
    ) -> Result<(), StoreError> {
        let ev = a.event();
        let stored = self.lock_episode(tx, a, now).await?;
        let step = episode::transition(stored.as_ref(), &ev, now);
        let plan = episode::plan_event(step, a.firing);
        match plan.tally {
            Tally::Stale => report.stale_ignored += 1,
            Tally::Duplicate => report.duplicates_absorbed += 1,
            Tally::Nothing => {}
        }
        write_row(tx, a, plan.row, now).await?;
        if plan.close_tasks {
            for key in &a.cancel_keys {
                let (c, noted) = close_on_resolve(tx, key, ev.at(now), now).await?;
                report.tasks_cancelled += c;
                report.tasks_noted += noted;
            }
        }
        let episode_start = a.firing.then_some(a.starts_at_ms);
        let chosen: Vec<NewTask> = a
            .create
            .iter()
            .filter(|t| plan.places(t.kind))
            .cloned()
            .collect();
        if step == Transition::Repeat && a.firing {
            // The announcement of a repeat was made with the news; counted as absorbed.
            report.duplicates_absorbed += a.create.len() - chosen.len();
        }
        place_all(tx, &chosen, opts, now, episode_start, report).await
    }

    /// Makes the episode's row exist, then reads it under a row lock: without a row there is
    /// nothing to lock and two first deliveries would each decide alone. `None` when this call made
    /// the row from the event itself.
    async fn lock_episode(
        &self,
        tx: &mut Transaction<'static, Any>,
        a: &AlertRecord,
        now: i64,
    ) -> Result<Option<EpisodeRow>, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO alerts (fingerprint, alertname, app, status, starts_at, resolved_at, first_seen_at, last_seen_at, seen_count, labels, annotations) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 1, $8, $9) ON CONFLICT (fingerprint) DO NOTHING",
        )
        .bind(&a.fingerprint)
        .bind(&a.alertname)
        .bind(&a.app)
        .bind(if a.firing { "firing" } else { "resolved" })
        .bind(a.starts_at_ms)
        .bind(if a.firing { None } else { Some(a.event().at(now)) })
        .bind(now)
        .bind(&a.labels_json)
        .bind(&a.annotations_json)
        .execute(&mut **tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            return Ok(None);
        }
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE",
            Backend::Sqlite => "",
        };
        let prior = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT resolved_at, starts_at, status FROM alerts WHERE fingerprint = $1 {lock}"
        )))
        .bind(&a.fingerprint)
        .fetch_one(&mut **tx)
        .await?;
        Ok(Some(EpisodeRow {
            firing: prior.try_get::<String, _>("status")? == "firing",
            starts_at: prior.try_get("starts_at")?,
            resolved_at: prior.try_get("resolved_at")?,
        }))
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

/// Writes what the plan says about the episode's row.
async fn write_row(
    tx: &mut Transaction<'static, Any>,
    a: &AlertRecord,
    w: RowWrite,
    now: i64,
) -> Result<(), StoreError> {
    let q = match w {
        RowWrite::Keep => return Ok(()),
        RowWrite::Touch => sqlx::query(
            "UPDATE alerts SET last_seen_at = $1, seen_count = seen_count + 1 WHERE fingerprint = $2",
        )
        .bind(now)
        .bind(&a.fingerprint),
        RowWrite::Fire => sqlx::query(
            "UPDATE alerts SET status = 'firing', starts_at = $3, resolved_at = NULL, last_seen_at = $1, \
             seen_count = seen_count + 1, labels = $4, annotations = $5 WHERE fingerprint = $2",
        )
        .bind(now)
        .bind(&a.fingerprint)
        .bind(a.starts_at_ms)
        .bind(&a.labels_json)
        .bind(&a.annotations_json),
        RowWrite::Resolve => sqlx::query(
            "UPDATE alerts SET status = 'resolved', resolved_at = $3, last_seen_at = $1, \
             seen_count = seen_count + 1 WHERE fingerprint = $2",
        )
        .bind(now)
        .bind(&a.fingerprint)
        .bind(a.event().at(now)),
    };
    q.execute(&mut **tx).await?;
    Ok(())
}
