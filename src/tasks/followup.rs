//! An agent's structured reasons for giving a task up (`POST /api/v1/tasks/{id}/fail` with
//! `reason`), and the follow-up each one needs from a person or another agent. Free text keeps
//! the plain behaviour (no follow-up). Pure.

use serde_json::{Value, json};

use super::{Kind, NewTask, Task, impact};

/// The reasons with a follow-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// The pull request lacks the approvals it needs.
    NotApproved,
    /// The pull request conflicts with its base branch.
    MergeConflict,
    /// The merge itself failed (branch protection, a hosting error, a race).
    MergeFailed,
}

impl FailReason {
    pub fn parse(s: &str) -> Option<FailReason> {
        match s.trim() {
            "not_approved" => Some(FailReason::NotApproved),
            "merge_conflict" => Some(FailReason::MergeConflict),
            "merge_failed" => Some(FailReason::MergeFailed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::NotApproved => "not_approved",
            FailReason::MergeConflict => "merge_conflict",
            FailReason::MergeFailed => "merge_failed",
        }
    }
}

fn pr_label(task: &Task) -> String {
    match &task.context["pr_number"] {
        Value::Number(n) => format!("PR #{n}"),
        Value::String(s) if !s.is_empty() => format!("PR #{}", s.trim_start_matches('#')),
        _ => format!("\"{}\"", task.title),
    }
}

/// The follow-up for a task given up with `reason`, or `None` for free text. Its dedup key is
/// derived from the task and the reason, so a repeated report queues it once.
pub fn followup(task: &Task, reason: &str) -> Option<NewTask> {
    let r = FailReason::parse(reason)?;
    let c = &task.context;
    let pr = pr_label(task);
    let app = task
        .app
        .clone()
        .or_else(|| c["app"].as_str().map(str::to_string));
    let on = app
        .as_deref()
        .map(|a| format!(" ({a})"))
        .unwrap_or_default();
    let (kind, title, instructions) = match r {
        FailReason::NotApproved => (
            Kind::Announce,
            format!("ANNOUNCE: {pr}{on} needs approval before it can be merged"),
            "Review and approve the pull request; the deploy task can then be queued again.",
        ),
        FailReason::MergeConflict => (
            Kind::Fix,
            format!("FIX: Merge conflict in {pr}{on}"),
            "Rebase the branch on its base, resolve the conflicts, push, and queue the deploy again.",
        ),
        FailReason::MergeFailed => (
            Kind::Announce,
            format!("ANNOUNCE: {pr}{on} could not be merged automatically; merge it by hand"),
            "Merge the pull request manually (check branch protection and required checks).",
        ),
    };
    let env = impact::environment(c["target"].as_str(), None);
    let priority = match kind {
        Kind::Fix => impact::fix_priority(env, impact::NORMAL),
        _ => impact::HIGH,
    };
    Some(NewTask {
        kind,
        title,
        priority,
        dedup_key: format!("deploy:{}:{}", task.id, r.as_str()),
        app,
        context: json!({
            "parent_task_id": task.id,
            "reason": r.as_str(),
            "pr_number": c["pr_number"],
            "pr_url": c["pr_url"],
            "branch": c["branch"],
            "target": c["target"],
            "commit_build_task_id": c["commit_build_task_id"],
            "parent_title": task.title,
            "instructions": instructions,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::{Queue, State};

    fn task() -> Task {
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        Task {
            id: "t9".into(),
            queue: Queue::Deploy,
            kind: Kind::Deploy,
            title: "DEPLOY: PR #7 - login".into(),
            priority: 2,
            state: State::Claimed,
            dedup_key: "k".into(),
            app: Some("web".into()),
            context: json!({"pr_number": 7, "pr_url": "https://git.example/pr/7", "target": "production"}),
            attempts: 1,
            max_attempts: 3,
            worker: Some("w".into()),
            lease_expires_at: None,
            created_at: at,
            updated_at: at,
            seen_count: 1,
            alert_resolved_at: None,
            closed_reason: None,
            result: None,
        }
    }

    #[test]
    fn each_reason_maps_to_its_follow_up() {
        let cases = [
            (
                "not_approved",
                Some((
                    Queue::Announce,
                    "ANNOUNCE: PR #7 (web) needs approval before it can be merged",
                    2,
                    "deploy:t9:not_approved",
                )),
            ),
            (
                "merge_conflict",
                Some((
                    Queue::Execution,
                    "FIX: Merge conflict in PR #7 (web)",
                    1,
                    "deploy:t9:merge_conflict",
                )),
            ),
            (
                " merge_failed",
                Some((
                    Queue::Announce,
                    "ANNOUNCE: PR #7 (web) could not be merged automatically; merge it by hand",
                    2,
                    "deploy:t9:merge_failed",
                )),
            ),
            ("tests are flaky", None),
            ("NOT_APPROVED", None),
        ];
        for (reason, want) in cases {
            let got = followup(&task(), reason);
            let got_view = got.as_ref().map(|t| {
                (
                    t.kind.queue(),
                    t.title.as_str(),
                    t.priority,
                    t.dedup_key.as_str(),
                )
            });
            assert_eq!(got_view, want, "{reason}");
            if let Some(t) = got {
                assert_eq!(t.context["parent_task_id"], "t9");
                assert_eq!(t.context["pr_number"], 7);
                assert_eq!(t.context["pr_url"], "https://git.example/pr/7");
            }
        }
    }
}
