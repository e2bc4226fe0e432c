//! SQLite's WAL checkpoints, off the commit path.
//!
//! In WAL mode a commit appends its pages to the `-wal` file; a checkpoint copies them back into
//! the database file so that the WAL can start over. By default SQLite runs the checkpoint inside
//! the commit that takes the WAL past 1,000 pages, so about one webhook group commit in twenty-five
//! also copied every other batch's pages and synced the database file while its notifications
//! (and the next batch) waited: measured, about half of the average commit's time
//! (docs/BENCHMARKS.md, "Webhook ingest").
//!
//! Here a task with a connection of its own runs a PASSIVE checkpoint (it never blocks the writer,
//! which keeps appending meanwhile) at most once per [`PERIOD`] while commits happen. The writer's
//! own automatic checkpoint stays, at [`BACKSTOP_PAGES`], for when this task falls behind or
//! cannot open its connection: the WAL stays bounded either way.
//!
//! A failed checkpoint (disk full, read-only file) loses nothing: every acknowledged commit is
//! already durable in the WAL, and the pages are copied at a later attempt. The connection is
//! closed after [`IDLE`] without commits, so an idle server holds its one connection only.

use std::sync::Mutex;
use std::time::Duration;

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, ConnectOptions, Connection, Executor};
use tokio::sync::mpsc;

/// At most one checkpoint per this while commits keep coming: each copies what several commits
/// appended.
pub(super) const PERIOD: Duration = Duration::from_millis(100);
/// The writer's own automatic checkpoint: only when the WAL holds this many pages (16 MiB of 4 KiB
/// pages), that is when this task is behind.
pub(super) const BACKSTOP_PAGES: u32 = 4000;
/// Without a commit for this long the task closes its connection (and sqlx's thread for it).
const IDLE: Duration = Duration::from_secs(30);

/// Told of every release of the store's connection; checkpoints in the background.
pub(super) struct Checkpointer {
    poke: Mutex<Option<mpsc::Sender<()>>>,
}

impl Checkpointer {
    /// Starts the task (it opens no connection before the first [`Checkpointer::poke`]). Call
    /// inside the runtime.
    pub(super) fn start(opts: AnyConnectOptions) -> Checkpointer {
        // One pending poke is all the task needs to know: "something was written since".
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(run(opts, rx));
        Checkpointer {
            poke: Mutex::new(Some(tx)),
        }
    }

    /// Something may have been committed: a checkpoint is due within [`PERIOD`]. Never waits.
    pub(super) fn poke(&self) {
        if let Ok(g) = self.poke.lock()
            && let Some(tx) = g.as_ref()
        {
            let _ = tx.try_send(());
        }
    }

    /// Ends the task (after the checkpoint it may be running).
    pub(super) fn close(&self) {
        if let Ok(mut g) = self.poke.lock() {
            g.take();
        }
    }
}

async fn run(opts: AnyConnectOptions, mut pokes: mpsc::Receiver<()>) {
    let mut conn: Option<AnyConnection> = None;
    // Logged once per run of failures, not once per attempt.
    let mut failing = false;
    loop {
        let poked = match conn {
            Some(_) => tokio::time::timeout(IDLE, pokes.recv()).await,
            None => Ok(pokes.recv().await),
        };
        match poked {
            Ok(Some(())) => {}
            // The store is closed.
            Ok(None) => break,
            Err(_idle) => {
                if let Some(c) = conn.take() {
                    let _ = c.close().await;
                }
                continue;
            }
        }
        tokio::time::sleep(PERIOD).await;
        // What was committed while this task slept is in the WAL now: this checkpoint copies it.
        while pokes.try_recv().is_ok() {}
        let result = match conn.as_mut() {
            Some(c) => checkpoint(c).await,
            None => match opts.connect().await {
                Ok(mut c) => {
                    let r = checkpoint(&mut c).await;
                    conn = Some(c);
                    r
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("SQLite background checkpoints work again");
            }
            Ok(()) => {}
            Err(e) => {
                if !failing {
                    failing = true;
                    tracing::warn!(
                        error = %crate::store::redact(&e.to_string()),
                        "SQLite background checkpoint failed; committed data stays in the WAL and is copied at a later attempt"
                    );
                }
                // A fresh connection next time, in case this one is the problem.
                conn = None;
            }
        }
    }
    if let Some(c) = conn {
        let _ = c.close().await;
    }
}

async fn checkpoint(c: &mut AnyConnection) -> Result<(), sqlx::Error> {
    c.execute("PRAGMA wal_checkpoint(PASSIVE)")
        .await
        .map(|_| ())
}
