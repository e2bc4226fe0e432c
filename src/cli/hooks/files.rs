//! The files under `.git/deploywatch/` and the processes they name: per commit a status file
//! (`<sha>.json`), a log (`<sha>.log`), and while a watcher runs a PID file (`<sha>.pid`) and a
//! lock (`<sha>.lock`); the pre-push hook's records of pushes under `pending/`. Written whole
//! (temporary file + rename) so a reader never sees half a file.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::Utc;

use super::plan::{Proc, Pushed, WatchStatus};

/// `.git/deploywatch/` of one repository.
#[derive(Debug, Clone)]
pub struct StateDir(pub PathBuf);

impl StateDir {
    pub fn status(&self, sha: &str) -> PathBuf {
        self.0.join(format!("{sha}.json"))
    }
    pub fn log(&self, sha: &str) -> PathBuf {
        self.0.join(format!("{sha}.log"))
    }
    pub fn pid(&self, sha: &str) -> PathBuf {
        self.0.join(format!("{sha}.pid"))
    }
    pub fn lock(&self, sha: &str) -> PathBuf {
        self.0.join(format!("{sha}.lock"))
    }
    pub fn pending_dir(&self) -> PathBuf {
        self.0.join("pending")
    }

    pub fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(self.pending_dir())
    }

    /// Every status file that parses, with its commit; others are skipped (and named).
    pub fn statuses(&self) -> Vec<(PathBuf, Result<WatchStatus, String>)> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.0) else {
            return out;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let parsed = std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<WatchStatus>(&b).map_err(|e| e.to_string()))
                .and_then(|s| {
                    // The commit names files next to it: only a SHA may.
                    if is_sha(&s.commit) {
                        Ok(s)
                    } else {
                        Err(format!(
                            "its commit {:?} is not a SHA",
                            crate::terminal::clean(&s.commit)
                        ))
                    }
                });
            out.push((p, parsed));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn write_status(&self, s: &WatchStatus) -> std::io::Result<()> {
        let body = serde_json::to_vec_pretty(s).map_err(std::io::Error::other)?;
        write_atomic(&self.status(&s.commit), &body)
    }

    /// Records a push for the reference-transaction hook (one file per push, so two hooks
    /// running at once never rewrite each other's records).
    pub fn record_push(&self, p: &Pushed) -> std::io::Result<()> {
        use sha2::Digest;
        let key = sha2::Sha256::digest(format!("{}\0{}\0{}", p.remote, p.branch, p.sha));
        let name: String = key.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let body = serde_json::to_vec(p).map_err(std::io::Error::other)?;
        write_atomic(&self.pending_dir().join(format!("{name}.json")), &body)
    }

    pub fn pending(&self) -> Vec<(PathBuf, Pushed)> {
        let Ok(rd) = std::fs::read_dir(self.pending_dir()) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let p = e.path();
                let b = std::fs::read(&p).ok()?;
                Some((p, serde_json::from_slice::<Pushed>(&b).ok()?))
            })
            .collect()
    }
}

pub fn is_sha(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
}

pub fn write_atomic(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)
}

/// The PID a PID file or lock holds (first token).
pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn age(path: &Path) -> Duration {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default()
}

/// Whether `pid` is a live deploywatch process working for commit `sha` (a watcher, or the hook
/// that is starting one). Reads `/proc`; a zombie is gone. Elsewhere than Linux every PID reads
/// as gone, so locks are taken over and `hooks stop` refuses to signal.
pub fn proc_state(pid: u32, sha: &str) -> Proc {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let Ok(cmdline) = std::fs::read(base.join("cmdline")) else {
        return Proc::Gone;
    };
    if let Ok(stat) = std::fs::read_to_string(base.join("stat"))
        && let Some((_, rest)) = stat.rsplit_once(')')
        && rest.trim_start().starts_with(['Z', 'X'])
    {
        return Proc::Gone;
    }
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let deploywatch = args.iter().take(3).any(|a| a.contains("deploywatch"));
    let for_us = args.iter().any(|a| a == sha) || args.iter().any(|a| a == "reference-transaction");
    if deploywatch && for_us {
        Proc::Ours
    } else {
        Proc::NotOurs
    }
}

pub fn now() -> chrono::DateTime<Utc> {
    Utc::now()
}
