//! The embedded database's file: where it is, whether it exists yet, and the lock that keeps a
//! second `serve` off it (two processes on one SQLite file would each poll, sweep and deliver, and
//! fight over the single writer).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The file a `sqlite:` URL names, or `None` for another backend or an in-memory database. Pure.
pub fn path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let file = rest.split('?').next().unwrap_or("");
    if file.is_empty() || file == ":memory:" || url.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(file))
}

/// Held for the life of a `serve`: an exclusive advisory lock on `<database>.lock`, which names
/// the holder's PID. Released by the OS when the process ends, even on `kill -9`.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another deploywatch process ({holder}) is already serving from {db}; two processes on one \
         SQLite file would both poll and deliver. Stop it, or give this one its own database with \
         DEPLOYWATCH_DATABASE_URL (several replicas share a postgres:// database)"
    )]
    Held { db: String, holder: String },
    #[error("cannot create the lock file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Takes the lock next to `db`, or says who holds it.
pub fn lock(db: &Path) -> Result<InstanceLock, LockError> {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let io = |source| LockError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(io)?;
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            writeln!(file, "pid {}", std::process::id()).map_err(io)?;
            Ok(InstanceLock { _file: file, path })
        }
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            Err(LockError::Held {
                db: db.display().to_string(),
                holder: if holder.is_empty() {
                    "pid unknown".into()
                } else {
                    holder.to_string()
                },
            })
        }
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        let table = [
            ("sqlite://deploywatch.db", Some("deploywatch.db")),
            ("sqlite:deploywatch.db", Some("deploywatch.db")),
            (
                "sqlite:///var/lib/dw/dw.db?mode=rwc",
                Some("/var/lib/dw/dw.db"),
            ),
            ("sqlite::memory:", None),
            ("sqlite://x.db?mode=memory", None),
            ("postgres://u@h/db", None),
        ];
        for (url, want) in table {
            assert_eq!(path(url), want.map(PathBuf::from), "{url}");
        }
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = dir.path().join("dw.db");
        let first = lock(&db).expect("first");
        match lock(&db) {
            Err(LockError::Held { holder, .. }) => {
                assert_eq!(holder, format!("pid {}", std::process::id()));
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        assert!(lock(&db).is_ok(), "released when the holder goes");
    }
}
