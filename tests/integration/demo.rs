//! A newcomer's first hour: `deploywatch demo` with nothing else installed, the commands it prints,
//! and the page in a real headless browser.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{Deploywatch, bin};

/// A `deploywatch demo` child process, killed on drop.
struct Demo {
    child: std::process::Child,
    out: PathBuf,
    err: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn start() -> Demo {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("demo.out");
        let err = dir.path().join("demo.err");
        let child = Command::new(bin())
            .args(["demo", "--listen", "127.0.0.1:0", "--step-seconds", "1"])
            .current_dir(dir.path())
            .env_remove("DEPLOYWATCH_WEBHOOK_TOKEN")
            .env_remove("DIGITALOCEAN_TOKEN")
            .env_remove("DEPLOYWATCH_DATABASE_URL")
            .stdout(Stdio::from(std::fs::File::create(&out).expect("out")))
            .stderr(Stdio::from(std::fs::File::create(&err).expect("err")))
            .spawn()
            .expect("demo starts");
        Demo {
            child,
            out,
            err,
            dir,
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// The page address and the commands, as the banner printed them.
    async fn banner(&self) -> (String, Vec<String>) {
        let start = Instant::now();
        loop {
            let text = self.stdout();
            if let Some(url) = text
                .lines()
                .find_map(|l| l.strip_prefix("Open "))
                .and_then(|l| l.split_whitespace().next())
            {
                let cmds = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("  "))
                    .filter(|l| l.starts_with("deploywatch "))
                    .map(str::to_string)
                    .collect();
                return (url.trim_end_matches('/').to_string(), cmds);
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the demo printed no page address; stdout:\n{text}\nstderr:\n{}",
                std::fs::read_to_string(&self.err).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs a printed command line through `sh`, with `deploywatch` on PATH being this build.
fn run_printed(line: &str, path_dir: &Path) -> (i32, String, String) {
    let path = format!(
        "{}:{}",
        path_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .args(["-c", line])
        .env("PATH", path)
        .env_remove("DIGITALOCEAN_TOKEN")
        .env_remove("DEPLOYWATCH_SERVER")
        .env_remove("DEPLOYWATCH_WEBHOOK_TOKEN")
        .output()
        .expect("sh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn command<'a>(cmds: &'a [String], prefix: &str) -> &'a str {
    cmds.iter()
        .find(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("the demo printed no `{prefix}` command: {cmds:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_runs_the_whole_loop_with_the_commands_it_prints() {
    let demo = Demo::start();
    let (url, cmds) = demo.banner().await;
    let path_dir = demo.dir.path().join("bin");
    std::fs::create_dir_all(&path_dir).expect("bin dir");
    std::os::unix::fs::symlink(bin(), path_dir.join("deploywatch")).expect("symlink");

    // Within a minute a failing deployment raised DeploymentFailed and a fix task is claimable.
    let claim = command(&cmds, "deploywatch tasks claim --queue execution");
    let start = Instant::now();
    let task = loop {
        let (code, out, err) = run_printed(claim, &path_dir);
        if code == 0 {
            break serde_json::from_str::<serde_json::Value>(&out).expect("claim prints the task");
        }
        assert_eq!(code, 1, "claim fails only with 'nothing queued': {err}");
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no fix task within 90s; demo stdout:\n{}",
            demo.stdout()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(
        task["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("FIX: ")),
        "{task}"
    );
    let id = task["id"].as_str().expect("id");
    let complete =
        command(&cmds, "deploywatch tasks complete").replace("<id printed by claim>", id);
    let (code, out, err) = run_printed(&complete, &path_dir);
    assert_eq!(code, 0, "complete: {out}{err}");

    let (code, out, err) = run_printed(command(&cmds, "deploywatch status"), &path_dir);
    assert!(code == 0 || code == 1, "status exit {code}: {err}");
    for app in ["api", "web", "worker"] {
        assert!(out.contains(&format!("app {app}")), "{out}");
    }
    let (code, out, err) = run_printed(command(&cmds, "deploywatch tasks list"), &path_dir);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ID") && out.contains(id), "{out}");

    // `watch` as printed follows a deployment to its end: 0 ACTIVE, 1 failed.
    let watch = format!(
        "{} --timeout 60",
        command(&cmds, "deploywatch watch --app api")
    );
    let (code, out, err) = run_printed(&watch, &path_dir);
    assert!(code == 0 || code == 1, "watch exit {code}: {out}{err}");
    assert!(out.contains("deployment "), "{out}");

    // The crash-looping release of the cycle fails its post-deploy verification: the mirrored
    // alert fires and its fix task names the crash.
    let start = Instant::now();
    while !(demo
        .stdout()
        .contains("alert    firing    DeploymentVerificationFailed")
        && demo.stdout().contains("FIX: Service crash in"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no failed verification within 120s; demo stdout:\n{}",
            demo.stdout()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // The console narrated it.
    let console = demo.stdout();
    for what in [
        "deploy   ",
        "alert    firing    DeploymentFailed",
        "task     queued",
    ] {
        assert!(console.contains(what), "no {what:?} line in:\n{console}");
    }

    // A hostile alert label reaches the page only as text.
    let hostile = "<img src=x onerror=\"document.title='pwned'\">";
    let body = crate::helpers::notification(&[(
        "DeploymentFailed",
        "firing",
        &[("app", hostile)],
        "2026-11-28T10:00:00Z",
    )]);
    let r = reqwest::Client::new()
        .post(format!("{url}/webhook/alertmanager"))
        .json(&body)
        .send()
        .await
        .expect("webhook");
    assert_eq!(r.status(), 200);

    let dom = chromium_dom(&url, demo.dir.path());
    assert!(
        dom.contains("class=\"logtail\""),
        "no log tail on the page:\n{dom}"
    );
    assert!(dom.contains("FAILED"), "no failure on the page");
    assert!(
        dom.contains("claimed by") || dom.contains("queued"),
        "no open task on the page"
    );
    assert!(
        dom.contains("updated ") && !dom.contains("live: refreshes every 5s"),
        "the live refresh did not run"
    );
    assert!(
        !dom.contains("<title>pwned"),
        "the hostile label ran as script"
    );
    assert!(
        !dom.contains("<img src=\"x\""),
        "the hostile label became an element"
    );
    assert!(
        dom.contains("&lt;img src=x"),
        "the hostile label is shown as text"
    );

    let shot = demo.dir.path().join("page.png");
    chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,1400",
            &url,
        ],
        demo.dir.path(),
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real picture"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_in_use_fails_before_the_page_address_is_printed() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tmp");
    for cmd in ["demo", "serve"] {
        let out = Deploywatch::new(dir.path())
            .args(&[cmd, "--listen", &addr.to_string()])
            .env_remove("DIGITALOCEAN_TOKEN")
            .output();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {stdout}{stderr}");
        assert!(
            !stdout.contains("Open http"),
            "{cmd} printed the page first"
        );
        assert!(
            stderr.contains("in use") && stderr.contains("--listen"),
            "{cmd}: the message says what to do: {stderr}"
        );
    }
}

const CHROMIUM: &str = "/usr/bin/chromium";

fn chromium(args: &[&str], dir: &Path) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "Debian's chromium is needed for the page test: scripts/test.sh installs it (apt-get install chromium)"
    );
    let profile = tempfile::tempdir_in(dir).expect("profile");
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.path().display()),
        ])
        .args(args)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The DOM after the page's scripts ran for a while (virtual time: the refresh timer fires).
fn chromium_dom(url: &str, dir: &Path) -> String {
    chromium(&["--virtual-time-budget=12000", "--dump-dom", url], dir)
}
