//! Several replicas on one PostgreSQL behave as one: one poller at a time, a quick takeover after
//! `kill -9`, and the same deployment series from every replica throughout.

use std::time::{Duration, Instant};

use do_simulator::Script;

use crate::helpers::*;

const POLL: Duration = Duration::from_secs(2);

/// A replica process, SIGKILLed when dropped.
type Replica = Spawned;

fn start(dir: &std::path::Path, db: &str, api: &str, n: usize) -> Replica {
    let cfg = dir.join(format!("replica{n}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[digitalocean]\napi_url = \"{api}\"\npoll_interval = \"2s\"\nfast_poll_interval = \"2s\"\n\
             request_timeout = \"1s\"\nbudget_share = 1.0\nlease = \"1s\"\n\n[health]\ndiscover = false\n"
        ),
    )
    .expect("config");
    Deploywatch::serve(dir)
        .args(&["--config", &cfg.to_string_lossy()])
        .env("DIGITALOCEAN_TOKEN", "sim-token")
        .env("DEPLOYWATCH_DATABASE_URL", db)
        .env("RUST_LOG", "info")
        .env_remove("DEPLOYWATCH_WEBHOOK_TOKEN")
        .spawn(&format!("replica{n}.log"))
}

async fn scrape(c: &reqwest::Client, r: &Replica) -> Option<String> {
    c.get(format!("{}/metrics", r.url))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// What one scrape of one replica says.
struct Seen {
    leader: bool,
    success: Option<f64>,
    has_series: bool,
}

fn read(m: &str) -> Seen {
    Seen {
        leader: metric(m, "deploywatch_leader{source=\"digitalocean\"}") == Some(1.0),
        success: metric(
            m,
            "deploywatch_deployments_total{app=\"api\",outcome=\"success\"}",
        ),
        has_series: m.contains("deploywatch_deployment_phase{app=\"api\",phase=\"ACTIVE\"}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_take_over_quickly_and_serve_the_same_picture() {
    let db = pg_db().await;
    let sim = SimBuilder::new()
        .step(Duration::from_millis(100))
        .app("api", "9a4df0b8e161e323bc3cdf1dc71878080fe144fa")
        .script(
            "api",
            "54d4a727f45723106243989b6c8b2ad4e4a9b3bb",
            Script::Success,
        )
        .start()
        .await;
    let api = sim.url.clone();
    let dir = tempfile::tempdir().expect("tmp");
    let mut replicas: Vec<Option<Replica>> = (0..3)
        .map(|n| Some(start(dir.path(), &db.url, &api, n)))
        .collect();
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");

    // Every replica shows the deployment series and the counted successes, one of them leads.
    let started = Instant::now();
    let base = loop {
        let mut seen = Vec::new();
        for r in replicas.iter().flatten() {
            seen.push(scrape(&c, r).await.map(|m| read(&m)));
        }
        let leaders = seen.iter().flatten().filter(|s| s.leader).count();
        let counts: Vec<Option<f64>> = seen
            .iter()
            .map(|s| s.as_ref().and_then(|s| s.success))
            .collect();
        if leaders == 1
            && seen
                .iter()
                .all(|s| s.as_ref().is_some_and(|s| s.has_series))
            && counts.iter().all(|c| c.is_some() && *c == counts[0])
            && counts[0] >= Some(1.0)
        {
            break counts[0].unwrap_or_default();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "replicas never agreed: leaders {leaders}, successes {counts:?}, series {:?}\n{}",
            seen.iter()
                .map(|s| s.as_ref().map(|s| s.has_series))
                .collect::<Vec<_>>(),
            std::fs::read_to_string(&replicas[0].as_ref().expect("r0").log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let mut highest = [0.0f64; 3];
    for round in 0..2 {
        // Find the poller and the time of its last DigitalOcean request before the kill.
        let mut leader = None;
        for (i, r) in replicas.iter().enumerate() {
            if let Some(r) = r
                && scrape(&c, r).await.is_some_and(|m| read(&m).leader)
            {
                leader = Some(i);
            }
        }
        let leader = leader.expect("one replica leads");
        let mut count = sim.requests();
        let mut last_request = Instant::now();
        let watch_from = Instant::now();
        while watch_from.elapsed() < POLL * 2 {
            let n = sim.requests();
            if n != count {
                count = n;
                last_request = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        replicas[leader] = None; // kill -9 (SIGKILL on drop)
        let killed_at = Instant::now();
        while sim.requests() == count {
            assert!(
                killed_at.elapsed() < Duration::from_secs(30),
                "round {round}: no replica took over"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The takeover is a functional bound of the lease design (lease 1s, retries every ~250ms;
        // 1s of slack for scheduling on a loaded machine):
        // the next poll comes within two poll intervals of the last one.
        let took = last_request.elapsed();
        eprintln!("round {round}: next poll {took:?} after the last one");
        assert!(
            took <= POLL * 2 + Duration::from_secs(1),
            "round {round}: the next poll came {took:?} after the last one"
        );

        // A deployment after the takeover is counted once, and every live replica shows it.
        sim.deploy("api", &format!("{:040x}", 0xabc0 + round), Script::Success);
        let want = base + 1.0 + round as f64;
        let samples = Instant::now();
        loop {
            assert!(
                samples.elapsed() < Duration::from_secs(30),
                "round {round}: not every replica showed {want} successes"
            );
            let mut ok = true;
            for (i, r) in replicas.iter().enumerate() {
                let Some(r) = r else { continue };
                let Some(m) = scrape(&c, r).await else {
                    ok = false;
                    continue;
                };
                let s = read(&m);
                assert!(
                    s.has_series,
                    "replica {i} lost the deployment series ({:?} into round {round})",
                    samples.elapsed()
                );
                let v = s.success.unwrap_or(0.0);
                assert!(
                    v >= highest[i],
                    "replica {i}: the counter went back from {} to {v}",
                    highest[i]
                );
                assert!(v <= want, "replica {i}: the counter doubled ({v} > {want})");
                highest[i] = v;
                ok &= v == want;
            }
            if ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Exactly one poller: never two at once, and one once every scrape answered (a scrape
        // can time out on a loaded machine; that says nothing about who leads).
        let since = Instant::now();
        loop {
            let (mut leaders, mut answered) = (0, true);
            for r in replicas.iter().flatten() {
                match scrape(&c, r).await {
                    Some(m) => leaders += usize::from(read(&m).leader),
                    None => answered = false,
                }
            }
            assert!(
                leaders <= 1,
                "round {round}: {leaders} replicas poll at once"
            );
            if answered && leaders == 1 {
                break;
            }
            assert!(
                since.elapsed() < Duration::from_secs(15),
                "round {round}: no replica leads ({leaders} leaders, every scrape answered: {answered})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // The takeovers were logged with the previous holder's name.
    let logs: String = replicas
        .iter()
        .flatten()
        .map(|r| std::fs::read_to_string(&r.log).unwrap_or_default())
        .collect();
    assert!(
        logs.contains("took over the lease") && logs.contains("previous_holder="),
        "{logs}"
    );
}

/// A Prometheus scraping `targets` with the shipped recording rules, evaluated every second (the
/// only change to the rules: `interval: 1m` becomes 1s, to bound the test).
fn prometheus(dir: &std::path::Path, targets: &[String], port: u16) -> crate::stack::Proc {
    let rules = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts/recording.rules.yml"),
    )
    .expect("rules")
    .replace("interval: 1m", "interval: 1s");
    std::fs::write(dir.join("recording.rules.yml"), rules).expect("write rules");
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}/recording.rules.yml\n\
         scrape_configs:\n  - job_name: deploywatch\n    static_configs:\n      - targets: [{list}]\n",
        dir.display()
    );
    std::fs::write(dir.join("prometheus.yml"), cfg).expect("write config");
    std::fs::create_dir_all(dir.join("data")).expect("data");
    crate::stack::spawn(
        "prometheus",
        &[
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        &dir.join("prometheus.log"),
    )
}

async fn value(port: u16, q: &str) -> Option<f64> {
    let v = crate::stack::prom_query(port, q).await;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_recording_rules_agree_scraping_one_or_three_replicas() {
    let db = pg_db().await;
    let sim = SimBuilder::new()
        .step(Duration::from_millis(100))
        .app("api", "9a4df0b8e161e323bc3cdf1dc71878080fe144fa")
        .start()
        .await;
    let api = sim.url.clone();
    let dir = tempfile::tempdir().expect("tmp");
    let replicas: Vec<Replica> = (0..3)
        .map(|n| start(dir.path(), &db.url, &api, n))
        .collect();
    let targets: Vec<String> = replicas
        .iter()
        .map(|r| r.url.trim_start_matches("http://").to_string())
        .collect();
    let (one_dir, three_dir) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let (one, three) = (free_port(), free_port());
    let _p1 = prometheus(one_dir.path(), &targets[..1], one);
    let _p3 = prometheus(three_dir.path(), &targets, three);
    for port in [one, three] {
        crate::stack::ready(&format!("http://127.0.0.1:{port}/-/ready")).await;
    }
    let scraped = |port: u16, n: usize| async move {
        crate::stack::prom_query(port, "up{job=\"deploywatch\"} == 1").await["data"]["result"]
            .as_array()
            .is_some_and(|r| r.len() == n)
    };
    until(
        "Prometheus scraping one replica on one server and three on the other",
        Duration::from_secs(60),
        || async {
            let (a, b) = (scraped(one, 1).await, scraped(three, 3).await);
            seen(a && b, format!("one scraped: {a}, three scraped: {b}"))
        },
    )
    .await;

    // Deployments while both scrape: three successes and a failure.
    for (i, script) in [
        Script::Success,
        Script::BuildFailure,
        Script::Success,
        Script::Success,
    ]
    .into_iter()
    .enumerate()
    {
        sim.deploy("api", &format!("{:040x}", 0xd00 + i), script);
        // Time must pass: each deployment ends before the next starts, spread over scrapes.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let ratio = "app:deploywatch_deployment_success_ratio:rate1h{app=\"api\"}";
    let ended = "app:deploywatch_deployments_ended:increase1d{app=\"api\"}";
    let freq = "app:deploywatch_dora_deployment_frequency:per_day_7d{app=\"api\"}";
    // Wait until every replica counted all four and both Prometheus servers recorded it.
    until(
        "both Prometheus servers recording at least 3.5 ended deployments",
        Duration::from_secs(90),
        || async {
            let (a, b) = (value(one, ended).await, value(three, ended).await);
            seen(
                a.is_some_and(|v| v >= 3.5) && b.is_some_and(|v| v >= 3.5),
                format!("one replica {a:?}, three replicas {b:?}"),
            )
        },
    )
    .await;
    // Time must pass: a few more scrapes and rule evaluations, so both servers see the same end.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for q in [ratio, ended, freq] {
        let (a, b) = (value(one, q).await, value(three, q).await);
        let (Some(a), Some(b)) = (a, b) else {
            panic!("{q}: one replica {a:?}, three replicas {b:?}");
        };
        // increase() extrapolates from each scrape's timing, so allow a sliver; a sum over three
        // replicas would be three times as large.
        assert!(
            (a - b).abs() <= 0.1 * a.abs().max(1e-9),
            "{q}: one replica {a}, three replicas {b}"
        );
    }
    drop(replicas);
}
