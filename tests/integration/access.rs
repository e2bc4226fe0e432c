//! Who may see and change what: auth on every read, the anonymous landing page, blank tokens
//! refused at startup, the non-loopback warning, and JSON answers to bad queries and paths.

use serde_json::Value;

use crate::helpers::*;

const CUR: &str = "current-token-abc";
const PREV: &str = "previous-token-xyz";
const CANARY: &str = "canary-app-q7z";

async fn app_with_task() -> (TestApp, String) {
    let app = spawn_app(
        Kind::Sqlite,
        "",
        &[
            ("DEPLOYWATCH_WEBHOOK_TOKEN", CUR),
            ("DEPLOYWATCH_WEBHOOK_PREVIOUS_TOKEN", PREV),
        ],
    )
    .await;
    let n = notification(&[(
        "DeploymentFailed",
        "firing",
        &[("app", CANARY), ("commit", "deadbeefcanary")],
        "2026-11-22T10:00:00Z",
    )]);
    assert_eq!(
        app.token.as_deref(),
        Some(CUR),
        "typed calls send the current token"
    );
    app.post_alerts_ok(&n).await;
    let tasks = app.tasks_where("").await;
    let id = tasks
        .first()
        .and_then(|t| t["id"].as_str())
        .unwrap_or_else(|| panic!("a task was opened: {tasks:?}"))
        .to_string();
    (app, id)
}

#[tokio::test]
async fn every_read_needs_the_token_and_either_token_works() {
    let (app, id) = app_with_task().await;
    let reads = [
        "/api/v1/status".to_string(),
        format!("/api/v1/status?app={CANARY}"),
        "/api/v1/tasks".to_string(),
        "/api/v1/tasks?queue=execution".to_string(),
        format!("/api/v1/tasks/{id}"),
    ];
    for path in &reads {
        let url = format!("{}{path}", app.url);
        let none = app.http.get(&url).send().await.expect("req");
        assert_eq!(none.status(), 401, "{path} without a token");
        let body: Value = none.json().await.expect("json error");
        assert_eq!(body["error"], "unauthorized", "{path}");
        let wrong = app
            .http
            .get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .expect("req");
        assert_eq!(wrong.status(), 401, "{path} with a wrong token");
        let text = wrong.text().await.expect("text");
        assert!(!text.contains(CANARY), "{path} leaked: {text}");
        for t in [CUR, PREV] {
            let ok = app.http.get(&url).bearer_auth(t).send().await.expect("req");
            assert_eq!(ok.status(), 200, "{path} with a valid token");
        }
    }
    for open in [
        "/metrics",
        "/health/live",
        "/health/startup",
        "/health/ready",
    ] {
        let r = app.get(open).await;
        assert_ne!(r.status(), 401, "{open} stays open");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_anonymous_landing_page_shows_no_task_context() {
    let (app, _id) = app_with_task().await;
    let anon = app.get("/").await;
    assert_eq!(anon.status(), 200);
    let html = anon.text().await.expect("text");
    assert!(html.contains(env!("CARGO_PKG_VERSION")), "{html}");
    assert!(html.contains("token"), "says a token is needed: {html}");
    assert!(
        !html.contains(CANARY),
        "anonymous page leaks a task: {html}"
    );
    assert!(
        !html.contains("deadbeef"),
        "anonymous page leaks a commit: {html}"
    );
    let wrong = app
        .http
        .get(format!("{}/", app.url))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("req")
        .text()
        .await
        .expect("text");
    assert!(!wrong.contains(CANARY), "wrong token sees a task: {wrong}");
    for t in [CUR, PREV] {
        let full = app
            .http
            .get(format!("{}/", app.url))
            .bearer_auth(t)
            .send()
            .await
            .expect("req")
            .text()
            .await
            .expect("text");
        assert!(full.contains(CANARY), "the full page shows tasks: {full}");
    }
    app.stop().await;
}

fn run_serve(envs: &[(&str, &str)], dir: &std::path::Path) -> (i32, String) {
    Deploywatch::new(dir)
        .args(&["serve", "--listen", "127.0.0.1:0"])
        .without_tokens()
        .envs(envs)
        .run()
}

#[test]
fn a_blank_token_refuses_to_start_naming_the_variable() {
    let dir = tempfile::tempdir().expect("tmp");
    let blank = dir.path().join("blank-token");
    std::fs::write(&blank, "  \n").expect("write");
    let blank = blank.to_string_lossy().to_string();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("DEPLOYWATCH_WEBHOOK_TOKEN", "")],
            "DEPLOYWATCH_WEBHOOK_TOKEN",
        ),
        (
            vec![("DEPLOYWATCH_WEBHOOK_TOKEN", "   ")],
            "DEPLOYWATCH_WEBHOOK_TOKEN",
        ),
        (
            vec![
                ("DEPLOYWATCH_WEBHOOK_TOKEN", "fine"),
                ("DEPLOYWATCH_WEBHOOK_PREVIOUS_TOKEN", " \t"),
            ],
            "DEPLOYWATCH_WEBHOOK_PREVIOUS_TOKEN",
        ),
        (
            vec![("DEPLOYWATCH_WEBHOOK_TOKEN_FILE", blank.as_str())],
            "DEPLOYWATCH_WEBHOOK_TOKEN_FILE",
        ),
        (
            vec![("DEPLOYWATCH_WEBHOOK_TOKEN_FILE", "")],
            "DEPLOYWATCH_WEBHOOK_TOKEN_FILE",
        ),
        (
            vec![
                ("DEPLOYWATCH_WEBHOOK_TOKEN", "fine"),
                ("DEPLOYWATCH_WEBHOOK_PREVIOUS_TOKEN_FILE", blank.as_str()),
            ],
            "DEPLOYWATCH_WEBHOOK_PREVIOUS_TOKEN_FILE",
        ),
    ];
    for (envs, var) in cases {
        let (code, out) = run_serve(&envs, dir.path());
        assert_eq!(code, 2, "{envs:?}: {out}");
        assert!(out.contains(var), "{envs:?} names {var}: {out}");
    }
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[webhook]\ntoken = \" \"\n").expect("write");
    let out = Deploywatch::new(dir.path())
        .args(&["serve", "--config", &cfg.to_string_lossy()])
        .env_remove("DEPLOYWATCH_WEBHOOK_TOKEN")
        .output();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("webhook.token"));
}

#[tokio::test]
async fn a_non_loopback_listener_without_a_token_warns_at_start_and_in_check() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let child = Deploywatch::new(dir.path())
        .args(&["serve", "--listen", &format!("0.0.0.0:{port}")])
        .without_tokens()
        .env("RUST_LOG", "info")
        .spawn("serve.log");
    child.log_contains("listening").await;
    let log = child.log.clone();
    drop(child);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("WARN")
            && text.contains("non-loopback")
            && text.contains("DEPLOYWATCH_WEBHOOK_TOKEN"),
        "{text}"
    );

    let check = |envs: &[(&str, &str)]| {
        let out = Deploywatch::new(dir.path())
            .arg("check")
            .without_tokens()
            .envs(envs)
            .output();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, out) = check(&[("DEPLOYWATCH_LISTEN", "0.0.0.0:9797")]);
    assert!(
        out.contains("warning:") && out.contains("non-loopback"),
        "{out}"
    );
    // A warning, not a failure.
    assert_ne!(code, Some(2), "{out}");
    let (_, out) = check(&[
        ("DEPLOYWATCH_LISTEN", "0.0.0.0:9797"),
        ("DEPLOYWATCH_WEBHOOK_TOKEN", "set"),
    ]);
    assert!(!out.contains("non-loopback"), "{out}");
    let (_, out) = check(&[("DEPLOYWATCH_LISTEN", "127.0.0.1:9797")]);
    assert!(!out.contains("non-loopback"), "{out}");
}

#[tokio::test]
async fn query_and_path_errors_answer_the_json_error_shape() {
    let (app, id) = app_with_task().await;
    let cases = [
        ("GET", "/api/v1/tasks?limit=abc".to_string()),
        ("GET", "/api/v1/tasks?limit=1.5".to_string()),
        (
            "GET",
            "/api/v1/tasks?limit=99999999999999999999".to_string(),
        ),
        ("GET", "/api/v1/status?app=a&app=b".to_string()),
        ("GET", "/api/v1/tasks?queue=a&queue=b".to_string()),
        ("GET", "/api/v1/tasks/%FF".to_string()),
        ("POST", "/api/v1/tasks/%FF/heartbeat".to_string()),
        ("POST", "/api/v1/tasks/%FF/complete".to_string()),
        ("POST", "/api/v1/tasks/%FF/fail".to_string()),
        ("GET", format!("/api/v1/tasks/{id}?x=1")),
    ];
    for (method, path) in &cases {
        let url = format!("{}{path}", app.url);
        let req = match *method {
            "GET" => app.http.get(&url),
            _ => app
                .http
                .post(&url)
                .json(&serde_json::json!({"worker": "w"})),
        };
        let r = req.bearer_auth(CUR).send().await.expect("req");
        let status = r.status().as_u16();
        if path.ends_with("?x=1") {
            // Unknown query keys are ignored, not an error.
            assert_eq!(status, 200, "{path}");
            continue;
        }
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = r.text().await.expect("text");
        assert_eq!(status, 400, "{method} {path}: {text}");
        assert!(ct.starts_with("application/json"), "{path}: {ct}");
        let v: Value = serde_json::from_str(&text).expect("JSON error shape");
        assert!(
            v["error"].is_string() && v["message"].is_string(),
            "{path}: {v}"
        );
    }
    app.stop().await;
}
