//! The binary as a separate process: configuration errors, a bare start, `kill -9` durability,
//! a schema newer than the binary, two processes claiming from one PostgreSQL, OTLP export.

use std::collections::HashSet;
use std::io::Read;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use do_simulator::{Script, Simulator};
use serde_json::{Value, json};

use crate::helpers::*;

/// `deploywatch serve` on a free loopback port, logging at info into a file in `dir`.
fn start_server(dir: &std::path::Path, envs: &[(&str, &str)], args: &[&str]) -> Spawned {
    Deploywatch::serve(dir)
        .args(args)
        .envs(envs)
        .env("RUST_LOG", "info")
        .spawn(&format!("server-{}.log", uuid::Uuid::new_v4().simple()))
}

fn run(args: &[&str], envs: &[(&str, &str)], dir: &std::path::Path) -> (i32, String) {
    Deploywatch::new(dir).args(args).envs(envs).run()
}

#[test]
fn bad_configuration_exits_2_and_names_the_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let cases = [
        (
            "listen = \"127.0.0.1:1\"\nlisten_adress = \"x\"\n",
            "listen_adress",
        ),
        (
            "[digitalocean]\npoll_interval = \"soon\"\n",
            "poll_interval",
        ),
        (
            "[digitalocean]\nbudget_share = 3.0\n",
            "digitalocean.budget_share",
        ),
        (
            "[[health.targets]]\nname = \"a b\"\nurl = \"http://x/\"\n",
            "health.targets[0].name",
        ),
        (
            "[[health.targets]]\nname = \"a\"\nurl = \"ftp://x/\"\n",
            "health.targets[0].url",
        ),
        ("database_url = \"mongodb://x\"\n", "database_url"),
        (
            "[[migration_checks]]\nname = \"m\"\ndatabase_url = \"mysql://x/y\"\nrequired_tables = [\"a;drop\"]\n",
            "migration_checks[0].required_tables",
        ),
        (
            "[webhook]\n[[webhook.rules]]\nalertname = \"X\"\nactions = [\"explode\"]\n",
            "webhook.rules[0].actions",
        ),
        ("this is not toml", "config file"),
    ];
    for (text, key) in cases {
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, text).expect("write");
        for cmd in ["serve", "check"] {
            let (code, out) = run(
                &[cmd, "--config", f.to_str().expect("utf8")],
                &[],
                dir.path(),
            );
            assert_eq!(code, 2, "{cmd} with {text:?}: {out}");
            assert!(out.contains(key), "{cmd}: the message names {key:?}: {out}");
            assert!(
                out.contains("bad.toml"),
                "{cmd}: the message names the file: {out}"
            );
        }
    }
    let (code, out) = run(
        &["serve"],
        &[("DEPLOYWATCH_LISTEN", "not-an-address")],
        dir.path(),
    );
    assert_eq!(code, 2);
    assert!(out.contains("DEPLOYWATCH_LISTEN"), "{out}");
    let (code, out) = run(&["frobnicate"], &[], dir.path());
    assert_eq!(code, 2, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bare_start_answers_at_once_and_says_which_sources_are_off() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = start_server(dir.path(), &[], &[]);
    s.up("/health/live").await;
    let r = reqwest::get(format!("{}/metrics", s.url))
        .await
        .expect("metrics");
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = r.text().await.expect("text");
    assert!(body.contains("deploywatch_build_info{version=\""));
    assert!(body.contains("process_resident_memory_bytes"));
    // promtool finds nothing wrong with the exposition.
    promtool_check_metrics(&body);
    s.up("/health/ready").await;
    let log = s.log_text();
    for src in ["digitalocean", "health", "git", "migrations"] {
        assert!(
            log.lines()
                .any(|l| l.contains("source off") && l.contains(&format!("source=\"{src}\""))),
            "log says {src} is off: {log}"
        );
    }
    assert!(
        dir.path().join("deploywatch.db").exists(),
        "embedded SQLite in the working directory"
    );
    let landing = reqwest::get(&s.url)
        .await
        .expect("landing")
        .text()
        .await
        .expect("text");
    assert!(landing.contains("<h1>deploywatch") && landing.contains("no DIGITALOCEAN_TOKEN set"));

    // A second `serve` on the same SQLite file refuses, naming the file and the holder.
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let (code, out) = run(&["serve", "--listen", &listen], &[], dir.path());
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("already serving from deploywatch.db")
            && out.contains(&format!("pid {}", s.child.id())),
        "{out}"
    );
}

#[test]
fn check_in_an_empty_directory_creates_nothing_and_says_migrations_are_pending() {
    let dir = tempfile::tempdir().expect("tmp");
    let (code, out) = run(&["check"], &[], dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("deploywatch.db does not exist yet") && out.contains("deploywatch migrate"),
        "{out}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "check created {left:?}");
    // After `migrate` the same check passes.
    let (code, out) = run(&["migrate"], &[], dir.path());
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&["check"], &[], dir.path());
    assert_eq!(code, 0, "{out}");
}

/// Sends webhooks from several tasks until stopped; returns the app names acknowledged with 200.
async fn load(
    url: String,
    token: &'static str,
    stop: Arc<Mutex<bool>>,
    acked: Arc<Mutex<Vec<String>>>,
    worker: usize,
) {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    for i in 0.. {
        if *stop.lock().expect("lock") {
            return;
        }
        let app = format!("w{worker}-a{i}");
        let n = notification(&[(
            "DeploymentFailed",
            "firing",
            &[("app", app.as_str())],
            "2026-11-22T10:00:00Z",
        )]);
        if let Ok(r) = c
            .post(format!("{url}/webhook/alertmanager"))
            .bearer_auth(token)
            .json(&n)
            .send()
            .await
            && r.status() == 200
        {
            acked.lock().expect("lock").push(app);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    for kind in [Kind::Sqlite, Kind::Postgres] {
        let dir = tempfile::tempdir().expect("tmp");
        let db = db(kind).await;
        let envs = [
            ("DEPLOYWATCH_DATABASE_URL", db.url.as_str()),
            ("DEPLOYWATCH_WEBHOOK_TOKEN", "kill-token"),
        ];
        let acked = Arc::new(Mutex::new(Vec::new()));
        // scripts/faults.sh runs many more rounds.
        let rounds: usize = std::env::var("DEPLOYWATCH_FAULT_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        for round in 0..rounds {
            let mut s = start_server(dir.path(), &envs, &[]);
            s.up("/health/ready").await;
            let stop = Arc::new(Mutex::new(false));
            let workers: Vec<_> = (0..4)
                .map(|w| {
                    tokio::spawn(load(
                        s.url.clone(),
                        "kill-token",
                        stop.clone(),
                        acked.clone(),
                        round * 10 + w,
                    ))
                })
                .collect();
            // Time must pass here: the load runs for a while before the kill, at a different
            // point in each round.
            tokio::time::sleep(Duration::from_millis(700 + 300 * round as u64)).await;
            s.kill9();
            *stop.lock().expect("lock") = true;
            for w in workers {
                let _ = w.await;
            }
        }
        let acked: Vec<String> = acked.lock().expect("lock").clone();
        assert!(
            acked.len() > 20,
            "{kind:?}: the load made progress ({})",
            acked.len()
        );
        let s = start_server(dir.path(), &envs, &[]);
        s.up("/health/ready").await;
        let store = deploywatch::store::Store::connect(
            &secrecy::SecretString::from(db.url.clone()),
            Duration::from_secs(3),
        )
        .await
        .expect("store");
        let apps: Vec<String> = {
            use sqlx::Row;
            sqlx::query("SELECT app FROM tasks WHERE queue = 'execution'")
                .fetch_all(store.pool())
                .await
                .expect("tasks")
                .iter()
                .map(|r| r.get::<String, _>("app"))
                .collect()
        };
        let unique: HashSet<&String> = apps.iter().collect();
        assert_eq!(unique.len(), apps.len(), "{kind:?}: no duplicate task");
        for a in &acked {
            assert!(
                unique.contains(a),
                "{kind:?}: acknowledged alert for {a} survived kill -9"
            );
        }
        store
            .integrity_check()
            .await
            .expect("the store's integrity check passes");
        // No task stays claimed past its lease: none was claimed here, and none is.
        let claimed_past = {
            use sqlx::Row;
            sqlx::query(
                "SELECT COUNT(*) AS n FROM tasks WHERE state = 'claimed' AND lease_expires_at < $1",
            )
            .bind(chrono::Utc::now().timestamp_millis())
            .fetch_one(store.pool())
            .await
            .expect("count")
            .get::<i64, _>("n")
        };
        assert_eq!(claimed_past, 0);
        store.close().await;
    }
}

/// Waits until the server has run its schema check once.
async fn schema_checked(c: &reqwest::Client, s: &Spawned) {
    until(
        "the schema check to have run once (checks[0].checked_at in /health/startup)",
        Duration::from_secs(15),
        || async {
            let v: Value = c
                .get(format!("{}/health/startup", s.url))
                .send()
                .await
                .expect("startup")
                .json()
                .await
                .expect("json");
            seen(v["checks"][0]["checked_at"].is_string(), v)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_newer_than_the_binary_or_an_unreachable_database_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = sqlite_db();
    let envs = [("DEPLOYWATCH_DATABASE_URL", db.url.as_str())];
    let (code, out) = run(&["migrate"], &envs, dir.path());
    assert_eq!(code, 0, "{out}");
    let store = deploywatch::store::Store::connect(
        &secrecy::SecretString::from(db.url.clone()),
        Duration::from_secs(3),
    )
    .await
    .expect("store");
    sqlx::query("INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (9999, 'from the future', CURRENT_TIMESTAMP, TRUE, x'00', 1)")
        .execute(store.pool())
        .await
        .expect("insert");
    store.close().await;
    let (code, out) = run(&["check"], &envs, dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("schema is at version 9999"), "{out}");
    let s = start_server(dir.path(), &envs, &[]);
    s.up("/health/live").await;
    let c = reqwest::Client::new();
    schema_checked(&c, &s).await;
    let r = reqwest::get(format!("{}/health/startup", s.url))
        .await
        .expect("startup");
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.expect("json");
    assert!(body["reasons"].to_string().contains("9999"), "{body}");

    let unreachable = [(
        "DEPLOYWATCH_DATABASE_URL",
        "postgres://dw:pw-canary@127.0.0.1:1/nope",
    )];
    let (code, out) = run(&["check"], &unreachable, dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("unreachable") && !out.contains("pw-canary"),
        "{out}"
    );
    let s2 = start_server(dir.path(), &unreachable, &[]);
    s2.up("/health/live").await;
    schema_checked(&c, &s2).await;
    let r = reqwest::get(format!("{}/health/startup", s2.url))
        .await
        .expect("startup");
    assert_eq!(r.status(), 503);
    let text = r.text().await.expect("text");
    assert!(
        text.contains("unreachable") && !text.contains("pw-canary"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_on_one_postgresql_never_double_claim() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = pg_db().await;
    let envs = [("DEPLOYWATCH_DATABASE_URL", db.url.as_str())];
    let a = start_server(dir.path(), &envs, &[]);
    let b = start_server(dir.path(), &envs, &[]);
    a.up("/health/ready").await;
    b.up("/health/ready").await;
    let c = reqwest::Client::new();
    let alerts: Vec<(String, &str)> = (0..120).map(|i| (format!("app{i}"), "firing")).collect();
    for chunk in alerts.chunks(40) {
        let list: Vec<(&str, &str, &[(&str, &str)], &str)> = vec![];
        let _ = list;
        let alerts: Vec<Value> = chunk
            .iter()
            .map(|(app, _)| json!({"status": "firing", "labels": {"alertname": "DeploymentFailed", "app": app}, "annotations": {}, "startsAt": "2026-11-22T10:00:00Z", "fingerprint": app}))
            .collect();
        let n = json!({"version": "4", "groupKey": "g", "status": "firing", "receiver": "r", "alerts": alerts});
        assert_eq!(
            c.post(format!("{}/webhook/alertmanager", a.url))
                .json(&n)
                .send()
                .await
                .expect("post")
                .status(),
            200
        );
    }
    let claimed = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for w in 0..16 {
        let url = if w % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        let claimed = claimed.clone();
        workers.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            loop {
                let r = c.post(format!("{url}/api/v1/tasks/claim")).json(&json!({"queue": "execution", "worker": format!("w{w}"), "lease_seconds": 300})).send().await.expect("claim");
                if r.status() == 204 {
                    return;
                }
                assert_eq!(r.status(), 200);
                let t: Value = r.json().await.expect("task");
                claimed.lock().expect("lock").push(t["id"].as_str().expect("id").to_string());
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let ids = claimed.lock().expect("lock").clone();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), 120, "every task claimed");
    assert_eq!(unique.len(), 120, "no task claimed twice");
}

// ---------------------------------------------------------------------------------------------
// OTLP: an in-process receiver (opentelemetry-proto) for gRPC and HTTP/protobuf.
// ---------------------------------------------------------------------------------------------

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().expect("lock").push(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[derive(Clone)]
struct SpanSeen {
    name: String,
    trace_id: Vec<u8>,
    parent: Vec<u8>,
    attrs: Vec<(String, String)>,
    error: bool,
    message: String,
    service: String,
}

fn spans(r: &Receiver) -> Vec<SpanSeen> {
    let mut out = Vec::new();
    for req in r.0.lock().expect("lock").iter() {
        for rs in &req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|res| res.attributes.iter().find(|a| a.key == "service.name"))
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    let attrs = s
                        .attributes
                        .iter()
                        .map(|a| {
                            (
                                a.key.clone(),
                                a.value
                                    .as_ref()
                                    .map(|v| format!("{:?}", v.value))
                                    .unwrap_or_default(),
                            )
                        })
                        .collect();
                    out.push(SpanSeen {
                        name: s.name.clone(),
                        trace_id: s.trace_id.clone(),
                        parent: s.parent_span_id.clone(),
                        attrs,
                        error: s.status.as_ref().is_some_and(|st| st.code == 2),
                        message: s
                            .status
                            .as_ref()
                            .map(|st| st.message.clone())
                            .unwrap_or_default(),
                        service: service.clone(),
                    });
                }
            }
        }
    }
    out
}

async fn grpc_receiver() -> (Receiver, u16) {
    let r = Receiver::default();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    let svc = TraceServiceServer::new(r.clone());
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream_from(l))
            .await;
    });
    (r, port)
}

fn tokio_stream_from(
    l: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(
        l,
        |l| async move { Some((l.accept().await.map(|(s, _)| s), l)) },
    )
}

async fn http_receiver() -> (Receiver, u16) {
    let r = Receiver::default();
    let r2 = r.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let r = r2.clone();
            async move {
                use prost::Message;
                match ExportTraceServiceRequest::decode(body) {
                    Ok(req) => {
                        r.0.lock().expect("lock").push(req);
                        axum::http::StatusCode::OK
                    }
                    Err(_) => axum::http::StatusCode::BAD_REQUEST,
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (r, port)
}

#[tokio::test(flavor = "multi_thread")]
async fn deployment_traces_reach_an_otlp_receiver_and_the_canary_never_leaks() {
    const CANARY_DO: &str = "dop_v1_canary_do_token_7f3a9c";
    const CANARY_HOOK: &str = "canary-webhook-token-5e1b2d";
    for protocol in ["grpc", "http/protobuf"] {
        let (receiver, port) = if protocol == "grpc" {
            grpc_receiver().await
        } else {
            http_receiver().await
        };
        let sim = Simulator::new(Duration::from_millis(100));
        let (addr, _) = sim
            .serve("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("sim");
        sim.add_app("api", "1111111111111111111111111111111111111111");
        sim.add_app("web", "1111111111111111111111111111111111111111");
        let dep = sim
            .deploy(
                "api",
                "2222222222222222222222222222222222222222",
                Script::BuildFailure,
            )
            .expect("deploy");
        // A release that crash-loops after ACTIVE: its verdict is a `verify` span in its trace.
        let crash = sim
            .deploy(
                "web",
                "2222222222222222222222222222222222222222",
                Script::CrashLoop,
            )
            .expect("deploy");
        let dir = tempfile::tempdir().expect("tmp");
        let endpoint = format!("http://127.0.0.1:{port}");
        let api = format!("http://{addr}");
        // A probe that fails leaves a client span.
        let cfg = dir.path().join("dw.toml");
        std::fs::write(&cfg, format!("[verification]\nwindow = \"20s\"\ninterval = \"300ms\"\n\n[[health.targets]]\nname = \"dead\"\napp = \"api\"\nurl = \"http://127.0.0.1:{}/health/live\"\ninterval = \"500ms\"\ntimeout = \"400ms\"\n", free_port())).expect("cfg");
        let cfg_arg = cfg.to_str().expect("utf8").to_string();
        let s = start_server(
            dir.path(),
            &[
                ("DIGITALOCEAN_TOKEN", CANARY_DO),
                ("DEPLOYWATCH_WEBHOOK_TOKEN", CANARY_HOOK),
                ("DEPLOYWATCH_DO_API_URL", api.as_str()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_SERVICE_NAME", "deploywatch-test"),
            ],
            &["--config", &cfg_arg],
        );
        s.up("/health/ready").await;
        let want_trace = deploywatch::telemetry::deployment_trace_id(&dep)
            .to_bytes()
            .to_vec();
        let crash_trace = deploywatch::telemetry::deployment_trace_id(&crash)
            .to_bytes()
            .to_vec();
        until(
            &format!("{protocol}: the crash-looping deployment's verify span"),
            Duration::from_secs(40),
            || async {
                let all = spans(&receiver);
                let found = all
                    .iter()
                    .find(|sp| sp.trace_id == crash_trace && sp.name == "verify web")
                    .cloned();
                seen(found.is_some(), found.map(|sp| (sp.error, sp.attrs)))
            },
        )
        .await;
        let all = spans(&receiver);
        let verify = all
            .iter()
            .find(|sp| sp.trace_id == crash_trace && sp.name == "verify web")
            .expect("verify span");
        assert!(verify.error, "a failed verification is an error span");
        assert!(
            verify
                .attrs
                .iter()
                .any(|(k, v)| k == "deploywatch.verification.reasons" && v.contains("crash_loop")),
            "{:?}",
            verify.attrs
        );
        until(
            &format!("{protocol}: the deployment's root span"),
            Duration::from_secs(30),
            || async {
                let all = spans(&receiver);
                seen(
                    all.iter()
                        .any(|sp| sp.trace_id == want_trace && sp.parent.is_empty()),
                    format!(
                        "{} spans, none the root of the deployment's trace",
                        all.len()
                    ),
                )
            },
        )
        .await;
        // Let the child spans' batch arrive too.
        // Root, build, and build's started sub-steps (initialize, components); deploy never started.
        until(
            &format!("{protocol}: at least 4 spans in the deployment's trace"),
            Duration::from_secs(10),
            || async {
                let n = spans(&receiver)
                    .iter()
                    .filter(|sp| sp.trace_id == want_trace)
                    .count();
                seen(n >= 4, format!("{n} spans"))
            },
        )
        .await;
        let all = spans(&receiver);
        let trace: Vec<&SpanSeen> = all.iter().filter(|sp| sp.trace_id == want_trace).collect();
        let root = trace
            .iter()
            .find(|sp| sp.parent.is_empty())
            .expect("root span");
        assert_eq!(root.name, "deploy api", "{protocol}");
        let attr = |k: &str| {
            root.attrs
                .iter()
                .find(|(a, _)| a == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert!(
            attr("cicd.pipeline.result").contains("failure"),
            "{protocol}: {:?}",
            root.attrs
        );
        assert!(attr("cicd.pipeline.run.id").contains(&dep));
        // The conventions' values, not DigitalOcean's: `succeeded` or `failed`.
        assert!(
            attr("deployment.status").contains("\"failed\""),
            "{:?}",
            root.attrs
        );
        assert!(attr("digitalocean.deployment.phase").contains("ERROR"));
        assert!(attr("vcs.ref.head.revision").contains("2222222"));
        assert!(attr("vcs.repository.url.full").contains("\"https://github.com/acme/api\""));
        assert!(attr("vcs.ref.head.name").contains("\"main\""));
        assert!(!attr("error.type").is_empty(), "{:?}", root.attrs);
        // The error message names the failed step and its reason, never an empty reason.
        assert!(
            root.message.contains("failed: ") && !root.message.trim_end().ends_with("failed:"),
            "{}",
            root.message
        );
        assert!(
            root.error,
            "a failed deployment's root span has error status"
        );
        assert!(
            root.service.contains("deploywatch-test"),
            "{}",
            root.service
        );
        let build = trace
            .iter()
            .find(|sp| sp.name == "build")
            .expect("build step span");
        assert!(build.error, "the failed step is an error");
        assert!(
            build
                .attrs
                .iter()
                .any(|(k, v)| k == "cicd.pipeline.task.run.result" && v.contains("failure")),
            "{:?}",
            build.attrs
        );
        assert!(
            trace.iter().any(|sp| sp.name == "initialize"),
            "nested steps are spans too"
        );

        // Requests go through while traces are exported; error bodies never echo the token.
        let c = reqwest::Client::new();
        let bad = c
            .post(format!("{}/webhook/alertmanager", s.url))
            .bearer_auth("wrong")
            .json(&json!({}))
            .send()
            .await
            .expect("post");
        assert_eq!(bad.status(), 401);
        let bad_body = bad.text().await.expect("text");
        let metrics_text = reqwest::get(format!("{}/metrics", s.url))
            .await
            .expect("m")
            .text()
            .await
            .expect("t");
        let status_text = reqwest::get(format!("{}/api/v1/status", s.url))
            .await
            .expect("s")
            .text()
            .await
            .expect("t");
        let traces_text: String = all.iter().map(|sp| format!("{:?}", sp.attrs)).collect();
        let mut log = s.log_text();
        let mut f = std::fs::File::open(&s.log).expect("log");
        let mut raw = String::new();
        let _ = f.read_to_string(&mut raw);
        log.push_str(&raw);
        for (what, text) in [
            ("error body", &bad_body),
            ("/metrics", &metrics_text),
            ("status", &status_text),
            ("traces", &traces_text),
            ("logs", &log),
        ] {
            assert!(
                !text.contains(CANARY_DO) && !text.contains(CANARY_HOOK),
                "{protocol}: a canary token leaked into {what}"
            );
        }
    }
}

/// A collector that accepts connections and never answers.
async fn black_hole() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_is_down_or_black_holes_does_not_slow_requests() {
    let hole = black_hole().await;
    for (what, endpoint, protocol) in [
        ("down", format!("http://127.0.0.1:{}", free_port()), "grpc"),
        (
            "black hole (gRPC)",
            format!("http://127.0.0.1:{hole}"),
            "grpc",
        ),
        (
            "black hole (HTTP)",
            format!("http://127.0.0.1:{hole}"),
            "http/protobuf",
        ),
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        // Spans come from every request (the tracing layer) and every failed probe.
        let cfg = dir.path().join("dw.toml");
        std::fs::write(&cfg, format!("[[health.targets]]\nname = \"dead\"\napp = \"x\"\nurl = \"http://127.0.0.1:{}/\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\n", free_port())).expect("cfg");
        let s = start_server(
            dir.path(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ],
            &["--config", cfg.to_str().expect("utf8")],
        );
        s.up("/health/ready").await;
        // The client timeout is below the exporter's: a request that waited on the collector fails.
        let c = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .expect("client");
        for i in 0..100 {
            let n = notification(&[(
                "DeploymentFailed",
                "firing",
                &[("app", &*format!("a{i}"))],
                "2026-11-22T10:00:00Z",
            )]);
            let r = c
                .post(format!("{}/webhook/alertmanager", s.url))
                .json(&n)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{what}: answered while the collector misbehaves: {e}"));
            assert_eq!(r.status(), 200, "{what}");
        }
        // The span queue is bounded (2,048 spans): memory stays put while spans pile up.
        let rss = || {
            std::fs::read_to_string(format!("/proc/{}/status", s.child.id()))
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                })
                .unwrap_or(0)
        };
        let before = rss();
        for i in 0..300 {
            let _ = c.get(format!("{}/health/live?{i}", s.url)).send().await;
        }
        // Time must pass here, not a condition: the allocator returns memory lazily.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss();
        assert!(
            after < before + 64 * 1024,
            "{what}: RSS grew from {before} KiB to {after} KiB"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_requests_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut s = start_server(dir.path(), &[], &[]);
    s.up("/health/ready").await;
    // A request in flight when the signal arrives still gets its answer.
    let url = s.url.clone();
    let inflight = tokio::spawn(async move {
        let n = notification(&[(
            "DeploymentFailed",
            "firing",
            &[("app", "api")],
            "2026-11-22T10:00:00Z",
        )]);
        reqwest::Client::new()
            .post(format!("{url}/webhook/alertmanager"))
            .json(&n)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    let pid = s.child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let status = s.exits_within(Duration::from_secs(20)).await;
    let status = status.expect("exits within the shutdown bound");
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
    match inflight.await.expect("join") {
        Ok(code) => assert_eq!(code, 200),
        // Sent after the listener closed: refused, never half-answered.
        Err(e) => assert!(e.is_connect() || e.is_request(), "{e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_shows_deployments_and_tasks_within_a_minute() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Deploywatch::new(dir.path())
        .arg("demo")
        .listen_on_free_port()
        .args(&["--step-seconds", "1"])
        .spawn("demo.log");
    s.up("/health/ready").await;
    let c = reqwest::Client::new();
    until(
        "a successful api deployment, an api-live probe series and at least one task",
        Duration::from_secs(60),
        || async {
            let m = c
                .get(format!("{}/metrics", s.url))
                .send()
                .await
                .expect("m")
                .text()
                .await
                .expect("t");
            let t: Value = c
                .get(format!("{}/api/v1/tasks", s.url))
                .send()
                .await
                .expect("t")
                .json()
                .await
                .expect("json");
            let deployed =
                m.contains("deploywatch_deployments_total{app=\"api\",outcome=\"success\"}");
            let probed =
                m.contains("deploywatch_health_probe_success{app=\"api\",target=\"api-live\"}");
            let tasks = t["tasks"].as_array().map_or(0, Vec::len);
            seen(
                deployed && probed && tasks > 0,
                format!("deployed {deployed}, probed {probed}, {tasks} tasks"),
            )
        },
    )
    .await;
    assert!(
        dir.path().join("deploywatch-demo.db").exists(),
        "the demo uses its own SQLite file"
    );
}
