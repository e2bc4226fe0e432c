//! The command line (documented in the README and `deploywatch --help`): parsing and the thin glue from commands to the
//! library. Exit codes: 0 ok; 1 what was checked is failing; 2 usage, configuration or runtime
//! error; 124 `watch` timed out.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::config::{Config, ProcessEnv};

mod args;
pub mod client;
pub mod demo;
pub mod exit;
pub mod hooks;
mod table;
pub mod watch;

pub use args::{Cli, Command, TaskAction};
use client::{auth, bind, http_client};
use exit::{EXIT_ERROR, EXIT_FAILING, EXIT_OK};

fn load_config(path: Option<&std::path::Path>, listen: Option<&str>) -> Result<Config, i32> {
    let mut cfg = Config::load(path, &ProcessEnv).map_err(|e| {
        eprintln!("deploywatch: {e}");
        EXIT_ERROR
    })?;
    if let Some(l) = listen {
        cfg.listen = l.parse().map_err(|_| {
            eprintln!(
                "deploywatch: --listen {l:?} is not a socket address; write it like 127.0.0.1:9797"
            );
            EXIT_ERROR
        })?;
    }
    Ok(cfg)
}

/// Parses arguments and runs; returns the process exit code.
pub fn main() -> i32 {
    // Before any thread starts: the arena limit applies to threads created afterwards.
    malloc_settings::apply();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    match worker_threads(
        std::env::var("TOKIO_WORKER_THREADS").ok().as_deref(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    ) {
        Ok(n) => builder.worker_threads(n),
        Err(e) => {
            eprintln!("deploywatch: {e}");
            return EXIT_ERROR;
        }
    };
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("deploywatch: cannot start the async runtime: {e}");
            return EXIT_ERROR;
        }
    };
    rt.block_on(run(cli))
}

/// Request threads: one fewer than the cores, so the database, the /metrics render thread and
/// whoever scrapes keep a core; with as many workers as cores, each worker lost whole time slices
/// to them, which was the p99 of a 0.1 ms scrape at four connections (docs/BENCHMARKS.md).
/// `TOKIO_WORKER_THREADS`, tokio's own variable, overrides; read here because tokio panics on a
/// bad value.
fn worker_threads(env: Option<&str>, cores: usize) -> Result<usize, String> {
    match env.map(str::trim) {
        None => Ok(cores.saturating_sub(1).max(1)),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "TOKIO_WORKER_THREADS={v:?} is not a positive number of threads; unset it to use one fewer than the cores"
            )),
        },
    }
}

async fn run(cli: Cli) -> i32 {
    let res = match cli.command {
        Command::Serve { config, listen } => serve(config, listen).await,
        Command::Demo {
            listen,
            step_seconds,
        } => demo::run(listen, Duration::from_secs(step_seconds.max(1))).await,
        Command::Status { server, app, json } => status(server, app, json).await,
        Command::Watch {
            app,
            deployment,
            commit,
            verify,
            timeout,
            json,
            server,
        } => {
            let timeout = Duration::from_secs(timeout);
            let token = std::env::var("DIGITALOCEAN_TOKEN").is_ok_and(|t| !t.trim().is_empty());
            if let Some(commit) = commit {
                let server = (server.is_some() || !token).then(|| server_url(server));
                watch::commit::run(watch::commit::Request {
                    commit,
                    app,
                    verify,
                    timeout,
                    json,
                    server,
                })
                .await
            } else if server.is_none() && token {
                watch::run(app, deployment, timeout, json).await
            } else {
                watch::server::run(server_url(server), app, deployment, timeout, json).await
            }
        }
        Command::Tasks { action, server } => tasks(action, server).await,
        Command::Hooks { action } => hooks::run(action).await,
        Command::Check { config } => check(config).await,
        Command::Migrate { config } => migrate(config).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "deploywatch",
                &mut std::io::stdout(),
            );
            Ok(EXIT_OK)
        }
        Command::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .context("cannot write the man page")
                .map(|()| EXIT_OK)
        }
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("deploywatch: {e:#}");
            EXIT_ERROR
        }
    }
}

async fn serve(config: Option<PathBuf>, listen: Option<String>) -> anyhow::Result<i32> {
    let cfg = match load_config(config.as_deref(), listen.as_deref()) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    serve_config(cfg, crate::server::ServeOptions::default()).await
}

pub async fn serve_config(cfg: Config, opts: crate::server::ServeOptions) -> anyhow::Result<i32> {
    let listener = match bind(cfg.listen).await {
        Ok(l) => l,
        Err(msg) => {
            eprintln!("deploywatch: {msg}");
            return Ok(EXIT_ERROR);
        }
    };
    let mut guard =
        crate::telemetry::init(cfg.log_format, &cfg.environment).map_err(anyhow::Error::msg)?;
    tracing::info!(config = %cfg, "deploywatch {} starting", env!("CARGO_PKG_VERSION"));
    let running = crate::server::start(cfg, listener, opts).await?;
    tracing::info!(addr = %running.addr, "listening");
    crate::server::signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    guard.shutdown();
    Ok(EXIT_OK)
}

fn server_url(server: Option<String>) -> String {
    server
        .unwrap_or_else(|| format!("http://{}", crate::config::DEFAULT_LISTEN))
        .trim_end_matches('/')
        .to_string()
}

/// The app names a status document lists (all apps, no filter).
async fn known_apps(server: Option<Option<String>>) -> Vec<String> {
    let doc = match server {
        None => watch::direct_status(None).await.ok(),
        Some(server) => {
            let base = server_url(server);
            match auth(http_client().get(format!("{base}/api/v1/status")))
                .send()
                .await
            {
                Ok(r) => r.json::<serde_json::Value>().await.ok(),
                Err(_) => None,
            }
        }
    };
    doc.and_then(|d| {
        d["apps"].as_array().map(|a| {
            a.iter()
                .filter_map(|x| x["name"].as_str().map(str::to_string))
                .collect()
        })
    })
    .unwrap_or_default()
}

async fn status(server: Option<String>, app: Option<String>, json: bool) -> anyhow::Result<i32> {
    let direct =
        server.is_none() && std::env::var("DIGITALOCEAN_TOKEN").is_ok_and(|t| !t.is_empty());
    let server_for_known = if direct { None } else { Some(server.clone()) };
    let value = if direct {
        watch::direct_status(app.as_deref()).await?
    } else {
        let base = server_url(server);
        let mut url = url::Url::parse(&format!("{base}/api/v1/status"))
            .with_context(|| format!("bad server URL {base:?}"))?;
        if let Some(a) = &app {
            url.query_pairs_mut().append_pair("app", a);
        }
        let resp = auth(http_client().get(url))
            .send()
            .await
            .with_context(|| format!("cannot reach the deploywatch server at {base}; is `deploywatch serve` running? (set --server or DEPLOYWATCH_SERVER)"))?;
        if !resp.status().is_success() {
            anyhow::bail!("the server answered HTTP {}", resp.status());
        }
        resp.json::<serde_json::Value>()
            .await
            .context("the server's answer is not JSON")?
    };
    if let Some(name) = &app
        && !value["apps"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["name"].as_str() == Some(name.as_str())))
    {
        let known = Box::pin(known_apps(server_for_known)).await;
        eprintln!(
            "deploywatch: no app named {:?}; known apps: {}",
            crate::terminal::clean(name),
            if known.is_empty() {
                "none yet".to_string()
            } else {
                crate::terminal::clean(&known.join(", "))
            }
        );
        return Ok(EXIT_ERROR);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", crate::http::status_text::render_text(&value));
    }
    Ok(if crate::http::status_text::is_failing(&value) {
        EXIT_FAILING
    } else {
        EXIT_OK
    })
}

async fn tasks(action: TaskAction, server: Option<String>) -> anyhow::Result<i32> {
    let base = server_url(server);
    let c = http_client();
    let req = match &action {
        TaskAction::List {
            queue,
            state,
            app,
            limit,
            ..
        } => {
            let mut url = url::Url::parse(&format!("{base}/api/v1/tasks"))?;
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in [
                    ("queue", queue.clone()),
                    ("state", state.clone()),
                    ("app", app.clone()),
                    ("limit", limit.map(|l| l.to_string())),
                ] {
                    if let Some(v) = v {
                        q.append_pair(k, &v);
                    }
                }
            }
            c.get(url)
        }
        TaskAction::Claim {
            queue,
            worker,
            lease_seconds,
        } => c.post(format!("{base}/api/v1/tasks/claim")).json(
            &serde_json::json!({"queue": queue, "worker": worker, "lease_seconds": lease_seconds}),
        ),
        TaskAction::Heartbeat {
            id,
            worker,
            lease_seconds,
        } => c
            .post(format!("{base}/api/v1/tasks/{id}/heartbeat"))
            .json(&serde_json::json!({"worker": worker, "lease_seconds": lease_seconds})),
        TaskAction::Complete { id, worker, result } => {
            let result: Option<serde_json::Value> = match result {
                Some(r) => Some(serde_json::from_str(r).context("--result must be JSON")?),
                None => None,
            };
            c.post(format!("{base}/api/v1/tasks/{id}/complete"))
                .json(&serde_json::json!({"worker": worker, "result": result}))
        }
        TaskAction::Add {
            queue,
            title,
            kind,
            app,
            priority,
            context,
            dedup_key,
        } => {
            let context: Option<serde_json::Value> = match context {
                Some(j) => Some(
                    serde_json::from_str(j)
                        .context("--context must be a JSON object, e.g. '{\"pr_number\": 42}'")?,
                ),
                None => None,
            };
            c.post(format!("{base}/api/v1/tasks"))
                .json(&serde_json::json!({
                    "queue": queue, "title": title, "kind": kind, "app": app,
                    "priority": priority, "context": context, "dedup_key": dedup_key,
                }))
        }
        TaskAction::Merged { id, commit, worker } => {
            let worker = match worker.clone().or_else(|| {
                std::env::var("DEPLOYWATCH_WORKER")
                    .ok()
                    .filter(|w| !w.is_empty())
            }) {
                Some(w) => w,
                None => match holder_of(&c, &base, id).await? {
                    Some(w) => w,
                    None => {
                        eprintln!(
                            "deploywatch: task {id} has no holder; claim it first, or pass --worker"
                        );
                        return Ok(EXIT_FAILING);
                    }
                },
            };
            c.post(format!("{base}/api/v1/tasks/{id}/merged"))
                .json(&serde_json::json!({"worker": worker, "commit": commit}))
        }
        TaskAction::Fail {
            id,
            worker,
            reason,
            no_retry,
        } => c
            .post(format!("{base}/api/v1/tasks/{id}/fail"))
            .json(&serde_json::json!({"worker": worker, "reason": reason, "retry": !no_retry})),
    };
    let resp = auth(req).send().await.with_context(|| {
        format!(
            "cannot reach the deploywatch server at {base} (set --server or DEPLOYWATCH_SERVER)"
        )
    })?;
    let code = resp.status();
    if code == reqwest::StatusCode::NO_CONTENT {
        eprintln!("no task queued");
        return Ok(EXIT_FAILING);
    }
    let text = resp.text().await.unwrap_or_default();
    if code.is_success() {
        match (&action, serde_json::from_str::<serde_json::Value>(&text)) {
            (TaskAction::List { json: false, .. }, Ok(doc)) => {
                print!("{}", table::render(&doc, chrono::Utc::now()));
            }
            _ => println!("{text}"),
        }
        Ok(EXIT_OK)
    } else {
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        eprintln!("deploywatch: HTTP {}: {msg}", code.as_u16());
        Ok(
            if code == reqwest::StatusCode::CONFLICT || code == reqwest::StatusCode::NOT_FOUND {
                EXIT_FAILING
            } else {
                EXIT_ERROR
            },
        )
    }
}

/// The worker holding task `id`, for `tasks merged` without `--worker`.
async fn holder_of(c: &reqwest::Client, base: &str, id: &str) -> anyhow::Result<Option<String>> {
    let resp = auth(c.get(format!("{base}/api/v1/tasks/{id}")))
        .send()
        .await
        .with_context(|| {
            format!(
                "cannot reach the deploywatch server at {base} (set --server or DEPLOYWATCH_SERVER)"
            )
        })?;
    let doc: serde_json::Value = resp.json().await.unwrap_or_default();
    Ok(doc["task"]["worker"].as_str().map(str::to_string))
}

async fn check(config: Option<PathBuf>) -> anyhow::Result<i32> {
    let cfg = match load_config(config.as_deref(), None) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    println!("configuration: ok ({})", cfg.origin);
    // A warning, not a failure: a private network may be intended (see README, "Security").
    if let Some(w) = crate::http::access::exposure_warning(cfg.listen, &cfg.webhook.tokens) {
        println!("warning: {w}");
    }
    // A warning too: without git the git source fails and says so, the rest runs.
    if !cfg.git.repos.is_empty()
        && let Err(e) = crate::sources::git::version()
    {
        println!("warning: {e}");
    }
    let results = crate::server::check_once(&cfg).await;
    let mut failing = 0;
    for r in &results {
        if r.ok {
            println!("check {:<20} ok", r.name);
        } else {
            failing += 1;
            println!(
                "check {:<20} FAILING: {}",
                r.name,
                r.reason.as_deref().unwrap_or("")
            );
        }
    }
    if failing > 0 {
        println!("{failing} of {} checks failing", results.len());
        Ok(EXIT_FAILING)
    } else {
        println!("all {} checks passed", results.len());
        Ok(EXIT_OK)
    }
}

async fn migrate(config: Option<PathBuf>) -> anyhow::Result<i32> {
    let cfg = match load_config(config.as_deref(), None) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let store = crate::store::Store::connect(&cfg.database_url, Duration::from_secs(5)).await?;
    let s = store.migrate().await?;
    println!(
        "schema at version {} ({} known to this binary)",
        s.applied, s.known
    );
    store.close().await;
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::worker_threads;

    #[test]
    fn request_threads_leave_a_core_unless_told() {
        for (env, cores, want) in [
            (None, 1, Ok(1)),
            (None, 2, Ok(1)),
            (None, 8, Ok(7)),
            (Some("4"), 2, Ok(4)),
            (Some(" 3 "), 2, Ok(3)),
        ] {
            assert_eq!(worker_threads(env, cores), want, "{env:?} {cores}");
        }
        for bad in ["0", "x", "-1", ""] {
            let e = worker_threads(Some(bad), 2).expect_err(bad);
            assert!(e.contains("TOKIO_WORKER_THREADS"), "{e}");
        }
    }
}
