//! Git refs: each configured repository (a local path or a remote URL) is kept in a bare mirror
//! under `git.mirror_dir` and fetched on an interval with gix. From the mirror: each tracked
//! branch's head commit and time, its ahead/behind against its upstream (`refs/remotes/origin/<b>`,
//! present when the configured repository is a clone), and, joined with the DigitalOcean source
//! through `source_commit_hash`, how far the ACTIVE deployment is behind its branch.

pub mod ancestry;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::app::App;
use crate::config::GitRepo;

use crate::domain::git::{BranchView, Drift, GitSnapshot, RepoView};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git: {0}")]
    Git(String),
}

fn git_err(e: impl std::fmt::Display) -> GitError {
    GitError::Git(e.to_string())
}

/// Where a repository's mirror lives. The name is a validated label, so it is a safe file name.
pub fn mirror_path(dir: &Path, repo: &GitRepo) -> PathBuf {
    dir.join(format!("{}.git", repo.name.as_str()))
}

/// Creates the mirror if needed and fetches every branch (and, from a clone, its remote-tracking
/// refs) into it. Blocking: call from `spawn_blocking`.
pub fn fetch_mirror(mirror: &Path, url: &str) -> Result<(), GitError> {
    let repo = if mirror.join("HEAD").exists() {
        gix::open(mirror).map_err(git_err)?
    } else {
        std::fs::create_dir_all(mirror).map_err(git_err)?;
        gix::init_bare(mirror).map_err(git_err)?
    };
    // A local path is given as is; gix turns it into a file:// transport.
    let remote = repo
        .remote_at(url)
        .map_err(git_err)?
        .with_refspecs(
            [
                "+refs/heads/*:refs/heads/*",
                "+refs/remotes/origin/*:refs/remotes/origin/*",
            ],
            gix::remote::Direction::Fetch,
        )
        .map_err(git_err)?;
    let interrupt = AtomicBool::new(false);
    remote
        .connect(gix::remote::Direction::Fetch)
        .map_err(git_err)?
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(git_err)?
        .receive(gix::progress::Discard, &interrupt)
        .map_err(git_err)?;
    Ok(())
}

fn ref_id(repo: &gix::Repository, name: &str) -> Option<gix::ObjectId> {
    let mut r = repo.find_reference(name).ok()?;
    r.peel_to_id().ok().map(|id| id.detach())
}

fn commit_time(repo: &gix::Repository, id: gix::ObjectId) -> Option<DateTime<Utc>> {
    let c = repo.find_commit(id).ok()?;
    let t = c.time().ok()?;
    DateTime::from_timestamp(t.seconds, 0)
}

/// Commits reachable from `tip` but not from `hidden`.
fn only_in(
    repo: &gix::Repository,
    tip: gix::ObjectId,
    hidden: gix::ObjectId,
) -> Result<Vec<gix::ObjectId>, GitError> {
    let walk = repo
        .rev_walk([tip])
        .with_hidden([hidden])
        .all()
        .map_err(git_err)?;
    let mut out = Vec::new();
    for info in walk {
        out.push(info.map_err(git_err)?.id);
    }
    Ok(out)
}

/// Reads branch heads and ahead/behind from a mirror. Blocking.
pub fn read_branches(mirror: &Path, branches: &[String]) -> Result<Vec<BranchView>, GitError> {
    let repo = gix::open(mirror).map_err(git_err)?;
    let mut out = Vec::new();
    for b in branches {
        let Some(head) = ref_id(&repo, &format!("refs/heads/{b}"))
            .or_else(|| ref_id(&repo, &format!("refs/remotes/origin/{b}")))
        else {
            continue;
        };
        let (ahead, behind) = match (
            ref_id(&repo, &format!("refs/heads/{b}")),
            ref_id(&repo, &format!("refs/remotes/origin/{b}")),
        ) {
            (Some(local), Some(upstream)) => (
                Some(only_in(&repo, local, upstream)?.len()),
                Some(only_in(&repo, upstream, local)?.len()),
            ),
            _ => (None, None),
        };
        out.push(BranchView {
            branch: b.clone(),
            commit: head.to_string(),
            commit_time: commit_time(&repo, head).unwrap_or_default(),
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
    let repo = gix::open(mirror).map_err(git_err)?;
    let head_id = gix::ObjectId::from_hex(head.as_bytes()).map_err(git_err)?;
    let Some(dep_id) = resolve_commit(&repo, deployed) else {
        return Ok((None, None));
    };
    // The deployed commit must be an ancestor of the head, else "behind" has no meaning.
    let dep_not_in_head = only_in(&repo, dep_id, head_id)?;
    if !dep_not_in_head.is_empty() {
        return Ok((None, None));
    }
    let missing = only_in(&repo, head_id, dep_id)?;
    let oldest = missing
        .iter()
        .filter_map(|id| commit_time(&repo, *id))
        .min();
    Ok((Some(missing.len()), oldest))
}

/// A full or abbreviated SHA to a commit id in the repository.
fn resolve_commit(repo: &gix::Repository, sha: &str) -> Option<gix::ObjectId> {
    if sha.len() < 7 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let id = repo.rev_parse_single(sha).ok()?.detach();
    repo.find_commit(id).ok().map(|c| c.id)
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
    tokio::task::spawn_blocking(move || {
        let repo = gix::open(&mirror).ok()?;
        let id = resolve_commit(&repo, &sha)?;
        commit_time(&repo, id)
    })
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
