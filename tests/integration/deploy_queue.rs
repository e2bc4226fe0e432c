//! The agents' deploy loop end to end: a deploy task is created through the API, claimed, reported
//! merged; the simulator deploys the commit (or does not); deploywatch settles the task and queues
//! its follow-ups once, across restarts, on both store backends.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use do_simulator::Script;
use serde_json::{Value, json};

use crate::helpers::*;

const TOKEN: &str = "deploy-queue-token";
const OLD: &str = "1111111111111111111111111111111111111111";
const C: &str = "9a4df0b8e161e323bc3cdf1dc71878080fe144fa";
const C2: &str = "54d4a727f45723106243989b6c8b2ad4e4a9b3bb";

fn toml(sim: &str, timeout: &str, extra: &str) -> String {
    format!(
        "[digitalocean]\napi_url = \"{sim}\"\npoll_interval = \"300ms\"\nfast_poll_interval = \"100ms\"\n\
         request_timeout = \"1s\"\nbudget_share = 1.0\n\n[health]\ndiscover = false\n\n\
         [deploy]\ntimeout = \"{timeout}\"\n\n\
         [[apps]]\nname = \"api\"\nenvironment = \"production\"\n\n\
         [[apps]]\nname = \"api-staging\"\nenvironment = \"staging\"\n\n\
         [[pipelines]]\nstaging_app = \"api-staging\"\nproduction_app = \"api\"\n{extra}"
    )
}

const VARS: [(&str, &str); 2] = [
    ("DIGITALOCEAN_TOKEN", "sim-token"),
    ("DEPLOYWATCH_WEBHOOK_TOKEN", TOKEN),
];

async fn start(db: TestDb, toml: &str) -> TestApp {
    let app = spawn_app_on(db, toml, &VARS, Default::default()).await;
    until(
        "the poller sees app api",
        Duration::from_secs(15),
        || async { app.app().app_view("api").and_then(|v| v.active) },
    )
    .await;
    app
}

async fn sim() -> SimHandle {
    SimBuilder::new()
        .app("api", OLD)
        .app("api-staging", OLD)
        .start()
        .await
}

fn deploy_body(pr: u64, dedup: Option<&str>) -> Value {
    let mut b = json!({
        "queue": "deploy",
        "kind": "deploy",
        "title": format!("DEPLOY: PR #{pr} - search filters"),
        "priority": 2,
        "app": "api",
        "context": {
            "pr_number": pr,
            "pr_url": format!("https://github.com/acme/api/pull/{pr}"),
            "branch": "feat/search",
            "target": "production",
            "commit_build_task_id": "build-7",
        },
    });
    if let Some(k) = dedup {
        b["dedup_key"] = json!(k);
    }
    b
}

/// Creates a deploy task for PR `pr` and claims it as `worker`; returns its id.
async fn create_and_claim(app: &TestApp, pr: u64, worker: &str) -> String {
    let t = app
        .post("/api/v1/tasks", &deploy_body(pr, None))
        .await
        .expect_status(201, "create a deploy task");
    let id = t["id"].as_str().expect("id").to_string();
    let claimed = app
        .claim_for("deploy", worker, 600)
        .await
        .task()
        .expect("the deploy task is claimable");
    assert_eq!(claimed["id"], id.as_str());
    id
}

async fn merged(app: &TestApp, id: &str, worker: &str, commit: &str) -> Value {
    app.post(
        &format!("/api/v1/tasks/{id}/merged"),
        &json!({"worker": worker, "commit": commit}),
    )
    .await
    .expect_status(200, "report the merge")
}

/// Waits until task `id` is closed in `state`, and returns it.
async fn until_closed(app: &TestApp, id: &str, state: &str, limit: Duration) -> Value {
    until(&format!("task {id} {state}"), limit, || async {
        let t = app.task(id).await["task"].clone();
        if t["state"] == state { Ok(t) } else { Err(t) }
    })
    .await
}

fn with_parent<'a>(tasks: &'a [Value], parent: &str) -> Vec<&'a Value> {
    tasks
        .iter()
        .filter(|t| t["context"]["parent_task_id"] == parent)
        .collect()
}

/// The follow-ups of `parent` per queue, and the announcements naming `pr`.
async fn tally(app: &TestApp, parent: &str, pr: u64) -> (usize, usize, usize) {
    let e2e = app.tasks("e2e-test").await;
    let exec = app.tasks("execution").await;
    let ann = app.tasks("announce").await;
    let named = ann
        .iter()
        .filter(|t| {
            t["title"]
                .as_str()
                .is_some_and(|s| s.contains(&format!("PR #{pr} ")))
        })
        .count();
    (
        with_parent(&e2e, parent).len(),
        with_parent(&exec, parent).len(),
        named,
    )
}

#[tokio::test]
async fn a_merged_commit_goes_live_once_across_restarts() {
    for kind in [Kind::Sqlite, Kind::Postgres] {
        let sim = sim().await;
        let cfg = toml(&sim.url, "60s", "");
        let app = start(db(kind).await, &cfg).await;

        // The route is protected like the other task routes.
        let anon = app
            .post_json("/api/v1/tasks", &deploy_body(42, None), None)
            .await;
        assert_eq!(anon.status(), 401, "{kind:?}: no token, no task");
        // Idempotent with a dedup key: the repeat answers 200 with the same task.
        let first = app
            .post("/api/v1/tasks", &deploy_body(42, Some("pr-42")))
            .await
            .expect_status(201, "create");
        let again = app
            .post("/api/v1/tasks", &deploy_body(42, Some("pr-42")))
            .await
            .expect_status(200, "repeat with the same dedup key");
        assert_eq!(first["id"], again["id"]);
        assert_eq!(first["queue"], "deploy");
        assert_eq!(first["kind"], "deploy");
        assert_eq!(first["context"]["target"], "production");
        let id = first["id"].as_str().expect("id").to_string();
        let claimed = app
            .claim_for("deploy", "agent-1", 30)
            .await
            .task()
            .expect("claim");
        assert_eq!(claimed["id"], id.as_str());

        // Only the holder reports the merge; the task stays held, its lease runs past the timeout.
        let stranger = app
            .post(
                &format!("/api/v1/tasks/{id}/merged"),
                &json!({"worker": "agent-2", "commit": C}),
            )
            .await;
        assert_eq!(stranger.status, 409, "{kind:?}: {}", stranger.body);
        let bad = app
            .post(
                &format!("/api/v1/tasks/{id}/merged"),
                &json!({"worker": "agent-1", "commit": "main"}),
            )
            .await;
        assert_eq!(bad.status, 422, "{}", bad.body);
        assert_eq!(bad.body["error"], "invalid_commit");
        let m = merged(&app, &id, "agent-1", C).await;
        assert_eq!(m["state"], "claimed");
        assert_eq!(m["worker"], "agent-1");
        assert_eq!(m["context"]["commit"], C);
        assert_eq!(m["context"]["pr_number"], 42);
        let lease: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(m["lease_expires_at"].clone()).expect("lease");
        assert!(lease > chrono::Utc::now() + chrono::Duration::seconds(59));
        // Staging never saw the commit: the production deploy carries a warning.
        let warning = m["context"]["pipeline_warning"]
            .as_str()
            .unwrap_or_default();
        assert!(warning.contains("api-staging"), "{kind:?}: {m}");
        let status = app.status().await;
        let shown = status["open_tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["id"] == id.as_str() && t["context"]["pipeline_warning"] == warning);
        assert!(shown, "{kind:?}: status shows the warning: {status}");

        // Restart between the merge and the deployment.
        let db_ = app.stop().await;
        let app = start(db_, &cfg).await;
        sim.deploy("api", C, Script::Success);
        let done = until_closed(&app, &id, "done", Duration::from_secs(20)).await;
        assert_eq!(done["closed_reason"], "deployed");
        assert_eq!(done["result"]["commit"], C);

        let e2e: Vec<Value> = app.tasks("e2e-test").await;
        let ours = with_parent(&e2e, &id);
        if ours.len() != 1 {
            let h = app.task(&id).await;
            let fx = app.task(e2e[0]["id"].as_str().unwrap_or_default()).await;
            panic!("{kind:?}: one e2e-test task: {e2e:?}\nDEPLOY {h}\nFIXER {fx}");
        }
        assert_eq!(
            e2e.len(),
            1,
            "{kind:?}: the fixer's e2e task for the deployment is the same one"
        );
        let c = &ours[0]["context"];
        assert_eq!(c["pr_number"], 42);
        assert_eq!(c["pr_url"], "https://github.com/acme/api/pull/42");
        assert_eq!(c["commit"], C);
        assert!(
            c["live_url"]
                .as_str()
                .is_some_and(|u| u.contains("/sim/apps/api")),
            "{c}"
        );
        until(
            "one announcement naming PR #42",
            Duration::from_secs(5),
            || async {
                let t = tally(&app, &id, 42).await;
                if t == (1, 0, 1) { Ok(t) } else { Err(t) }
            },
        )
        .await;
        let ann = app.tasks("announce").await;
        let live = ann
            .iter()
            .find(|t| t["title"].as_str().is_some_and(|s| s.contains("PR #42 ")))
            .expect("announcement");
        assert_eq!(
            live["title"],
            "ANNOUNCE: PR #42 is live on api (commit 9a4df0b)"
        );

        // Restart after settling: nothing is queued again.
        let db_ = app.stop().await;
        let app = start(db_, &cfg).await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            tally(&app, &id, 42).await,
            (1, 0, 1),
            "{kind:?}: after a restart"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_failed_deployment_queues_fix_tasks_that_link_the_deploy_task_and_pr() {
    for kind in [Kind::Sqlite, Kind::Postgres] {
        failed_deployment_on(kind).await;
    }
}

async fn failed_deployment_on(kind: Kind) {
    let sim = sim().await;
    let cfg = toml(&sim.url, "60s", "");
    let app = start(db(kind).await, &cfg).await;
    let id = create_and_claim(&app, 77, "agent-1").await;
    merged(&app, &id, "agent-1", C2).await;
    // A heartbeat that shortens the lease does not hand the watched task back: the loop holds it.
    app.heartbeat(&id, "agent-1", 1)
        .await
        .expect_status(200, "heartbeat");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // A claim expires lapsed leases first: the watched task must not be handed to another agent.
    assert!(
        app.claim("deploy", "agent-2").await.task().is_none(),
        "{kind:?}: the watched task stays with agent-1"
    );
    let held = app.task(&id).await["task"].clone();
    assert_eq!(held["state"], "claimed", "{kind:?}: {held}");
    sim.deploy("api", C2, Script::BuildFailure);
    let failed = until_closed(&app, &id, "failed", Duration::from_secs(20)).await;
    let reason = failed["closed_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("deployment_failed"), "{reason}");

    let exec = app.tasks("execution").await;
    let fixes = with_parent(&exec, &id);
    assert_eq!(fixes.len(), 1, "{exec:?}");
    let f = fixes[0];
    assert_eq!(f["kind"], "fix");
    assert_eq!(f["priority"], 1, "production fixes are critical");
    assert!(
        f["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("FIX: ") && t.ends_with(" in api"))
    );
    let c = &f["context"];
    assert_eq!(c["pr_number"], 77);
    assert_eq!(c["pr_url"], "https://github.com/acme/api/pull/77");
    assert_eq!(c["suspect_commits"]["from"], OLD);
    assert_eq!(c["suspect_commits"]["to"], C2);
    assert_eq!(c["reason"], reason);
    assert!(
        c.get("log_tail").is_some() && c.get("step").is_some(),
        "{c}"
    );
    assert_eq!(tally(&app, &id, 77).await, (0, 1, 1));

    // A restart finds the task settled and queues nothing more.
    let db_ = app.stop().await;
    let app = start(db_, &cfg).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(tally(&app, &id, 77).await, (0, 1, 1));
    app.stop().await;
}

#[tokio::test]
async fn no_deployment_within_the_timeout_asks_for_an_investigation() {
    for kind in [Kind::Sqlite, Kind::Postgres] {
        let sim = sim().await;
        let cfg = toml(&sim.url, "2s", "");
        let app = start(db(kind).await, &cfg).await;
        let id = create_and_claim(&app, 5, "agent-1").await;
        merged(&app, &id, "agent-1", C).await;
        let t = until_closed(&app, &id, "failed", Duration::from_secs(15)).await;
        assert_eq!(t["closed_reason"], "no_deployment");
        let ann = app.tasks("announce").await;
        let ours = with_parent(&ann, &id);
        assert_eq!(ours.len(), 1, "{kind:?}: {ann:?}");
        assert!(
            ours[0]["title"]
                .as_str()
                .is_some_and(|s| s.starts_with("ANNOUNCE: investigate: no deployment of PR #5")),
            "{}",
            ours[0]["title"]
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn agents_fail_reasons_queue_their_follow_ups_once() {
    let sim = sim().await;
    let cfg = toml(&sim.url, "60s", "");
    let app = start(db(Kind::Sqlite).await, &cfg).await;
    for (pr, reason, queue, title_start) in [
        (
            11,
            "not_approved",
            "announce",
            "ANNOUNCE: PR #11 (api) needs approval",
        ),
        (
            12,
            "merge_conflict",
            "execution",
            "FIX: Merge conflict in PR #12 (api)",
        ),
        (
            13,
            "merge_failed",
            "announce",
            "ANNOUNCE: PR #13 (api) could not be merged",
        ),
    ] {
        let id = create_and_claim(&app, pr, "agent-1").await;
        let failed = app
            .fail(&id, "agent-1", reason)
            .await
            .expect_status(200, reason);
        assert_eq!(failed["state"], "failed", "{reason}: not back in the queue");
        assert_eq!(failed["closed_reason"], reason);
        // A retried report is refused and queues nothing more.
        assert_eq!(app.fail(&id, "agent-1", reason).await.status, 409);
        let tasks = app.tasks(queue).await;
        let ours = with_parent(&tasks, &id);
        assert_eq!(ours.len(), 1, "{reason}: {tasks:?}");
        assert!(
            ours[0]["title"]
                .as_str()
                .is_some_and(|t| t.starts_with(title_start)),
            "{reason}: {}",
            ours[0]["title"]
        );
        assert_eq!(ours[0]["context"]["pr_number"], pr);
        assert_eq!(ours[0]["context"]["reason"], reason);
    }
    // Free text keeps the plain behaviour: back to the queue, no follow-up.
    let id = create_and_claim(&app, 14, "agent-1").await;
    let t = app
        .fail(&id, "agent-1", "CI was flaky")
        .await
        .expect_status(200, "free text");
    assert_eq!(t["state"], "queued");
    for q in ["announce", "execution"] {
        assert!(with_parent(&app.tasks(q).await, &id).is_empty());
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_create_requests_name_the_field() {
    let sim = sim().await;
    let app = start(db(Kind::Sqlite).await, &toml(&sim.url, "60s", "")).await;
    for (patch, code) in [
        (json!({"queue": "nope"}), "invalid_queue"),
        (json!({"kind": "fix"}), "invalid_kind"),
        (json!({"title": ""}), "invalid_title"),
        (json!({"priority": 9}), "invalid_priority"),
        (json!({"app": null}), "invalid_app"),
        (json!({"context": "x"}), "invalid_context"),
    ] {
        let mut b = deploy_body(1, None);
        for (k, v) in patch.as_object().expect("object") {
            b[k] = v.clone();
        }
        let a = app.post("/api/v1/tasks", &b).await;
        assert_eq!(a.status, 422, "{patch}: {}", a.body);
        assert_eq!(a.body["error"], code, "{patch}");
    }
    assert!(app.tasks("deploy").await.is_empty(), "nothing was stored");
    // Merged on a task that is not a deploy task: 409.
    let fix = app
        .post(
            "/api/v1/tasks",
            &json!({"queue": "execution", "title": "FIX: something in api"}),
        )
        .await
        .expect_status(201, "a fix task");
    let w = app.claim("execution", "w").await.task().expect("claim");
    assert_eq!(w["id"], fix["id"]);
    let a = app
        .post(
            &format!("/api/v1/tasks/{}/merged", fix["id"].as_str().expect("id")),
            &json!({"worker": "w", "commit": C}),
        )
        .await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.body["error"], "not_a_deploy_task");
    app.stop().await;
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn commit(dir: &Path, msg: &str) -> String {
    std::fs::write(dir.join("file.txt"), msg).expect("write");
    git(dir, &["add", "file.txt"]);
    git(dir, &["commit", "-q", "-m", msg]);
    git(dir, &["rev-parse", "HEAD"])
}

/// A later push that contains the merged commit is its deployment, when the git source knows the
/// history (a real repository made here).
#[tokio::test]
async fn a_later_deployment_containing_the_commit_counts_with_git() {
    let tmp = tempfile::tempdir().expect("tmp");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    git(&work, &["init", "-q", "-b", "main"]);
    let base = commit(&work, "base");
    let pr = commit(&work, "the pull request's merge");
    let later = commit(&work, "a later push");
    let sim = SimBuilder::new()
        .app("api", &base)
        .app("api-staging", &base)
        .start()
        .await;
    let extra = format!(
        "\n[git]\nfetch_interval = \"200ms\"\n\n[[git.repos]]\nname = \"api\"\nurl = \"{}\"\nbranches = [\"main\"]\napp = \"api\"\n",
        work.display()
    );
    let app = start(db(Kind::Sqlite).await, &toml(&sim.url, "60s", &extra)).await;
    let id = create_and_claim(&app, 21, "agent-1").await;
    merged(&app, &id, "agent-1", &pr).await;
    sim.deploy("api", &later, Script::Success);
    let done = until_closed(&app, &id, "done", Duration::from_secs(20)).await;
    assert_eq!(done["closed_reason"], "deployed");
    let e2e = app.tasks("e2e-test").await;
    assert_eq!(with_parent(&e2e, &id).len(), 1, "{e2e:?}");
    app.stop().await;
}

/// The fixer's e2e-test task for a deployment and the deploy task's are one task, whichever is
/// placed first; settling twice places nothing twice.
#[tokio::test]
async fn the_fixers_e2e_task_and_the_deploy_tasks_are_one() {
    use deploywatch::store::{FollowUp, PlaceOptions};
    use deploywatch::tasks::settle::Settlement;
    use deploywatch::tasks::{Kind as TaskKind, NewTask, State};
    for kind in [Kind::Sqlite, Kind::Postgres] {
        let sim = sim().await;
        let app = start(db(kind).await, &toml(&sim.url, "60s", "")).await;
        let store = &app.app().store;
        let opts = PlaceOptions {
            max_attempts: 3,
            reopen_window: Duration::ZERO,
            notifiers: &[],
        };
        let id = create_and_claim(&app, 8, "agent-1").await;
        let e2e = |title: &str, context: Value| NewTask {
            kind: TaskKind::E2eTest,
            title: title.into(),
            priority: 3,
            dedup_key: "e2e:dep-1".into(),
            app: Some("api".into()),
            context,
        };
        // The fixer was first.
        store
            .create_tasks(
                &[e2e(
                    "E2E: verify api at 9a4df0b",
                    json!({"event": "succeeded"}),
                )],
                &opts,
            )
            .await
            .expect("fixer's task");
        let s = Settlement {
            state: State::Done,
            reason: "deployed".into(),
            result: json!({"outcome": "deployed"}),
            followups: vec![e2e(
                "E2E: verify PR #8 on api at 9a4df0b",
                json!({"parent_task_id": id, "pr_number": 8}),
            )],
        };
        let placed = store.settle_deploy(&id, &s, &opts).await.expect("settle");
        assert_eq!(placed, Some(vec![FollowUp::Enriched]), "{kind:?}");
        assert_eq!(
            store.settle_deploy(&id, &s, &opts).await.expect("again"),
            None
        );
        let tasks = app.tasks("e2e-test").await;
        assert_eq!(tasks.len(), 1, "{kind:?}: {tasks:?}");
        assert_eq!(tasks[0]["title"], "E2E: verify PR #8 on api at 9a4df0b");
        assert_eq!(tasks[0]["context"]["pr_number"], 8);
        assert_eq!(
            tasks[0]["context"]["event"], "succeeded",
            "the fixer's context stays"
        );
        // The fixer after: absorbed by the open task.
        store
            .create_tasks(&[e2e("E2E: verify api at 9a4df0b", json!({}))], &opts)
            .await
            .expect("fixer's repeat");
        assert_eq!(app.tasks("e2e-test").await.len(), 1);
        app.stop().await;
    }
}

/// `tasks add` and `tasks merged` from the command line (the binary, against the server).
#[tokio::test]
async fn the_cli_adds_a_deploy_task_and_reports_it_merged() {
    let sim = sim().await;
    let app = start(db(Kind::Sqlite).await, &toml(&sim.url, "60s", "")).await;
    let url = app.url.clone();
    let run = move |args: Vec<String>| {
        let url = url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Deploywatch::here()
                    .arg("tasks")
                    .args(&args)
                    .args(&["--server", &url])
                    .env("DEPLOYWATCH_WEBHOOK_TOKEN", TOKEN)
                    .env_remove("DEPLOYWATCH_WORKER")
                    .run_split()
            })
            .await
            .expect("join")
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let context =
        r#"{"pr_number": 9, "pr_url": "https://github.com/acme/api/pull/9", "target": "staging"}"#;
    let (code, out, err) = run(s(&[
        "add",
        "--queue",
        "deploy",
        "--title",
        "DEPLOY: PR #9 - dark mode",
        "--app",
        "api",
        "--priority",
        "2",
        "--context",
        context,
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    let t: Value = serde_json::from_str(&out).expect("add prints the task");
    assert_eq!(t["state"], "queued");
    assert_eq!(t["context"]["pr_number"], 9);
    let id = t["id"].as_str().expect("id").to_string();
    let (code, _, err) = run(s(&[
        "add",
        "--queue",
        "deploy",
        "--title",
        "x",
        "--context",
        "{nope",
    ]))
    .await;
    assert_eq!(code, 2, "bad --context is a usage error: {err}");
    let (code, _, err) = run(s(&[
        "add",
        "--queue",
        "deploy",
        "--title",
        "DEPLOY: no app",
    ]))
    .await;
    assert_eq!(code, 2, "422 → exit 2");
    assert!(err.contains("app"), "{err}");
    app.claim_for("deploy", "agent-9", 600)
        .await
        .task()
        .expect("claim");
    // Without --worker the holder reports it.
    let (code, out, err) = run(s(&["merged", &id, "--commit", C])).await;
    assert_eq!(code, 0, "{err}");
    let m: Value = serde_json::from_str(&out).expect("merged prints the task");
    assert_eq!(m["context"]["commit"], C);
    let (code, _, err) = run(s(&[
        "merged",
        &id,
        "--commit",
        C,
        "--worker",
        "someone-else",
    ]))
    .await;
    assert_eq!(code, 1, "409 → exit 1: {err}");
    sim.deploy("api", C, Script::Success);
    until_closed(&app, &id, "done", Duration::from_secs(20)).await;
    app.stop().await;
}
