//! Write health: whether the store can still commit, as `/health/ready` reports it.
//!
//! A store that answers `SELECT 1` may still be unable to write (disk full, read-only file system,
//! the SQLite file deleted under a running process). Writers report each failure and each commit
//! here; while the last write failed, readiness asks for a small probe write so recovery is noticed
//! without waiting for the next webhook.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use super::{Store, StoreError, now_ms};

#[derive(Debug, Default)]
pub(super) struct WriteHealth {
    /// The last write error, cleared by the next successful commit.
    failing: Mutex<Option<String>>,
    /// The SQLite file and its inode when first seen, to notice it being deleted or replaced.
    file: OnceLock<(PathBuf, u64)>,
    /// Set by a failed write: the next acquire replaces the pooled connection, which may have been
    /// opened read-only (SQLite falls back to read-only when the file is not writable) and would
    /// otherwise keep failing after the file system is writable again.
    recycle: AtomicBool,
    /// Once the file was seen deleted or replaced, it stays so until restart: a new connection would
    /// create an empty database at the path (and the inode number may even be reused).
    file_lost: Mutex<Option<String>>,
}

impl WriteHealth {
    /// For the pool's `before_acquire`: whether a pooled connection may be reused.
    pub(super) fn reuse_connection(&self) -> bool {
        if self.lost().is_some() {
            return true;
        }
        !self.recycle.swap(false, Ordering::AcqRel)
    }

    /// From now until restart, every write is answered with `why` (see `file_lost`).
    pub(super) fn lose(&self, why: String) {
        *self.file_lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    fn lost(&self) -> Option<String> {
        self.file_lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, v: Option<String>) {
        if v.is_some() {
            self.recycle.store(true, Ordering::Release);
        }
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = v;
    }

    fn get(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The file behind a `sqlite:` URL, if it names one.
pub(super) fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path.starts_with(":memory:") {
        return None;
    }
    Some(PathBuf::from(path))
}

#[cfg(unix)]
fn inode(p: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| m.ino())
}

#[cfg(not(unix))]
fn inode(p: &std::path::Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|_| 0)
}

impl Store {
    /// Records the outcome of a write transaction; returns the result unchanged.
    pub(super) fn note_write<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        match &r {
            Ok(_) => self.health.set(None),
            Err(e) if e.is_transient() => self.health.set(Some(e.to_string())),
            // Input the store refused says nothing about the store's health.
            Err(_) => {}
        }
        r
    }

    /// Fails when the SQLite file this process writes to is no longer the one at its path: commits
    /// would land in a deleted inode and vanish at the next restart.
    pub fn check_file(&self) -> Result<(), StoreError> {
        let Some(path) = &self.sqlite_path else {
            return Ok(());
        };
        if let Some(lost) = self.health.lost() {
            return Err(StoreError::Unavailable(lost));
        }
        let now = inode(path);
        let first = match (self.health.file.get(), now) {
            (Some(f), _) => f.1,
            (None, Some(ino)) => self.health.file.get_or_init(|| (path.clone(), ino)).1,
            (None, None) => return Ok(()),
        };
        let lost = match now {
            Some(ino) if ino == first => return Ok(()),
            Some(_) => format!(
                "the database file {} was replaced while deploywatch was running; restart it",
                path.display()
            ),
            None => format!(
                "the database file {} was deleted while deploywatch was running; restore it and restart",
                path.display()
            ),
        };
        self.health.lose(lost.clone());
        Err(StoreError::Unavailable(lost))
    }

    /// Why the store cannot take writes now, if it cannot. While the last write failed this makes a
    /// probe write (one row, one commit) so a recovered disk is noticed.
    pub async fn write_problem(&self) -> Option<String> {
        if let Err(e) = self.check_file() {
            return Some(e.to_string());
        }
        self.health.get()?;
        let probe = sqlx::query(
            "INSERT INTO write_probe (id, at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
        )
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(StoreError::from);
        self.note_write(probe).err().map(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_from_urls() {
        assert_eq!(
            sqlite_path("sqlite:///tmp/a.db?mode=rwc"),
            Some(PathBuf::from("/tmp/a.db"))
        );
        assert_eq!(sqlite_path("sqlite://x.db"), Some(PathBuf::from("x.db")));
        assert_eq!(sqlite_path("sqlite:x.db"), Some(PathBuf::from("x.db")));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }
}
