//! The agents' loop on the client side: `watch --commit` against the simulator (and through a
//! server), and `deploywatch hooks` in real git repositories pushing to a local bare remote, with
//! background watchers that follow the pushed commit to its deployment.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use do_simulator::Script;
use serde_json::Value;

use crate::helpers::{Deploywatch, Kind, SimBuilder, seen, spawn_app, until};

const STEP: Duration = Duration::from_millis(150);
const OLD: &str = "9a4df0b8e161e323bc3cdf1dc71878080fe144fa";

/// `git` in `dir`, isolated from the machine's own git configuration; panics on failure.
fn git(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = git_with(dir, args, &[]);
    assert_eq!(code, 0, "git {args:?} in {}: {out}{err}", dir.display());
    out.trim().to_string()
}

fn git_with(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env_remove("DEPLOYWATCH_SERVER")
        .env_remove("DEPLOYWATCH_WEBHOOK_TOKEN")
        .env_remove("DIGITALOCEAN_TOKEN")
        .envs(envs.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("run git: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A bare remote and a clone with one commit on main, pushed.
struct Repos {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    work: PathBuf,
}

impl Repos {
    fn new() -> Repos {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        git(&root, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
        git(&root, &["init", "-q", "-b", "main", "work"]);
        let work = root.join("work");
        git(&work, &["remote", "add", "origin", "../remote.git"]);
        let r = Repos {
            _tmp: tmp,
            root,
            work,
        };
        r.commit("first");
        git(&r.work, &["push", "-q", "origin", "main"]);
        r
    }

    fn commit(&self, name: &str) -> String {
        std::fs::write(self.work.join(name), name).unwrap();
        git(&self.work, &["add", name]);
        git(&self.work, &["commit", "-q", "-m", name]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn state(&self) -> PathBuf {
        self.work.join(".git/deploywatch")
    }

    fn status_of(&self, sha: &str) -> Option<Value> {
        let b = std::fs::read(self.state().join(format!("{sha}.json"))).ok()?;
        serde_json::from_slice(&b).ok()
    }

    fn files(&self, ext: &str) -> Vec<String> {
        std::fs::read_dir(self.state())
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(ext))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn dw(&self, args: &[&str]) -> (i32, String, String) {
        Deploywatch::new(&self.work)
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env_remove("DEPLOYWATCH_SERVER")
            .run_split()
    }

    /// Waits until the watcher of `sha` has left `running`, and returns its status.
    async fn finished(&self, sha: &str, limit: Duration) -> Value {
        until(
            &format!("the watcher of {sha} to finish"),
            limit,
            || async {
                let s = self.status_of(sha);
                let done = s.as_ref().is_some_and(|s| s["state"] != "running");
                seen(done, (s, self.files("")))
            },
        )
        .await
        .0
        .unwrap()
    }
}

fn sim_env(url: &str) -> [(&'static str, String); 2] {
    [
        ("DIGITALOCEAN_TOKEN", "sim-token".to_string()),
        ("DEPLOYWATCH_DO_API_URL", url.to_string()),
    ]
}

fn push(r: &Repos, args: &[&str], envs: &[(&str, String)]) -> (i32, String, Duration) {
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let start = Instant::now();
    let mut a = vec!["push"];
    a.extend_from_slice(args);
    let (code, out, err) = git_with(&r.work, &a, &envs);
    (code, format!("{out}{err}"), start.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_commit_is_watched_to_its_deployment_then_listed_and_cleaned() {
    let sim = SimBuilder::new().step(STEP).app("api", OLD).start().await;
    let r = Repos::new();
    let (code, out, err) = r.dw(&["hooks", "install", "--watch-timeout", "60"]);
    assert_eq!(code, 0, "{out}{err}");
    let sha = r.commit("feature");
    // Locks left by watchers that died (a PID nothing runs as): taken over, and cleaned up.
    let dead = "4194303\n";
    std::fs::write(r.state().join(format!("{sha}.lock")), dead).unwrap();
    let other = "abcdef0123456789abcdef0123456789abcdef01";
    std::fs::write(r.state().join(format!("{other}.lock")), dead).unwrap();
    let (code, out, took) = push(&r, &["origin", "main"], &sim_env(&sim.url));
    assert_eq!(code, 0, "the push goes through: {out}");
    assert!(
        took < Duration::from_secs(10),
        "the push is not held up: {took:?}"
    );
    until(
        "the watcher's status file",
        Duration::from_secs(10),
        || async { r.status_of(&sha).is_some() },
    )
    .await;
    // The deployment of the pushed commit starts only now: the watcher waits for it.
    sim.deploy("api", &sha, Script::Success);
    let s = r.finished(&sha, Duration::from_secs(30)).await;
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(s["exit_code"], 0, "{s}");
    assert_eq!(s["commit"], sha.as_str(), "{s}");
    assert!(
        s["pid"].as_u64().is_some() && s["started_at"].is_string(),
        "{s}"
    );
    let last: Value = serde_json::from_str(s["last_line"].as_str().unwrap()).unwrap();
    assert_eq!(last["outcome"], "success", "{last}");
    assert_eq!(r.files(".lock"), [format!("{other}.lock")]);
    assert!(r.files(".pid").is_empty());

    let (code, out, _) = r.dw(&["hooks", "status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&sha[..12]) && out.contains("succeeded"),
        "{out}"
    );
    let (_, out, _) = r.dw(&["hooks", "status", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["watchers"][0]["alive"], false, "{v}");

    // A week's grace by default; --all removes every finished watcher.
    let (code, out, _) = r.dw(&["hooks", "cleanup"]);
    assert_eq!(code, 0);
    assert!(r.status_of(&sha).is_some(), "a fresh status stays: {out}");
    assert!(r.files(".lock").is_empty(), "the stale lock is gone: {out}");
    let (code, _, _) = r.dw(&["hooks", "cleanup", "--all"]);
    assert_eq!(code, 0);
    assert!(r.status_of(&sha).is_none(), "{:?}", r.files(""));
    let (_, out, _) = r.dw(&["hooks", "status"]);
    assert!(out.contains("no background watchers"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_is_never_blocked_and_warns_when_main_is_behind() {
    let r = Repos::new();
    let (code, out, err) = r.dw(&["hooks", "install", "--watch-timeout", "5"]);
    assert_eq!(code, 0, "{out}{err}");
    // Someone else pushes to main; this clone fetches, so its main is one behind origin/main.
    git(&r.root, &["clone", "-q", "remote.git", "other"]);
    let other = r.root.join("other");
    std::fs::write(other.join("x"), "x").unwrap();
    git(&other, &["add", "x"]);
    git(&other, &["commit", "-q", "-m", "x"]);
    git(&other, &["push", "-q", "origin", "main"]);
    git(&r.work, &["fetch", "-q", "origin"]);
    git(&r.work, &["checkout", "-q", "-b", "feature"]);
    let sha = r.commit("feature");
    // Nothing deploywatch could reach: no token, a server on a closed port.
    let nowhere = [("DEPLOYWATCH_SERVER", "http://127.0.0.1:1".to_string())];
    let (code, out, took) = push(&r, &["origin", "feature"], &nowhere);
    assert_eq!(code, 0, "{out}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        out.contains("local main is 1 commit behind origin/main"),
        "the warning shows: {out}"
    );
    // feature is not a watched branch: no watcher.
    assert!(r.status_of(&sha).is_none());

    // The watcher of a main push with nothing reachable ends by itself and says why.
    git(&r.work, &["checkout", "-q", "main"]);
    git(&r.work, &["merge", "-q", "--ff-only", "origin/main"]);
    let sha = r.commit("on-main");
    let (code, out, _) = push(&r, &["origin", "main"], &nowhere);
    assert_eq!(code, 0, "{out}");
    let s = r.finished(&sha, Duration::from_secs(20)).await;
    assert_eq!(s["state"], "failed", "{s}");
    assert_eq!(s["exit_code"], 2, "{s}");
    assert!(
        s["last_line"]
            .as_str()
            .unwrap_or("")
            .contains("cannot reach"),
        "the status says why: {s}"
    );
    assert!(r.files(".lock").is_empty(), "no stale lock");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_quick_pushes_leave_one_watcher_per_commit_and_no_stale_lock() {
    let sim = SimBuilder::new().step(STEP).app("api", OLD).start().await;
    let r = Repos::new();
    git(
        &r.root,
        &["init", "-q", "--bare", "-b", "main", "mirror.git"],
    );
    git(&r.work, &["remote", "add", "mirror", "../mirror.git"]);
    let (code, out, err) = r.dw(&["hooks", "install", "--watch-timeout", "60"]);
    assert_eq!(code, 0, "{out}{err}");
    let env = sim_env(&sim.url);
    let a = r.commit("a");
    assert_eq!(push(&r, &["origin", "main"], &env).0, 0);
    // The same commit to a second remote while its watcher runs: no second watcher.
    assert_eq!(push(&r, &["mirror", "main"], &env).0, 0);
    let b = r.commit("b");
    assert_eq!(push(&r, &["origin", "main"], &env).0, 0);
    until("both watchers", Duration::from_secs(10), || async {
        seen(
            r.status_of(&a).is_some() && r.status_of(&b).is_some(),
            r.files(""),
        )
    })
    .await;
    // Only b is deployed: App Platform builds the newest push. b contains a, so a's watcher
    // (running in the repository, which knows both) ends with it.
    sim.deploy("api", &b, Script::Success);
    let sa = r.finished(&a, Duration::from_secs(30)).await;
    let sb = r.finished(&b, Duration::from_secs(30)).await;
    assert_eq!(sa["state"], "succeeded", "{sa}");
    assert_eq!(sb["state"], "succeeded", "{sb}");
    let last: Value = serde_json::from_str(sa["last_line"].as_str().unwrap()).unwrap();
    assert_eq!(last["matched"], "contains", "{last}");
    assert_eq!(r.files(".json").len(), 2, "{:?}", r.files(""));
    let log = std::fs::read_to_string(r.state().join(format!("{a}.log"))).unwrap();
    assert_eq!(
        log.matches("\"waiting\":true").count(),
        1,
        "one watcher for a: {log}"
    );
    assert!(
        r.files(".lock").is_empty() && r.files(".pid").is_empty(),
        "{:?}",
        r.files("")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_hook_is_chained_and_restored_byte_identical() {
    use std::os::unix::fs::PermissionsExt;
    let r = Repos::new();
    let hooks = r.work.join(".git/hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let marker = r.root.join("ran");
    let original = format!(
        "#!/bin/sh\n# a team's own check é\ncat > /dev/null\ntouch '{}'\nexit 1\n",
        marker.display()
    );
    std::fs::write(hooks.join("pre-push"), &original).unwrap();
    std::fs::set_permissions(
        hooks.join("pre-push"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    let rt_original = b"#!/bin/sh\nexit 0\n\n".to_vec();
    std::fs::write(hooks.join("reference-transaction"), &rt_original).unwrap();
    std::fs::set_permissions(
        hooks.join("reference-transaction"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();

    let (code, out, err) = r.dw(&["hooks", "install"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("pre-push.deploywatch-orig"), "{out}");
    r.commit("blocked");
    let (code, out, _) = push(&r, &["origin", "main"], &[]);
    assert_ne!(code, 0, "the original hook still refuses the push: {out}");
    assert!(marker.exists(), "the original hook ran");
    // Installing twice changes nothing about the saved original.
    let (code, _, _) = r.dw(&["hooks", "install"]);
    assert_eq!(code, 0);

    let (code, out, err) = r.dw(&["hooks", "uninstall"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read(hooks.join("pre-push")).unwrap(),
        original.as_bytes()
    );
    assert_eq!(
        std::fs::read(hooks.join("reference-transaction")).unwrap(),
        rt_original
    );
    let mode = |p: &str| {
        std::fs::metadata(hooks.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("pre-push"), 0o750);
    assert_eq!(mode("reference-transaction"), 0o700);
    assert!(!hooks.join("pre-push.deploywatch-orig").exists());
    assert!(!r.state().exists(), "our files are gone");

    // Not a repository: a usage error that says what to do.
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, err) = Deploywatch::new(tmp.path())
        .args(&["hooks", "install"])
        .run_split();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--repo"), "{err}");
}

fn watch(dir: &Path, args: &[&str], envs: &[(&str, String)]) -> Deploywatch {
    let mut d = Deploywatch::new(dir)
        .arg("watch")
        .args(args)
        .env_remove("DEPLOYWATCH_SERVER")
        .env_remove("DIGITALOCEAN_TOKEN");
    for (k, v) in envs {
        d = d.env(k, v);
    }
    d
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON line: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_commit_waits_for_the_deployment_before_it_exists() {
    // Steps long enough that a poll (one a second) sees the deployment in progress.
    let sim = SimBuilder::new()
        .step(Duration::from_millis(600))
        .app("api", OLD)
        .app("web", OLD)
        .start()
        .await;
    let tmp = tempfile::tempdir().unwrap();
    let sha = "5555555555555555555555555555555555555555";
    let mut child = watch(
        tmp.path(),
        &["--commit", &sha[..7], "--json", "--timeout", "30"],
        &sim_env(&sim.url),
    )
    .spawn("watch.log");
    child.log_contains("\"waiting\":true").await;
    assert!(child.child.try_wait().unwrap().is_none(), "still waiting");
    // Across apps: the commit deploys to web.
    sim.deploy("web", sha, Script::Success);
    let st = child.exits_within(Duration::from_secs(30)).await;
    let log = child.log_text();
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{log}");
    let lines = json_lines(&log);
    assert!(
        lines.iter().any(|l| {
            let p = &l["deployment"]["phase"];
            p.is_string() && p != "ACTIVE"
        }),
        "steps live: {log}"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["outcome"], "success", "{last}");
    assert_eq!(last["app"], "web", "{last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_commit_exit_codes_failure_timeout_usage() {
    let sim = SimBuilder::new().step(STEP).app("api", OLD).start().await;
    let env = sim_env(&sim.url);
    let tmp = tempfile::tempdir().unwrap();
    let bad = "6666666666666666666666666666666666666666";
    sim.deploy("api", bad, Script::BuildFailure);
    let (code, out, err) = watch(tmp.path(), &["--commit", bad, "--app", "api"], &env).run_split();
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("ERROR") && out.contains("BuildJobFailed"),
        "{out}"
    );

    let (code, out, err) = watch(
        tmp.path(),
        &["--commit", "7777777", "--timeout", "2", "--json"],
        &env,
    )
    .run_split();
    assert_eq!(code, 124, "{out}{err}");
    assert_eq!(json_lines(&out).last().unwrap()["outcome"], "timeout");
    assert!(err.contains("--timeout"), "{err}");

    for (args, want) in [
        (vec!["--commit", "HEAD"], "7 to 40"),
        (vec!["--commit", "abc"], "7 to 40"),
        (vec!["--commit", "abcdef0", "--app", "nope"], "no app named"),
        (
            vec!["--commit", "abcdef0", "--deployment", "d"],
            "cannot be used",
        ),
        (vec!["--verify"], "--commit"),
    ] {
        let (code, _, err) = watch(tmp.path(), &args, &env).run_split();
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_commit_through_a_server_with_verify() {
    let sim = SimBuilder::new().step(STEP).app("api", OLD).start().await;
    let toml = format!(
        "[digitalocean]\napi_url = \"{}\"\npoll_interval = \"300ms\"\nfast_poll_interval = \"100ms\"\nrequest_timeout = \"1s\"\nbudget_share = 1.0\n\n[health]\ndiscover = false\n",
        sim.url
    );
    let app = spawn_app(Kind::Sqlite, &toml, &[("DIGITALOCEAN_TOKEN", "sim-token")]).await;
    let sha = "8888888888888888888888888888888888888888";
    sim.deploy("api", sha, Script::Success);
    let tmp = tempfile::tempdir().unwrap();
    let url = app.url.clone();
    let dir = tmp.path().to_path_buf();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        watch(
            &dir,
            &[
                "--commit",
                sha,
                "--verify",
                "--server",
                &url,
                "--timeout",
                "30",
            ],
            &[],
        )
        .without_tokens()
        .run_split()
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ACTIVE"), "{out}");
    // Until the server reports verdicts, ACTIVE is the end, and the watch says so.
    assert!(
        out.contains("verdict") || out.contains("verification: passed"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pre_push_warns_of_a_failed_deployment_and_stop_ends_a_waiting_watcher() {
    let sim = SimBuilder::new()
        .step(STEP)
        .app("api", OLD)
        .script(
            "api",
            "1111111111111111111111111111111111111111",
            Script::BuildFailure,
        )
        .start()
        .await;
    // The failed deployment has ended (three steps).
    tokio::time::sleep(STEP * 4).await;
    let r = Repos::new();
    let (code, out, err) = r.dw(&["hooks", "install", "--watch-timeout", "120"]);
    assert_eq!(code, 0, "{out}{err}");
    let sha = r.commit("waits");
    let (code, out, _) = push(&r, &["origin", "main"], &sim_env(&sim.url));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("the latest deployment of api of commit 111111111111 failed"),
        "{out}"
    );
    // Nothing deploys the commit: the watcher waits until stopped.
    let pid = until("a running watcher", Duration::from_secs(10), || async {
        let s = r.status_of(&sha);
        let pid = s
            .as_ref()
            .filter(|s| s["state"] == "running")
            .and_then(|s| s["pid"].as_u64());
        seen(pid.is_some() && !r.files(".pid").is_empty(), pid)
    })
    .await
    .unwrap();
    assert!(PathBuf::from(format!("/proc/{pid}")).exists());
    let (code, out, err) = r.dw(&["hooks", "stop"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("stopped watcher"), "{out}");
    let s = r.finished(&sha, Duration::from_secs(10)).await;
    assert_eq!(s["state"], "stopped", "{s}");
    assert!(
        r.files(".lock").is_empty() && r.files(".pid").is_empty(),
        "{:?}",
        r.files("")
    );
    let (code, out, _) = r.dw(&["hooks", "stop"]);
    assert_eq!(code, 0);
    assert!(out.contains("no running watchers"), "{out}");
}
