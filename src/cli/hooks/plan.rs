//! Pure decisions of `deploywatch hooks`: what install and uninstall do with a hook already there,
//! which ref update starts a background watch, when a lock is stale, what cleanup removes, what a
//! watcher's exit code means and what the pre-push hook warns about. No I/O; tested with tables.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The line that marks a hook file as deploywatch's own.
pub const MARKER: &str = "# deploywatch-hook";
/// Where an original hook waits while ours runs in its place: `<hook>` + this.
pub const ORIG_SUFFIX: &str = ".deploywatch-orig";
/// The hooks deploywatch installs.
pub const HOOKS: [&str; 2] = ["pre-push", "reference-transaction"];

/// What is at a hook's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Missing,
    Ours,
    Foreign,
}

pub fn classify_hook(content: Option<&[u8]>) -> Existing {
    match content {
        None => Existing::Missing,
        Some(c)
            if String::from_utf8_lossy(c)
                .lines()
                .take(3)
                .any(|l| l.starts_with(MARKER)) =>
        {
            Existing::Ours
        }
        Some(_) => Existing::Foreign,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallStep {
    /// Write ours (new, or refreshing ours; a saved original stays where it is and is chained).
    Write,
    /// Rename the user's hook to `<hook>.deploywatch-orig`, then write ours, which runs it.
    MoveAsideThenWrite,
    Refuse(String),
}

/// `orig`: whether `<hook>.deploywatch-orig` exists. Pure.
pub fn plan_install(hook: &str, existing: Existing, orig: bool) -> InstallStep {
    match (existing, orig) {
        (Existing::Missing | Existing::Ours, _) => InstallStep::Write,
        (Existing::Foreign, false) => InstallStep::MoveAsideThenWrite,
        (Existing::Foreign, true) => InstallStep::Refuse(format!(
            "{hook} is not deploywatch's and {hook}{ORIG_SUFFIX} exists too; moving it aside would \
             overwrite that saved hook. Keep the one you want as {hook}, delete the other, and \
             install again"
        )),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UninstallStep {
    /// Remove ours and rename the saved original back.
    RemoveAndRestore,
    Remove,
    /// Ours is gone but the original is still aside: put it back.
    Restore,
    /// Someone replaced our hook: leave theirs, say so.
    LeaveForeign,
    Nothing,
}

pub fn plan_uninstall(existing: Existing, orig: bool) -> UninstallStep {
    match (existing, orig) {
        (Existing::Ours, true) => UninstallStep::RemoveAndRestore,
        (Existing::Ours, false) => UninstallStep::Remove,
        (Existing::Missing, true) => UninstallStep::Restore,
        (Existing::Missing, false) => UninstallStep::Nothing,
        (Existing::Foreign, _) => UninstallStep::LeaveForeign,
    }
}

/// A branch push the pre-push hook saw go out: the remote-tracking ref it will move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    pub remote: String,
    pub branch: String,
    pub sha: String,
    pub at: DateTime<Utc>,
}

impl Pushed {
    pub fn tracking_ref(&self) -> String {
        format!("refs/remotes/{}/{}", self.remote, self.branch)
    }
}

fn is_sha(s: &str) -> bool {
    (40..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
}

fn is_zero(s: &str) -> bool {
    s.chars().all(|c| c == '0')
}

/// The pushes of watched branches in pre-push's standard input
/// (`<local ref> <local sha> <remote ref> <remote sha>` per line); deletions are not pushes of a
/// commit. `branches` empty watches every branch. Pure.
pub fn pushed_refs(
    remote: &str,
    stdin: &str,
    branches: &[String],
    now: DateTime<Utc>,
) -> Vec<Pushed> {
    let mut out: Vec<Pushed> = Vec::new();
    if remote.is_empty() || remote.contains("://") || remote.contains(':') {
        // A push to a URL has no remote-tracking ref to watch.
        return out;
    }
    for line in stdin.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [_, local_sha, remote_ref, _] = f[..] else {
            continue;
        };
        let Some(branch) = remote_ref.strip_prefix("refs/heads/") else {
            continue;
        };
        if !is_sha(local_sha) || is_zero(local_sha) {
            continue;
        }
        if !branches.is_empty() && !branches.iter().any(|b| b == branch) {
            continue;
        }
        let p = Pushed {
            remote: remote.to_string(),
            branch: branch.to_string(),
            sha: local_sha.to_ascii_lowercase(),
            at: now,
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// How long a recorded push waits for its remote-tracking ref to move.
pub const PENDING_FOR: Duration = Duration::from_secs(3600);

/// The commits to watch after a reference transaction: in the `committed` state, a
/// remote-tracking ref moved to the commit a recorded push sent. A fetch moves the same refs; only
/// the record of the pre-push hook tells a push from it. Pure.
pub fn triggers(state: &str, stdin: &str, pending: &[Pushed], now: DateTime<Utc>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if state != "committed" {
        return out;
    }
    for line in stdin.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [_, new, refname] = f[..] else {
            continue;
        };
        let new = new.to_ascii_lowercase();
        if !is_sha(&new) || is_zero(&new) || !refname.starts_with("refs/remotes/") {
            continue;
        }
        let pushed = pending
            .iter()
            .any(|p| p.sha == new && p.tracking_ref() == refname && !expired(p, now));
        if pushed && !out.contains(&new) {
            out.push(new);
        }
    }
    out
}

pub fn expired(p: &Pushed, now: DateTime<Utc>) -> bool {
    (now - p.at).to_std().is_ok_and(|age| age > PENDING_FOR)
}

/// What `/proc` says about the process a PID file or lock names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proc {
    /// Alive, and its command line is a deploywatch hook or watcher for this commit.
    Ours,
    /// Alive, but something else now has the PID.
    NotOurs,
    Gone,
}

/// A lock is stale when its holder is gone (or the PID was reused); one with no readable PID is
/// stale once it is older than a writer needs to fill it. Pure.
pub fn lock_is_stale(pid: Option<u32>, holder: Proc, age: Duration) -> bool {
    match pid {
        None => age > Duration::from_secs(10),
        Some(_) => holder != Proc::Ours,
    }
}

/// A background watcher's state, as its status file records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchState {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    /// Ended by `deploywatch hooks stop`.
    Stopped,
}

impl WatchState {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchState::Running => "running",
            WatchState::Succeeded => "succeeded",
            WatchState::Failed => "failed",
            WatchState::TimedOut => "timed_out",
            WatchState::Stopped => "stopped",
        }
    }
}

/// The state `watch --commit`'s exit code stands for. Pure.
pub fn state_for_exit(code: Option<i32>, stopped: bool) -> WatchState {
    match (stopped, code) {
        (true, _) => WatchState::Stopped,
        (false, Some(0)) => WatchState::Succeeded,
        (false, Some(124)) => WatchState::TimedOut,
        // 1: the deployment failed; 2: the watch could not run (its last line says why); a
        // signal: killed by someone else.
        (false, _) => WatchState::Failed,
    }
}

/// The status file `.git/deploywatch/<sha>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchStatus {
    pub commit: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub state: WatchState,
    pub exit_code: Option<i32>,
    pub last_line: Option<String>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
}

/// Whether `hooks cleanup` removes a watcher's files. A running watcher whose process is gone
/// counts as finished (it was killed before it could say so). Pure.
pub fn cleanup_removes(
    s: &WatchStatus,
    alive: bool,
    now: DateTime<Utc>,
    all: bool,
    older_than: Duration,
) -> bool {
    if s.state == WatchState::Running && alive {
        return false;
    }
    let since = s.ended_at.unwrap_or(s.started_at);
    all || (now - since).to_std().is_ok_and(|age| age >= older_than)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const Z: &str = "0000000000000000000000000000000000000000";

    fn now() -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(20000)
    }

    #[test]
    fn hooks_are_told_apart_by_the_marker() {
        assert_eq!(classify_hook(None), Existing::Missing);
        assert_eq!(
            classify_hook(Some(b"#!/bin/sh\n# deploywatch-hook: pre-push\n")),
            Existing::Ours
        );
        assert_eq!(
            classify_hook(Some(b"#!/bin/sh\nexit 1\n")),
            Existing::Foreign
        );
        assert_eq!(classify_hook(Some(b"\xff\xfe")), Existing::Foreign);
        // The marker deep in someone's script (say, a comment quoting ours) is not ours.
        assert_eq!(
            classify_hook(Some(b"#!/bin/sh\n\n\n\n# deploywatch-hook\n")),
            Existing::Foreign
        );
    }

    #[test]
    fn install_and_uninstall_plans() {
        use Existing::*;
        let table = [
            (Missing, false, InstallStep::Write, UninstallStep::Nothing),
            (Missing, true, InstallStep::Write, UninstallStep::Restore),
            (Ours, false, InstallStep::Write, UninstallStep::Remove),
            (
                Ours,
                true,
                InstallStep::Write,
                UninstallStep::RemoveAndRestore,
            ),
            (
                Foreign,
                false,
                InstallStep::MoveAsideThenWrite,
                UninstallStep::LeaveForeign,
            ),
        ];
        for (e, orig, install, uninstall) in table {
            assert_eq!(plan_install("pre-push", e, orig), install, "{e:?} {orig}");
            assert_eq!(plan_uninstall(e, orig), uninstall, "{e:?} {orig}");
        }
        match plan_install("pre-push", Foreign, true) {
            InstallStep::Refuse(why) => assert!(why.contains("pre-push.deploywatch-orig"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(plan_uninstall(Foreign, true), UninstallStep::LeaveForeign);
    }

    #[test]
    fn which_pushes_are_recorded() {
        let main = vec!["main".to_string()];
        let line = |l: &str, s: &str, r: &str| format!("{l} {s} {r} {Z}\n");
        let table: Vec<(&str, String, &[String], Vec<(&str, &str)>)> = vec![
            (
                "origin",
                line("refs/heads/main", A, "refs/heads/main"),
                &main,
                vec![("main", A)],
            ),
            (
                "origin",
                line("refs/heads/feature", A, "refs/heads/feature"),
                &main,
                vec![],
            ),
            (
                "origin",
                line("refs/heads/feature", A, "refs/heads/feature"),
                &[],
                vec![("feature", A)],
            ),
            (
                "origin",
                line("(delete)", Z, "refs/heads/main"),
                &main,
                vec![],
            ),
            (
                "origin",
                line("refs/tags/v1", A, "refs/tags/v1"),
                &[],
                vec![],
            ),
            (
                "https://example.com/x.git",
                line("refs/heads/main", A, "refs/heads/main"),
                &main,
                vec![],
            ),
            ("origin", "garbage\n\n".to_string(), &main, vec![]),
            (
                "origin",
                format!(
                    "{}{}",
                    line("HEAD", A, "refs/heads/main"),
                    line("refs/heads/main", A, "refs/heads/main")
                ),
                &main,
                vec![("main", A)],
            ),
        ];
        for (remote, stdin, branches, want) in table {
            let got: Vec<(String, String)> = pushed_refs(remote, &stdin, branches, now())
                .into_iter()
                .map(|p| (p.branch, p.sha))
                .collect();
            let want: Vec<(String, String)> = want
                .into_iter()
                .map(|(b, s)| (b.to_string(), s.to_string()))
                .collect();
            assert_eq!(got, want, "{remote} {stdin:?}");
        }
    }

    #[test]
    fn which_ref_updates_start_a_watch() {
        let pushed = |sha: &str, mins_ago: i64| Pushed {
            remote: "origin".into(),
            branch: "main".into(),
            sha: sha.into(),
            at: now() - chrono::Duration::minutes(mins_ago),
        };
        let pending = vec![pushed(A, 0)];
        let table: Vec<(&str, String, Vec<Pushed>, Vec<&str>)> = vec![
            (
                "committed",
                format!("{Z} {A} refs/remotes/origin/main\n"),
                pending.clone(),
                vec![A],
            ),
            (
                "prepared",
                format!("{Z} {A} refs/remotes/origin/main\n"),
                pending.clone(),
                vec![],
            ),
            (
                "aborted",
                format!("{Z} {A} refs/remotes/origin/main\n"),
                pending.clone(),
                vec![],
            ),
            // A fetch moved the ref to a commit nobody pushed from here.
            (
                "committed",
                format!("{A} {B} refs/remotes/origin/main\n"),
                pending.clone(),
                vec![],
            ),
            // The push went to another remote or branch.
            (
                "committed",
                format!("{Z} {A} refs/remotes/upstream/main\n"),
                pending.clone(),
                vec![],
            ),
            (
                "committed",
                format!("{Z} {A} refs/heads/main\n"),
                pending.clone(),
                vec![],
            ),
            (
                "committed",
                format!("{A} {Z} refs/remotes/origin/main\n"),
                vec![pushed(Z, 0)],
                vec![],
            ),
            // A record older than an hour no longer counts.
            (
                "committed",
                format!("{Z} {A} refs/remotes/origin/main\n"),
                vec![pushed(A, 61)],
                vec![],
            ),
            (
                "committed",
                format!("{Z} {A} refs/remotes/origin/main\n{Z} {A} refs/remotes/origin/main\n"),
                pending.clone(),
                vec![A],
            ),
            ("committed", "\u{1b}]junk\n".into(), pending.clone(), vec![]),
        ];
        for (state, stdin, pending, want) in table {
            assert_eq!(
                triggers(state, &stdin, &pending, now()),
                want,
                "{state} {stdin:?}"
            );
        }
    }

    #[test]
    fn stale_locks() {
        let s = Duration::from_secs;
        let table = [
            (Some(7), Proc::Ours, s(0), false),
            (Some(7), Proc::Ours, s(99999), false),
            (Some(7), Proc::Gone, s(0), true),
            (Some(7), Proc::NotOurs, s(0), true),
            (None, Proc::Gone, s(1), false),
            (None, Proc::Gone, s(11), true),
        ];
        for (pid, p, age, want) in table {
            assert_eq!(lock_is_stale(pid, p, age), want, "{pid:?} {p:?} {age:?}");
        }
    }

    #[test]
    fn exit_codes_to_states() {
        let table = [
            (Some(0), false, WatchState::Succeeded),
            (Some(1), false, WatchState::Failed),
            (Some(2), false, WatchState::Failed),
            (Some(124), false, WatchState::TimedOut),
            (None, false, WatchState::Failed),
            (None, true, WatchState::Stopped),
            (Some(0), true, WatchState::Stopped),
        ];
        for (code, stopped, want) in table {
            assert_eq!(state_for_exit(code, stopped), want, "{code:?} {stopped}");
        }
    }

    #[test]
    fn what_cleanup_removes() {
        let week = Duration::from_secs(7 * 86400);
        let st = |state, days_ago: i64, ended: bool| WatchStatus {
            commit: A.into(),
            pid: 7,
            started_at: now() - chrono::Duration::days(days_ago),
            state,
            exit_code: None,
            last_line: None,
            ended_at: ended.then(|| now() - chrono::Duration::days(days_ago)),
        };
        use WatchState::*;
        let table = [
            (st(Running, 30, false), true, true, false),
            (st(Running, 30, false), false, false, true),
            (st(Running, 1, false), false, false, false),
            (st(Running, 1, false), false, true, true),
            (st(Succeeded, 8, true), false, false, true),
            (st(Succeeded, 6, true), false, false, false),
            (st(Failed, 6, true), false, true, true),
            (st(Stopped, 0, true), false, true, true),
        ];
        for (i, (s, alive, all, want)) in table.into_iter().enumerate() {
            assert_eq!(
                cleanup_removes(&s, alive, now(), all, week),
                want,
                "row {i}"
            );
        }
    }
}
