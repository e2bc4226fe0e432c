//! The store before the sources: many quick starts on fresh SQLite files, with the poller on, never
//! log "no such table" (the poller once raced the migrations, about one start in ten).

use std::time::Duration;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn nothing_touches_the_store_before_migrations() {
    let sim = SimBuilder::new()
        .app("api", "1111111111111111111111111111111111111111")
        .start()
        .await;
    let base = sim.url.clone();
    let dir = tempfile::tempdir().expect("tmp");
    for round in 0..12 {
        let mut runs = Vec::new();
        for i in 0..6 {
            let sub = dir.path().join(format!("r{round}-{i}"));
            std::fs::create_dir_all(&sub).expect("dir");
            let db = format!("sqlite://{}", sub.join("dw.db").display());
            runs.push(
                Deploywatch::new(&sub)
                    .args(&["serve", "--listen", "127.0.0.1:0"])
                    .env_remove("DEPLOYWATCH_WEBHOOK_TOKEN")
                    .env("DIGITALOCEAN_TOKEN", "sim-token")
                    .env("DEPLOYWATCH_DO_API_URL", &base)
                    .env("DEPLOYWATCH_DATABASE_URL", &db)
                    .env("RUST_LOG", "info")
                    .spawn("serve.log"),
            );
        }
        let before = sim.requests_to("/v2/apps");
        // Every process has polled at least once (or the run is long enough to have raced).
        until(
            "six more list calls, one per process",
            Duration::from_secs(30),
            || async {
                let n = sim.requests_to("/v2/apps");
                seen(n >= before + 6, n - before)
            },
        )
        .await;
        for run in runs {
            let log = run.log.clone();
            drop(run);
            let text = std::fs::read_to_string(&log).expect("log");
            assert!(
                !text.to_ascii_lowercase().contains("no such table"),
                "round {round}: {text}"
            );
        }
    }
}
