//! What a deploy task's end produces: its final state and reason, and the follow-up tasks (an
//! e2e-test task and an announcement after a success; fix tasks and an announcement after a
//! failure; an investigation after a timeout). Pure; every follow-up has a dedup key derived from
//! the deploy task (`deploy:<task id>:<what>`; the e2e-test task's is the deployment's,
//! `e2e:<deployment id>`, shared with the fixer), so settling twice queues nothing twice.

use serde_json::{Value, json};

use super::deploy::Verdict;
use super::impact::{self, Target};
use super::{Kind, NewTask, State, Task};
use crate::domain::{DeploymentView, FailureView, prefix};

/// The post-deploy verification gate. Deploywatch has no verification yet, so the worker passes
/// `NotRequired`; when verification lands, `Pending` holds a deployed task open and `Failed`
/// fails it like a failed deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum Verification {
    NotRequired,
    Passed,
    Pending,
    Failed(String),
}

/// How a deploy task ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    pub state: State,
    /// `deployed`, `no_deployment`, `deployment_timeout`, `verification_failed`, or
    /// `deployment_failed: <class> in step <step>`.
    pub reason: String,
    pub result: Value,
    pub followups: Vec<NewTask>,
}

/// What the app looked like when the task settled, for the follow-ups.
#[derive(Debug, Clone, Default)]
pub struct Surroundings<'a> {
    pub live_url: Option<&'a str>,
    /// The commit serving traffic: the start of the suspect range after a failure.
    pub active_commit: Option<&'a str>,
    /// The app's configured environment (`[[apps]] environment`).
    pub environment: Option<&'a str>,
    pub timeout_text: String,
}

/// The follow-up's dedup key: one per deploy task and purpose.
pub fn key(task_id: &str, what: &str) -> String {
    format!("deploy:{task_id}:{what}")
}

/// The PR facts every follow-up carries, plus the link to its parent.
fn pr_context(task: &Task, commit: &str, app: &str) -> Value {
    let c = &task.context;
    json!({
        "parent_task_id": task.id,
        "pr_number": c["pr_number"],
        "pr_url": c["pr_url"],
        "branch": c["branch"],
        "target": c["target"],
        "commit_build_task_id": c["commit_build_task_id"],
        "commit": commit,
        "app": app,
    })
}

fn pr_label(task: &Task) -> String {
    match &task.context["pr_number"] {
        Value::Number(n) => format!("PR #{n}"),
        Value::String(s) if !s.is_empty() => format!("PR #{}", s.trim_start_matches('#')),
        _ => format!("deploy task {}", task.id),
    }
}

fn deployment_json(d: &DeploymentView) -> Value {
    json!({"id": d.id, "phase": d.phase, "commit": d.commit, "cause": d.cause, "trace_id": d.trace_id})
}

/// The environment the deploy lands in: the task's `target`, else the app's configured one.
fn environment<'a>(task: &'a Task, s: &Surroundings<'a>) -> Option<&'a str> {
    impact::environment(task.context["target"].as_str(), s.environment)
}

/// How `task` ends given `verdict`; `None` while there is nothing to settle yet.
pub fn settle(
    task: &Task,
    commit: &str,
    app: &str,
    verdict: &Verdict,
    verification: &Verification,
    s: &Surroundings<'_>,
) -> Option<Settlement> {
    let short = prefix(commit, 7);
    let pr = pr_label(task);
    let env = environment(task, s);
    let base = pr_context(task, commit, app);
    let with = |extra: Value| {
        let mut c = base.clone();
        if let (Some(o), Value::Object(e)) = (c.as_object_mut(), extra) {
            o.extend(e);
        }
        c
    };
    match verdict {
        Verdict::Waiting => None,
        Verdict::Deployed(_) if *verification == Verification::Pending => None,
        Verdict::Deployed(d) => {
            if let Verification::Failed(why) = verification {
                return Some(failed(task, commit, app, d, None, Some(why), s));
            }
            let live = with(json!({
                "deployment": deployment_json(d),
                "deployment_id": d.id,
                "live_url": s.live_url,
                "trace_id": d.trace_id,
            }));
            let e2e_priority = match env.and_then(Target::parse) {
                Some(Target::Production) => impact::HIGH,
                _ => impact::NORMAL,
            };
            Some(Settlement {
                state: State::Done,
                reason: "deployed".into(),
                result: json!({"outcome": "deployed", "deployment_id": d.id, "live_url": s.live_url, "commit": commit}),
                followups: vec![
                    NewTask {
                        kind: Kind::E2eTest,
                        title: format!("E2E: verify {pr} on {app} at {short}"),
                        priority: e2e_priority,
                        // Keyed by the deployment like the fixer's own e2e-test task for it, so
                        // the two are one task (the PR's context enriches the fixer's, or the
                        // fixer's later one is absorbed), not two runs of the same tests.
                        dedup_key: format!("e2e:{}", d.id),
                        app: Some(app.to_string()),
                        context: live.clone(),
                    },
                    NewTask {
                        kind: Kind::Announce,
                        title: format!("ANNOUNCE: {pr} is live on {app} (commit {short})"),
                        priority: 4,
                        dedup_key: key(&task.id, "announce:deployed"),
                        app: Some(app.to_string()),
                        context: live,
                    },
                ],
            })
        }
        Verdict::Failed {
            deployment,
            failure,
        } => Some(failed(
            task,
            commit,
            app,
            deployment,
            failure.as_deref(),
            None,
            s,
        )),
        Verdict::TimedOut { deployment } => {
            let reason = if deployment.is_some() {
                "deployment_timeout"
            } else {
                "no_deployment"
            };
            let what = match deployment {
                Some(d) => format!(
                    "deployment {} of {pr} on {app} (commit {short}) is still {} after {}",
                    d.id,
                    d.phase.as_str(),
                    s.timeout_text
                ),
                None => format!(
                    "no deployment of {pr} (commit {short}) on {app} appeared within {}",
                    s.timeout_text
                ),
            };
            Some(Settlement {
                state: State::Failed,
                reason: reason.into(),
                result: json!({"outcome": reason, "commit": commit, "deployment_id": deployment.as_ref().map(|d| &d.id)}),
                followups: vec![NewTask {
                    kind: Kind::Announce,
                    title: format!("ANNOUNCE: investigate: {what}"),
                    priority: impact::fix_priority(env, impact::HIGH),
                    dedup_key: key(&task.id, &format!("announce:{reason}")),
                    app: Some(app.to_string()),
                    context: with(json!({
                        "reason": reason,
                        "summary": what,
                        "deployment": deployment.as_ref().map(deployment_json),
                        "instructions": "Check that the app deploys from the merged branch (deploy_on_push), that the build was triggered, and whether DigitalOcean shows the deployment; then redeploy or report.",
                    })),
                }],
            })
        }
    }
}

fn failed(
    task: &Task,
    commit: &str,
    app: &str,
    d: &DeploymentView,
    f: Option<&FailureView>,
    verification: Option<&String>,
    s: &Surroundings<'_>,
) -> Settlement {
    let short = prefix(commit, 7);
    let pr = pr_label(task);
    let env = environment(task, s);
    let class = f.map(|f| f.class);
    let step = f
        .and_then(|f| f.failed_step.as_ref())
        .map(|st| st.top_step.clone());
    let reason = match (verification, class, &step) {
        (Some(_), _, _) => "verification_failed".to_string(),
        (None, Some(k), Some(st)) => format!(
            "deployment_failed: {} in step {st}",
            serde_json::to_value(k)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ),
        (None, Some(k), None) => format!(
            "deployment_failed: {}",
            serde_json::to_value(k)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ),
        (None, None, _) => format!("deployment_failed: {}", d.phase.as_str().to_lowercase()),
    };
    // The suspect range: what served traffic before (it did not fail) up to this commit.
    let from = s
        .active_commit
        .filter(|c| !super::deploy::same_commit(c, commit));
    let mut ctx = pr_context(task, commit, app);
    if let Some(o) = ctx.as_object_mut() {
        let extra = json!({
            "deployment": deployment_json(d),
            "deployment_id": d.id,
            "failed_step": f.and_then(|f| f.failed_step.as_ref()),
            "step": step,
            "reason": reason,
            "verification": verification,
            "classification": class,
            "instructions": class.map(|k| k.instructions()),
            "log_tail": f.and_then(|f| f.log_tail.as_deref()),
            "suspect_commits": {"from": from, "to": commit},
            "trace_id": d.trace_id,
        });
        if let Value::Object(e) = extra {
            o.extend(e);
        }
    }
    let what = class.map_or("Deployment error", |k| k.title());
    let title_what = if verification.is_some() {
        "Deployment verification failure"
    } else {
        what
    };
    Settlement {
        state: State::Failed,
        reason: reason.clone(),
        result: json!({"outcome": "failed", "deployment_id": d.id, "reason": reason, "commit": commit}),
        followups: vec![
            NewTask {
                kind: Kind::Fix,
                title: format!("FIX: {title_what} in {app}"),
                priority: impact::fix_priority(env, impact::NORMAL),
                dedup_key: key(&task.id, "fix"),
                app: Some(app.to_string()),
                context: ctx.clone(),
            },
            NewTask {
                kind: Kind::Announce,
                title: format!(
                    "ANNOUNCE: {pr} failed to deploy to {app} (commit {short}): {}",
                    what.to_lowercase()
                ),
                priority: 2,
                dedup_key: key(&task.id, "announce:failed"),
                app: Some(app.to_string()),
                context: ctx,
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::classify::{FailedStep, FailureClass};
    use crate::domain::{FailureView, Phase};

    const C: &str = "9a4df0b8e161e323bc3cdf1dc71878080fe144fa";

    fn task(target: &str) -> Task {
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        Task {
            id: "t1".into(),
            queue: super::super::Queue::Deploy,
            kind: Kind::Deploy,
            title: "DEPLOY: PR #42 - search".into(),
            priority: 2,
            state: State::Claimed,
            dedup_key: "k".into(),
            app: Some("api".into()),
            context: json!({"pr_number": 42, "pr_url": "https://github.com/o/r/pull/42", "branch": "feat/search", "target": target, "commit_build_task_id": "b7"}),
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

    fn dep(phase: Phase) -> DeploymentView {
        DeploymentView {
            id: "d1".into(),
            phase,
            cause: None,
            commit: Some(C.into()),
            created_at: None,
            ended_at: None,
            trace_id: "tr".into(),
            steps: vec![],
        }
    }

    fn around() -> Surroundings<'static> {
        Surroundings {
            live_url: Some("https://api.example.com"),
            active_commit: Some("1111111111111111111111111111111111111111"),
            environment: None,
            timeout_text: "30m".into(),
        }
    }

    #[test]
    fn each_verdict_settles_with_its_follow_ups() {
        let fail = FailureView {
            deployment_id: "d1".into(),
            failed_step: Some(FailedStep {
                top_step: "build".into(),
                step: "build_api".into(),
                component: Some("api".into()),
                reason_code: Some("BuildJobFailed".into()),
                reason_message: None,
            }),
            class: FailureClass::BuildError,
            log_tail: Some("npm ERR! missing script".into()),
            commit: Some(C.into()),
            cause: None,
            trace_id: "tr".into(),
            ended_at: None,
        };
        let nr = Verification::NotRequired;
        let cases: Vec<(
            &str,
            &str,
            Verdict,
            Verification,
            Option<(State, &str, Vec<(Kind, &str, i64)>)>,
        )> = vec![
            ("waiting", "production", Verdict::Waiting, nr.clone(), None),
            (
                "deployed, verification pending",
                "production",
                Verdict::Deployed(dep(Phase::Active)),
                Verification::Pending,
                None,
            ),
            (
                "deployed to production",
                "production",
                Verdict::Deployed(dep(Phase::Active)),
                nr.clone(),
                Some((
                    State::Done,
                    "deployed",
                    vec![
                        (Kind::E2eTest, "E2E: verify PR #42 on api at 9a4df0b", 2),
                        (
                            Kind::Announce,
                            "ANNOUNCE: PR #42 is live on api (commit 9a4df0b)",
                            4,
                        ),
                    ],
                )),
            ),
            (
                "failed on staging",
                "staging",
                Verdict::Failed {
                    deployment: dep(Phase::Error),
                    failure: Some(Box::new(fail.clone())),
                },
                nr.clone(),
                Some((
                    State::Failed,
                    "deployment_failed: build_error in step build",
                    vec![
                        (Kind::Fix, "FIX: Build error in api", 2),
                        (
                            Kind::Announce,
                            "ANNOUNCE: PR #42 failed to deploy to api (commit 9a4df0b): build error",
                            2,
                        ),
                    ],
                )),
            ),
            (
                "failed in production is critical",
                "production",
                Verdict::Failed {
                    deployment: dep(Phase::Error),
                    failure: Some(Box::new(fail)),
                },
                nr.clone(),
                Some((
                    State::Failed,
                    "deployment_failed: build_error in step build",
                    vec![
                        (Kind::Fix, "FIX: Build error in api", 1),
                        (
                            Kind::Announce,
                            "ANNOUNCE: PR #42 failed to deploy to api (commit 9a4df0b): build error",
                            2,
                        ),
                    ],
                )),
            ),
            (
                "canceled without a failure record",
                "",
                Verdict::Failed {
                    deployment: dep(Phase::Canceled),
                    failure: None,
                },
                nr.clone(),
                Some((
                    State::Failed,
                    "deployment_failed: canceled",
                    vec![
                        (Kind::Fix, "FIX: Deployment error in api", 3),
                        (
                            Kind::Announce,
                            "ANNOUNCE: PR #42 failed to deploy to api (commit 9a4df0b): deployment error",
                            2,
                        ),
                    ],
                )),
            ),
            (
                "verification failed",
                "production",
                Verdict::Deployed(dep(Phase::Active)),
                Verification::Failed("error rate 9%".into()),
                Some((
                    State::Failed,
                    "verification_failed",
                    vec![
                        (Kind::Fix, "FIX: Deployment verification failure in api", 1),
                        (
                            Kind::Announce,
                            "ANNOUNCE: PR #42 failed to deploy to api (commit 9a4df0b): deployment error",
                            2,
                        ),
                    ],
                )),
            ),
            (
                "no deployment",
                "staging",
                Verdict::TimedOut { deployment: None },
                nr.clone(),
                Some((
                    State::Failed,
                    "no_deployment",
                    vec![(
                        Kind::Announce,
                        "ANNOUNCE: investigate: no deployment of PR #42 (commit 9a4df0b) on api appeared within 30m",
                        2,
                    )],
                )),
            ),
            (
                "stuck deploying",
                "production",
                Verdict::TimedOut {
                    deployment: Some(dep(Phase::Deploying)),
                },
                nr,
                Some((
                    State::Failed,
                    "deployment_timeout",
                    vec![(
                        Kind::Announce,
                        "ANNOUNCE: investigate: deployment d1 of PR #42 on api (commit 9a4df0b) is still DEPLOYING after 30m",
                        1,
                    )],
                )),
            ),
        ];
        for (what, target, verdict, verification, want) in cases {
            let got = settle(&task(target), C, "api", &verdict, &verification, &around());
            let got = got.map(|s| {
                for f in &s.followups {
                    assert_eq!(f.context["parent_task_id"], "t1", "{what}: {}", f.title);
                    assert_eq!(f.context["pr_number"], 42, "{what}: {}", f.title);
                    let keyed = if f.kind == Kind::E2eTest {
                        "e2e:d1"
                    } else {
                        "deploy:t1:"
                    };
                    assert!(f.dedup_key.starts_with(keyed), "{what}: {}", f.dedup_key);
                }
                let tasks: Vec<(Kind, String, i64)> = s
                    .followups
                    .iter()
                    .map(|f| (f.kind, f.title.clone(), f.priority))
                    .collect();
                (s.state, s.reason, tasks)
            });
            let want = want.map(|(st, r, ts)| {
                (
                    st,
                    r.to_string(),
                    ts.into_iter()
                        .map(|(k, t, p)| (k, t.to_string(), p))
                        .collect::<Vec<_>>(),
                )
            });
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn fix_tasks_carry_the_failing_step_log_and_suspect_range() {
        let f = FailureView {
            deployment_id: "d1".into(),
            failed_step: None,
            class: FailureClass::HealthCheckFailure,
            log_tail: Some("readiness probe failed".into()),
            commit: Some(C.into()),
            cause: None,
            trace_id: "tr".into(),
            ended_at: None,
        };
        let s = settle(
            &task("production"),
            C,
            "api",
            &Verdict::Failed {
                deployment: dep(Phase::Error),
                failure: Some(Box::new(f)),
            },
            &Verification::NotRequired,
            &around(),
        )
        .unwrap_or_else(|| panic!("a failure settles"));
        let fix = &s.followups[0].context;
        assert_eq!(fix["pr_url"], "https://github.com/o/r/pull/42");
        assert_eq!(fix["log_tail"], "readiness probe failed");
        assert_eq!(
            fix["suspect_commits"]["from"],
            "1111111111111111111111111111111111111111"
        );
        assert_eq!(fix["suspect_commits"]["to"], C);
        assert_eq!(fix["reason"], "deployment_failed: health_check_failure");
        assert_eq!(fix["deployment_id"], "d1");
    }
}
