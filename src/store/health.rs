//! Write health: whether the store can still commit, as `/health/ready` reports it.
//!
//! A store that answers `SELECT 1` may still be unable to write (disk full, read-only file system,
//! the SQLite file deleted under a running process). Writers report each failure and each commit
//! here; while the last write failed, readiness asks for a small probe write so recovery is noticed
//! without waiting for the next webhook.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use super::{Store, StoreError, now_ms};

#[derive(Debug, Default)]
pub(super) struct WriteHealth {
    /// The last write error, cleared by the next successful commit.
    failing: Mutex<Option<String>>,
    /// The SQLite file and its inode when first seen, to notice it being deleted or replaced.
    file: OnceLock<(PathBuf, u64)>,
}

impl WriteHealth {
    fn set(&self, v: Option<String>) {
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
        let now = inode(path);
        let first = match (self.health.file.get(), now) {
            (Some(f), _) => f.1,
            (None, Some(ino)) => self.health.file.get_or_init(|| (path.clone(), ino)).1,
            (None, None) => return Ok(()),
        };
        match now {
            Some(ino) if ino == first => Ok(()),
            Some(_) => Err(StoreError::Unavailable(format!(
                "the database file {} was replaced while deploywatch was running; restart it",
                path.display()
            ))),
            None => Err(StoreError::Unavailable(format!(
                "the database file {} was deleted while deploywatch was running; restore it or restart",
                path.display()
            ))),
        }
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
