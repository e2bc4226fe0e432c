//! Git refs and drift against real repositories made in the test: a bare "remote" and clones.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use do_simulator::Script;

use crate::helpers::*;

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

fn commit(dir: &Path, msg: &str, epoch: i64) -> String {
    std::fs::write(dir.join("file.txt"), msg).expect("write");
    git(dir, &["add", "file.txt"]);
    let date = format!("{epoch} +0000");
    let out = Command::new("git")
        .args(["commit", "-q", "-m", msg])
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("commit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    git(dir, &["rev-parse", "HEAD"])
}

#[tokio::test]
async fn ahead_behind_and_commits_behind_follow_commits_and_deployments() {
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = tmp.path().join("remote.git");
    let work = tmp.path().join("work");
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&remote).expect("mkdir");
    git(&remote, &["init", "-q", "--bare", "-b", "main"]);
    git(
        tmp.path(),
        &["clone", "-q", remote.to_str().expect("utf8"), "work"],
    );
    git(&work, &["checkout", "-q", "-b", "main"]);
    let c1 = commit(&work, "one", 1_700_000_000);
    git(&work, &["push", "-q", "origin", "main"]);

    let sim = SimBuilder::new()
        .step(Duration::from_millis(100))
        .app("api", &c1)
        .start()
        .await;
    let toml = format!(
        "[digitalocean]\napi_url = \"{}\"\npoll_interval = \"200ms\"\nfast_poll_interval = \"100ms\"\n\n[health]\ndiscover = false\n\n[git]\nfetch_interval = \"200ms\"\n\n[[git.repos]]\nname = \"api\"\nurl = \"{}\"\nbranches = [\"main\"]\napp = \"api\"\n",
        sim.url,
        work.display()
    );
    let app = spawn_app(Kind::Sqlite, &toml, &[("DIGITALOCEAN_TOKEN", "sim-token")]).await;
    let get = |m: &str, s: &str| metric(m, s);
    app.until_metrics(
        &[
            ("deploywatch_app_commits_behind{app=\"api\"}", 0.0),
            ("deploywatch_git_ref_ahead{ref=\"main\",repo=\"api\"}", 0.0),
        ],
        Duration::from_secs(15),
    )
    .await;
    let m = app.metrics().await;
    assert_eq!(
        get(
            &m,
            "deploywatch_git_ref_commit_timestamp_seconds{ref=\"main\",repo=\"api\"}"
        ),
        Some(1_700_000_000.0)
    );
    assert!(
        m.contains(&format!(
            "deploywatch_git_ref_info{{commit=\"{c1}\",ref=\"main\",repo=\"api\"}} 1"
        )),
        "SHA only in the info series"
    );

    // Two local commits not pushed: main is ahead of origin/main, and the app is behind main.
    commit(&work, "two", 1_700_000_100);
    let c3 = commit(&work, "three", 1_700_000_200);
    app.until_metrics(
        &[
            ("deploywatch_git_ref_ahead{ref=\"main\",repo=\"api\"}", 2.0),
            ("deploywatch_app_commits_behind{app=\"api\"}", 2.0),
        ],
        Duration::from_secs(10),
    )
    .await;
    let m = app.metrics().await;
    assert_eq!(
        get(&m, "deploywatch_git_ref_behind{ref=\"main\",repo=\"api\"}"),
        Some(0.0)
    );
    let age = get(
        &m,
        "deploywatch_app_oldest_undeployed_commit_age_seconds{app=\"api\"}",
    )
    .expect("age");
    let expect = (chrono::Utc::now().timestamp() - 1_700_000_100) as f64;
    assert!(
        (age - expect).abs() < 30.0,
        "age of the oldest undeployed commit: {age} vs {expect}"
    );
    assert!(
        !m.contains(&format!("deploywatch_git_ref_info{{commit=\"{c1}\"")),
        "the old head's info series is replaced"
    );

    // Someone else pushes; the working clone fetches: it is now also behind its upstream.
    git(
        tmp.path(),
        &["clone", "-q", remote.to_str().expect("utf8"), "other"],
    );
    commit(&other, "four", 1_700_000_300);
    git(&other, &["push", "-q", "origin", "main"]);
    git(&work, &["fetch", "-q"]);
    app.until_metrics(
        &[
            ("deploywatch_git_ref_ahead{ref=\"main\",repo=\"api\"}", 2.0),
            ("deploywatch_git_ref_behind{ref=\"main\",repo=\"api\"}", 1.0),
        ],
        Duration::from_secs(10),
    )
    .await;

    // The app deploys the local head: nothing left behind.
    sim.deploy("api", &c3, Script::Success);
    app.until_metric(
        "deploywatch_app_commits_behind{app=\"api\"}",
        0.0,
        Duration::from_secs(10),
    )
    .await;
    let st: serde_json::Value = app
        .get("/api/v1/status?app=api")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(st["apps"][0]["drift"]["deployed_commit"], c3.as_str());
    // DORA lead time: commit time to ACTIVE, for the first deployment and for c3's.
    app.until_metric(
        "deploywatch_dora_lead_time_seconds_count{app=\"api\"}",
        2.0,
        Duration::from_secs(5),
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_bad_repository_is_reported_not_fatal() {
    // The second URL is hostile: were it read as an option, git would run the command in it.
    let tmp = tempfile::tempdir().expect("tmp");
    let pwned = tmp.path().join("pwned");
    let toml = format!(
        "[git]\nfetch_interval = \"200ms\"\n\n[[git.repos]]\nname = \"ghost\"\nurl = \"/nonexistent/repo.git\"\n\n[[git.repos]]\nname = \"hostile\"\nurl = \"--upload-pack=touch {}\"\n",
        pwned.display()
    );
    let app = spawn_app(Kind::Sqlite, &toml, &[]).await;
    app.until_metric(
        "deploywatch_source_up{source=\"git\"}",
        0.0,
        Duration::from_secs(10),
    )
    .await;
    let st: serde_json::Value = app.get("/api/v1/status").await.json().await.expect("json");
    assert_eq!(st["sources"]["git"]["state"], "failing");
    assert_eq!(app.get("/health/live").await.status(), 200);
    assert!(!pwned.exists(), "a repository URL was run as a git option");
    app.stop().await;
}

#[tokio::test]
async fn check_warns_when_repositories_are_configured_and_git_is_missing() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("deploywatch.toml");
    std::fs::write(
        &config,
        "[[git.repos]]\nname = \"api\"\nurl = \"/srv/git/api.git\"\n",
    )
    .expect("config");
    let (code, out) = Deploywatch::new(dir.path())
        .args(&["migrate", "--config", config.to_str().expect("utf8")])
        .without_tokens()
        .env("DEPLOYWATCH_DATABASE_URL", "sqlite://check.db?mode=rwc")
        .run();
    assert_eq!(code, 0, "{out}");
    let empty = dir.path().join("empty-path");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let check = |path: &str| {
        Deploywatch::new(dir.path())
            .args(&["check", "--config", config.to_str().expect("utf8")])
            .without_tokens()
            .env("DEPLOYWATCH_DATABASE_URL", "sqlite://check.db")
            .env("PATH", path)
            .run_split()
    };
    let (code, out, _) = check(empty.to_str().expect("utf8"));
    assert!(
        out.contains("warning:") && out.contains("`git` program is not on PATH"),
        "{out}"
    );
    // A warning, not a failure: the configuration is valid.
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = check(&std::env::var("PATH").unwrap_or_default());
    assert!(!out.contains("`git` program"), "{out}");
    assert_eq!(code, 0, "{out}");
}
