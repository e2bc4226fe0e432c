//! Set-oriented ingest, the statements: a group-commit batch is read with two queries (its
//! episodes, its dedup keys' tasks), decided in memory (`ingest_plan.rs`), and written with one
//! statement per table and kind of write, whatever the number of notifications. Each set travels
//! as one JSON array parameter that the database unpacks into rows (`jsonb_each` on SQLite,
//! `json_to_recordset` on PostgreSQL), so every statement's text is fixed (prepared once, cached)
//! and no batch reaches a bind-parameter limit.
//!
//! The statement count per batch is what this buys: sqlx runs SQLite on its own thread and every
//! statement is a round trip to it (a network round trip on PostgreSQL); one by one, a 1-alert
//! notification took about eleven. On SQLite the writes go further: all of a batch's writes travel
//! as one multi-statement query (one round trip; its text depends only on which sets are empty, a
//! handful of variants in sqlx's statement cache).

use std::collections::HashMap;

use futures::StreamExt;
use serde::Serialize;
use sqlx::{Any, Row, Transaction};

use super::ingest_plan::{self, Known, Notice};
use super::placement::{IngestReport, key_task};
use super::{Backend, Store, StoreError, now_ms};
use crate::tasks::episode::{EpisodeRow, KeyTask};

/// Why the set-oriented path gave the batch back.
#[derive(Debug, thiserror::Error)]
pub(super) enum SetError {
    /// A write missed the row it was decided on (something changed it meanwhile) or an insert
    /// found its row already there: the batch runs again one by one, re-deciding each write.
    #[error("{0}")]
    Miss(&'static str),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for SetError {
    fn from(e: StoreError) -> Self {
        SetError::Store(e)
    }
}

impl From<sqlx::Error> for SetError {
    fn from(e: sqlx::Error) -> Self {
        SetError::Store(e.into())
    }
}

const TEXT: &str = "TEXT";
const INT: &str = "BIGINT";

/// The batch's clock, the second parameter of every write.
const NOW: &str = "CAST($2 AS BIGINT)";

/// Where a write's set parameter goes: numbered when the batch's writes are put together
/// ([`Write::numbered`]).
const SET: &str = "$set";

/// The rows of the JSON array in the set parameter ([`SET`]) as a table `x` with the given columns.
fn rows(backend: Backend, cols: &[(&str, &str)]) -> String {
    let list = |f: &dyn Fn(&str, &str) -> String| {
        cols.iter()
            .map(|(c, t)| f(c, t))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match backend {
        // jsonb_each: each element comes out as binary JSON, so each column's json_extract reads
        // it directly instead of parsing the element's text once per column.
        Backend::Sqlite => format!(
            "(SELECT {} FROM jsonb_each({SET})) AS x",
            list(&|c, _| format!("json_extract(value, '$.{c}') AS {c}"))
        ),
        Backend::Postgres => format!(
            "json_to_recordset(CAST({SET} AS json)) AS x({})",
            list(&|c, t| format!("{c} {t}"))
        ),
    }
}

/// The strings of the JSON array in `$1`, for `IN (…)`.
fn list(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SELECT value FROM json_each($1)",
        Backend::Postgres => "SELECT json_array_elements_text(CAST($1 AS json))",
    }
}

/// The most one PostgreSQL statement's JSON parameter carries. sqlx 0.9.0 leaves Nagle's
/// algorithm on for its connections (transact-rs/sqlx#4335, fixed upstream after 0.9.0), and over
/// TLS a message longer than one TLS record (16 KiB) leaves in several writes: each after the
/// first waits for the server's delayed acknowledgement, 40 ms on Linux. Measured on loopback with
/// TLS: a batch whose task set was 25 KB waited 40 to 60 ms at that statement, and batches over
/// about 10 notifications ran slower than batches of 3 (docs/BENCHMARKS.md, "Webhook ingest").
/// SQLite has no socket: one parameter for the whole set.
pub(super) const PG_CHUNK: usize = 12 * 1024;

/// `set` as JSON arrays: one on SQLite; on PostgreSQL as many as keep each under [`PG_CHUNK`]
/// (an element longer than that travels alone), in order.
fn json_chunks<T: Serialize>(backend: Backend, set: &[T]) -> Result<Vec<String>, SetError> {
    let whole = encode(set)?;
    if backend == Backend::Sqlite || whole.len() <= PG_CHUNK {
        return Ok(vec![whole]);
    }
    let mut out = Vec::new();
    let mut cur = String::from("[");
    for item in set {
        let one = encode(item)?;
        if cur.len() > 1 && cur.len() + one.len() + 2 > PG_CHUNK {
            cur.push(']');
            out.push(std::mem::replace(&mut cur, String::from("[")));
        }
        if cur.len() > 1 {
            cur.push(',');
        }
        cur.push_str(&one);
    }
    cur.push(']');
    out.push(cur);
    Ok(out)
}

fn encode<T: Serialize + ?Sized>(v: &T) -> Result<String, SetError> {
    serde_json::to_string(v)
        .map_err(|e| SetError::Store(StoreError::Query(format!("encoding a batch: {e}"))))
}

/// One write of a batch: its statement, its set as JSON (in chunks on PostgreSQL,
/// [`json_chunks`]), and, for a write that must touch every row of its set, what a miss means.
struct Write {
    sql: String,
    chunks: Vec<String>,
    rows: u64,
    all: Option<&'static str>,
}

impl Write {
    /// `sql` over `set`; `None` when the set is empty (nothing to run).
    fn new<T: Serialize>(
        backend: Backend,
        sql: String,
        set: &[T],
        all: Option<&'static str>,
    ) -> Result<Option<Write>, SetError> {
        if set.is_empty() {
            return Ok(None);
        }
        Ok(Some(Write {
            sql,
            chunks: json_chunks(backend, set)?,
            rows: set.len() as u64,
            all,
        }))
    }

    /// The statement with its set as parameter `$n` (the clock is always `$2`).
    fn numbered(&self, n: usize) -> String {
        self.sql.replace(SET, &format!("${n}"))
    }

    /// Whether the rows it touched are what it needed.
    fn check(&self, touched: u64) -> Result<(), SetError> {
        match self.all {
            Some(what) if touched != self.rows => Err(SetError::Miss(what)),
            _ => Ok(()),
        }
    }
}

/// Runs the batch's writes in order: on SQLite as one query ([`run_writes_sqlite`]), on
/// PostgreSQL one statement per write and chunk.
async fn run_writes(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    writes: &[Write],
    now: i64,
) -> Result<(), SetError> {
    if writes.is_empty() {
        return Ok(());
    }
    if backend == Backend::Sqlite {
        return run_writes_sqlite(tx, writes, now).await;
    }
    for w in writes {
        let sql = w.numbered(1);
        let mut touched = 0;
        for json in &w.chunks {
            let r = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(json.as_str())
                .bind(now)
                .execute(&mut **tx)
                .await?;
            touched += r.rows_affected();
        }
        w.check(touched)?;
    }
    Ok(())
}

/// SQLite: every write of the batch in one multi-statement query, one round trip to sqlx's SQLite
/// thread instead of one per write (measured: 5% more notifications/s at 64 senders), each
/// statement's own row count coming back with it. The sets are `$1`, `$3`, `$4`… (one chunk each,
/// [`json_chunks`]) and the clock `$2`. Only sqlx's SQLite driver runs several statements in one
/// query.
async fn run_writes_sqlite(
    tx: &mut Transaction<'_, Any>,
    writes: &[Write],
    now: i64,
) -> Result<(), SetError> {
    let param = |k: usize| if k == 0 { 1 } else { k + 2 };
    let sql = writes
        .iter()
        .enumerate()
        .map(|(k, w)| w.numbered(param(k)))
        .collect::<Vec<_>>()
        .join(";\n");
    let set = |k: usize| writes[k].chunks.first().map_or("[]", String::as_str);
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(set(0)).bind(now);
    for k in 1..writes.len() {
        q = q.bind(set(k));
    }
    // Each statement's row count, in order, up to the first error.
    let mut touched = Vec::with_capacity(writes.len());
    let mut failed = None;
    let mut steps = sqlx::Executor::fetch_many(&mut **tx, q);
    while let Some(step) = steps.next().await {
        match step {
            Ok(sqlx::Either::Left(done)) => touched.push(done.rows_affected()),
            Ok(sqlx::Either::Right(_)) => {}
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    drop(steps);
    // A write that missed its rows comes first: run one by one, the batch stopped there, and what
    // failed after it (a task event for a task not inserted) followed from the miss.
    for (w, n) in writes.iter().zip(&touched) {
        w.check(*n)?;
    }
    if let Some(e) = failed {
        return Err(e.into());
    }
    if touched.len() != writes.len() {
        return Err(SetError::Store(StoreError::Query(format!(
            "the batch's {} writes reported {} results",
            writes.len(),
            touched.len()
        ))));
    }
    Ok(())
}

/// The rows `sql` reads for `items`, its list parameter in chunks ([`json_chunks`]), in order.
async fn fetch_in_chunks(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    sql: &str,
    items: &[String],
) -> Result<Vec<sqlx::any::AnyRow>, SetError> {
    let mut found = Vec::new();
    for list in json_chunks(backend, items)? {
        found.extend(
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .bind(list)
                .fetch_all(&mut **tx)
                .await?,
        );
    }
    Ok(found)
}

impl Store {
    /// Stores the batch inside `tx` (which the caller commits) and returns each notification's
    /// report, in order. `SetError::Miss` or a refusal: the caller rolls back and runs the batch
    /// one by one.
    pub(super) async fn ingest_set(
        &self,
        tx: &mut Transaction<'_, Any>,
        notices: &[Notice<'_>],
    ) -> Result<Vec<IngestReport>, SetError> {
        let now = now_ms();
        let (fps, keys) = ingest_plan::reads(notices);
        let known = Known {
            episodes: self.read_episodes(tx, &fps).await?,
            tasks: self.read_key_tasks(tx, &keys).await?,
        };
        let mut new_id = || super::new_row_id();
        let plan = ingest_plan::plan(notices, known, now, &mut new_id);
        let b = self.backend;
        let touch = |on: &str| {
            format!(
                "UPDATE tasks SET last_seen_at = {NOW}, seen_count = tasks.seen_count + x.n FROM {} WHERE tasks.{on} = x.id",
                rows(b, &[("id", TEXT), ("n", INT)])
            )
        };
        let writes = [
            Write::new(
                b,
                format!(
                    "INSERT INTO notifications (id, body_sha256, received_at, last_seen_at, seen_count, receiver, status, group_key, alert_count, body) \
                 SELECT x.id, x.sha, {NOW}, {NOW}, x.n, x.receiver, x.status, x.group_key, x.alert_count, x.body FROM {} WHERE true \
                 ON CONFLICT (body_sha256) DO UPDATE SET last_seen_at = excluded.last_seen_at, seen_count = notifications.seen_count + excluded.seen_count",
                    rows(
                        b,
                        &[
                            ("id", TEXT),
                            ("sha", TEXT),
                            ("n", INT),
                            ("receiver", TEXT),
                            ("status", TEXT),
                            ("group_key", TEXT),
                            ("alert_count", INT),
                            ("body", TEXT)
                        ]
                    )
                ),
                &plan.receipts,
                None,
            )?,
            Write::new(
                b,
                format!(
                    "INSERT INTO alerts (fingerprint, alertname, app, status, starts_at, resolved_at, first_seen_at, last_seen_at, seen_count, labels, annotations) \
                 SELECT x.fp, x.alertname, x.app, x.status, x.starts_at, x.resolved_at, {NOW}, {NOW}, x.n, x.labels, x.annotations FROM {} WHERE true \
                 ON CONFLICT (fingerprint) DO NOTHING",
                    rows(
                        b,
                        &[
                            ("fp", TEXT),
                            ("alertname", TEXT),
                            ("app", TEXT),
                            ("status", TEXT),
                            ("starts_at", INT),
                            ("resolved_at", INT),
                            ("n", INT),
                            ("labels", TEXT),
                            ("annotations", TEXT)
                        ]
                    )
                ),
                &plan.episode_inserts,
                Some("an episode the batch read as new exists"),
            )?,
            Write::new(
                b,
                format!(
                    "UPDATE alerts SET status = x.status, starts_at = x.starts_at, resolved_at = x.resolved_at, last_seen_at = {NOW}, \
                 seen_count = alerts.seen_count + x.n, labels = COALESCE(x.labels, alerts.labels), \
                 annotations = COALESCE(x.annotations, alerts.annotations) FROM {} WHERE alerts.fingerprint = x.fp",
                    rows(
                        b,
                        &[
                            ("fp", TEXT),
                            ("status", TEXT),
                            ("starts_at", INT),
                            ("resolved_at", INT),
                            ("n", INT),
                            ("labels", TEXT),
                            ("annotations", TEXT)
                        ]
                    )
                ),
                &plan.episode_updates,
                Some("an episode the batch read is gone"),
            )?,
            // Existing tasks first: a task the batch closed frees its open key for a task it made.
            Write::new(
                b,
                format!(
                    "UPDATE tasks SET state = x.state, open_key = CASE WHEN x.is_open = 1 THEN tasks.dedup_key ELSE NULL END, \
                 closed_reason = x.closed_reason, closed_at = x.closed_at, \
                 alert_resolved_at = CASE WHEN x.ar_set = 1 THEN x.ar ELSE tasks.alert_resolved_at END, \
                 worker = CASE WHEN x.requeued = 1 THEN NULL ELSE tasks.worker END, \
                 lease_expires_at = CASE WHEN x.requeued = 1 THEN NULL ELSE tasks.lease_expires_at END, \
                 max_attempts = CASE WHEN x.requeued = 1 AND tasks.attempts >= tasks.max_attempts THEN tasks.attempts + 1 ELSE tasks.max_attempts END, \
                 updated_at = {NOW}, last_seen_at = CASE WHEN x.n > 0 THEN {NOW} ELSE tasks.last_seen_at END, \
                 seen_count = tasks.seen_count + x.n FROM {} WHERE tasks.id = x.id AND tasks.state = x.was",
                    rows(
                        b,
                        &[
                            ("id", TEXT),
                            ("was", TEXT),
                            ("state", TEXT),
                            ("is_open", INT),
                            ("closed_reason", TEXT),
                            ("closed_at", INT),
                            ("ar_set", INT),
                            ("ar", INT),
                            ("requeued", INT),
                            ("n", INT)
                        ]
                    )
                ),
                &plan.task_updates,
                Some("a task changed after the batch read it"),
            )?,
            Write::new(
                b,
                format!(
                    "INSERT INTO tasks (id, queue, kind, title, priority, state, dedup_key, open_key, app, context, attempts, \
                 max_attempts, created_at, updated_at, last_seen_at, seen_count, alert_resolved_at, closed_reason, closed_at) \
                 SELECT x.id, x.queue, x.kind, x.title, x.priority, x.state, x.dkey, CASE WHEN x.is_open = 1 THEN x.dkey ELSE NULL END, \
                 x.app, x.context, 0, x.max_attempts, {NOW}, {NOW}, {NOW}, x.n, x.ar, x.closed_reason, x.closed_at FROM {} WHERE true \
                 ON CONFLICT (open_key) DO NOTHING",
                    rows(
                        b,
                        &[
                            ("id", TEXT),
                            ("queue", TEXT),
                            ("kind", TEXT),
                            ("title", TEXT),
                            ("priority", INT),
                            ("state", TEXT),
                            ("dkey", TEXT),
                            ("is_open", INT),
                            ("app", TEXT),
                            ("context", TEXT),
                            ("max_attempts", INT),
                            ("n", INT),
                            ("ar", INT),
                            ("closed_reason", TEXT),
                            ("closed_at", INT)
                        ]
                    )
                ),
                &plan.task_inserts,
                Some("a task with the same open key appeared after the batch read its key"),
            )?,
            Write::new(b, touch("id"), &plan.task_touches, None)?,
            Write::new(b, touch("dedup_key"), &plan.key_touches, None)?,
            Write::new(
                b,
                format!(
                    "INSERT INTO task_events (task_id, at, event, worker, detail) \
                 SELECT x.task_id, {NOW}, x.event, NULL, x.detail FROM {} ORDER BY x.i",
                    rows(
                        b,
                        &[
                            ("i", INT),
                            ("task_id", TEXT),
                            ("event", TEXT),
                            ("detail", TEXT)
                        ]
                    )
                ),
                &plan.events,
                None,
            )?,
            Write::new(
                b,
                format!(
                    "INSERT INTO outbox (id, notifier, payload, created_at, attempts, next_attempt_at) \
                 SELECT x.id, x.notifier, x.payload, {NOW}, 0, {NOW} FROM {}",
                    rows(b, &[("id", TEXT), ("notifier", TEXT), ("payload", TEXT)])
                ),
                &plan.outbox,
                None,
            )?,
        ];
        let writes: Vec<Write> = writes.into_iter().flatten().collect();
        run_writes(tx, b, &writes, now).await?;
        Ok(plan.reports)
    }

    /// The batch's episodes that exist, locked on PostgreSQL (the advisory locks already keep
    /// other ingest writers out; the row lock keeps out anything else that writes episodes).
    async fn read_episodes(
        &self,
        tx: &mut Transaction<'_, Any>,
        fps: &[String],
    ) -> Result<HashMap<String, EpisodeRow>, SetError> {
        let mut out = HashMap::with_capacity(fps.len());
        if fps.is_empty() {
            return Ok(out);
        }
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "SELECT fingerprint, status, starts_at, resolved_at FROM alerts WHERE fingerprint IN ({}){lock}",
            list(self.backend)
        );
        let found = fetch_in_chunks(tx, self.backend, &sql, fps).await?;
        for r in &found {
            out.insert(
                r.try_get("fingerprint")?,
                EpisodeRow {
                    firing: r.try_get::<String, _>("status")? == "firing",
                    starts_at: r.try_get("starts_at")?,
                    resolved_at: r.try_get("resolved_at")?,
                },
            );
        }
        Ok(out)
    }

    /// The newest 32 tasks of each key, newest first: what `placement::key_tasks` reads per key.
    async fn read_key_tasks(
        &self,
        tx: &mut Transaction<'_, Any>,
        keys: &[String],
    ) -> Result<HashMap<String, Vec<KeyTask>>, SetError> {
        let mut out: HashMap<String, Vec<KeyTask>> = HashMap::new();
        if keys.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT id, dedup_key, state, open_key, closed_reason, closed_at FROM \
             (SELECT id, dedup_key, state, open_key, closed_reason, closed_at, \
              ROW_NUMBER() OVER (PARTITION BY dedup_key ORDER BY created_at DESC) AS rn \
              FROM tasks WHERE dedup_key IN ({})) AS s WHERE rn <= 32 ORDER BY dedup_key, rn",
            list(self.backend)
        );
        // A key's tasks come whole from one chunk: chunks split the key list, not a key.
        let found = fetch_in_chunks(tx, self.backend, &sql, keys).await?;
        for r in &found {
            out.entry(r.try_get("dedup_key")?)
                .or_default()
                .push(key_task(r)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Row {
        id: String,
        body: String,
    }

    fn rows(n: usize, body: usize) -> Vec<Row> {
        (0..n)
            .map(|i| Row {
                id: format!("r{i}"),
                body: "\"é\\".repeat(body),
            })
            .collect()
    }

    #[test]
    fn a_postgres_set_is_cut_into_arrays_under_one_tls_record_in_order_and_sqlite_keeps_one() {
        // (rows, body repeats, backend, expected chunks)
        let table: &[(usize, usize, Backend, Option<usize>)] = &[
            (0, 1, Backend::Postgres, Some(1)),
            (3, 10, Backend::Postgres, Some(1)),
            (200, 100, Backend::Postgres, None),
            (200, 100, Backend::Sqlite, Some(1)),
            // Elements longer than a chunk travel alone.
            (3, 5000, Backend::Postgres, Some(3)),
        ];
        for &(n, body, backend, want) in table {
            let set = rows(n, body);
            let chunks = json_chunks(backend, &set).expect("encodes");
            if let Some(w) = want {
                assert_eq!(chunks.len(), w, "{n} rows of {body} on {backend:?}");
            } else {
                assert!(chunks.len() > 1, "{n} rows of {body} must be cut");
            }
            let mut back = Vec::new();
            for c in &chunks {
                let part: Vec<Row> = serde_json::from_str(c).expect("each chunk is a JSON array");
                if backend == Backend::Postgres && part.len() > 1 {
                    assert!(c.len() <= PG_CHUNK, "a chunk of {} bytes", c.len());
                }
                back.extend(part);
            }
            assert_eq!(back, set, "the chunks hold the set, in order");
        }
    }
}
