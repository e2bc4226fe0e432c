//! Git refs: each configured repository (a local path or a remote URL) is kept in a bare mirror
//! under `git.mirror_dir` and fetched on an interval by the `git` program. From the mirror: each
//! tracked branch's head commit and time, its ahead/behind against its upstream
//! (`refs/remotes/origin/<b>`, present when the configured repository is a clone), and, joined with
//! the DigitalOcean source through `source_commit_hash`, how far the ACTIVE deployment is behind its
//! branch.
//!
//! The `git` program rather than a Git library: a library (gix) was a third of the release build's
//! dependency graph and on its critical path (docs/BENCHMARKS.md, "Release build"), while `git` is
//! on every machine that has a repository to watch and brings the user's own credential helpers and
//! SSH set-up for free. Every call is bounded: no prompt, no pager, a stalled transfer aborts.

pub mod ancestry;
mod command;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::app::App;
use crate::config::GitRepo;

use crate::domain::git::{BranchView, Drift, GitSnapshot, RepoView};
use command::Mirror;
pub use command::{GitError, version};

/// Where a repository's mirror lives. The name is a validated label, so it is a safe file name.
pub fn mirror_path(dir: &Path, repo: &GitRepo) -> PathBuf {
    dir.join(format!("{}.git", repo.name.as_str()))
}

/// Creates the mirror if needed and fetches every branch (and, from a clone, its remote-tracking
/// refs) into it. Blocking: call from `spawn_blocking`.
pub fn fetch_mirror(mirror: &Path, url: &str) -> Result<(), GitError> {
    let m = Mirror::new(mirror);
    if !mirror.join("HEAD").exists() {
        std::fs::create_dir_all(mirror).map_err(|e| {
            GitError::Git(format!(
                "cannot create the mirror directory {}: {e}; check git.mirror_dir",
                mirror.display()
            ))
        })?;
        m.run(&["init", "--bare", "--quiet"])?;
    }
    m.fetch(url)
}

/// Reads branch heads and ahead/behind from a mirror. Blocking.
pub fn read_branches(mirror: &Path, branches: &[String]) -> Result<Vec<BranchView>, GitError> {
    let m = Mirror::new(mirror);
    let refs = m.refs()?;
    let mut out = Vec::new();
    for b in branches {
        let local = refs.get(&format!("refs/heads/{b}"));
        let upstream = refs.get(&format!("refs/remotes/origin/{b}"));
        let Some(head) = local.or(upstream) else {
            continue;
        };
        let (ahead, behind) = match (local, upstream) {
            (Some(l), Some(u)) => {
                let (a, b) = m.ahead_behind(&l.id, &u.id)?;
                (Some(a), Some(b))
            }
            _ => (None, None),
        };
        out.push(BranchView {
            branch: b.clone(),
            commit: head.id.clone(),
            commit_time: head.time.unwrap_or_default(),
            ahead,
            behind,
        });
    }
    Ok(out)
}

/// How far `deployed` is behind `head` in a mirror. Blocking.
pub fn drift(
    mirror: &Path,
    head: &str,
    deployed: &str,
) -> Result<(Option<usize>, Option<DateTime<Utc>>), GitError> {
    let m = Mirror::new(mirror);
    let Some(head_id) = m.resolve_commit(head)? else {
        return Err(GitError::Git(format!(
            "head {head} is not a commit of the mirror"
        )));
    };
    let Some(dep_id) = m.resolve_commit(deployed)? else {
        return Ok((None, None));
    };
    // The deployed commit must be an ancestor of the head, else "behind" has no meaning.
    if !m.is_ancestor(&dep_id, &head_id)? {
        return Ok((None, None));
    }
    let times = m.commit_times_between(&dep_id, &head_id)?;
    let oldest = times.iter().flatten().min().copied();
    Ok((Some(times.len()), oldest))
}

/// The commit time of `sha` in the repository configured for `app`, for DORA lead time.
pub async fn commit_time_for_app(app: &App, app_name: &str, sha: &str) -> Option<DateTime<Utc>> {
    let repo = app
        .config
        .git
        .repos
        .iter()
        .find(|r| r.app.as_ref().map(|a| a.as_str()) == Some(app_name))?;
    let mirror = mirror_path(&app.config.git.mirror_dir, repo);
    let sha = sha.to_string();
    tokio::task::spawn_blocking(move || Mirror::new(&mirror).commit_time(&sha).ok().flatten())
        .await
        .ok()
        .flatten()
}

/// One refresh of every repository: fetch, read, join with the DigitalOcean snapshot, export.
pub async fn refresh(app: &App, exported: &mut HashSet<(String, String, String)>) -> bool {
    let cfg = &app.config.git;
    let mut repos = Vec::new();
    let mut all_ok = true;
    let snapshot = app.do_snapshot();
    let mut drifts = BTreeMap::new();
    let mut info_now = HashSet::new();
    let m = &app.metrics;
    for r in &cfg.repos {
        let mirror = mirror_path(&cfg.mirror_dir, r);
        let (url, branches) = (r.url.clone(), r.branches.clone());
        let mirror2 = mirror.clone();
        let res = tokio::task::spawn_blocking(move || {
            fetch_mirror(&mirror2, &url)?;
            read_branches(&mirror2, &branches)
        })
        .await
        .unwrap_or_else(|e| Err(GitError::Git(format!("fetch task failed: {e}"))));
        let (branches, error) = match res {
            Ok(b) => (b, None),
            Err(e) => {
                all_ok = false;
                tracing::warn!(repo = %r.name, error = %e, "git fetch failed; keeping the last known refs");
                let prev = app
                    .git_snapshot()
                    .repos
                    .into_iter()
                    .find(|x| x.name == r.name.as_str())
                    .map(|x| x.branches)
                    .unwrap_or_default();
                (prev, Some(e.to_string()))
            }
        };
        for b in &branches {
            info_now.insert(m.git_branch(r.name.as_str(), b));
        }
        // Drift: the app's ACTIVE deployment against the branch it deploys from.
        if let Some(app_label) = &r.app {
            let view = snapshot.apps.get(app_label.as_str());
            let deploy_branch = view
                .and_then(|v| v.branch.clone())
                .unwrap_or_else(|| r.branches[0].clone());
            let head = branches
                .iter()
                .find(|b| b.branch == deploy_branch)
                .or_else(|| branches.first());
            let deployed = view
                .and_then(|v| v.active.as_ref())
                .and_then(|d| d.commit.clone());
            if let (Some(head), Some(deployed)) = (head, deployed) {
                let (mirror3, h, d) = (mirror.clone(), head.commit.clone(), deployed.clone());
                let res = tokio::task::spawn_blocking(move || drift(&mirror3, &h, &d)).await;
                if let Ok(Ok((behind, oldest))) = res {
                    let a = app_label.as_str();
                    let age = oldest
                        .map(|t| (Utc::now() - t).num_seconds().max(0) as f64)
                        .unwrap_or(0.0);
                    m.app_drift(a, behind, age);
                    drifts.insert(
                        a.to_string(),
                        Drift {
                            repo: r.name.as_str().to_string(),
                            branch: head.branch.clone(),
                            deployed_commit: deployed,
                            head_commit: head.commit.clone(),
                            commits_behind: behind,
                            oldest_undeployed_commit_time: oldest,
                        },
                    );
                }
            }
        }
        repos.push(RepoView {
            name: r.name.as_str().to_string(),
            app: r.app.as_ref().map(|a| a.as_str().to_string()),
            branches,
            fetched_at: if error.is_none() {
                Some(Utc::now())
            } else {
                None
            },
            error,
        });
    }
    m.git_refs_replaced(exported, info_now);
    *app.git.write().unwrap_or_else(|p| p.into_inner()) = GitSnapshot {
        repos,
        drift: drifts,
    };
    m.source_result("git", all_ok);
    all_ok
}

pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut exported = HashSet::new();
    loop {
        refresh(&app, &mut exported).await;
        tokio::select! {
            _ = tokio::time::sleep(app.config.git.fetch_interval.max(Duration::from_secs(1))) => {}
            _ = shutdown.changed() => return,
        }
    }
}
