//! `deploywatch demo`: `serve` plus the built-in DigitalOcean simulator with a few apps cycling
//! through successful and failing deployments, so a newcomer sees metrics, traces and tasks within
//! a minute, with no token and no account.

use std::time::Duration;

use secrecy::SecretString;

use crate::config::{Config, ProcessEnv};
use crate::simulator::{Script, Simulator};

/// The demo's deployment pattern: mostly green, with each kind of failure now and then.
pub const CYCLE: [Script; 8] = [
    Script::Success,
    Script::Success,
    Script::BuildFailure,
    Script::Success,
    Script::HealthCheckFailure,
    Script::Success,
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

pub async fn run(listen: Option<String>, step: Duration) -> anyhow::Result<i32> {
    let mut cfg = match Config::load(None, &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("deploywatch: {e}");
            return Ok(crate::cli::EXIT_ERROR);
        }
    };
    if let Some(l) = listen {
        match l.parse() {
            Ok(a) => cfg.listen = a,
            Err(_) => {
                eprintln!(
                    "deploywatch: --listen {l:?} is not a socket address; write it like 127.0.0.1:9797"
                );
                return Ok(crate::cli::EXIT_ERROR);
            }
        }
    }
    if std::env::var("DEPLOYWATCH_DATABASE_URL").is_err() {
        cfg.database_url = SecretString::from("sqlite://deploywatch-demo.db");
    }
    let (sim, base) = start_simulator(step).await?;
    cfg.digitalocean.token = Some(SecretString::from("demo-token-not-a-secret"));
    cfg.digitalocean.api_url = url::Url::parse(&base)?;
    cfg.digitalocean.poll_interval = Duration::from_secs(5);
    cfg.digitalocean.fast_poll_interval = Duration::from_secs(2);
    cfg.digitalocean.stuck_after = step * 20;
    eprintln!("deploywatch demo: simulated DigitalOcean API at {base} (apps: api, web, worker)");
    eprintln!(
        "deploywatch demo: open http://{}/ , /metrics and /api/v1/status",
        cfg.listen
    );
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
    crate::cli::serve_config(cfg, crate::server::ServeOptions::default()).await
}
