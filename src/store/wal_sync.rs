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
//! - The WAL file is opened when the pooled connection is (`pool.rs`, `after_connect`, from the
//!   path SQLite reports) and held: a descriptor opened later may not be told of a write-back
//!   error another descriptor already saw. A new connection holds its own.
//! - A failed flush (or a held WAL that is no longer the file at its path) leaves it unknown what
//!   reached the disk: the store is marked lost, like a replaced database file, and answers 503
//!   until restarted; SQLite replays what the disk holds at the next start, and Alertmanager
//!   resends what was not acknowledged. A flush is not retried: after a failed `fsync` the kernel
//!   may already have dropped the pages it could not write. Known false alarm: the pooled
//!   connection closed for an error while no other connection is open (SQLite then checkpoints
//!   and deletes the WAL) before the flush of a batch it committed.
//! - Readers on the same file may see a batch's rows a few milliseconds before its flush. A power
//!   cut in that window loses only notifications that were never acknowledged.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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
    /// The WAL file of the pooled connection, opened when that connection was (before any commit
    /// through it): Linux reports a failed write-back to every descriptor open at the time, but
    /// not to one opened after another descriptor has already seen the error.
    held: Mutex<Option<File>>,
}

impl WalSync {
    /// Whether a group commit may commit at NORMAL and flush afterwards: the pooled connection is
    /// in WAL mode and its WAL file is held. Read after acquiring it (a new connection may have
    /// come back in another mode).
    pub(super) fn can_defer(&self) -> bool {
        self.wal_mode.load(Ordering::Acquire) && self.slot().is_some()
    }

    /// For the pool's `after_connect`: holds the WAL file beside `db` (the file SQLite opened),
    /// or nothing when it cannot be opened (then batches commit at FULL).
    pub(super) fn hold(&self, db: Option<&Path>) {
        let f = db.and_then(|db| File::open(wal_file(db)).ok());
        *self.slot() = f;
    }

    /// A descriptor of the held WAL for a flush on another thread.
    fn held_file(&self) -> Option<File> {
        self.slot().as_ref().and_then(|f| f.try_clone().ok())
    }

    /// The held WAL; a panic elsewhere while holding the lock leaves the slot itself whole.
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<File>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The WAL file SQLite keeps beside `db`.
pub(super) fn wal_file(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_os_string();
    p.push("-wal");
    PathBuf::from(p)
}

/// `fdatasync` of the held WAL, then whether it is still the file at its path: a WAL deleted or
/// replaced under the running server is one SQLite writes on into, and loses at the next start.
fn flush_held(f: &File) -> std::io::Result<()> {
    f.sync_data()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if f.metadata()?.nlink() == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the WAL file was deleted or replaced while deploywatch was running",
            ));
        }
    }
    Ok(())
}

impl Store {
    /// Flushes the SQLite WAL file to disk (`fdatasync`); everything committed before this call is
    /// then durable. A failure marks the store lost (see the module's comment).
    pub(super) async fn flush_wal(&self) -> Result<(), StoreError> {
        let Some(f) = self.wal.held_file() else {
            return self.lose_wal("no WAL file is held open");
        };
        let r = tokio::task::spawn_blocking(move || flush_held(&f)).await;
        let why = match r {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("the flushing thread failed: {e}"),
        };
        self.lose_wal(&why)
    }

    /// Marks the store lost because the WAL could not be flushed.
    pub(super) fn lose_wal(&self, why: &str) -> Result<(), StoreError> {
        let wal = self
            .sqlite_path
            .as_deref()
            .map(wal_file)
            .unwrap_or_default();
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
