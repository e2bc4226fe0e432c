//! Group commit for the webhook: [`Store::ingest_notification`] queues a notification and awaits
//! its own answer; a writer task takes everything queued (within [`BOUNDS`]) and stores it in ONE
//! transaction, in arrival order: set-oriented first (`ingest_plan`, `ingest_batch`: a few
//! statements for the whole batch), else one by one, each notification inside its own savepoint.
//!
//! - A notification the store refuses (an input error: the webhook's 422) makes the set path give
//!   the batch back; one by one, it is rolled back to its savepoint and answered with its error;
//!   the others commit.
//! - Every notification of a batch is answered only after the COMMIT (and, on SQLite, the check
//!   that the file is still at its path). If the COMMIT or any statement fails for the store's sake
//!   (connection lost, disk full, read-only), every notification of the batch gets that transient
//!   error (503: Alertmanager retries); nothing is acknowledged that is not durable.
//! - There is no batching timer: while one batch commits the queue fills, and a lone notification
//!   commits at once.
//! - SQLite has one writer (its one connection); PostgreSQL runs [`PG_WRITERS`] writers on the
//!   same queue. Before touching a row, a PostgreSQL batch takes transaction-scoped advisory locks
//!   on every receipt and episode it touches in one global order ([`lock_keys`]), so batches (of
//!   this or another replica) with the same episodes in different orders queue behind each other
//!   instead of deadlocking; a deadlock or serialization failure that still happens (another writer)
//!   rolls the batch back whole and it runs again, [`ATTEMPTS`] times at most.
//! - The queue is bounded: a caller waits for room, under the webhook's own deadline. A caller that
//!   stopped waiting before its batch was taken is not stored; one that stopped later is stored,
//!   and the retry Alertmanager sends is absorbed by the schema's dedup (receipt by body hash,
//!   episode by fingerprint, task by open key).
//! - When the store is closed, or a writer is gone, a caller gets an error, never a hang.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::{Any, Transaction};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::ingest::{AlertRecord, NotificationRecord};
use super::ingest_batch::SetError;
use super::ingest_plan::Notice;
use super::placement::{IngestReport, PlaceOptions};
use super::{Backend, Store, StoreError};

/// Notifications waiting at most; a caller beyond them waits for room.
const QUEUE: usize = 1024;
/// Batch writers on PostgreSQL (SQLite has one connection, so one writer). A batch is about ten
/// round trips and a commit; several writers overlap them, fewer writers make bigger batches (the
/// statements per batch are fixed, so PostgreSQL's work per notification falls). Measured with
/// 64 senders, once large statements no longer waited on delayed ACKs (`ingest_batch::PG_CHUNK`):
/// 2 writers 1,709 notifications/s, 4 writers 1,707, 8 writers 1,460 (session 10 machine; before
/// that fix, 8 writers were fastest because only their small batches escaped the wait).
const PG_WRITERS: usize = 4;
/// Runs of a batch that PostgreSQL rolled back as a deadlock victim or a serialization failure.
const ATTEMPTS: usize = 4;

/// How much one transaction takes at most. The first notification is always taken, whatever its
/// size (a lone notification of 2,300 alerts is its own batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bounds {
    notifications: usize,
    bytes: usize,
    alerts: usize,
}

const BOUNDS: Bounds = Bounds {
    notifications: 256,
    bytes: 4 << 20,
    alerts: 4096,
};

/// What a batch holds, or what one notification adds to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Load {
    notifications: usize,
    bytes: usize,
    alerts: usize,
}

impl Bounds {
    /// Whether `next` joins a batch that holds `taken`. Pure.
    fn admits(&self, taken: Load, next: Load) -> bool {
        taken.notifications == 0
            || (taken.notifications + next.notifications <= self.notifications
                && taken.bytes + next.bytes <= self.bytes
                && taken.alerts + next.alerts <= self.alerts)
    }
}

impl Load {
    fn plus(self, o: Load) -> Load {
        Load {
            notifications: self.notifications + o.notifications,
            bytes: self.bytes + o.bytes,
            alerts: self.alerts + o.alerts,
        }
    }
}

/// One queued notification with what its caller waits on.
struct Job {
    n: NotificationRecord,
    alerts: Vec<AlertRecord>,
    max_attempts: i64,
    reopen_window: Duration,
    notifiers: Vec<String>,
    reply: oneshot::Sender<Result<IngestReport, StoreError>>,
}

impl Job {
    fn load(&self) -> Load {
        Load {
            notifications: 1,
            bytes: self.n.body.len(),
            alerts: self.alerts.len(),
        }
    }

    /// The notification as the set-oriented planner reads it.
    fn notice(&self) -> Notice<'_> {
        Notice {
            n: &self.n,
            alerts: &self.alerts,
            opts: self.opts(),
        }
    }

    fn opts(&self) -> PlaceOptions<'_> {
        PlaceOptions {
            max_attempts: self.max_attempts,
            reopen_window: self.reopen_window,
            notifiers: &self.notifiers,
        }
    }
}

/// The receiving end, shared by the writers: one of them at a time takes a batch.
struct Queue {
    rx: mpsc::Receiver<Job>,
    /// A notification taken that did not fit the last batch: the first of the next one.
    carry: Option<Job>,
}

impl Queue {
    /// The next batch: the next notification (waiting for one), then whatever else is already
    /// queued while the bounds admit it. `None` once every sender is gone.
    async fn take(&mut self, bounds: Bounds) -> Option<Vec<Job>> {
        let mut batch = Vec::new();
        let mut load = Load::default();
        loop {
            let job = match self.carry.take() {
                Some(j) => j,
                None if batch.is_empty() => self.rx.recv().await?,
                None => match self.rx.try_recv() {
                    Ok(j) => j,
                    Err(_) => break,
                },
            };
            // Its caller stopped waiting (the webhook's deadline passed and it answered 503):
            // not stored; Alertmanager sends it again.
            if job.reply.is_closed() {
                continue;
            }
            let l = job.load();
            if !bounds.admits(load, l) {
                self.carry = Some(job);
                break;
            }
            load = load.plus(l);
            batch.push(job);
        }
        Some(batch)
    }
}

/// What one group commit did, for its observer (the webhook's metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchCommitted {
    /// Notifications stored.
    pub stored: usize,
    /// Why the batch ran one by one (`changed_meanwhile`: a write missed the row it was decided
    /// on; `refused`: the store refused some input), or `None` when the set path stored it.
    pub one_by_one: Option<&'static str>,
}

/// One answer per notification of a batch, in order.
type Answers = Vec<Result<IngestReport, StoreError>>;

/// A committed batch's answers and how it ran.
struct Committed {
    answers: Answers,
    one_by_one: Option<&'static str>,
    /// SQLite committed it at `synchronous=NORMAL`: its answers wait for the WAL flush
    /// (`wal_sync.rs`).
    unflushed: bool,
}

type Observer = Box<dyn Fn(BatchCommitted) + Send + Sync>;

struct Shared {
    queue: Mutex<Queue>,
    /// Told what each commit stored and how (the batch-size histogram, the fallback counter).
    observer: OnceLock<Observer>,
}

/// The queue and its writers, started by the first notification.
pub(super) struct GroupCommit {
    tx: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    writers: usize,
    started: OnceLock<()>,
    closed: AtomicBool,
}

impl GroupCommit {
    pub(super) fn new(backend: Backend) -> GroupCommit {
        let (tx, rx) = mpsc::channel(QUEUE);
        GroupCommit {
            tx,
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue { rx, carry: None }),
                observer: OnceLock::new(),
            }),
            writers: match backend {
                Backend::Sqlite => 1,
                Backend::Postgres => PG_WRITERS,
            },
            started: OnceLock::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// From now on a submitted notification is answered with an error at once (those already
    /// queued are answered by their batch: the closed pool makes it fail).
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store's ingest writer stopped before committing".into())
}

impl Store {
    /// Stores a notification and everything it causes, and answers only once the commit is durable
    /// (for SQLite: in the file still at the configured path). The notification joins the next
    /// group commit: one transaction with whatever else is queued, in its own savepoint.
    /// Takes the records by value: they move into the queue as they are (a deep copy per
    /// notification was measurable in the webhook's allocations).
    pub async fn ingest_notification(
        &self,
        n: NotificationRecord,
        alerts: Vec<AlertRecord>,
        opts: &PlaceOptions<'_>,
    ) -> Result<IngestReport, StoreError> {
        let g = &self.group;
        if g.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        g.started.get_or_init(|| {
            // SQLite files in WAL mode: batches commit at NORMAL and this task flushes the WAL.
            let flusher =
                (self.sqlite_path.is_some() && self.backend == Backend::Sqlite).then(|| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    tokio::spawn(flush(self.detached(), g.shared.clone(), rx));
                    tx
                });
            for _ in 0..g.writers {
                tokio::spawn(supervise(
                    self.detached(),
                    g.shared.clone(),
                    flusher.clone(),
                ));
            }
        });
        let (reply, answer) = oneshot::channel();
        let job = Job {
            n,
            alerts,
            max_attempts: opts.max_attempts,
            reopen_window: opts.reopen_window,
            notifiers: opts.notifiers.to_vec(),
            reply,
        };
        g.tx.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Calls `f` after each group commit that stored something.
    pub fn on_batch_commit(&self, f: impl Fn(BatchCommitted) + Send + Sync + 'static) {
        let _ = self.group.shared.observer.set(Box::new(f));
    }

    /// The same store for a writer task, without the queue's sending end: the writers end when
    /// the last `Store` holding it is dropped.
    fn detached(&self) -> Store {
        Store {
            pool: self.pool.clone(),
            backend: self.backend,
            health: self.health.clone(),
            sqlite_path: self.sqlite_path.clone(),
            lease_watermark: self.lease_watermark.clone(),
            group: Arc::new(GroupCommit::new(self.backend)),
            checkpointer: self.checkpointer.clone(),
            wal: self.wal.clone(),
        }
    }

    /// One batch, run again while PostgreSQL rolls it back for a lock race; then checked (the
    /// SQLite file) and noted (write health) once. One answer per notification, in order.
    async fn commit_batch(&self, jobs: &[Job], defer_flush: bool) -> Committed {
        let mut attempt = 1;
        let r = loop {
            match self.batch_tx(jobs, defer_flush).await {
                Err(StoreError::Conflict(e)) if attempt < ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "group commit rolled back by a lock race; running it again");
                    let pause = rand::random_range(1..=5u64) * attempt as u64;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    attempt += 1;
                }
                r => break r,
            }
        };
        let (r, one_by_one, unflushed) = match r {
            // Checked and noted after the flush.
            Ok((rs, how, true)) => {
                return Committed {
                    answers: rs,
                    one_by_one: how,
                    unflushed: true,
                };
            }
            Ok((rs, how, false)) => (Ok(rs), how, false),
            Err(e) => (Err(e), None, false),
        };
        let answers = match r {
            // Nothing stored (every notification refused): says nothing about the store's health.
            Ok(rs) if !rs.iter().any(Result::is_ok) => rs,
            r => match self.note_write(r.and_then(|rs| self.check_file().map(|()| rs))) {
                Ok(rs) => rs,
                Err(e) => vec![Err(e); jobs.len()],
            },
        };
        Committed {
            answers,
            one_by_one,
            unflushed,
        }
    }

    /// The batch's transaction: set-oriented first (a few statements for the whole batch,
    /// `ingest_batch.rs`); when that path gives the batch back (a write missed its row, or the
    /// store refused some input and it cannot tell whose), one by one. An error that blames the
    /// store fails the whole batch (returned as `Err`).
    /// When `defer_flush` (SQLite in WAL mode), the set path commits at `synchronous=NORMAL` and
    /// says so (the third value): the caller answers only after flushing the WAL.
    async fn batch_tx(
        &self,
        jobs: &[Job],
        defer_flush: bool,
    ) -> Result<(Answers, Option<&'static str>, bool), StoreError> {
        let notices: Vec<Notice<'_>> = jobs.iter().map(Job::notice).collect();
        let deferred = if defer_flush && self.wal.can_defer() {
            use sqlx::Connection;
            let mut conn = self.pool.acquire().await?;
            // Asked again now that the connection is this writer's: it may be a new one.
            if self.wal.can_defer() {
                // Held by this writer until the release hook sets the connection back to FULL.
                self.wal.relaxed.store(true, Ordering::Release);
                let tx = conn.begin_with("PRAGMA synchronous=NORMAL; BEGIN").await?;
                Some(self.set_then_commit(tx, &notices).await?)
            } else {
                None
            }
        } else {
            None
        };
        let set = match deferred {
            Some(set) => set.map(|reports| (reports, true)),
            None => {
                let mut tx = self.pool.begin().await?;
                if self.backend == Backend::Postgres {
                    locks::lock_keys(&mut tx, &job_keys(jobs)).await?;
                }
                let set = self.set_then_commit(tx, &notices).await?;
                set.map(|reports| (reports, false))
            }
        };
        let why = match set {
            Ok((reports, unflushed)) => {
                return Ok((reports.into_iter().map(Ok).collect(), None, unflushed));
            }
            Err(why) => why,
        };
        // One by one at FULL: rare (a write missed its row, or some input was refused).
        tracing::debug!(reason = %why, notifications = jobs.len(), "group commit runs one by one");
        let how = match why {
            SetError::Miss(_) => "changed_meanwhile",
            SetError::Store(_) => "refused",
        };
        let answers = self.batch_tx_one_by_one(jobs).await?;
        Ok((answers, Some(how), false))
    }

    /// The set path inside `tx`: committed (`Ok(Ok)`), given back for the one-by-one path and
    /// rolled back (`Ok(Err)`), or failed for the store's sake (`Err`, the transaction dropped).
    async fn set_then_commit(
        &self,
        mut tx: Transaction<'_, Any>,
        notices: &[Notice<'_>],
    ) -> Result<Result<Vec<IngestReport>, SetError>, StoreError> {
        match self.ingest_set(&mut tx, notices).await {
            Ok(reports) => {
                tx.commit().await?;
                Ok(Ok(reports))
            }
            Err(SetError::Store(e)) if e.is_transient() => Err(e),
            Err(why) => {
                tx.rollback().await?;
                Ok(Err(why))
            }
        }
    }

    /// The batch's transaction, one notification at a time, each in its own savepoint: an error
    /// that blames a notification's input rolls back its savepoint and is its answer.
    async fn batch_tx_one_by_one(
        &self,
        jobs: &[Job],
    ) -> Result<Vec<Result<IngestReport, StoreError>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            locks::lock_keys(&mut tx, &job_keys(jobs)).await?;
        }
        // A lone notification needs no savepoint: its refusal rolls back the transaction.
        let lone = jobs.len() == 1;
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            if !lone {
                run(&mut tx, "SAVEPOINT dw_notification").await?;
            }
            match self
                .ingest_in(&mut tx, &job.n, &job.alerts, &job.opts())
                .await
            {
                Ok(report) => {
                    if !lone {
                        run(&mut tx, "RELEASE SAVEPOINT dw_notification").await?;
                    }
                    out.push(Ok(report));
                }
                Err(e) if e.is_transient() => return Err(e),
                Err(e) if lone => {
                    tx.rollback().await?;
                    return Ok(vec![Err(e)]);
                }
                Err(e) => {
                    run(&mut tx, "ROLLBACK TO SAVEPOINT dw_notification").await?;
                    run(&mut tx, "RELEASE SAVEPOINT dw_notification").await?;
                    out.push(Err(e));
                }
            }
        }
        tx.commit().await?;
        Ok(out)
    }
}

async fn run(tx: &mut Transaction<'static, Any>, sql: &'static str) -> Result<(), StoreError> {
    sqlx::query(sql).execute(&mut **tx).await?;
    Ok(())
}

/// A batch writer: takes a batch, commits it, tells the observer, answers each caller (SQLite in
/// WAL mode: hands the batch to the flusher, which answers after the WAL is on disk).
async fn write(store: Store, shared: Arc<Shared>, flusher: Option<Flusher>) {
    loop {
        let batch = shared.queue.lock().await.take(BOUNDS).await;
        let Some(jobs) = batch else {
            return;
        };
        let committed = store.commit_batch(&jobs, flusher.is_some()).await;
        if committed.unflushed
            && let Some(f) = &flusher
        {
            if let Err(mpsc::error::SendError(u)) = f.send(Unflushed { jobs, committed }) {
                // The flusher is gone (it panicked): nothing will say this batch or a later one is
                // on disk, and readiness must say so.
                let e = store
                    .lose_wal("the flushing task stopped")
                    .err()
                    .unwrap_or_else(stopped);
                let n = u.jobs.len();
                answer(&shared, u.jobs, vec![Err(e); n], None);
            }
            continue;
        }
        answer(&shared, jobs, committed.answers, committed.one_by_one);
    }
}

/// A batch committed but not yet flushed, with the callers it answers once it is.
struct Unflushed {
    jobs: Vec<Job>,
    committed: Committed,
}

/// Where a writer hands its unflushed batches.
type Flusher = mpsc::UnboundedSender<Unflushed>;

/// SQLite: flushes the WAL for every batch committed since the last flush, then answers them
/// (`wal_sync.rs`). Ends when the writers are gone.
async fn flush(store: Store, shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Unflushed>) {
    while let Some(first) = rx.recv().await {
        let mut due = vec![first];
        while let Ok(u) = rx.try_recv() {
            due.push(u);
        }
        let r = store.note_write(store.flush_wal().await.and_then(|()| store.check_file()));
        for u in due {
            let answers = match &r {
                Ok(()) => u.committed.answers,
                Err(e) => vec![Err(e.clone()); u.jobs.len()],
            };
            answer(&shared, u.jobs, answers, u.committed.one_by_one);
        }
    }
}

/// Tells the observer what a batch stored, then answers each caller.
fn answer(shared: &Shared, jobs: Vec<Job>, answers: Answers, one_by_one: Option<&'static str>) {
    let stored = answers.iter().filter(|a| a.is_ok()).count();
    if stored > 0
        && let Some(f) = shared.observer.get()
    {
        f(BatchCommitted { stored, one_by_one });
    }
    for (job, answer) in jobs.into_iter().zip(answers) {
        // A caller that stopped waiting is not there to answer.
        let _ = job.reply.send(answer);
    }
}

/// Keeps a writer running: a panic answers its batch's callers with an error (their replies are
/// dropped) and starts the writer again on the same queue; it ends when the queue is gone.
async fn supervise(store: Store, shared: Arc<Shared>, flusher: Option<Flusher>) {
    loop {
        match tokio::spawn(write(store.clone(), shared.clone(), flusher.clone())).await {
            Err(e) if e.is_panic() => {
                tracing::error!(
                    "a webhook batch writer panicked; its batch was answered with an error; starting it again"
                );
            }
            _ => return,
        }
    }
}

mod locks;

/// Every advisory-lock key of a batch's notifications, sorted, once each.
fn job_keys(jobs: &[Job]) -> Vec<i64> {
    locks::batch_keys(jobs.iter().map(|j| (&j.n, j.alerts.as_slice())))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod equivalence;
