//! The DigitalOcean source against the simulator: lifecycles, counters across restarts, rate
//! limits, faults, the spec's own examples, the CLI's `watch` and `status`.

use std::path::PathBuf;
use std::time::Duration;

use deploywatch::sources::digitalocean::types::{self, LogsResponse, RollbackValidation};
use do_simulator::{Fault, Script};
use serde_json::Value;

use crate::helpers::*;

const STEP_MS: u64 = 150;

fn do_toml(base: &str) -> String {
    format!(
        "[digitalocean]\napi_url = \"{base}\"\npoll_interval = \"300ms\"\nfast_poll_interval = \"100ms\"\nrequest_timeout = \"1s\"\nstuck_after = \"2s\"\nbudget_share = 1.0\n\n[health]\ndiscover = false\n"
    )
}

const SHA: [&str; 6] = [
    "9a4df0b8e161e323bc3cdf1dc71878080fe144fa",
    "54d4a727f45723106243989b6c8b2ad4e4a9b3bb",
    "1111111111111111111111111111111111111111",
    "2222222222222222222222222222222222222222",
    "3333333333333333333333333333333333333333",
    "4444444444444444444444444444444444444444",
];

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/do-openapi-examples")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_spec_examples_parse_with_their_quirks() {
    let (apps, skipped, next) =
        types::parse_apps_page(&fixture("apps_list.json")).expect("apps_list parses");
    assert_eq!((apps.len(), skipped, next), (1, 0, None));
    let a = &apps[0];
    assert_eq!(a.name(), "sample-php");
    assert_eq!(a.region_slug(), "fra");
    let active = a.active_deployment.as_ref().expect("active");
    assert_eq!(active.phase, deploywatch::domain::Phase::Active);
    assert_eq!(
        active.commit(),
        Some("54d4a727f457231062439895000d45437c7bb405")
    );

    let app: Value = serde_json::from_slice(&fixture("apps_get.json")).expect("json");
    let parsed: types::App = serde_json::from_value(app["app"].clone()).expect("apps_get parses");
    assert_eq!(parsed.name(), "sample-golang");

    let (deps, skipped) = types::parse_deployments_page(&fixture("apps_list_deployments.json"))
        .expect("deployments parse");
    assert_eq!((deps.len(), skipped), (1, 0));
    let d = &deps[0];
    assert_eq!(d.phase, deploywatch::domain::Phase::PendingBuild);
    assert_eq!(
        d.phase_last_updated_at, None,
        "0001-01-01T00:00:00Z means unset"
    );
    assert!(
        d.cause_details.is_none() && d.timing.is_none(),
        "fields the spec lacks are optional"
    );
    assert_eq!(d.commit(), Some("9a4df0b8e161e323bc3cdf1dc71878080fe144fa"));

    let one: Value = serde_json::from_slice(&fixture("apps_get_deployment.json")).expect("json");
    let d: types::Deployment =
        serde_json::from_value(one["deployment"].clone()).expect("deployment parses");
    assert_eq!(d.progress.as_ref().map(|p| p.total_steps), Some(6));

    // The logs example uses `url` + `historic_logs`, the schema `live_url` + `historic_urls`.
    let logs: LogsResponse =
        serde_json::from_slice(&fixture("apps_get_logs_aggregate.json")).expect("logs");
    assert_eq!(
        logs.urls(),
        vec![
            "https://logs-example/archive/build.log",
            "https://logs-example/build.log",
            "https://logs/build.log"
        ]
    );
    let schema_style: LogsResponse =
        serde_json::from_str(r#"{"live_url":"https://a","historic_urls":["https://b"]}"#)
            .expect("schema style");
    assert_eq!(schema_style.urls(), vec!["https://b", "https://a"]);

    let v: RollbackValidation =
        serde_json::from_slice(&fixture("apps_validate_rollback.invalid.json")).expect("invalid");
    assert!(!v.valid);
    assert_eq!(
        v.error.and_then(|e| e.code).as_deref(),
        Some("incompatible_result")
    );
    let w: RollbackValidation =
        serde_json::from_slice(&fixture("apps_validate_rollback.valid_with_warnings.json"))
            .expect("warnings");
    assert!(w.valid && w.warnings.len() == 1);
    let ok: RollbackValidation =
        serde_json::from_slice(&fixture("apps_validate_rollback.valid.json")).expect("valid");
    assert!(ok.valid && ok.warnings.is_empty());
    let rb: Value =
        serde_json::from_slice(&fixture("apps_create_rollback.response.json")).expect("json");
    let _: types::Deployment =
        serde_json::from_value(rb["deployment"].clone()).expect("rollback response parses");
    // The zero time without a Z.
    assert_eq!(types::parse_time("0001-01-01T00:00:00"), None);
    assert!(types::parse_time("2020-07-28T18:00:00Z").is_some());
}

#[test]
fn one_malformed_app_is_skipped_not_fatal() {
    let body = br#"{"apps":[{"id":"a1","spec":{"name":"good"}},{"id":42},{"id":"a3","in_progress_deployment":{"id":"d","phase":"SOMETHING_NEW"}}],"links":{}}"#;
    let (apps, skipped, _) = types::parse_apps_page(body).expect("page parses");
    assert_eq!(skipped, 1);
    assert_eq!(apps.len(), 2);
    assert_eq!(
        apps[1].in_progress_deployment.as_ref().map(|d| d.phase),
        Some(deploywatch::domain::Phase::Unknown)
    );
}

#[tokio::test]
async fn lifecycles_give_exact_phases_outcomes_and_durations() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(STEP_MS))
        .start()
        .await;
    let base = sim.url.clone();
    for (i, name) in ["ok", "build", "health", "cancel", "stuck"]
        .iter()
        .enumerate()
    {
        sim.add_app(name, SHA[i]);
    }
    let app = spawn_app(
        Kind::Sqlite,
        &do_toml(&base),
        &[("DIGITALOCEAN_TOKEN", "sim-token")],
    )
    .await;
    app.until_metric(
        "deploywatch_deployments_total{app=\"stuck\",outcome=\"success\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    sim.deploy("ok", SHA[5], Script::Success);
    sim.deploy("build", SHA[5], Script::BuildFailure);
    sim.deploy("health", SHA[5], Script::HealthCheckFailure);
    sim.deploy("cancel", SHA[5], Script::Cancel);
    sim.deploy("stuck", SHA[5], Script::Stuck);
    app.until_metrics(
        &[
            (
                "deploywatch_deployments_total{app=\"ok\",outcome=\"success\"}",
                2.0,
            ),
            (
                "deploywatch_deployments_total{app=\"build\",outcome=\"failure\"}",
                1.0,
            ),
            (
                "deploywatch_deployments_total{app=\"health\",outcome=\"failure\"}",
                1.0,
            ),
            (
                "deploywatch_deployments_total{app=\"cancel\",outcome=\"canceled\"}",
                1.0,
            ),
            ("deploywatch_deployment_stuck{app=\"stuck\"}", 1.0),
        ],
        Duration::from_secs(15),
    )
    .await;
    let m = app.metrics().await;
    let step = STEP_MS as f64 / 1000.0;
    // Durations from the simulator's timestamps: success ends after 5 steps, a build failure after
    // 3, a health check failure after 5, a cancel after 2.
    let close = |series: &str, want: f64| {
        let got = metric(&m, series).unwrap_or(f64::NAN);
        assert!(
            (got - want).abs() < 0.002,
            "{series}: got {got}, want {want}"
        );
    };
    close(
        "deploywatch_deployment_duration_seconds_sum{app=\"ok\",outcome=\"success\"}",
        2.0 * 5.0 * step,
    );
    close(
        "deploywatch_deployment_duration_seconds_sum{app=\"build\",outcome=\"failure\"}",
        3.0 * step,
    );
    close(
        "deploywatch_deployment_duration_seconds_sum{app=\"health\",outcome=\"failure\"}",
        5.0 * step,
    );
    close(
        "deploywatch_deployment_duration_seconds_sum{app=\"cancel\",outcome=\"canceled\"}",
        2.0 * step,
    );
    // The initial deployment and the failed one each built for 2 steps.
    close(
        "deploywatch_deployment_step_duration_seconds_sum{app=\"build\",step=\"build\"}",
        2.0 * 2.0 * step,
    );
    assert_eq!(
        metric(
            &m,
            "deploywatch_deployment_phase{app=\"build\",phase=\"ERROR\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "deploywatch_deployment_phase{app=\"build\",phase=\"ACTIVE\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &m,
            "deploywatch_deployment_phase{app=\"cancel\",phase=\"CANCELED\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "deploywatch_deployment_last_outcome{app=\"build\",outcome=\"failure\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "deploywatch_deployment_last_outcome{app=\"stuck\",outcome=\"success\"}"
        ),
        Some(1.0),
        "while one is in progress, the last ended deployment counts"
    );
    assert_eq!(
        metric(
            &m,
            "deploywatch_deployment_phase{app=\"stuck\",phase=\"DEPLOYING\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "deploywatch_deployment_in_progress{app=\"stuck\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "deploywatch_deployment_failed_step{app=\"build\",reason=\"BuildJobFailed\",step=\"build\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "deploywatch_deployment_failed_step{app=\"health\",reason=\"DeployHealthChecksFailed\",step=\"deploy\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "deploywatch_source_up{source=\"digitalocean\"}"),
        Some(1.0)
    );
    assert!(
        m.contains("deploywatch_app_info{app=\"ok\""),
        "app_info per app"
    );

    // The snapshot carries the classified failure with its log tail, for tasks and `status`.
    let st: Value = app
        .get("/api/v1/status?app=build")
        .await
        .json()
        .await
        .expect("status");
    let f = &st["apps"][0]["last_failure"];
    assert_eq!(f["class"], "dependency_issue", "{st}");
    assert!(f["log_tail"].as_str().unwrap_or("").contains("ERESOLVE"));
    let st: Value = app
        .get("/api/v1/status?app=health")
        .await
        .json()
        .await
        .expect("status");
    assert_eq!(
        st["apps"][0]["last_failure"]["class"],
        "database_migration_issue"
    );

    // Lifecycle events became announcements and an e2e-test task, never fix tasks.
    until(
        "an e2e-test task titled \"E2E: verify ok at 4444444\"",
        Duration::from_secs(5),
        || async {
            let titles: Vec<Value> = app
                .tasks("e2e-test")
                .await
                .iter()
                .map(|t| t["title"].clone())
                .collect();
            seen(
                titles.iter().any(|t| t == "E2E: verify ok at 4444444"),
                titles,
            )
        },
    )
    .await;
    let ex: Value = app
        .get("/api/v1/tasks?queue=execution")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        ex["tasks"].as_array().map(Vec::len),
        Some(0),
        "sources never write fix tasks"
    );
    let ann: Value = app
        .get("/api/v1/tasks?queue=announce&limit=500")
        .await
        .json()
        .await
        .expect("json");
    let titles: Vec<&str> = ann["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["title"].as_str().unwrap_or(""))
        .collect();
    assert!(
        titles.contains(&"ANNOUNCE: Deployment of build (4444444) failed"),
        "{titles:?}"
    );
    assert!(
        titles.contains(&"ANNOUNCE: Deployment of stuck (4444444) is stuck"),
        "{titles:?}"
    );

    // Counters continue across a restart, with nothing counted twice.
    let before = app.metrics().await;
    let db = app.stop().await;
    let app = spawn_app_on(
        db,
        &do_toml(&base),
        &[("DIGITALOCEAN_TOKEN", "sim-token")],
        Default::default(),
    )
    .await;
    app.until_metric(
        "deploywatch_source_up{source=\"digitalocean\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    // Time must pass, not a condition: a few poll cycles run, so a double count would show.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after = app.metrics().await;
    for s in [
        "deploywatch_deployments_total{app=\"ok\",outcome=\"success\"}",
        "deploywatch_deployments_total{app=\"build\",outcome=\"failure\"}",
        "deploywatch_deployments_total{app=\"cancel\",outcome=\"canceled\"}",
        "deploywatch_deployment_duration_seconds_count{app=\"health\",outcome=\"failure\"}",
    ] {
        assert_eq!(
            metric(&after, s),
            metric(&before, s),
            "{s} continues across the restart"
        );
        assert!(metric(&after, s).is_some());
    }
    app.stop().await;
}

#[tokio::test]
async fn idle_polling_costs_one_request_a_cycle() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(STEP_MS))
        .start()
        .await;
    let base = sim.url.clone();
    for i in 0..10 {
        sim.add_app(&format!("app{i}"), SHA[i % 6]);
    }
    let app = spawn_app(
        Kind::Sqlite,
        &do_toml(&base),
        &[("DIGITALOCEAN_TOKEN", "sim-token")],
    )
    .await;
    app.until_metric(
        "deploywatch_source_up{source=\"digitalocean\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    // The first cycle lists every app's deployments; after that, while nothing changes, a cycle
    // is the list call alone (the adaptive interval stretches to fit the budget meanwhile).
    let lists = || sim.requests_to("/v2/apps") - sim.requests_to("/v2/apps/");
    let per_app = || sim.requests_to("/v2/apps/{id}/deployments");
    let (list0, per_app0) = (lists(), per_app());
    until("two more list calls", Duration::from_secs(40), || async {
        let n = lists();
        seen(n >= list0 + 2, format!("{} list calls since", n - list0))
    })
    .await;
    assert_eq!(
        per_app(),
        per_app0,
        "no per-app calls while nothing changes"
    );
    // A change triggers per-app calls for that app only.
    sim.deploy("app3", SHA[5], Script::Success);
    app.until_metric(
        "deploywatch_deployments_total{app=\"app3\",outcome=\"success\"}",
        2.0,
        Duration::from_secs(10),
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured_and_faults_keep_last_known_values() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(STEP_MS))
        .start()
        .await;
    let base = sim.url.clone();
    sim.add_app("api", SHA[0]);
    let app = spawn_app(
        Kind::Sqlite,
        &do_toml(&base),
        &[("DIGITALOCEAN_TOKEN", "sim-token")],
    )
    .await;
    app.until_metric(
        "deploywatch_source_up{source=\"digitalocean\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;

    // Long enough that the 429 reaching /metrics (rendered at most once a second for background
    // changes) plus the 1.5 s watched below stay inside it.
    sim.inject(Fault::RateLimited {
        retry_after_secs: 4,
    });
    app.until_metric(
        "deploywatch_digitalocean_requests_total{code=\"429\",endpoint=\"/v2/apps\"}",
        1.0,
        Duration::from_secs(5),
    )
    .await;
    let at_429 = sim.requests();
    // Time must pass: the absence of a request inside retry-after is what is checked.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        sim.requests(),
        at_429,
        "no request before retry-after has passed"
    );
    until(
        "a request once retry-after has passed",
        Duration::from_secs(8),
        || async { seen(sim.requests() > at_429, sim.requests()) },
    )
    .await;

    // 5xx streak, HTML error page, malformed and truncated JSON: errors counted, values kept.
    for f in [
        Fault::ServerError,
        Fault::ServerError,
        Fault::ServerError,
        Fault::HtmlError,
        Fault::HtmlError,
        Fault::HtmlError,
        Fault::Malformed,
        Fault::Truncated,
    ] {
        sim.inject(f);
    }
    app.until_metric(
        "deploywatch_source_up{source=\"digitalocean\"}",
        0.0,
        Duration::from_secs(10),
    )
    .await;
    // Background changes reach /metrics within one render (src/exposition.rs).
    until(
        "at least three 500s counted",
        Duration::from_secs(10),
        || async {
            let n = metric(
                &app.metrics().await,
                "deploywatch_digitalocean_requests_total{code=\"500\",endpoint=\"/v2/apps\"}",
            );
            seen(n.unwrap_or(0.0) >= 3.0, n)
        },
    )
    .await;
    let m = app.metrics().await;
    assert!(
        m.contains("deploywatch_app_info{app=\"api\""),
        "last known values are still served"
    );
    assert_eq!(
        metric(
            &m,
            "deploywatch_deployment_phase{app=\"api\",phase=\"ACTIVE\"}"
        ),
        Some(1.0)
    );
    assert!(
        metric(
            &m,
            "deploywatch_digitalocean_requests_total{code=\"500\",endpoint=\"/v2/apps\"}"
        )
        .unwrap_or(0.0)
            >= 3.0
    );
    app.until_metric(
        "deploywatch_source_up{source=\"digitalocean\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;

    // A hanging API never holds /metrics.
    sim.inject(Fault::Hang(Duration::from_secs(20)));
    sim.inject(Fault::Hang(Duration::from_secs(20)));
    sim.inject(Fault::Hang(Duration::from_secs(20)));
    // The poller is inside a hanging request once the simulator has seen one more.
    let before_hang = sim.requests();
    until(
        "the poller to reach a hanging request",
        Duration::from_secs(5),
        || async { seen(sim.requests() > before_hang, sim.requests()) },
    )
    .await;
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    for _ in 0..5 {
        let r = quick
            .get(format!("{}/metrics", app.url))
            .send()
            .await
            .expect("/metrics answers while the API hangs");
        assert_eq!(r.status(), 200);
    }
    sim.clear_faults();
    app.stop().await;
}

#[tokio::test]
async fn only_one_replica_polls_and_another_takes_over() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(STEP_MS))
        .start()
        .await;
    let base = sim.url.clone();
    sim.add_app("api", SHA[0]);
    let db = pg_db().await;
    let url = db.url.clone();
    let a = spawn_app_on(
        db,
        &do_toml(&base),
        &[("DIGITALOCEAN_TOKEN", "sim-token")],
        Default::default(),
    )
    .await;
    a.until_metric(
        "deploywatch_source_up{source=\"digitalocean\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    let shared = TestDbRef(url);
    let b = spawn_app_on(
        shared.db(),
        &do_toml(&base),
        &[("DIGITALOCEAN_TOKEN", "sim-token")],
        Default::default(),
    )
    .await;
    // Time must pass: that the standby does not poll is an absence, seen over a few cycles.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mb = b.metrics().await;
    assert_eq!(
        metric(&mb, "deploywatch_source_up{source=\"digitalocean\"}"),
        None,
        "the standby does not poll"
    );
    assert_eq!(
        metric(
            &mb,
            "deploywatch_deployments_total{app=\"api\",outcome=\"success\"}"
        ),
        Some(1.0),
        "the standby still exports what the leader counted"
    );
    // The leader stops without releasing (like a crash is simulated by not polling): take over.
    let _db = a.stop().await;
    b.until_metric(
        "deploywatch_source_up{source=\"digitalocean\"}",
        1.0,
        Duration::from_secs(15),
    )
    .await;
    sim.deploy("api", SHA[1], Script::Success);
    b.until_metric(
        "deploywatch_deployments_total{app=\"api\",outcome=\"success\"}",
        2.0,
        Duration::from_secs(10),
    )
    .await;
    b.stop().await;
}

/// A second handle on an existing PostgreSQL database (not dropped by this handle).
struct TestDbRef(String);

impl TestDbRef {
    fn db(&self) -> TestDb {
        TestDb::borrowed(&self.0)
    }
}

fn run_cli(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    Deploywatch::here()
        .args(args)
        .envs(envs)
        .env_remove("DEPLOYWATCH_SERVER")
        .run_split()
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_follows_a_deployment_to_its_end() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(STEP_MS))
        .start()
        .await;
    let base = sim.url.clone();
    sim.add_app("api", SHA[0]);
    let envs = [
        ("DIGITALOCEAN_TOKEN", "sim-token"),
        ("DEPLOYWATCH_DO_API_URL", base.as_str()),
    ];
    sim.deploy("api", SHA[1], Script::Success);
    let (code, out, err) = tokio::task::spawn_blocking({
        let envs = envs.map(|(k, v)| (k.to_string(), v.to_string()));
        move || {
            run_cli(
                &["watch", "--app", "api", "--timeout", "20"],
                &envs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect::<Vec<_>>(),
            )
        }
    })
    .await
    .expect("join");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("ACTIVE"), "{out}");

    sim.deploy("api", SHA[2], Script::BuildFailure);
    let envs2 = envs.map(|(k, v)| (k.to_string(), v.to_string()));
    let (code, out, _) = tokio::task::spawn_blocking(move || {
        run_cli(
            &["watch", "--app", "api"],
            &envs2
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        )
    })
    .await
    .expect("join");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("BuildJobFailed"),
        "names the failed step's reason: {out}"
    );
    assert!(out.contains("ERESOLVE"), "prints the log tail: {out}");

    sim.deploy("api", SHA[3], Script::Stuck);
    let envs3 = envs.map(|(k, v)| (k.to_string(), v.to_string()));
    let (code, out, _) = tokio::task::spawn_blocking(move || {
        run_cli(
            &["watch", "--app", "api", "--timeout", "2", "--json"],
            &envs3
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        )
    })
    .await
    .expect("join");
    assert_eq!(code, 124, "{out}");
    for line in out.lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|_| panic!("--json prints JSON lines: {line}"));
    }
    let (code, _, err) = run_cli(&["watch", "--app", "api"], &[]);
    assert_eq!(code, 2, "no token is a usage error");
    assert!(err.contains("DIGITALOCEAN_TOKEN"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_cli_reads_the_server() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(STEP_MS))
        .start()
        .await;
    let base = sim.url.clone();
    sim.add_app("api", SHA[0]);
    sim.deploy("api", SHA[1], Script::BuildFailure);
    let app = spawn_app(
        Kind::Sqlite,
        &do_toml(&base),
        &[("DIGITALOCEAN_TOKEN", "sim-token")],
    )
    .await;
    app.until_metric(
        "deploywatch_deployments_total{app=\"api\",outcome=\"failure\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    let url = app.url.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        run_cli(&["status", "--server", &url, "--app", "api", "--json"], &[])
    })
    .await
    .expect("join");
    assert_eq!(code, 1, "a failed latest deployment is exit 1: {err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["apps"][0]["latest"]["phase"], "ERROR");
    let url = app.url.clone();
    let (_, text, _) =
        tokio::task::spawn_blocking(move || run_cli(&["status", "--server", &url], &[]))
            .await
            .expect("join");
    assert!(text.contains("app api") && text.contains("ERROR"), "{text}");
    let url = app.url.clone();
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        run_cli(&["status", "--server", &url, "--app", "nosuch"], &[])
    })
    .await
    .expect("join");
    assert_eq!(code, 2, "an unknown app is a usage error");
    assert!(
        err.contains("no app named \"nosuch\"") && err.contains("known apps: api"),
        "{err}"
    );
    // One info series per meaning: the latest (failed) deployment with its own commit and cause,
    // and the ACTIVE one with its own commit; never one mixing both.
    let m = app.metrics().await;
    let latest = v["apps"][0]["latest"]["id"].as_str().expect("latest id");
    let active = v["apps"][0]["active"]["id"].as_str().expect("active id");
    assert_ne!(latest, active);
    let info: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("deploywatch_deployment_info{"))
        .collect();
    assert_eq!(info.len(), 1, "{info:?}");
    assert!(
        info[0].contains(&format!("deployment_id=\"{latest}\""))
            && info[0].contains(&format!("commit=\"{}\"", SHA[1])),
        "{info:?}"
    );
    let act: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("deploywatch_active_deployment_info{"))
        .collect();
    assert_eq!(act.len(), 1, "{act:?}");
    assert!(
        act[0].contains(&format!("deployment_id=\"{active}\""))
            && act[0].contains(&format!("commit=\"{}\"", SHA[0])),
        "{act:?}"
    );
    let (code, _, err) = run_cli(&["status", "--server", "http://127.0.0.1:9"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot reach"), "{err}");
    app.stop().await;
}

#[tokio::test]
async fn pagination_follows_links_past_200_apps() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(STEP_MS))
        .start()
        .await;
    let base = sim.url.clone();
    for i in 0..450 {
        sim.add_app(&format!("app{i:03}"), SHA[i % 6]);
    }
    let app = spawn_app(
        Kind::Sqlite,
        &do_toml(&base),
        &[("DIGITALOCEAN_TOKEN", "sim-token")],
    )
    .await;
    until("450 app_info series", Duration::from_secs(30), || async {
        let n = app
            .metrics()
            .await
            .lines()
            .filter(|l| l.starts_with("deploywatch_app_info{"))
            .count();
        seen(n == 450, n)
    })
    .await;
    assert!(
        sim.requests_to("/v2/apps") - sim.requests_to("/v2/apps/") >= 3,
        "three pages of 200"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_large_account_is_read_within_the_per_minute_share() {
    let sim = SimBuilder::new()
        .step(Duration::from_millis(STEP_MS))
        .start()
        .await;
    let base = sim.url.clone();
    for i in 0..300 {
        sim.add_app(&format!("app{i:03}"), SHA[i % 6]);
    }
    // A share of 0.2 allows 50 requests a minute.
    let toml = do_toml(&base).replace("budget_share = 1.0", "budget_share = 0.2");
    let app = spawn_app(Kind::Sqlite, &toml, &[("DIGITALOCEAN_TOKEN", "sim-token")]).await;
    app.until_metric(
        "deploywatch_source_up{source=\"digitalocean\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    // Time must pass: the budget is a rate, measured over these seconds.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let n = sim.requests();
    assert!(
        n <= 50,
        "{n} requests in the first minute, over the 50 a 0.2 share allows"
    );
    let read = sim.requests_to("/v2/apps/{id}/deployments");
    assert!(
        (20..300).contains(&read),
        "reads are paced, not skipped: {read}"
    );
    // Every app is still exported from the list call.
    assert_eq!(
        app.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with("deploywatch_app_info{"))
            .count(),
        300
    );
    app.stop().await;
}
