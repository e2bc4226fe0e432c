//! What the installed hooks run: `hooks run pre-push` (records the push, warns, never fails)
//! and `hooks run reference-transaction` (starts a watcher for each pushed commit). Both read
//! git's input from stdin and always exit 0: the shell hook owns the exit code.

use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::files::{StateDir, now};
use super::plan::{expired, pushed_refs, triggers};
use super::warnings::{behind_warning, deploy_warnings};
use super::watchers::{self, WatchArgs};
use crate::cli::exit::EXIT_OK;

const GIT_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs git with a bound; `None` when it fails, is slow or is missing.
pub async fn git(dir: Option<&Path>, args: &[&str]) -> Option<String> {
    let mut c = Command::new("git");
    if let Some(d) = dir {
        c.arg("-C").arg(d);
    }
    c.args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(GIT_TIMEOUT, c.output())
        .await
        .ok()?
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `.git/deploywatch/` of the repository at `repo` (default: the current one).
pub async fn state_dir(repo: Option<&Path>) -> anyhow::Result<StateDir> {
    let common = git(
        repo,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )
    .await
    .ok_or_else(|| {
        anyhow::anyhow!(
            "{} is not inside a git repository; run this in one, or pass --repo PATH",
            repo.map_or_else(
                || "the current directory".to_string(),
                |r| r.display().to_string()
            )
        )
    })?;
    Ok(StateDir(Path::new(&common).join("deploywatch")))
}

async fn read_stdin() -> String {
    let mut buf = Vec::new();
    let mut stdin = tokio::io::stdin().take(1 << 20);
    let _ = tokio::time::timeout(Duration::from_secs(2), stdin.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

pub async fn pre_push(remote: String, branches: Vec<String>, app: Option<String>) -> i32 {
    let work = async {
        let input = read_stdin().await;
        let Ok(dir) = state_dir(None).await else {
            return;
        };
        let pushed = pushed_refs(&remote, &input, &branches, now());
        if !pushed.is_empty() && dir.create().is_ok() {
            for p in &pushed {
                let _ = dir.record_push(p);
            }
        }
        let mut check: Vec<String> = branches.clone();
        for line in input.lines() {
            if let Some(b) = line
                .split_whitespace()
                .next()
                .and_then(|r| r.strip_prefix("refs/heads/"))
                && !check.iter().any(|c| c == b)
            {
                check.push(b.to_string());
            }
        }
        for b in &check {
            if let Some(n) = behind(&remote, b).await
                && let Some(w) = behind_warning(&remote, b, n)
            {
                eprintln!("deploywatch: warning: {}", crate::terminal::clean(&w));
            }
        }
        if let Some(doc) = status_doc(app.as_deref()).await {
            for w in deploy_warnings(&doc, app.as_deref()) {
                eprintln!("deploywatch: warning: {w}");
            }
        }
    };
    // Within the shell hook's own 5 s bound, so the warnings that were found still print.
    let _ = tokio::time::timeout(Duration::from_secs(4), work).await;
    EXIT_OK
}

/// Commits `refs/heads/<branch>` lacks from `refs/remotes/<remote>/<branch>`, when both exist.
async fn behind(remote: &str, branch: &str) -> Option<u64> {
    let local = format!("refs/heads/{branch}");
    let tracking = format!("refs/remotes/{remote}/{branch}");
    git(None, &["rev-parse", "--verify", "--quiet", &local]).await?;
    git(None, &["rev-parse", "--verify", "--quiet", &tracking]).await?;
    git(
        None,
        &["rev-list", "--count", &format!("{local}..{tracking}")],
    )
    .await?
    .parse()
    .ok()
}

/// The status document, when deploywatch is configured in this environment; quietly nothing
/// otherwise (no server named and no token: a push is no place for a configuration lecture).
async fn status_doc(app: Option<&str>) -> Option<serde_json::Value> {
    let set = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let fetch = async {
        match (set("DEPLOYWATCH_SERVER"), set("DIGITALOCEAN_TOKEN")) {
            (Some(server), _) => {
                let base = server.trim_end_matches('/').to_string();
                let mut url = url::Url::parse(&format!("{base}/api/v1/status")).ok()?;
                if let Some(a) = app {
                    url.query_pairs_mut().append_pair("app", a);
                }
                let r = crate::cli::client::auth(crate::cli::client::http_client().get(url))
                    .send()
                    .await
                    .ok()?;
                r.json().await.ok()
            }
            (None, Some(_)) => crate::cli::watch::direct_status(app).await.ok(),
            (None, None) => None,
        }
    };
    tokio::time::timeout(Duration::from_secs(3), fetch)
        .await
        .ok()
        .flatten()
}

pub async fn reference_transaction(state: String, args: WatchArgs) -> i32 {
    if state != "committed" {
        return EXIT_OK;
    }
    let input = read_stdin().await;
    let Ok(dir) = state_dir(None).await else {
        return EXIT_OK;
    };
    let pending = dir.pending();
    let records: Vec<_> = pending.iter().map(|(_, p)| p.clone()).collect();
    let shas = triggers(&state, &input, &records, now());
    for sha in &shas {
        match watchers::start(&dir, sha, &args) {
            Ok(Some(pid)) => eprintln!("deploywatch: watching {sha} in the background (PID {pid})"),
            Ok(None) => {}
            Err(e) => eprintln!("deploywatch: cannot start a watcher for {sha}: {e:#}"),
        }
    }
    // A record is used up once its ref moved; expired ones belong to pushes that never landed.
    for (path, p) in &pending {
        let moved = shas.contains(&p.sha)
            && input
                .lines()
                .any(|l| l.trim_end().ends_with(&format!(" {}", p.tracking_ref())));
        if moved || expired(p, now()) {
            let _ = std::fs::remove_file(path);
        }
    }
    EXIT_OK
}
