//! `deploywatch demo`: `serve` plus the built-in DigitalOcean simulator with a few apps cycling
//! through successful and failing deployments, so a newcomer sees metrics, traces and tasks within
//! a minute, with no token and no account. `alerts` stands in for Prometheus and Alertmanager,
//! `console` narrates what happens.

pub mod alerts;
pub mod console;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::app::App;
use crate::config::{Config, ProcessEnv};
use crate::store::TaskFilter;
use do_simulator::{Script, Simulator};

/// The demo's deployment pattern: mostly green, with each kind of failure now and then.
pub const CYCLE: [Script; 9] = [
    Script::Success,
    Script::Success,
    Script::BuildFailure,
    Script::Success,
    Script::HealthCheckFailure,
    Script::Success,
    Script::CrashLoop,
    Script::Cancel,
    Script::Success,
];

fn commit(n: u64) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(n.to_le_bytes()))[..40].to_string()
}

/// Starts the simulator with sample apps; returns it and its base URL.
pub async fn start_simulator(step: Duration) -> anyhow::Result<(Simulator, String)> {
    let sim = Simulator::new(step);
    for (i, name) in ["api", "web", "worker"].iter().enumerate() {
        sim.add_app(name, &commit(i as u64 + 1000));
    }
    let (addr, _handle) = sim.serve("127.0.0.1:0".parse()?).await?;
    Ok((sim, format!("http://{addr}")))
}

/// How the demo binds: the port-in-use error comes before anything is printed.
pub async fn run(listen: Option<String>, step: Duration) -> anyhow::Result<i32> {
    let mut cfg = match Config::load(None, &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("deploywatch: {e}");
            return Ok(crate::cli::exit::EXIT_ERROR);
        }
    };
    if let Some(l) = listen {
        match l.parse() {
            Ok(a) => cfg.listen = a,
            Err(_) => {
                eprintln!(
                    "deploywatch: --listen {l:?} is not a socket address; write it like 127.0.0.1:9797"
                );
                return Ok(crate::cli::exit::EXIT_ERROR);
            }
        }
    }
    let listener = match crate::cli::client::bind(cfg.listen).await {
        Ok(l) => l,
        Err(msg) => {
            eprintln!("deploywatch: {msg}");
            return Ok(crate::cli::exit::EXIT_ERROR);
        }
    };
    if std::env::var("DEPLOYWATCH_DATABASE_URL").is_err() {
        cfg.database_url = SecretString::from("sqlite://deploywatch-demo.db");
    }
    let mut guard =
        crate::telemetry::init(cfg.log_format, &cfg.environment).map_err(anyhow::Error::msg)?;
    let (sim, base) = start_simulator(step).await?;
    cfg.digitalocean.token = Some(SecretString::from("demo-token-not-a-secret"));
    cfg.digitalocean.api_url = url::Url::parse(&base)?;
    cfg.digitalocean.poll_interval = Duration::from_secs(5);
    cfg.digitalocean.fast_poll_interval = Duration::from_secs(2);
    cfg.digitalocean.stuck_after = step * 20;
    // A short post-deploy window, so the crash-looping release in the cycle fails verification
    // within the demo's pace.
    cfg.verification.window = step * 6;
    cfg.verification.interval = (step / 2).max(Duration::from_millis(200));
    let token = cfg.webhook.tokens.first().cloned();
    let running =
        crate::server::start(cfg, listener, crate::server::ServeOptions::default()).await?;
    let addr = running.addr;
    // The banner's commands must work the moment they are printed: a claim that reached the server
    // before its schema was migrated answered 503 ("no such table"), not "nothing queued".
    if !running.schema_ready(Duration::from_secs(60)).await {
        tracing::warn!("the schema is not ready after 60 s; the printed commands fail until it is");
    }
    println!("{}", banner(addr, &base, token.is_some()));

    let sim2 = sim.clone();
    tokio::spawn(async move {
        let apps = ["api", "web", "worker"];
        let mut n: u64 = 0;
        loop {
            tokio::time::sleep(step * 2).await;
            let app = apps[(n % 3) as usize];
            let script = CYCLE[(n as usize / 3 + n as usize) % CYCLE.len()];
            sim2.deploy(app, &commit(n), script);
            n += 1;
            // Let each deployment finish before the app gets the next one.
            tokio::time::sleep(step * 4).await;
        }
    });
    tokio::spawn(raise_alerts(running.app.clone(), addr, token));
    tokio::spawn(narrate(running.app.clone()));

    crate::server::signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    guard.shutdown();
    Ok(crate::cli::exit::EXIT_OK)
}

/// The first thing a newcomer reads: where to look and what to type, with the real address.
fn banner(addr: SocketAddr, sim: &str, token: bool) -> String {
    let server = if addr.to_string() == crate::config::DEFAULT_LISTEN {
        String::new()
    } else {
        format!(" --server http://{addr}")
    };
    let auth = if token {
        "\n  (DEPLOYWATCH_WEBHOOK_TOKEN is set: export it in the shell you type these in)"
    } else {
        ""
    };
    format!(
        "deploywatch demo: simulated DigitalOcean API at {sim} (apps: api, web, worker)\n\
         \n\
         Open http://{addr}/ (metrics: http://{addr}/metrics)\n\
         \n\
         Failing deployments raise the shipped alerts inside the demo; within a minute fix tasks\n\
         appear. Try, in another terminal:{auth}\n\
         \n\
         \x20 deploywatch status{server}\n\
         \x20 deploywatch watch --app api{server}\n\
         \x20 deploywatch tasks list{server}\n\
         \x20 deploywatch tasks claim --queue execution --worker agent-7 --lease-seconds 600{server}\n\
         \x20 deploywatch tasks complete <id printed by claim> --worker agent-7 --result '{{\"fixed\": true}}'{server}\n"
    )
}

/// Evaluates the mirrored alert rules every few seconds and sends what changed to the webhook,
/// over HTTP like Alertmanager, so alerts take exactly the path they take in production.
async fn raise_alerts(app: Arc<App>, addr: SocketAddr, token: Option<SecretString>) {
    let url = format!("http://{addr}/webhook/alertmanager");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut before: BTreeSet<alerts::Firing> = BTreeSet::new();
    let mut since: BTreeMap<alerts::Firing, DateTime<Utc>> = BTreeMap::new();
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let failed_verification: BTreeSet<String> = match app.store.latest_verifications().await {
            Ok(rows) => rows
                .into_iter()
                .filter(|r| r.result == "failed")
                .map(|r| r.app)
                .collect(),
            Err(_) => BTreeSet::new(),
        };
        let now_firing = alerts::evaluate(
            &app.do_snapshot().apps,
            &app.probes.all(),
            &failed_verification,
        );
        let now = Utc::now();
        let (firing, resolved) = alerts::diff(&before, &now_firing);
        let mut sent_all = true;
        for (f, is_firing) in firing
            .iter()
            .map(|f| (*f, true))
            .chain(resolved.iter().map(|f| (*f, false)))
        {
            let starts = *since.entry(f.clone()).or_insert(now);
            if is_firing && !before.contains(f) {
                println!(
                    "alert    firing    {} {}",
                    f.alertname,
                    crate::terminal::clean(&labels(f))
                );
            } else if !is_firing {
                println!(
                    "alert    resolved  {} {}",
                    f.alertname,
                    crate::terminal::clean(&labels(f))
                );
            }
            let mut req = client
                .post(&url)
                .json(&alerts::notification(f, is_firing, starts, now));
            if let Some(t) = &token {
                req = req.bearer_auth(t.expose_secret());
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    sent_all = false;
                    tracing::warn!(status = %r.status(), "demo alert not accepted by the webhook; retrying");
                }
                Err(e) => {
                    sent_all = false;
                    tracing::warn!(error = %e, "demo alert not delivered; retrying");
                }
            }
        }
        // Like Alertmanager, keep a resolve until the receiver took it.
        if sent_all {
            since.retain(|f, _| now_firing.contains(f));
            before = now_firing;
        } else {
            before = before.union(&now_firing).cloned().collect();
        }
    }
}

fn labels(f: &alerts::Firing) -> String {
    f.labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Prints a line per deployment event and task change.
async fn narrate(app: Arc<App>) {
    let mut events = app.events.subscribe();
    let mut lines = console::TaskLines::default();
    let filter = TaskFilter {
        queue: None,
        state: None,
        app: None,
        limit: 200,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(e) => println!("{}", console::event_line(&e)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                if !app.checks.passed("schema") {
                    continue;
                }
                if let Ok(tasks) = app.store.list_tasks(&filter).await {
                    for l in lines.update(&tasks) {
                        println!("{l}");
                    }
                }
            }
        }
    }
}
