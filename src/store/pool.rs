//! The connection pool: sqlx's pool with deploywatch's hooks and each backend's settings.
//!
//! A connection whose transaction was not closed (a failed COMMIT, a ROLLBACK that failed after
//! SQLite rolled back on its own, e.g. on SQLITE_FULL) must never serve another request: its next
//! BEGIN would become a SAVEPOINT inside a transaction that is never committed. The release hook
//! closes it; before the check, a ping flushes a rollback queued by a dropped transaction.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use super::Backend;
use super::checkpointer::{self, Checkpointer};
use super::health::WriteHealth;
use super::wal_sync::WalSync;

/// The pool for `backend`, connecting lazily (the first statement reports reachability).
pub(super) fn build(
    backend: Backend,
    opts: AnyConnectOptions,
    acquire_timeout: Duration,
    health: Arc<WriteHealth>,
    checkpointer: Option<Arc<Checkpointer>>,
    wal: Arc<WalSync>,
) -> AnyPool {
    let released_wal = wal.clone();
    let background_checkpoints = checkpointer.is_some();
    let released = checkpointer;
    let pool_opts = AnyPoolOptions::new()
        .acquire_timeout(acquire_timeout)
        // sqlx pings an idle connection before handing it out, and again on every release
        // (that one cannot be turned off): each statement paid two extra round trips. The
        // release ping already proves a connection sound as it goes back to the pool; one that
        // breaks while idle (a restarted server) fails its next statement, which answers 503
        // (retried), and is discarded at its release.
        .test_before_acquire(false)
        .before_acquire(move |_, _| {
            let reuse = health.reuse_connection();
            Box::pin(async move { Ok(reuse) })
        })
        .after_release(move |conn, _| {
            if let Some(c) = &released {
                c.poke();
            }
            // The group commit ran this connection at synchronous=NORMAL (`wal_sync.rs`): it
            // goes back to the pool at FULL, or not at all.
            let restore = released_wal.relaxed.swap(false, Ordering::AcqRel);
            Box::pin(async move {
                use sqlx::Connection;
                // A transaction that ended (committed or rolled back) leaves nothing behind.
                // One that was dropped, or whose COMMIT failed, still counts as open until
                // its queued rollback runs: only then is the round trip needed, to flush it
                // and see whether the connection came out of the transaction.
                if conn.is_in_transaction() {
                    conn.ping().await?;
                    if conn.is_in_transaction() {
                        return Ok(false);
                    }
                }
                if restore {
                    conn.execute("PRAGMA synchronous=FULL").await?;
                }
                Ok(true)
            })
        });
    match backend {
        // SQLite allows one writer; a single connection serialises writers without SQLITE_BUSY
        // upgrade deadlocks. WAL + synchronous=FULL: an acknowledged commit survives power loss.
        Backend::Sqlite => pool_opts
            .max_connections(1)
            .after_connect(move |conn, _| {
                let wal = wal.clone();
                Box::pin(async move {
                    if background_checkpoints {
                        conn.execute(sqlx::AssertSqlSafe(format!(
                            "PRAGMA wal_autocheckpoint={}",
                            checkpointer::BACKSTOP_PAGES
                        )))
                        .await?;
                    }
                    // SQLite answers with the mode it is in: a file system without shared
                    // memory keeps a rollback journal, and then the group commit flushes in
                    // its COMMIT like every other write.
                    let mode: String = sqlx::query_scalar("PRAGMA journal_mode=WAL")
                        .fetch_one(&mut *conn)
                        .await?;
                    let in_wal = mode.eq_ignore_ascii_case("wal");
                    wal.wal_mode.store(in_wal, Ordering::Release);
                    // The file SQLite opened (percent-decoding and symlinks resolved), not the
                    // URL's spelling of it; empty for an in-memory database.
                    let file: Option<String> = if in_wal {
                        sqlx::query_scalar(
                            "SELECT file FROM pragma_database_list WHERE name = 'main'",
                        )
                        .fetch_optional(&mut *conn)
                        .await?
                    } else {
                        None
                    };
                    wal.hold(
                        file.as_deref()
                            .filter(|f| !f.is_empty())
                            .map(std::path::Path::new),
                    );
                    conn.execute("PRAGMA synchronous=FULL").await?;
                    conn.execute("PRAGMA busy_timeout=5000").await?;
                    conn.execute("PRAGMA foreign_keys=ON").await?;
                    // Statement journals (a multi-row statement inside a transaction keeps
                    // one, to undo itself alone) in memory: spilled, each was a temp file
                    // created, written and closed per batch statement.
                    conn.execute("PRAGMA temp_store=MEMORY").await?;
                    Ok(())
                })
            })
            .connect_lazy_with(opts),
        Backend::Postgres => pool_opts
            .max_connections(16)
            .min_connections(0)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // A statement that hangs must not hold a webhook request past its deadline.
                    conn.execute("SET statement_timeout = 10000").await?;
                    Ok(())
                })
            })
            .connect_lazy_with(opts),
    }
}
