//! SQLite: the webhook's group commits flush the WAL off the writer's path.
//!
//! With `synchronous=FULL` a COMMIT writes the batch's pages to the `-wal` file and then waits
//! for `fdatasync`, and the single writer waits with it: on the session 10 machine that flush was
//! 5 to 8 ms of a 14 ms batch (docs/BENCHMARKS.md, "Webhook ingest"). Here a group-commit batch
//! commits with `synchronous=NORMAL` (the pages are written to the WAL, not yet flushed), hands
//! its answers to a flusher task, and the writer goes on with the next batch. The flusher runs
//! `fdatasync` on the WAL file and only then answers the batch's callers: one flush covers every
//! batch committed before it, and nothing is acknowledged before it is on disk.
//!
//! - Only the group commit runs at NORMAL. It raises [`WalSync::relaxed`] while it holds the one
//!   pooled connection, and the pool's release hook sets the connection back to FULL before anyone
//!   else can acquire it (or closes it when that fails): every other write still flushes in its
//!   own COMMIT.
//! - Only in WAL mode ([`WalSync::wal_mode`], read from SQLite's answer when a connection opens):
//!   in rollback-journal mode NORMAL could leave a damaged file after a power cut, so there the
//!   batch commits at FULL.
//! - A failed flush (or a WAL file that is gone) leaves it unknown what reached the disk: the
//!   store is marked lost, like a replaced database file, and answers 503 until restarted; SQLite
//!   replays what the disk holds at the next start, and Alertmanager resends what was not
//!   acknowledged. A flush is not retried: after a failed `fsync` the kernel may already have
//!   dropped the pages it could not write.
//! - Readers on the same file may see a batch's rows a few milliseconds before its flush. A power
//!   cut in that window loses only notifications that were never acknowledged.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Store, StoreError};

/// What the pool and the group commit share about the SQLite connection's durability setting.
#[derive(Debug, Default)]
pub(super) struct WalSync {
    /// The last connection opened is in WAL mode.
    pub wal_mode: AtomicBool,
    /// The pooled connection was set to `synchronous=NORMAL` by the group commit: its release
    /// sets it back to FULL.
    pub relaxed: AtomicBool,
}

impl WalSync {
    /// Whether a group commit may commit at NORMAL and flush afterwards.
    pub(super) fn can_defer(&self) -> bool {
        self.wal_mode.load(Ordering::Acquire)
    }
}

/// The WAL file SQLite keeps beside `db`.
pub(super) fn wal_file(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_os_string();
    p.push("-wal");
    PathBuf::from(p)
}

impl Store {
    /// Flushes the SQLite WAL file to disk (`fdatasync`); everything committed before this call is
    /// then durable. A failure marks the store lost (see the module's comment).
    pub(super) async fn flush_wal(&self) -> Result<(), StoreError> {
        let Some(db) = &self.sqlite_path else {
            return Ok(());
        };
        let wal = wal_file(db);
        let path = wal.clone();
        let r = tokio::task::spawn_blocking(move || {
            std::fs::File::open(&path).and_then(|f| f.sync_data())
        })
        .await;
        let why = match r {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("the flushing thread failed: {e}"),
        };
        let lost = format!(
            "flushing the SQLite WAL {} to disk failed ({why}); what was committed since the last flush may not be on disk; restart deploywatch (Alertmanager resends what was not acknowledged)",
            wal.display()
        );
        self.health.lose(lost.clone());
        Err(StoreError::Unavailable(lost))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wal_file_is_the_database_path_with_a_wal_suffix() {
        for (db, wal) in [
            ("dw.db", "dw.db-wal"),
            (
                "/var/lib/deploywatch/state.sqlite",
                "/var/lib/deploywatch/state.sqlite-wal",
            ),
            ("dir with space/x", "dir with space/x-wal"),
        ] {
            assert_eq!(wal_file(Path::new(db)), PathBuf::from(wal));
        }
    }
}
