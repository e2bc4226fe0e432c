//! Following a merged commit to its deployment: which of an app's deployments carries the commit,
//! and what that means for the deploy task (waiting, deployed, failed, timed out). Pure: the caller
//! passes the poller's view of the app, the time, and what git knows about ancestry.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Task;
use crate::domain::{AppView, DeploymentView, FailureView, Phase};

/// The facts of a merged deploy task that following it needs (from its context).
#[derive(Debug, Clone, PartialEq)]
pub struct Watched {
    pub task_id: String,
    /// The app whose deployments carry the commit (`app` of the task, or `context.app`).
    pub app: Option<String>,
    pub commit: String,
    pub merged_at: DateTime<Utc>,
}

/// The watch facts of a deploy task reported merged; `None` for any other task (not yet merged,
/// not a deploy task, or a context someone edited into nonsense).
pub fn watched(task: &Task) -> Option<Watched> {
    if task.kind != super::Kind::Deploy {
        return None;
    }
    let c = &task.context;
    let commit = c["commit"].as_str().filter(|s| !s.is_empty())?.to_string();
    let merged_at = c["merged_at"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())?
        .with_timezone(&Utc);
    let app = task
        .app
        .clone()
        .or_else(|| c["app"].as_str().map(str::to_string))
        .filter(|s| !s.is_empty());
    Some(Watched {
        task_id: task.id.clone(),
        app,
        commit,
        merged_at,
    })
}

/// Whether two commit ids name the same commit: equal ignoring case, or one an abbreviation
/// (at least 7 hex digits) of the other, as agents often report short SHAs.
pub fn same_commit(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim().to_ascii_lowercase(), b.trim().to_ascii_lowercase());
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short.len() >= 7 && long.starts_with(&short)
}

/// A commit id as agents may send it: 7 to 64 hex digits (SHA-1 or SHA-256, full or abbreviated).
pub fn valid_commit(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// What the deploy loop learns about a watched commit in one look.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// No deployment carries it yet, or the one that does is still under way.
    Waiting,
    /// The newest deployment carrying the commit went live.
    Deployed(DeploymentView),
    /// The newest deployment carrying the commit failed (or was canceled).
    Failed {
        deployment: DeploymentView,
        failure: Option<Box<FailureView>>,
    },
    /// The deploy timeout passed since the merge: with no deployment carrying the commit, or with
    /// one that still has not finished.
    TimedOut { deployment: Option<DeploymentView> },
}

/// Whether a deployment carries the commit: the same commit, or (when git knows) a descendant of
/// it. `contains(deployed)` answers "is the watched commit an ancestor of `deployed`?", `None`
/// when git cannot tell (no mirror, commit not fetched yet).
fn carries(d: &DeploymentView, commit: &str, contains: &dyn Fn(&str) -> Option<bool>) -> bool {
    match d.commit.as_deref() {
        Some(c) if same_commit(c, commit) => true,
        Some(c) => contains(c) == Some(true),
        None => false,
    }
}

/// Decides where a watched commit stands. The newest deployment that carries it decides (a
/// redeploy after a failure counts, a canceled one superseded by a newer push that contains the
/// commit does not), and the deploy timeout counts from the merge.
pub fn decide(
    w: &Watched,
    now: DateTime<Utc>,
    timeout: Duration,
    view: Option<&AppView>,
    contains: &dyn Fn(&str) -> Option<bool>,
) -> Verdict {
    let mut candidates: Vec<&DeploymentView> = view
        .map(|v| {
            [&v.in_progress, &v.latest, &v.last_ended, &v.active]
                .into_iter()
                .flatten()
                .collect()
        })
        .unwrap_or_default();
    // Newest first; a deployment without a creation time (odd API data) sorts last.
    candidates.sort_by_key(|d| std::cmp::Reverse(d.created_at));
    candidates.dedup_by(|a, b| a.id == b.id);
    let newest = candidates
        .into_iter()
        .find(|d| carries(d, &w.commit, contains));
    let expired = now
        .signed_duration_since(w.merged_at)
        .to_std()
        .is_ok_and(|elapsed| elapsed >= timeout);
    match newest {
        Some(d) => match d.phase {
            Phase::Active | Phase::Superseded => Verdict::Deployed(d.clone()),
            Phase::Error | Phase::Canceled => Verdict::Failed {
                deployment: d.clone(),
                failure: view
                    .and_then(|v| v.last_failure.as_ref())
                    .filter(|f| f.deployment_id == d.id)
                    .map(|f| Box::new(f.clone())),
            },
            _ if expired => Verdict::TimedOut {
                deployment: Some(d.clone()),
            },
            _ => Verdict::Waiting,
        },
        None if expired => Verdict::TimedOut { deployment: None },
        None => Verdict::Waiting,
    }
}

/// A staged pipeline's verdict on a production deploy of `commit`: `None` when the staging app
/// went live with it, else a sentence for the deploy task and `status`. Pure.
pub fn pipeline_warning(
    commit: &str,
    staging_app: &str,
    staging: Option<&AppView>,
    contains: &dyn Fn(&str) -> Option<bool>,
) -> Option<String> {
    let short = crate::domain::prefix(commit, 7);
    let Some(v) = staging else {
        return Some(format!(
            "commit {short} is going to production, but staging app {staging_app} is not known to deploywatch (not among the polled apps), so it was never verified on staging"
        ));
    };
    let w = Watched {
        task_id: String::new(),
        app: Some(staging_app.to_string()),
        commit: commit.to_string(),
        merged_at: DateTime::<Utc>::MIN_UTC,
    };
    // No timeout applies to staging history: only what happened there counts.
    match decide(
        &w,
        DateTime::<Utc>::MIN_UTC,
        Duration::MAX,
        Some(v),
        contains,
    ) {
        Verdict::Deployed(_) => None,
        Verdict::Failed { deployment, .. } => Some(format!(
            "commit {short} failed on staging app {staging_app} (deployment {}, {}); it is going to production anyway",
            deployment.id,
            deployment.phase.as_str()
        )),
        Verdict::Waiting | Verdict::TimedOut { .. } => Some(format!(
            "commit {short} was never deployed and verified on staging app {staging_app}; it is going to production unverified"
        )),
    }
}

/// The deploy task's context with the merge recorded: the commit, when, and the pipeline warning
/// if there is one (a previous warning is dropped when the new commit has none).
pub fn merged_context(
    context: &Value,
    commit: &str,
    at: DateTime<Utc>,
    warning: Option<&str>,
) -> Value {
    let mut c = match context {
        Value::Object(_) => context.clone(),
        _ => Value::Object(serde_json::Map::new()),
    };
    c["commit"] = Value::String(commit.to_string());
    c["merged_at"] = Value::String(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    if let Some(obj) = c.as_object_mut() {
        match warning {
            Some(w) => {
                obj.insert("pipeline_warning".into(), Value::String(w.to_string()));
            }
            None => {
                obj.remove("pipeline_warning");
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::classify::FailureClass;

    const C: &str = "9a4df0b8e161e323bc3cdf1dc71878080fe144fa";
    const OLD: &str = "1111111111111111111111111111111111111111";
    const NEWER: &str = "2222222222222222222222222222222222222222";

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
    }

    fn dep(id: &str, commit: &str, phase: Phase, created: i64) -> DeploymentView {
        DeploymentView {
            id: id.into(),
            phase,
            cause: None,
            commit: Some(commit.into()),
            created_at: Some(at(created)),
            ended_at: None,
            trace_id: "t".into(),
            steps: vec![],
        }
    }

    fn view(
        active: Option<DeploymentView>,
        in_progress: Option<DeploymentView>,
        last_ended: Option<DeploymentView>,
    ) -> AppView {
        let latest = in_progress.clone().or_else(|| last_ended.clone());
        AppView {
            name: "api".into(),
            active,
            in_progress,
            last_ended,
            latest,
            ..AppView::default()
        }
    }

    fn failure(id: &str) -> FailureView {
        FailureView {
            deployment_id: id.into(),
            failed_step: None,
            class: FailureClass::BuildError,
            log_tail: Some("npm ERR!".into()),
            commit: Some(C.into()),
            cause: None,
            trace_id: "t".into(),
            ended_at: None,
        }
    }

    fn watched_c() -> Watched {
        Watched {
            task_id: "t1".into(),
            app: Some("api".into()),
            commit: C[..12].into(),
            merged_at: at(0),
        }
    }

    #[test]
    fn the_newest_deployment_carrying_the_commit_decides() {
        let no_git = |_: &str| None;
        let git_knows = |deployed: &str| Some(deployed == NEWER);
        let timeout = Duration::from_secs(1800);
        let old_active = Some(dep("d0", OLD, Phase::Active, -100));
        let mut failed_view = view(
            old_active.clone(),
            None,
            Some(dep("d1", C, Phase::Error, 10)),
        );
        failed_view.last_failure = Some(failure("d1"));
        let cases: Vec<(&str, AppView, i64, &dyn Fn(&str) -> Option<bool>, Verdict)> = vec![
            (
                "nothing yet",
                view(old_active.clone(), None, None),
                60,
                &no_git,
                Verdict::Waiting,
            ),
            (
                "building",
                view(
                    old_active.clone(),
                    Some(dep("d1", C, Phase::Building, 10)),
                    None,
                ),
                60,
                &no_git,
                Verdict::Waiting,
            ),
            (
                "live",
                view(
                    Some(dep("d1", C, Phase::Active, 10)),
                    None,
                    Some(dep("d1", C, Phase::Active, 10)),
                ),
                60,
                &no_git,
                Verdict::Deployed(dep("d1", C, Phase::Active, 10)),
            ),
            (
                "failed, with the failure of that deployment",
                failed_view.clone(),
                60,
                &no_git,
                Verdict::Failed {
                    deployment: dep("d1", C, Phase::Error, 10),
                    failure: Some(Box::new(failure("d1"))),
                },
            ),
            (
                "a later push that contains the commit, live (git knows)",
                view(
                    Some(dep("d2", NEWER, Phase::Active, 20)),
                    None,
                    Some(dep("d2", NEWER, Phase::Active, 20)),
                ),
                60,
                &git_knows,
                Verdict::Deployed(dep("d2", NEWER, Phase::Active, 20)),
            ),
            (
                "a later push without git: not ours",
                view(
                    Some(dep("d2", NEWER, Phase::Active, 20)),
                    None,
                    Some(dep("d2", NEWER, Phase::Active, 20)),
                ),
                60,
                &no_git,
                Verdict::Waiting,
            ),
            (
                "canceled, then a newer push containing it is building",
                view(
                    old_active.clone(),
                    Some(dep("d2", NEWER, Phase::Building, 20)),
                    Some(dep("d1", C, Phase::Canceled, 10)),
                ),
                60,
                &git_knows,
                Verdict::Waiting,
            ),
            (
                "no deployment within the timeout",
                view(old_active.clone(), None, None),
                1800,
                &no_git,
                Verdict::TimedOut { deployment: None },
            ),
            (
                "still deploying at the timeout",
                view(
                    old_active.clone(),
                    Some(dep("d1", C, Phase::Deploying, 10)),
                    None,
                ),
                1900,
                &no_git,
                Verdict::TimedOut {
                    deployment: Some(dep("d1", C, Phase::Deploying, 10)),
                },
            ),
            (
                "a failure is reported even after the timeout",
                failed_view,
                5000,
                &no_git,
                Verdict::Failed {
                    deployment: dep("d1", C, Phase::Error, 10),
                    failure: Some(Box::new(failure("d1"))),
                },
            ),
        ];
        for (what, v, now, contains, want) in cases {
            assert_eq!(
                decide(&watched_c(), at(now), timeout, Some(&v), contains),
                want,
                "{what}"
            );
        }
        assert_eq!(
            decide(&watched_c(), at(1800), timeout, None, &no_git),
            Verdict::TimedOut { deployment: None },
            "an app deploywatch does not know times out too"
        );
    }

    #[test]
    fn commits_match_full_or_abbreviated() {
        for (a, b, want) in [
            (C, C, true),
            (&C[..7], C, true),
            (C, &C[..12].to_ascii_uppercase(), true),
            (&C[..6], C, false),
            ("", C, false),
            (OLD, C, false),
        ] {
            assert_eq!(same_commit(a, b), want, "{a} vs {b}");
        }
        assert!(valid_commit(&C[..7]));
        assert!(!valid_commit("main"));
        assert!(!valid_commit("abc"));
    }

    #[test]
    fn production_deploys_of_commits_staging_never_verified_are_warned() {
        let no_git = |_: &str| None;
        let live = view(
            Some(dep("s1", C, Phase::Active, 10)),
            None,
            Some(dep("s1", C, Phase::Active, 10)),
        );
        assert_eq!(
            pipeline_warning(C, "api-staging", Some(&live), &no_git),
            None
        );
        let failed = view(
            Some(dep("s0", OLD, Phase::Active, 0)),
            None,
            Some(dep("s1", C, Phase::Error, 10)),
        );
        let w = pipeline_warning(C, "api-staging", Some(&failed), &no_git).unwrap_or_default();
        assert!(w.contains("failed on staging app api-staging"), "{w}");
        let never = view(Some(dep("s0", OLD, Phase::Active, 0)), None, None);
        let w = pipeline_warning(C, "api-staging", Some(&never), &no_git).unwrap_or_default();
        assert!(w.contains("never deployed"), "{w}");
        let unknown = pipeline_warning(C, "api-staging", None, &no_git).unwrap_or_default();
        assert!(unknown.contains("not known"), "{unknown}");
    }

    #[test]
    fn merging_records_the_commit_and_keeps_the_pr_context() {
        let before = serde_json::json!({"pr_number": 42, "pipeline_warning": "old"});
        let c = merged_context(&before, C, at(0), None);
        assert_eq!(c["pr_number"], 42);
        assert_eq!(c["commit"], C);
        assert!(c.get("pipeline_warning").is_none());
        let c = merged_context(&Value::Null, C, at(0), Some("careful"));
        assert_eq!(c["pipeline_warning"], "careful");
        let t = Task {
            id: "t1".into(),
            queue: crate::tasks::Queue::Deploy,
            kind: crate::tasks::Kind::Deploy,
            title: "DEPLOY: PR #42 - search".into(),
            priority: 2,
            state: crate::tasks::State::Claimed,
            dedup_key: "k".into(),
            app: None,
            context: serde_json::json!({"app": "api", "commit": C, "merged_at": "2027-01-15T08:00:00.000Z"}),
            attempts: 1,
            max_attempts: 3,
            worker: Some("w".into()),
            lease_expires_at: None,
            created_at: at(0),
            updated_at: at(0),
            seen_count: 1,
            alert_resolved_at: None,
            closed_reason: None,
            result: None,
        };
        let w = watched(&t).unwrap_or_else(|| panic!("a merged deploy task is watched"));
        assert_eq!(w.app.as_deref(), Some("api"));
        let mut unmerged = t.clone();
        unmerged.context = serde_json::json!({"app": "api"});
        assert_eq!(watched(&unmerged), None);
    }
}
