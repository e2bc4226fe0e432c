//! Trust under faults and hostile input (issue 12): never acknowledge what was not stored, never
//! block Alertmanager with input that can never be stored, one task per alert episode.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use deploywatch::server::ServeOptions;
use serde_json::{Value, json};
use sqlx::Row;

use crate::helpers::*;

const BACKENDS: [Kind; 2] = [Kind::Sqlite, Kind::Postgres];

fn alert_for(i: usize) -> Value {
    let app = format!("app{i}");
    notification(&[(
        "DeploymentFailed",
        "firing",
        &[("app", app.as_str()), ("severity", "critical")],
        "2026-11-22T10:00:00Z",
    )])
}

/// The `app` labels of every stored alert.
async fn stored_apps(app: &TestApp) -> BTreeSet<String> {
    sqlx::query("SELECT app FROM alerts")
        .fetch_all(app.app().store.pool())
        .await
        .expect("alerts")
        .iter()
        .filter_map(|r| r.try_get::<Option<String>, _>("app").ok().flatten())
        .collect()
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted (lazily) when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            ok.success(),
            "mounting a tmpfs needs root (CAP_SYS_ADMIN); this test reproduces a real disk full"
        );
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system holding `dir` until a write fails; returns the filler file.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    // Whatever partial block is left, take it too.
    while f.write_all(&[0u8; 512]).is_ok() {}
    let _ = f.sync_all();
    p
}

async fn post(app: &TestApp, body: &Value) -> u16 {
    app.post_alerts(body).await.status
}

#[tokio::test]
async fn disk_full_acknowledges_only_what_is_on_disk_and_recovers() {
    let fs = Tmpfs::mount("4m");
    let url = format!("sqlite://{}", fs.dir.path().join("dw.db").display());
    let app = spawn_app_on(TestDb::borrowed(&url), "", &[], ServeOptions::default()).await;
    let mut acked = BTreeSet::new();
    for i in 0..5 {
        assert_eq!(post(&app, &alert_for(i)).await, 200);
        acked.insert(format!("app{i}"));
    }
    let filler = fill(fs.dir.path());
    let mut refused = 0;
    for i in 5..60 {
        match post(&app, &alert_for(i)).await {
            200 => {
                acked.insert(format!("app{i}"));
            }
            503 => refused += 1,
            other => panic!("alert {i}: {other} during disk full"),
        }
    }
    assert!(refused > 0, "the disk was full, yet every write succeeded");
    assert_eq!(
        app.get("/health/ready").await.status(),
        503,
        "not ready while writes fail"
    );
    std::fs::remove_file(&filler).expect("free the space");
    until(
        "/health/ready to answer 200 again",
        Duration::from_secs(20),
        || async {
            let r = app.get("/health/ready").await;
            let status = r.status();
            seen(status == 200, (status, r.text().await.unwrap_or_default()))
        },
    )
    .await;
    for i in 60..70 {
        assert_eq!(post(&app, &alert_for(i)).await, 200, "after recovery");
        acked.insert(format!("app{i}"));
    }
    app.stop().await;
    let app = spawn_app_on(TestDb::borrowed(&url), "", &[], ServeOptions::default()).await;
    let stored = stored_apps(&app).await;
    let lost: Vec<_> = acked.difference(&stored).collect();
    println!("{} acknowledged alerts lost", lost.len());
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    app.stop().await;
}

/// Sets or clears the immutable attribute (root cannot write an immutable file either: this is
/// how a read-only database file looks to a process that runs as root).
fn immutable(paths: &[std::path::PathBuf], on: bool) {
    for p in paths.iter().filter(|p| p.exists()) {
        let ok = Command::new("chattr")
            .arg(if on { "+i" } else { "-i" })
            .arg(p)
            .status()
            .expect("chattr (e2fsprogs) is installed");
        assert!(ok.success(), "chattr on {}", p.display());
    }
}

#[tokio::test]
async fn a_read_only_database_file_is_not_ready_never_acknowledged_and_recovers() {
    let db = sqlite_db();
    let path = std::path::PathBuf::from(db.url.trim_start_matches("sqlite://"));
    // Not the -shm file: it is memory-mapped, and a mapped page that cannot be written is a
    // SIGBUS, not an error (a read-only remount is a different fault).
    let files: Vec<std::path::PathBuf> = ["", "-wal"]
        .iter()
        .map(|s| std::path::PathBuf::from(format!("{}{s}", path.display())))
        .collect();
    let app = spawn_app_on(db, "", &[], ServeOptions::default()).await;
    let mut acked = BTreeSet::new();
    for i in 0..3 {
        assert_eq!(post(&app, &alert_for(i)).await, 200);
        acked.insert(format!("app{i}"));
    }
    immutable(&files, true);
    let mut refused = 0;
    for i in 3..10 {
        match post(&app, &alert_for(i)).await {
            200 => {
                acked.insert(format!("app{i}"));
            }
            503 => refused += 1,
            other => {
                immutable(&files, false);
                panic!("alert {i}: {other} while the file is read-only");
            }
        }
    }
    let ready = app.get("/health/ready").await.status();
    immutable(&files, false);
    assert!(
        refused > 0,
        "the file was read-only, yet every write succeeded"
    );
    assert_eq!(ready, 503, "not ready while the file is read-only");
    until(
        "/health/ready to answer 200 again",
        Duration::from_secs(20),
        || async {
            let r = app.get("/health/ready").await;
            let status = r.status();
            seen(status == 200, (status, r.text().await.unwrap_or_default()))
        },
    )
    .await;
    for i in 10..13 {
        assert_eq!(post(&app, &alert_for(i)).await, 200, "after recovery");
        acked.insert(format!("app{i}"));
    }
    let db = app.stop().await;
    let app = spawn_app_on(db, "", &[], ServeOptions::default()).await;
    let stored = stored_apps(&app).await;
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_deleted_database_file_is_not_ready_and_never_acknowledged() {
    let db = sqlite_db();
    let url = db.url.clone();
    let path = url.trim_start_matches("sqlite://").to_string();
    let app = spawn_app_on(db, "", &[], ServeOptions::default()).await;
    assert_eq!(post(&app, &alert_for(1)).await, 200);
    assert_eq!(app.get("/health/ready").await.status(), 200);
    std::fs::remove_file(&path).expect("delete the database file");
    assert_eq!(
        post(&app, &alert_for(2)).await,
        503,
        "a commit into a deleted file is lost at restart"
    );
    let r = app.get("/health/ready").await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.expect("json");
    assert!(body.to_string().contains("deleted"), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn unstorable_input_is_stored_safely_or_refused_with_a_reason() {
    for kind in [Kind::Postgres, Kind::Sqlite] {
        let app = spawn_app(kind, "", &[]).await;
        // Random text: a repeated character compresses under PostgreSQL's index size limit.
        let noise = |n: usize| -> String {
            std::iter::repeat_with(|| uuid::Uuid::new_v4().simple().to_string())
                .flat_map(|u| u.chars().collect::<Vec<_>>())
                .take(n)
                .collect()
        };
        let long = noise(3_000);
        let mut nul = alert_for(1);
        nul["alerts"][0]["labels"]["pod"] = json!("a\u{0}b");
        nul["alerts"][0]["annotations"]["summary"] = json!("s\u{0}");
        nul["alerts"][0]["fingerprint"] = json!("f\u{0}p");
        let mut long_label = alert_for(2);
        long_label["alerts"][0]["labels"]["app"] = json!(long);
        let mut long_fp = alert_for(3);
        long_fp["alerts"][0]["fingerprint"] = json!(noise(3_072));
        for (what, body) in [
            ("nul", &nul),
            ("long label", &long_label),
            ("long fingerprint", &long_fp),
        ] {
            assert_eq!(post(&app, body).await, 200, "{kind:?} {what}");
        }
        // 2,300 alerts fit in the 1 MiB body limit; more is refused with a reason, never a 503.
        let many: Vec<Value> = (0..2_300)
            .map(|i| alert_for(1_000 + i)["alerts"][0].clone())
            .collect();
        let mut big = alert_for(0);
        big["alerts"] = json!(many);
        let r = app.post_alerts(&big).await;
        assert_eq!(r.status, 200, "{kind:?} 2,300 alerts: {}", r.body);
        let huge: Vec<Value> = (0..5_000)
            .map(|i| alert_for(10_000 + i)["alerts"][0].clone())
            .collect();
        big["alerts"] = json!(huge);
        let r = app.post_alerts(&big).await;
        let code = r.status;
        if code != 200 {
            assert!((400..500).contains(&code), "{kind:?} 5,000 alerts: {code}");
            let v = r.body;
            assert!(v["error"].is_string() && v["message"].is_string(), "{v}");
        }
        // Later alerts are not blocked.
        assert_eq!(post(&app, &alert_for(4)).await, 200, "{kind:?} later alert");
        let stored = stored_apps(&app).await;
        let acked = ["app1", "app4", long.as_str(), "app3", "app1000", "app3299"];
        let lost = acked.iter().filter(|w| !stored.contains(**w)).count();
        println!("{lost} acknowledged alerts lost");
        assert_eq!(lost, 0, "{kind:?}: acknowledged alerts missing");
        let m = app.metrics().await;
        assert_eq!(
            metric(
                &m,
                "deploywatch_webhook_sanitized_total{reason=\"nul_byte\"}"
            ),
            Some(3.0),
            "{kind:?}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_resolve_in_one_environment_leaves_the_other_open() {
    for kind in BACKENDS {
        let app = spawn_app(kind, "", &[]).await;
        let fire = |env: &str, status: &str| {
            notification(&[(
                "DeploymentFailed",
                status,
                &[
                    ("app", "api"),
                    ("environment", env),
                    ("severity", "critical"),
                ],
                "2026-11-22T10:00:00Z",
            )])
        };
        assert_eq!(post(&app, &fire("production", "firing")).await, 200);
        assert_eq!(post(&app, &fire("staging", "firing")).await, 200);
        // The HA peer sends the same production alert again: still one task for it.
        let mut peer = fire("production", "firing");
        peer["externalURL"] = json!("http://alertmanager-2:9093");
        assert_eq!(post(&app, &peer).await, 200);
        assert_eq!(
            app.tasks_where("queue=execution&state=queued").await.len(),
            2,
            "{kind:?}"
        );
        assert_eq!(post(&app, &fire("staging", "resolved")).await, 200);
        let open = app.tasks_where("queue=execution&state=queued").await;
        assert_eq!(open.len(), 1, "{kind:?}: {open:?}");
        assert!(
            open[0]["context"].to_string().contains("production"),
            "{open:?}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_fix_completed_while_the_alert_still_fires_is_reopened() {
    for kind in BACKENDS {
        let app = spawn_app(kind, "", &[]).await;
        let n = alert_for(7);
        assert_eq!(post(&app, &n).await, 200);
        let claimed = app
            .post(
                "/api/v1/tasks/claim",
                &json!({"queue": "execution", "worker": "w"}),
            )
            .await
            .expect_status(200, "claim");
        let id = claimed["id"].as_str().expect("a task").to_string();
        let done = app.complete(&id, "w", json!({})).await;
        assert_eq!(done.status, 200, "{}", done.body);
        // Alertmanager repeats the still-firing alert.
        assert_eq!(post(&app, &n).await, 200);
        let all = app.tasks("execution").await;
        assert_eq!(all.len(), 1, "{kind:?}: no second task: {all:?}");
        assert_eq!(all[0]["id"], id.as_str());
        assert_eq!(all[0]["state"], "queued");
        let t: Value = app
            .get(&format!("/api/v1/tasks/{id}"))
            .await
            .json()
            .await
            .expect("task");
        assert!(
            t.to_string()
                .contains("alert still firing after completion"),
            "{kind:?}: {t}"
        );
        app.stop().await;
    }
}

/// The status and body of a webhook answer.
async fn answer(r: reqwest::RequestBuilder) -> (u16, String) {
    let r = r.send().await.expect("post");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn concurrent_firing_and_resolved_end_resolved_without_deadlock() {
    let app = spawn_app(Kind::Postgres, "", &[]).await;
    let episodes = 150;
    let firing: Vec<Value> = (0..episodes)
        .map(|i| alert_for(i)["alerts"][0].clone())
        .collect();
    let resolved: Vec<Value> = (0..episodes)
        .map(|i| {
            let app = format!("app{i}");
            notification(&[(
                "DeploymentFailed",
                "resolved",
                &[("app", app.as_str()), ("severity", "critical")],
                "2026-11-22T10:00:00Z",
            )])["alerts"][0]
                .clone()
        })
        .collect();
    let batch = |alerts: Vec<Value>| {
        let mut n = alert_for(0);
        n["alerts"] = json!(alerts);
        n
    };
    // First deliveries of fresh episodes, firing and resolved at the same moment: the case where
    // neither finds a row to decide from.
    let mut handles = Vec::new();
    for i in 0..episodes {
        for body in [
            batch(vec![firing[i].clone()]),
            batch(vec![resolved[i].clone()]),
        ] {
            let http = app.http.clone();
            let url = format!("{}/webhook/alertmanager", app.url);
            handles.push(tokio::spawn(async move {
                answer(http.post(url).json(&body)).await
            }));
        }
    }
    for h in handles.drain(..) {
        let (status, body) = h.await.expect("join");
        assert_eq!(status, 200, "{body}");
    }
    for round in 0..4 {
        // Opposite orders in the two directions, all sent at once.
        let mut f = firing.clone();
        let mut r = resolved.clone();
        if round % 2 == 1 {
            f.reverse();
        } else {
            r.reverse();
        }
        for body in [batch(f), batch(r)] {
            let http = app.http.clone();
            let url = format!("{}/webhook/alertmanager", app.url);
            handles.push(tokio::spawn(async move {
                answer(http.post(url).json(&body)).await
            }));
        }
        for i in 0..episodes {
            for body in [
                batch(vec![firing[i].clone()]),
                batch(vec![resolved[i].clone()]),
            ] {
                let http = app.http.clone();
                let url = format!("{}/webhook/alertmanager", app.url);
                handles.push(tokio::spawn(async move {
                    answer(http.post(url).json(&body)).await
                }));
            }
        }
        for h in handles.drain(..) {
            let (status, body) = h.await.expect("join");
            assert_eq!(status, 200, "no 503 from lock order: {body}");
        }
    }
    let still: i64 = sqlx::query("SELECT COUNT(*) AS n FROM alerts WHERE status = 'firing'")
        .fetch_one(app.app().store.pool())
        .await
        .expect("count")
        .try_get("n")
        .expect("n");
    assert_eq!(still, 0, "every episode ends resolved");
    let open = app.tasks_where("queue=execution&state=queued").await;
    assert!(open.is_empty(), "no open task: {open:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_newline_in_alert_data_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut server = Deploywatch::serve(dir.path())
        .env("RUST_LOG", "info")
        .spawn("server.log");
    let url = server.url.clone();
    let c = reqwest::Client::new();
    server.up("/health/ready").await;
    let mut n = alert_for(1);
    n["receiver"] = json!("deploywatch\nFAKE LOG LINE receiver");
    n["alerts"][0]["labels"]["app"] = json!("api\nFAKE LOG LINE label");
    n["alerts"][0]["annotations"]["summary"] = json!("s\r\nFAKE LOG LINE annotation");
    let r = c
        .post(format!("{url}/webhook/alertmanager"))
        .json(&n)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    // The stored-notification line is written before the answer; give the writer a moment by
    // asking for something else first.
    let _ = c.get(format!("{url}/health/live")).send().await;
    server.kill9();
    let text = server.log_text();
    assert!(
        text.contains("webhook notification stored"),
        "the line under test was logged: {text}"
    );
    let forged: Vec<&str> = text.lines().filter(|l| l.starts_with("FAKE")).collect();
    assert!(forged.is_empty(), "forged log lines: {forged:?}\n{text}");
}
