//! Whether a deployed commit contains the one `watch --commit` waits for, asked of the git
//! repository the command runs in (`git merge-base --is-ancestor`, the git CLI). Each call is
//! bounded: a slow or broken repository only means "unknown".

use std::time::Duration;

use tokio::process::Command;

const GIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A git repository at hand (the current directory is inside one).
pub struct Git;

impl Git {
    pub async fn at_hand() -> Option<Git> {
        let out = run(&["rev-parse", "--git-dir"]).await?;
        out.status.success().then_some(Git)
    }

    /// `Some(true)` when `ancestor` is in `commit`'s history, `Some(false)` when not, `None`
    /// when git cannot tell (it does not know one of them, or failed).
    pub async fn is_ancestor(&self, ancestor: &str, commit: &str) -> Option<bool> {
        if !is_hex(ancestor) || !is_hex(commit) {
            return None;
        }
        let out = run(&["merge-base", "--is-ancestor", ancestor, commit]).await?;
        match out.status.code() {
            Some(0) => Some(true),
            Some(1) => Some(false),
            _ => None,
        }
    }
}

/// Only SHAs reach git's command line, never an option-looking string from outside.
fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

async fn run(args: &[&str]) -> Option<std::process::Output> {
    let child = Command::new("git")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(GIT_TIMEOUT, child).await.ok()?.ok()
}
