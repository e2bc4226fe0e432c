//! The shipped integrations with the real tools: Alertmanager routing to the webhook (two HA
//! peers, resolves), the full loop Prometheus → Alertmanager → deploywatch with the shipped rules,
//! the dashboards' expressions against the real Prometheus, and the compose file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use do_simulator::Script;
use serde_json::Value;

use crate::helpers::*;

/// A child process killed when dropped.
pub(crate) struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn spawn(bin: &str, args: &[String], log: &Path) -> Proc {
    let out = std::fs::File::create(log).expect("log file");
    let child = Command::new(bin)
        .args(args)
        .stdout(Stdio::from(out.try_clone().expect("clone")))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap_or_else(|e| panic!("{bin} must be installed (scripts/test.sh installs it): {e}"));
    Proc(child)
}

pub(crate) async fn ready(url: &str) {
    let c = reqwest::Client::new();
    until(
        &format!("GET {url} to succeed"),
        Duration::from_secs(30),
        || async {
            match c.get(url).send().await {
                Ok(r) => seen(r.status().is_success(), r.status().to_string()),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
}

/// Writes an Alertmanager config from the shipped one, pointing the deploywatch receiver at the
/// test server and the secret files at test files. Only URLs, file paths and the group timings
/// (seconds instead of minutes, to bound the test) change; routes, receivers and inhibitions stay.
fn am_config(dir: &Path, webhook: &str, token_file: &Path) -> PathBuf {
    let shipped =
        std::fs::read_to_string(root().join("alerts/alertmanager.yml")).expect("shipped config");
    for f in ["pagerduty-routing-key", "slack-webhook-url"] {
        std::fs::write(
            dir.join(f),
            if f.starts_with("slack") {
                "http://127.0.0.1:9/hook"
            } else {
                "test-key"
            },
        )
        .expect("write");
    }
    let cfg = shipped
        .replace(
            "http://deploywatch:9797/webhook/alertmanager",
            &format!("{webhook}/webhook/alertmanager"),
        )
        .replace(
            "/etc/alertmanager/secrets/deploywatch-webhook-token",
            token_file.to_str().expect("utf8"),
        )
        .replace("/etc/alertmanager/secrets/", &format!("{}/", dir.display()))
        .replace("group_wait: 30s", "group_wait: 1s")
        .replace("group_interval: 5m", "group_interval: 2s");
    let p = dir.join("alertmanager.yml");
    std::fs::write(&p, cfg).expect("write config");
    p
}

fn alertmanager(dir: &Path, cfg: &Path, port: u16, cluster: Option<(u16, Option<u16>)>) -> Proc {
    let storage = dir.join(format!("am-{port}"));
    std::fs::create_dir_all(&storage).expect("storage");
    let mut args = vec![
        format!("--config.file={}", cfg.display()),
        format!("--storage.path={}", storage.display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    match cluster {
        None => args.push("--cluster.listen-address=".into()),
        Some((listen, peer)) => {
            args.push(format!("--cluster.listen-address=127.0.0.1:{listen}"));
            args.push(format!("--cluster.advertise-address=127.0.0.1:{listen}"));
            if let Some(p) = peer {
                args.push(format!("--cluster.peer=127.0.0.1:{p}"));
            }
        }
    }
    spawn(
        "prometheus-alertmanager",
        &args,
        &dir.join(format!("am-{port}.log")),
    )
}

fn amtool(port: u16, args: &[&str]) {
    let out = Command::new("amtool")
        .arg(format!("--alertmanager.url=http://127.0.0.1:{port}"))
        .args(args)
        .output()
        .expect("amtool is installed");
    assert!(
        out.status.success(),
        "amtool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn tasks(app: &TestApp, query: &str, token: &str) -> Vec<Value> {
    let r = app
        .http
        .get(format!("{}/api/v1/tasks?{query}", app.url))
        .bearer_auth(token)
        .send()
        .await
        .expect("req");
    let v: Value = r.json().await.expect("json");
    v["tasks"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_alertmanagers_make_one_task_and_send_resolved_cancels_it() {
    let token = "am-test-token";
    let app = spawn_app(Kind::Sqlite, "", &[("DEPLOYWATCH_WEBHOOK_TOKEN", token)]).await;
    let dir = tempfile::tempdir().expect("tmp");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).expect("token");
    let cfg = am_config(dir.path(), &app.url, &token_file);
    let (p1, p2, c1, c2) = (free_port(), free_port(), free_port(), free_port());
    let _am1 = alertmanager(dir.path(), &cfg, p1, Some((c1, None)));
    let _am2 = alertmanager(dir.path(), &cfg, p2, Some((c2, Some(c1))));
    ready(&format!("http://127.0.0.1:{p1}/-/ready")).await;
    ready(&format!("http://127.0.0.1:{p2}/-/ready")).await;

    // Prometheus sends every alert to every Alertmanager of an HA pair; so do we.
    let start = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let labels = ["alertname=DeploymentFailed", "app=api", "severity=critical"];
    for port in [p1, p2] {
        let mut args = vec!["alert", "add"];
        args.extend(labels);
        let start_arg = format!("--start={start}");
        args.extend([
            "--annotation=summary=Deployment of api failed",
            "--annotation=runbook_url=https://runbooks/DeploymentFailed",
            start_arg.as_str(),
        ]);
        amtool(port, &args);
    }
    until("a fix task", Duration::from_secs(30), || async {
        let t = tasks(&app, "queue=execution", token).await;
        seen(!t.is_empty(), t)
    })
    .await;
    // Give both peers time to deliver (and repeat) before counting.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let fix = tasks(&app, "queue=execution", token).await;
    assert_eq!(fix.len(), 1, "two Alertmanagers, one task: {fix:?}");
    assert_eq!(fix[0]["title"], "FIX: Deployment error in api");
    assert_eq!(fix[0]["state"], "queued");
    assert_eq!(
        fix[0]["context"]["links"]["runbook"],
        "https://runbooks/DeploymentFailed"
    );
    assert!(fix[0]["context"]["links"]["generator"].is_string());

    // The alert ends: send_resolved cancels the queued task.
    let end = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for port in [p1, p2] {
        let mut args = vec!["alert", "add"];
        args.extend(labels);
        let (s, e) = (format!("--start={start}"), format!("--end={end}"));
        args.extend([s.as_str(), e.as_str()]);
        amtool(port, &args);
    }
    until(
        "the fix task to be cancelled",
        Duration::from_secs(30),
        || async {
            let t = tasks(&app, "queue=execution", token).await;
            seen(t.first().is_some_and(|t| t["state"] == "cancelled"), t)
        },
    )
    .await;
    let fix = tasks(&app, "queue=execution", token).await;
    assert_eq!(fix.len(), 1);
    assert_eq!(fix[0]["closed_reason"], "alert resolved");
    let m = app.metrics().await;
    assert!(
        metric(&m, "deploywatch_webhook_alerts_total{status=\"resolved\"}").unwrap_or(0.0) >= 1.0
    );
    app.stop().await;
}

fn prometheus(dir: &Path, target: &str, am_port: u16, port: u16) -> Proc {
    let rules = root().join("alerts");
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}/deploywatch.rules.yml\n  - {}/recording.rules.yml\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\nscrape_configs:\n  - job_name: deploywatch\n    static_configs:\n      - targets: ['{target}']\n",
        rules.display(),
        rules.display()
    );
    let p = dir.join("prometheus.yml");
    std::fs::write(&p, cfg).expect("write");
    let data = dir.join("prom-data");
    std::fs::create_dir_all(&data).expect("data");
    spawn(
        "prometheus",
        &[
            format!("--config.file={}", p.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--rules.alert.resend-delay=2s".into(),
        ],
        &dir.join("prometheus.log"),
    )
}

pub(crate) async fn prom_query(port: u16, q: &str) -> Value {
    let c = reqwest::Client::new();
    let mut url = url::Url::parse(&format!("http://127.0.0.1:{port}/api/v1/query")).expect("url");
    url.query_pairs_mut().append_pair("query", q);
    let r = c.get(url).send().await.expect("query");
    r.json().await.expect("json")
}

/// Every panel expression of every dashboard, with Grafana's variables filled in.
pub fn dashboard_exprs() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("dashboards")).expect("dashboards") {
        let p = entry.expect("entry").path();
        if p.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&p).expect("read"))
            .expect("dashboard is JSON");
        for panel in d["panels"].as_array().expect("panels") {
            for t in panel["targets"].as_array().expect("targets") {
                let expr = t["expr"]
                    .as_str()
                    .expect("expr")
                    .replace("$app", ".*")
                    .replace("$__rate_interval", "1m");
                out.push((
                    d["uid"].as_str().unwrap_or("").to_string(),
                    panel["title"].as_str().unwrap_or("").to_string(),
                    expr,
                ));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn full_loop_prometheus_alertmanager_webhook_and_dashboards() {
    let token = "stack-token";
    let dir = tempfile::tempdir().expect("tmp");
    // DigitalOcean (simulated), an app with a git repository, a probe that fails.
    let sim = SimBuilder::new()
        .step(Duration::from_millis(200))
        .start()
        .await;
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).expect("repo");
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .expect("git");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("a"), "1").expect("w");
    git(&["add", "a"]);
    git(&["commit", "-q", "-m", "one"]);
    let c1 = git(&["rev-parse", "HEAD"]);
    std::fs::write(repo.join("a"), "2").expect("w");
    git(&["commit", "-qam", "two"]);
    let c2 = git(&["rev-parse", "HEAD"]);
    sim.add_app("api", &c1);
    let sim_url = &sim.url;
    let toml = format!(
        "[digitalocean]\napi_url = \"{sim_url}\"\npoll_interval = \"500ms\"\nfast_poll_interval = \"200ms\"\n\n[git]\nfetch_interval = \"1s\"\n\n[[git.repos]]\nname = \"api\"\nurl = \"{}\"\napp = \"api\"\n\n[[health.targets]]\nname = \"edge-live\"\napp = \"edge\"\nurl = \"http://127.0.0.1:{}/health/live\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n\n[[rollback.auto]]\napp = \"api\"\ndry_run = true\n",
        repo.display(),
        free_port()
    );
    // An HTTPS endpoint with a certificate deploywatch trusts, for the TLS expiry panel.
    let tls_script = crate::probes::Script::default();
    tls_script.set("/health/live", vec![crate::probes::answer(200, "{}")]);
    let tls = crate::probes::https_server(tls_script).await;
    let toml = format!(
        "{toml}\n[[health.targets]]\nname = \"api-tls\"\napp = \"api\"\nurl = \"{}/health/live\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n",
        tls.url
    );
    let app = spawn_app_on(
        sqlite_db(),
        &toml,
        &[
            ("DIGITALOCEAN_TOKEN", "sim-token"),
            ("DEPLOYWATCH_WEBHOOK_TOKEN", token),
        ],
        deploywatch::server::ServeOptions {
            extra_roots: vec![tls.ca.clone()],
        },
    )
    .await;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).expect("token");
    let am_port = free_port();
    let am_cfg = am_config(dir.path(), &app.url, &token_file);
    let _am = alertmanager(dir.path(), &am_cfg, am_port, None);
    let prom_port = free_port();
    let _prom = prometheus(
        dir.path(),
        app.url.trim_start_matches("http://"),
        am_port,
        prom_port,
    );
    ready(&format!("http://127.0.0.1:{am_port}/-/ready")).await;
    ready(&format!("http://127.0.0.1:{prom_port}/-/ready")).await;

    // A deployment fails: DeploymentFailed fires (after its `for`), Alertmanager routes it to the
    // webhook, and exactly one fix task appears.
    sim.deploy("api", &c2, Script::BuildFailure);
    until("a task for api", Duration::from_secs(150), || async {
        let t = tasks(&app, "queue=execution&app=api", token).await;
        seen(!t.is_empty(), t)
    })
    .await;
    // Time must pass: repeated notifications get their chance to (wrongly) make a second task.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let fix: Vec<Value> = tasks(&app, "queue=execution&app=api", token)
        .await
        .into_iter()
        .filter(|t| t["kind"] == "fix")
        .collect();
    assert_eq!(fix.len(), 1, "exactly one fix task: {fix:?}");
    assert_eq!(
        fix[0]["title"], "FIX: Dependency issue in api",
        "classified from the log tail"
    );
    assert!(
        fix[0]["context"]["failure"]["log_tail"]
            .as_str()
            .unwrap_or("")
            .contains("ERESOLVE")
    );
    assert_eq!(fix[0]["context"]["alert"]["labels"]["severity"], "critical");
    let fix_id = fix[0]["id"].as_str().expect("id").to_string();

    // An agent claims it (so claims show on the dashboards).
    let claimed = app
        .http
        .post(format!("{}/api/v1/tasks/claim", app.url))
        .bearer_auth(token)
        .json(&serde_json::json!({"queue": "execution", "worker": "agent"}))
        .send()
        .await
        .expect("claim");
    assert_eq!(claimed.status(), 200);

    // The next deployment succeeds: the alert resolves and the task (claimed) gets a note.
    sim.deploy("api", &c2, Script::Success);
    until(
        "the fix task to note that its alert resolved",
        Duration::from_secs(90),
        || async {
            let r = app
                .http
                .get(format!("{}/api/v1/tasks/{fix_id}", app.url))
                .bearer_auth(token)
                .send()
                .await
                .expect("req");
            let v: Value = r.json().await.expect("json");
            seen(
                v["task"]["alert_resolved_at"].is_string(),
                v["task"].clone(),
            )
        },
    )
    .await;
    // Once the new version is ACTIVE, a health alert for it: a rollback task to the previous good
    // deployment, run
    // as a dry run (the opt-in for this app says so).
    let hc = notification(&[(
        "HealthCheckFailing",
        "firing",
        &[("app", "api"), ("severity", "warning")],
        "2026-11-22T10:00:00Z",
    )]);
    assert_eq!(app.token.as_deref(), Some(token));
    app.post_alerts_ok(&hc).await;
    app.until_metric(
        "deploywatch_rollbacks_total{app=\"api\",result=\"dry_run\"}",
        1.0,
        Duration::from_secs(30),
    )
    .await;

    // promtool finds nothing wrong with a fully populated exposition.
    promtool_check_metrics(&app.metrics().await);

    // Every dashboard expression parses and returns data from this Prometheus.
    // Time must pass: the recording groups evaluate once a minute.
    tokio::time::sleep(Duration::from_secs(65)).await;
    let mut empty = Vec::new();
    for (uid, title, expr) in dashboard_exprs() {
        let v = prom_query(prom_port, &expr).await;
        assert_eq!(v["status"], "success", "{uid} / {title}: {expr}: {v}");
        if v["data"]["result"].as_array().is_none_or(|r| r.is_empty()) {
            empty.push(format!("{uid} / {title}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );
    app.stop().await;
}

#[test]
fn dashboards_parse_and_name_only_exported_metrics() {
    // Every family is declared in the one registry file.
    let metrics_rs = std::fs::read_to_string(root().join("src/telemetry/metrics/registry.rs"))
        .expect("src/telemetry/metrics/registry.rs");
    let rules = std::fs::read_to_string(root().join("alerts/recording.rules.yml")).expect("rules");
    let recorded: Vec<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: "))
        .map(str::to_string)
        .collect();
    let mut uids = std::collections::HashSet::new();
    for entry in std::fs::read_dir(root().join("dashboards")).expect("dir") {
        let p = entry.expect("entry").path();
        if p.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let d: Value =
            serde_json::from_str(&std::fs::read_to_string(&p).expect("read")).expect("JSON");
        let uid = d["uid"].as_str().expect("uid");
        assert!(uids.insert(uid.to_string()), "unique uid {uid}");
        assert!(
            d["templating"]["list"]
                .as_array()
                .expect("templating")
                .iter()
                .any(|t| t["name"] == "datasource" && t["type"] == "datasource"),
            "{uid}: datasource variable"
        );
        for panel in d["panels"].as_array().expect("panels") {
            let title = panel["title"].as_str().unwrap_or("");
            assert!(
                panel["description"].as_str().is_some_and(|s| !s.is_empty()),
                "{uid}/{title}: description"
            );
            assert!(
                panel["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{uid}/{title}: unit"
            );
            for t in panel["targets"].as_array().expect("targets") {
                let raw = t["expr"].as_str().expect("expr");
                let expr = raw.replace("$app", ".*").replace("$__rate_interval", "1m");
                promql_parser::parser::parse(&expr)
                    .unwrap_or_else(|e| panic!("{uid}/{title}: {expr}: {e}"));
                if raw.contains("rate(") || raw.contains("increase(") {
                    assert!(
                        raw.contains("$__rate_interval") || raw.contains("[7d]"),
                        "{uid}/{title}: rate() uses $__rate_interval: {raw}"
                    );
                }
                // Every metric named is declared in src/metrics.rs (or is a recording rule).
                for word in
                    raw.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                {
                    if word.starts_with("deploywatch_") {
                        let base = word
                            .trim_end_matches("_bucket")
                            .trim_end_matches("_sum")
                            .trim_end_matches("_count");
                        let short = base.trim_start_matches("deploywatch_");
                        assert!(
                            metrics_rs.contains(&format!("\"{short}\"")),
                            "{uid}/{title}: {word} is not exported"
                        );
                    } else if word.starts_with("app:") {
                        assert!(
                            recorded.iter().any(|r| r == word),
                            "{uid}/{title}: {word} is not a recording rule"
                        );
                    }
                }
            }
        }
    }
    assert_eq!(uids.len(), 4);
}

#[test]
fn compose_file_mounts_and_secrets_exist_and_images_are_pinned() {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).expect("compose");
    let c: serde_yaml::Value = serde_yaml::from_str(&text).expect("compose is YAML");
    let services = c["services"].as_mapping().expect("services");
    for want in [
        "deploywatch",
        "prometheus",
        "alertmanager",
        "grafana",
        "postgres",
        "otel-collector",
        "jaeger",
    ] {
        assert!(services.contains_key(want), "service {want}");
    }
    let secrets_doc =
        std::fs::read_to_string(root().join("deploy/secrets/README.md")).expect("secrets README");
    for (name, svc) in services {
        let name = name.as_str().expect("name");
        if let Some(image) = svc["image"].as_str()
            && svc.get("build").is_none()
        {
            let tag = image.rsplit(':').next().unwrap_or("");
            assert!(
                image.contains(':') && tag != "latest" && !tag.is_empty(),
                "{name}: pinned image tag, got {image}"
            );
        }
        if svc.get("build").is_some() {
            assert!(root().join("Dockerfile").exists(), "{name}: Dockerfile");
        }
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let spec = v.as_str().expect("short volume syntax");
            let src = spec.split(':').next().expect("source");
            if src.starts_with("./") {
                let p = root().join(src);
                if p.ends_with("deploy/secrets") {
                    assert!(p.join("README.md").exists());
                } else {
                    assert!(p.exists(), "{name}: mounted {src} exists");
                }
            }
        }
    }
    for (name, s) in c["secrets"].as_mapping().expect("secrets") {
        let file = s["file"].as_str().expect("file");
        let fname = file.rsplit('/').next().expect("name");
        assert!(
            secrets_doc.contains(fname),
            "secret {} ({file}) is documented in deploy/secrets/README.md",
            name.as_str().unwrap_or("")
        );
    }
    // The Alertmanager config reads every secret from a file the README documents.
    let am = std::fs::read_to_string(root().join("alerts/alertmanager.yml")).expect("am");
    for f in [
        "deploywatch-webhook-token",
        "pagerduty-routing-key",
        "slack-webhook-url",
    ] {
        assert!(
            am.contains(&format!("/etc/alertmanager/secrets/{f}")) && secrets_doc.contains(f),
            "{f}"
        );
    }
}

#[test]
fn every_shipped_alert_has_labels_annotations_and_a_runbook() {
    let text = std::fs::read_to_string(root().join("alerts/deploywatch.rules.yml")).expect("rules");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
    let mut names = Vec::new();
    for g in doc["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            let Some(name) = r["alert"].as_str() else {
                continue;
            };
            names.push(name.to_string());
            assert!(
                name.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && !name.contains('_'),
                "{name} is CamelCase"
            );
            assert!(
                matches!(
                    r["labels"]["severity"].as_str(),
                    Some("critical" | "warning" | "info")
                ),
                "{name}: severity"
            );
            for a in ["summary", "description", "runbook_url"] {
                assert!(
                    r["annotations"][a].as_str().is_some_and(|s| !s.is_empty()),
                    "{name}: {a}"
                );
            }
            let url = r["annotations"]["runbook_url"].as_str().expect("url");
            assert!(
                url.ends_with(&format!("docs/runbooks/{name}.md")),
                "{name}: {url}"
            );
            let page = std::fs::read_to_string(root().join(format!("docs/runbooks/{name}.md")))
                .unwrap_or_else(|_| panic!("runbook for {name}"));
            for section in [
                "## What it means",
                "## How to confirm",
                "## How to fix",
                "## How to roll back",
            ] {
                assert!(page.contains(section), "{name}: {section}");
            }
        }
    }
    for contract in [
        "DeploymentFailed",
        "DeploymentStuck",
        "DeploySuccessRateLow",
        "HealthCheckFailing",
        "MigrationCheckFailed",
        "DeploywatchSourceDown",
    ] {
        assert!(
            names.iter().any(|n| n == contract),
            "contract alert {contract} is shipped"
        );
    }
    // Every alert has a promtool unit test.
    let tests =
        std::fs::read_to_string(root().join("alerts/tests/deploywatch_test.yml")).expect("tests");
    for n in &names {
        assert!(
            tests.contains(&format!("alertname: {n}")),
            "{n} has a promtool test"
        );
    }
}

/// Waits until every shipped alerting group has been evaluated after `since` (so the alerts reflect
/// the scraped data), then returns the active alerts, pending ones included (their `for:` has not
/// run out yet, but their expression is true: they would fire).
async fn alerts_after_evaluation(port: u16, since: chrono::DateTime<chrono::Utc>) -> Vec<Value> {
    let c = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/v1/rules");
    wait_for(Duration::from_secs(60), || async {
        let Ok(r) = c.get(&url).send().await else {
            return false;
        };
        let v: Value = r.json().await.unwrap_or_default();
        // The alerting groups (the recording groups run once a minute).
        let groups: Vec<Value> = v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| {
                g["file"]
                    .as_str()
                    .is_some_and(|f| f.ends_with("deploywatch.rules.yml"))
            })
            .cloned()
            .collect();
        !groups.is_empty()
            && groups.iter().all(|g| {
                g["lastEvaluation"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t > since)
            })
    })
    .await;
    let v: Value = c
        .get(format!("http://127.0.0.1:{port}/api/v1/alerts"))
        .send()
        .await
        .expect("alerts")
        .json()
        .await
        .expect("json");
    v["data"]["alerts"].as_array().cloned().unwrap_or_default()
}

/// Waits until Prometheus scraped the target successfully; returns when it saw that.
async fn scraped(port: u16) -> chrono::DateTime<chrono::Utc> {
    ready(&format!("http://127.0.0.1:{port}/-/ready")).await;
    until(
        "Prometheus to scrape deploywatch (up == 1)",
        Duration::from_secs(60),
        || async {
            let v = prom_query(port, "up{job=\"deploywatch\"} == 1").await;
            let up = v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty());
            seen(up, v)
        },
    )
    .await;
    // One more scrape interval, so the rules see more than the first sample.
    chrono::Utc::now() + chrono::Duration::seconds(2)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_shipped_alert_fires_on_a_default_install_or_for_the_demos_own_health() {
    let dir = tempfile::tempdir().expect("tmp");
    // A default install: no config, no token.
    let app = spawn_app(Kind::Sqlite, "", &[]).await;
    let target = app.url.trim_start_matches("http://").to_string();
    let port = free_port();
    let _prom = prometheus(dir.path(), &target, free_port(), port);
    let since = scraped(port).await;
    let m = app.metrics().await;
    for s in ["digitalocean", "health", "git", "migrations"] {
        assert_eq!(
            metric(&m, &format!("deploywatch_source_enabled{{source=\"{s}\"}}")),
            Some(0.0),
            "{s} is off on a default install"
        );
        assert!(
            !m.contains(&format!("deploywatch_source_up{{source=\"{s}\"}}")),
            "{s} is off, so it exports no source_up"
        );
    }
    let alerts = alerts_after_evaluation(port, since).await;
    assert!(
        alerts.is_empty(),
        "alerts on a default install: {alerts:#?}"
    );
    app.stop().await;

    // The demo: its deployments fail on purpose, but deploywatch itself is healthy.
    let demo_dir = tempfile::tempdir().expect("tmp");
    let demo_port = free_port();
    let _demo = spawn(
        bin().to_str().expect("utf-8 path"),
        &[
            "demo".into(),
            "--listen".into(),
            format!("127.0.0.1:{demo_port}"),
            "--step-seconds".into(),
            "1".into(),
        ],
        &demo_dir.path().join("demo.log"),
    );
    let prom_dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let _prom = prometheus(
        prom_dir.path(),
        &format!("127.0.0.1:{demo_port}"),
        free_port(),
        port,
    );
    let since = scraped(port).await + chrono::Duration::seconds(10);
    let alerts = alerts_after_evaluation(port, since).await;
    let own: Vec<_> = alerts
        .iter()
        .filter(|a| {
            a["labels"]["alertname"]
                .as_str()
                .is_some_and(|n| n.starts_with("Deploywatch"))
        })
        .collect();
    assert!(own.is_empty(), "the demo's own health alerts: {own:#?}");
}

/// Releases that crash-loop, leak memory or regress in latency after ACTIVE fail their
/// verification; the shipped rule fires in a real Prometheus, the shipped routing sends it through
/// a real Alertmanager, and the webhook opens exactly one fix task per app naming what went wrong,
/// with its evidence. The healthy app opens nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_verification_goes_through_prometheus_and_alertmanager_to_one_fix_task() {
    let token = "stack-token";
    let dir = tempfile::tempdir().expect("tmp");
    let sim = SimBuilder::new()
        .step(Duration::from_millis(30))
        .app("api", "1111111111111111111111111111111111111111")
        .app("ok", "1111111111111111111111111111111111111111")
        .app("leak", "1111111111111111111111111111111111111111")
        .app("slow", "1111111111111111111111111111111111111111")
        .script(
            "api",
            "2222222222222222222222222222222222222222",
            Script::CrashLoop,
        )
        .script(
            "ok",
            "2222222222222222222222222222222222222222",
            Script::Success,
        )
        .script(
            "leak",
            "2222222222222222222222222222222222222222",
            Script::MemoryLeak,
        )
        .script(
            "slow",
            "2222222222222222222222222222222222222222",
            Script::LatencyRegression,
        )
        .start()
        .await;
    // The team's own latency series (the simulator's Prometheus API stands in for theirs).
    let p95 = |app: &str| {
        format!(
            "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{app=\"{app}\"}}[1m])))"
        )
    };
    for a in ["api", "ok", "leak", "slow"] {
        sim.script_query_on_regression(
            &p95(a),
            "slow",
            0.12,
            if a == "slow" { 0.31 } else { 0.12 },
        );
    }
    let toml = format!(
        "[digitalocean]\napi_url = \"{url}\"\npoll_interval = \"500ms\"\nfast_poll_interval = \"200ms\"\nbudget_share = 1.0\n\n[health]\ndiscover = false\n\n[verification]\nwindow = \"20s\"\ninterval = \"500ms\"\nprometheus_url = \"{url}\"\n\n[[verification.queries]]\nname = \"p95_latency\"\nquery = '{q}'\nmax = 0.25\n",
        url = sim.url,
        q = p95("$app")
    );
    let app = spawn_app_on(
        sqlite_db(),
        &toml,
        &[
            ("DIGITALOCEAN_TOKEN", "sim-token"),
            ("DEPLOYWATCH_WEBHOOK_TOKEN", token),
        ],
        deploywatch::server::ServeOptions::default(),
    )
    .await;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).expect("token");
    let am_port = free_port();
    let am_cfg = am_config(dir.path(), &app.url, &token_file);
    let _am = alertmanager(dir.path(), &am_cfg, am_port, None);
    let prom_port = free_port();
    let _prom = prometheus(
        dir.path(),
        app.url.trim_start_matches("http://"),
        am_port,
        prom_port,
    );
    ready(&format!("http://127.0.0.1:{am_port}/-/ready")).await;
    ready(&format!("http://127.0.0.1:{prom_port}/-/ready")).await;

    until(
        "a fix task for api's crash",
        Duration::from_secs(150),
        || async {
            let t = tasks(&app, "queue=execution&app=api", token).await;
            seen(t.iter().any(|t| t["kind"] == "fix"), t)
        },
    )
    .await;
    // Repeated notifications get their chance to (wrongly) make a second task.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let fix: Vec<Value> = tasks(&app, "queue=execution&app=api", token)
        .await
        .into_iter()
        .filter(|t| t["kind"] == "fix")
        .collect();
    assert_eq!(fix.len(), 1, "exactly one fix task: {fix:#?}");
    assert_eq!(fix[0]["title"], "FIX: Service crash in api/web");
    let c = &fix[0]["context"];
    assert_eq!(c["alert"]["name"], "DeploymentVerificationFailed", "{c:#}");
    assert_eq!(c["reasons"][0]["reason"], "crash_loop", "{c:#}");
    assert!(
        c["log_tail"].as_str().is_some_and(|t| t.contains("panic")),
        "{c:#}"
    );
    assert_eq!(
        c["suspect_commits"]["from"], "1111111111111111111111111111111111111111",
        "{c:#}"
    );
    for (name, title, reason) in [
        ("leak", "FIX: Service crash in leak/web", "oom"),
        (
            "slow",
            "FIX: Performance regression in slow",
            "latency_regression",
        ),
    ] {
        let q = format!("queue=execution&app={name}");
        let fix = until(
            &format!("one fix task for {name}"),
            Duration::from_secs(60),
            || async {
                let fix: Vec<Value> = tasks(&app, &q, token)
                    .await
                    .into_iter()
                    .filter(|t| t["kind"] == "fix")
                    .collect();
                seen(!fix.is_empty(), fix)
            },
        )
        .await;
        assert_eq!(fix.len(), 1, "{name}: exactly one fix task: {fix:#?}");
        assert_eq!(fix[0]["title"], title, "{fix:#?}");
        let reasons: Vec<&str> = fix[0]["context"]["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["reason"].as_str())
            .collect();
        assert!(reasons.contains(&reason), "{name}: {reasons:?}");
    }
    let ok = tasks(&app, "queue=execution&app=ok", token).await;
    assert!(ok.is_empty(), "the healthy release opens nothing: {ok:#?}");
    app.stop().await;
}
