//! The webhook receiver and the task queue, on both store backends.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

const BACKENDS: [Kind; 2] = [Kind::Sqlite, Kind::Postgres];

async fn count_rows(app: &TestApp, table: &str) -> i64 {
    use sqlx::Row;
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(app.app().store.pool())
        .await
        .expect("count")
        .try_get::<i64, _>("n")
        .expect("n")
}

#[tokio::test]
async fn duplicates_and_ha_peers_make_one_task() {
    for kind in BACKENDS {
        let app = spawn_app(kind, "", &[]).await;
        let n = notification(&[(
            "DeploymentFailed",
            "firing",
            &[("app", "api"), ("severity", "critical")],
            "2026-11-22T10:00:00Z",
        )]);
        // Same payload three times (repeat interval), then as a second HA peer would send it.
        for _ in 0..3 {
            assert_eq!(app.post_alerts(&n).await.status, 200, "{kind:?}");
        }
        let mut peer = n.clone();
        peer["externalURL"] = json!("http://alertmanager-2:9093");
        assert_eq!(app.post_alerts(&peer).await.status, 200);
        let fix = app.tasks("execution").await;
        assert_eq!(fix.len(), 1, "{kind:?}: one fix task, got {fix:?}");
        assert_eq!(fix[0]["title"], "FIX: Deployment error in api");
        assert_eq!(fix[0]["kind"], "fix");
        assert_eq!(fix[0]["priority"], 1);
        assert_eq!(fix[0]["seen_count"], 4, "repeats only bump the counter");
        let ann = app.tasks("announce").await;
        assert_eq!(ann.len(), 1, "{kind:?}: announced once");
        let m = app.metrics().await;
        assert_eq!(
            metric(&m, "deploywatch_webhook_alerts_total{status=\"firing\"}"),
            Some(4.0)
        );
        assert_eq!(
            metric(&m, "deploywatch_webhook_duplicates_absorbed_total"),
            Some(6.0)
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn resolve_cancels_queued_and_notes_claimed_tasks() {
    for kind in BACKENDS {
        let app = spawn_app(kind, "", &[]).await;
        let fire = notification(&[
            (
                "DeploymentFailed",
                "firing",
                &[("app", "api")],
                "2026-11-22T10:00:00Z",
            ),
            (
                "MigrationCheckFailed",
                "firing",
                &[
                    ("app", "web"),
                    ("check", "app-db"),
                    ("severity", "critical"),
                ],
                "2026-11-22T10:00:00Z",
            ),
        ]);
        assert_eq!(app.post_alerts(&fire).await.status, 200);
        // An agent takes the migration task (critical, so it is first in the queue).
        let c = app
            .claim("execution", "agent-1")
            .await
            .task()
            .expect("a task to claim");
        let claimed_title = c["title"].as_str().unwrap_or("").to_string();
        assert_eq!(
            claimed_title, "FIX: Database migration issue in web",
            "{kind:?}"
        );
        let resolve = notification(&[
            (
                "DeploymentFailed",
                "resolved",
                &[("app", "api")],
                "2026-11-22T10:00:00Z",
            ),
            (
                "MigrationCheckFailed",
                "resolved",
                &[
                    ("app", "web"),
                    ("check", "app-db"),
                    ("severity", "critical"),
                ],
                "2026-11-22T10:00:00Z",
            ),
        ]);
        let r: Value = app
            .post_alerts(&resolve)
            .await
            .expect_status(200, "webhook");
        assert_eq!(r["report"]["tasks_cancelled"], 1, "{kind:?}: {r}");
        assert_eq!(r["report"]["tasks_noted"], 1);
        let all = app.tasks("execution").await;
        let api = all.iter().find(|t| t["app"] == "api").expect("api task");
        assert_eq!(api["state"], "cancelled");
        assert_eq!(api["closed_reason"], "alert resolved");
        let web = all.iter().find(|t| t["app"] == "web").expect("web task");
        assert_eq!(web["state"], "claimed", "claimed work is not pulled away");
        assert!(
            web["alert_resolved_at"].is_string(),
            "the worker can see the alert resolved"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn late_firing_is_ignored_and_a_new_episode_reopens() {
    for kind in BACKENDS {
        let app = spawn_app(kind, "", &[]).await;
        let labels: &[(&str, &str)] = &[("app", "api")];
        let fire = notification(&[(
            "HealthCheckFailing",
            "firing",
            labels,
            "2026-11-22T10:00:00Z",
        )]);
        let resolve = notification(&[(
            "HealthCheckFailing",
            "resolved",
            labels,
            "2026-11-22T10:00:00Z",
        )]);
        app.post_alerts_ok(&fire).await;
        app.post_alerts_ok(&resolve).await;
        // Alertmanager delivers the old firing after its resolve: nothing reopens.
        let r: Value = app.post_alerts(&fire).await.expect_status(200, "webhook");
        assert_eq!(r["report"]["stale_ignored"], 1, "{kind:?}: {r}");
        assert!(
            app.tasks_where("queue=execution&state=queued")
                .await
                .is_empty()
        );
        // A new episode (later startsAt) within the reopen window reopens the cancelled task.
        let again = notification(&[(
            "HealthCheckFailing",
            "firing",
            labels,
            "2026-11-22T13:00:00Z",
        )]);
        let r: Value = app.post_alerts(&again).await.expect_status(200, "webhook");
        assert_eq!(r["report"]["tasks_reopened"], 1, "{kind:?}: {r}");
        let fixes = app.tasks("execution").await;
        assert_eq!(fixes.len(), 1, "reopened, not duplicated");
        assert_eq!(fixes[0]["state"], "queued");
        let id = fixes[0]["id"].as_str().expect("id");
        let h = app.task(id).await;
        let events: Vec<&str> = h["history"]
            .as_array()
            .expect("history")
            .iter()
            .map(|e| e["event"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(events, vec!["created", "cancelled", "reopened"]);
        app.stop().await;
    }
}

#[tokio::test]
async fn leases_expire_and_stale_workers_get_409() {
    for kind in BACKENDS {
        let app = spawn_app(kind, "", &[]).await;
        let n = notification(&[(
            "DeploymentStuck",
            "firing",
            &[("app", "api")],
            "2026-11-22T10:00:00Z",
        )]);
        app.post_alerts_ok(&n).await;
        let first = app
            .claim_for("execution", "vanishing-agent", 1)
            .await
            .task()
            .expect("a task to claim");
        let id = first["id"].as_str().expect("id").to_string();
        assert_eq!(first["state"], "claimed");
        assert_eq!(first["attempts"], 1);
        assert!(
            matches!(app.claim("execution", "agent-2").await, Claim::Empty),
            "nothing else queued while leased"
        );
        let second = until(
            "the task to return to the queue after its 1 s lease",
            Duration::from_millis(1500),
            || async { app.claim("execution", "agent-2").await.task() },
        )
        .await;
        assert_eq!(
            second["id"],
            id.as_str(),
            "{kind:?}: the task returned to the queue after the lease"
        );
        assert_eq!(second["worker"], "agent-2");
        // The vanished agent comes back: every update is refused.
        for action in ["heartbeat", "complete", "fail"] {
            let r = app
                .post(
                    &format!("/api/v1/tasks/{id}/{action}"),
                    &json!({"worker": "vanishing-agent", "reason": "x"}),
                )
                .await;
            assert_eq!(r.status, 409, "{kind:?} {action}: {}", r.body);
            assert_eq!(r.body["error"], "lease_lost");
        }
        let hb = app.heartbeat(&id, "agent-2", 120).await;
        assert_eq!(hb.status, 200, "{}", hb.body);
        let t = app
            .complete(&id, "agent-2", json!({"pr": 42}))
            .await
            .expect_status(200, "complete");
        assert_eq!(t["state"], "done");
        assert_eq!(t["result"]["pr"], 42);
        assert_eq!(
            app.complete("nope", "agent-2", Value::Null).await.status,
            404
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn failing_attempts_respect_the_budget() {
    let app = spawn_app(Kind::Sqlite, "[tasks]\nmax_attempts = 2\n", &[]).await;
    app.post_alerts_ok(&notification(&[(
        "DeploymentFailed",
        "firing",
        &[("app", "api")],
        "2026-11-22T10:00:00Z",
    )]))
    .await;
    for (attempt, want) in [(1, "queued"), (2, "failed")] {
        // No lease_seconds: the server's default lease.
        let t = app
            .post(
                "/api/v1/tasks/claim",
                &json!({"queue": "execution", "worker": "w"}),
            )
            .await
            .expect_status(200, "claim");
        assert_eq!(t["attempts"], attempt);
        let id = t["id"].as_str().expect("id");
        let f = app
            .fail(id, "w", "build still red")
            .await
            .expect_status(200, "fail");
        assert_eq!(f["state"], want);
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let app = spawn_app(
        Kind::Sqlite,
        "",
        &[("DEPLOYWATCH_WEBHOOK_TOKEN", "canary-webhook-token-123")],
    )
    .await;
    let good = serde_json::to_vec(&notification(&[(
        "DeploymentFailed",
        "firing",
        &[("app", "api")],
        "2026-11-22T10:00:00Z",
    )]))
    .expect("json");
    let huge = {
        let mut n = notification(&[(
            "DeploymentFailed",
            "firing",
            &[("app", "api")],
            "2026-11-22T10:00:00Z",
        )]);
        n["commonAnnotations"]["padding"] = json!("x".repeat(1_100_000));
        serde_json::to_vec(&n).expect("json")
    };
    let cases: Vec<(&str, Option<&str>, Option<&str>, Vec<u8>, u16)> = vec![
        (
            "no token",
            None,
            Some("application/json"),
            good.clone(),
            401,
        ),
        (
            "wrong token",
            Some("nope"),
            Some("application/json"),
            good.clone(),
            401,
        ),
        (
            "wrong content type",
            Some("canary-webhook-token-123"),
            Some("text/plain"),
            good.clone(),
            415,
        ),
        (
            "no content type",
            Some("canary-webhook-token-123"),
            None,
            good.clone(),
            415,
        ),
        (
            "empty",
            Some("canary-webhook-token-123"),
            Some("application/json"),
            vec![],
            400,
        ),
        (
            "truncated",
            Some("canary-webhook-token-123"),
            Some("application/json"),
            good[..good.len() / 2].to_vec(),
            400,
        ),
        (
            "not utf-8",
            Some("canary-webhook-token-123"),
            Some("application/json"),
            vec![0xff, 0xfe, 0x00, 0x7b],
            400,
        ),
        (
            "wrong types",
            Some("canary-webhook-token-123"),
            Some("application/json"),
            br#"{"version":4,"alerts":"many"}"#.to_vec(),
            422,
        ),
        (
            "deep nesting",
            Some("canary-webhook-token-123"),
            Some("application/json"),
            format!("{}{}", "[".repeat(50_000), "]".repeat(50_000)).into_bytes(),
            422,
        ),
        (
            "oversized",
            Some("canary-webhook-token-123"),
            Some("application/json"),
            huge,
            413,
        ),
    ];
    for (name, token, ct, body, want) in cases {
        let mut r = app
            .http
            .post(format!("{}/webhook/alertmanager", app.url))
            .body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(c) = ct {
            r = r.header("content-type", c);
        }
        let resp = r.send().await.expect("request");
        assert_eq!(resp.status().as_u16(), want, "{name}");
        let text = resp.text().await.expect("text");
        let e: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{name}: error is JSON: {text}"));
        assert!(
            e["error"].is_string() && e["message"].is_string(),
            "{name}: {e}"
        );
        assert!(
            !text.contains("canary-webhook-token-123"),
            "{name}: the token never appears in answers"
        );
    }
    assert_eq!(
        count_rows(&app, "notifications").await,
        0,
        "nothing was written"
    );
    assert_eq!(count_rows(&app, "tasks").await, 0);
    // The task API is protected too, and the server is alive.
    assert_eq!(app.get("/api/v1/tasks").await.status(), 401);
    let r = app
        .http
        .post(format!("{}/api/v1/tasks/claim", app.url))
        .bearer_auth("canary-webhook-token-123")
        .header("content-type", "application/json")
        .body("{\"queue\": 7}")
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 422);
    let r = app
        .http
        .post(format!("{}/api/v1/tasks/claim", app.url))
        .bearer_auth("canary-webhook-token-123")
        .json(&json!({"queue": "nope", "worker": "w"}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 422);
    let ok = app
        .http
        .post(format!("{}/webhook/alertmanager", app.url))
        .bearer_auth("canary-webhook-token-123")
        .header("content-type", "application/json")
        .body(good)
        .send()
        .await
        .expect("req");
    assert_eq!(ok.status(), 200);
    let m = app.metrics().await;
    assert!(!m.contains("canary-webhook-token-123"));
    assert_eq!(
        metric(&m, "deploywatch_webhook_requests_total{code=\"401\"}"),
        Some(2.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn rotated_tokens_are_both_accepted() {
    let app = spawn_app(
        Kind::Sqlite,
        "",
        &[
            ("DEPLOYWATCH_WEBHOOK_TOKEN", "new-token"),
            ("DEPLOYWATCH_WEBHOOK_PREVIOUS_TOKEN", "old-token"),
        ],
    )
    .await;
    let n = notification(&[(
        "DeploymentFailed",
        "firing",
        &[("app", "api")],
        "2026-11-22T10:00:00Z",
    )]);
    for (t, want) in [
        ("new-token", 200),
        ("old-token", 200),
        ("new-tokenx", 401),
        ("", 401),
    ] {
        assert_eq!(
            app.post_json("/webhook/alertmanager", &n, Some(t))
                .await
                .status(),
            want,
            "{t:?}"
        );
    }
    app.stop().await;
}

/// The database goes away under load: only fast 503s; once it is back, Alertmanager-style retries
/// leave every alert present exactly once.
#[tokio::test]
async fn store_outage_gives_503_and_retries_store_everything_once() {
    let db = pg_db().await;
    let name = db.url.rsplit('/').next().expect("name").to_string();
    let app = spawn_app_on(
        db,
        "[webhook]\nstore_timeout = \"2s\"\n",
        &[],
        Default::default(),
    )
    .await;
    let admin = sqlx::PgPool::connect(&PG_ADMIN).await.expect("admin");
    let block = |allow: bool| {
        let admin = admin.clone();
        let name = name.clone();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}"
            )))
            .execute(&admin)
            .await
            .expect("alter");
            if !allow {
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                )
                .bind(&name)
                .execute(&admin)
                .await
                .expect("terminate");
            }
        }
    };
    block(false).await;
    let mut pending = Vec::new();
    for i in 0..20 {
        let n = notification(&[(
            "DeploymentFailed",
            "firing",
            &[("app", &*format!("app{i}"))],
            "2026-11-22T10:00:00Z",
        )]);
        let start = std::time::Instant::now();
        let r = app.post_alerts(&n).await;
        assert_eq!(
            r.status, 503,
            "only 503 while the database is down: {}",
            r.body
        );
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "answered within the store timeout"
        );
        assert_eq!(r.body["error"], "store_unavailable");
        pending.push(n);
    }
    assert_eq!(
        app.get("/health/ready").await.status(),
        503,
        "not ready without the store"
    );
    block(true).await;
    // Alertmanager retries every 503 (and some succeed twice from its point of view).
    for n in pending.iter().chain(pending.iter().take(5)) {
        until(
            "a retried notification to be stored (200)",
            Duration::from_secs(30),
            || async {
                let a = app.post_alerts(n).await;
                seen(a.status == 200, a)
            },
        )
        .await;
    }
    assert_eq!(count_rows(&app, "alerts").await, 20);
    assert_eq!(
        app.tasks_where("queue=execution&limit=1000").await.len(),
        20,
        "each alert's task exactly once"
    );
    app.stop().await;
}

/// A notifier that is down loses nothing: the outbox retries until it answers.
#[tokio::test]
async fn announcements_reach_a_notifier_that_was_down() {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let healthy = Arc::new(Mutex::new(false));
    let (r2, h2) = (received.clone(), healthy.clone());
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Value>| {
            let (r, h) = (r2.clone(), h2.clone());
            async move {
                if !*h.lock().expect("lock") {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                r.lock().expect("lock").push(body.0);
                axum::http::StatusCode::OK
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(l, hook).await;
    });
    let toml =
        format!("[[notifiers]]\nname = \"chat\"\nkind = \"slack\"\nurl = \"http://{addr}/hook\"\n");
    let app = spawn_app(Kind::Sqlite, &toml, &[]).await;
    let n = notification(&[(
        "DeploymentFailed",
        "firing",
        &[("app", "api")],
        "2026-11-22T10:00:00Z",
    )]);
    assert_eq!(app.post_alerts(&n).await.status, 200);
    app.until_metric(
        "deploywatch_announcements_pending",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    assert!(received.lock().expect("lock").is_empty());
    let announce = app.tasks("announce").await;
    assert_eq!(announce.len(), 1);
    assert_eq!(announce[0]["state"], "queued", "undelivered: still open");
    *healthy.lock().expect("lock") = true;
    until(
        "the notifier to receive one announcement",
        Duration::from_secs(30),
        || async {
            let got = received.lock().expect("lock").clone();
            seen(got.len() == 1, got)
        },
    )
    .await;
    let got = received.lock().expect("lock")[0].clone();
    assert_eq!(got["text"], "DeploymentFailed firing in api");
    app.until_metric(
        "deploywatch_announcements_pending",
        0.0,
        Duration::from_secs(10),
    )
    .await;
    // Delivered is done: it no longer counts as open work. The fix task is untouched.
    until(
        "the announce task to be done",
        Duration::from_secs(10),
        || async {
            let t = app.tasks("announce").await;
            seen(t.first().is_some_and(|t| t["state"] == "done"), t)
        },
    )
    .await;
    let announce = app.tasks("announce").await;
    assert_eq!(announce[0]["closed_reason"], "delivered");
    assert_eq!(app.tasks("execution").await[0]["state"], "queued");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tasks_cli_claims_heartbeats_and_completes() {
    let app = spawn_app(
        Kind::Sqlite,
        "",
        &[("DEPLOYWATCH_WEBHOOK_TOKEN", "cli-token")],
    )
    .await;
    let n = notification(&[(
        "DeploymentFailed",
        "firing",
        &[("app", "api")],
        "2026-11-22T10:00:00Z",
    )]);
    assert_eq!(app.token.as_deref(), Some("cli-token"));
    app.post_alerts_ok(&n).await;
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
                    .env("DEPLOYWATCH_WEBHOOK_TOKEN", "cli-token")
                    .run_split()
            })
            .await
            .expect("join")
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let (code, out, err) = run(s(&[
        "claim",
        "--queue",
        "execution",
        "--worker",
        "cli-agent",
        "--lease-seconds",
        "60",
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    let t: Value = serde_json::from_str(&out).expect("claim prints the task");
    let id = t["id"].as_str().expect("id").to_string();
    assert_eq!(
        run(s(&["heartbeat", &id, "--worker", "cli-agent"])).await.0,
        0
    );
    let (code, _, err) = run(s(&["complete", &id, "--worker", "someone-else"])).await;
    assert_eq!(code, 1, "a stale or foreign worker gets 409 → exit 1");
    assert!(err.contains("409"), "{err}");
    assert_eq!(
        run(s(&[
            "complete",
            &id,
            "--worker",
            "cli-agent",
            "--result",
            "{\"pr\": 7}"
        ]))
        .await
        .0,
        0
    );
    let (code, out, _) = run(s(&["list", "--queue", "execution", "--state", "done"])).await;
    assert_eq!(code, 0);
    assert!(out.contains(&id));
    let (code, _, err) = run(s(&[
        "claim",
        "--queue",
        "execution",
        "--worker",
        "cli-agent",
    ]))
    .await;
    assert_eq!(code, 1, "nothing left to claim");
    assert!(err.contains("no task"), "{err}");
    let (code, _, err) = run(s(&[
        "complete",
        &id,
        "--worker",
        "w",
        "--result",
        "{not json",
    ]))
    .await;
    assert_eq!(code, 2, "bad --result is a usage error: {err}");
    app.stop().await;
}

#[tokio::test]
async fn every_task_route_refuses_bad_bodies_without_writing() {
    let app = spawn_app(Kind::Sqlite, "", &[]).await;
    app.post_alerts_ok(&notification(&[(
        "DeploymentFailed",
        "firing",
        &[("app", "api")],
        "2026-11-22T10:00:00Z",
    )]))
    .await;
    let t = app
        .post(
            "/api/v1/tasks/claim",
            &json!({"queue": "execution", "worker": "w"}),
        )
        .await
        .expect_status(200, "claim");
    let id = t["id"].as_str().expect("id");
    let routes = [
        "/api/v1/tasks/claim".to_string(),
        format!("/api/v1/tasks/{id}/heartbeat"),
        format!("/api/v1/tasks/{id}/complete"),
        format!("/api/v1/tasks/{id}/fail"),
    ];
    let bodies: Vec<(&str, Vec<u8>, &str, u16)> = vec![
        ("empty", vec![], "application/json", 400),
        (
            "truncated",
            b"{\"worker\": \"w".to_vec(),
            "application/json",
            400,
        ),
        ("not utf-8", vec![0xff, 0xfe], "application/json", 400),
        (
            "wrong type",
            b"{\"worker\": 42}".to_vec(),
            "application/json",
            422,
        ),
        (
            "unknown field",
            b"{\"worker\": \"w\", \"queue\": \"execution\", \"evil\": 1}".to_vec(),
            "application/json",
            422,
        ),
        (
            "wrong content type",
            b"{\"worker\": \"w\"}".to_vec(),
            "text/plain",
            415,
        ),
        (
            "oversized",
            format!("{{\"worker\": \"{}\"}}", "w".repeat(1_200_000)).into_bytes(),
            "application/json",
            413,
        ),
    ];
    for r in &routes {
        for (name, body, ct, want) in &bodies {
            let resp = app
                .http
                .post(format!("{}{r}", app.url))
                .header("content-type", *ct)
                .body(body.clone())
                .send()
                .await
                .expect("req");
            assert_eq!(resp.status().as_u16(), *want, "{r} {name}");
            let e: Value = resp.json().await.expect("JSON error");
            assert!(e["message"].is_string(), "{r} {name}");
        }
    }
    let after: Value = app
        .get(&format!("/api/v1/tasks/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        after["task"]["state"], "claimed",
        "nothing changed the task"
    );
    assert_eq!(
        after["history"].as_array().map(Vec::len),
        Some(2),
        "created + claimed only"
    );
    assert_eq!(app.get("/api/v1/tasks?queue=bogus").await.status(), 400);
    assert_eq!(app.get("/no/such/route").await.status(), 404);
    app.stop().await;
}

/// 16 concurrent workers claim and complete 10,000 tasks on PostgreSQL through the store's
/// one-statement claim (`FOR UPDATE SKIP LOCKED`) and complete: each task exactly once, and each
/// claim and completion leaves its history row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_workers_claim_ten_thousand_tasks_once_each() {
    use deploywatch::tasks::Queue;
    const N: i64 = 10_000;
    let app = spawn_app(Kind::Postgres, "", &[]).await;
    let store = app.app().store.clone();
    sqlx::query(
        "INSERT INTO tasks (id, queue, kind, title, priority, state, dedup_key, open_key, context, max_attempts, created_at, updated_at, last_seen_at) \
         SELECT 't' || i, 'execution', 'fix', 'FIX: load', i % 3, 'queued', 'k' || i, 'k' || i, '{}', 3, i, i, i \
         FROM generate_series(1, $1) AS i",
    )
    .bind(N)
    .execute(store.pool())
    .await
    .expect("seed tasks");
    let mut workers = Vec::new();
    for w in 0..16 {
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let worker = format!("w{w}");
            let mut mine = Vec::new();
            while let Some(t) = store
                .claim(Queue::Execution, &worker, Duration::from_secs(300))
                .await
                .expect("claim")
            {
                store
                    .complete(&t.id, &worker, &json!({"ok": true}))
                    .await
                    .expect("complete");
                mine.push(t.id);
            }
            mine
        }));
    }
    let mut ids = Vec::new();
    for w in workers {
        ids.extend(w.await.expect("worker"));
    }
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len() as i64, N, "every task claimed");
    assert_eq!(unique.len() as i64, N, "no task claimed twice");
    assert_eq!(count_rows(&app, "task_events").await, 2 * N);
    let done: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE state = 'done' AND attempts = 1")
            .fetch_one(store.pool())
            .await
            .expect("count");
    assert_eq!(done, N);
    app.stop().await;
}
