//! The store before the sources: many quick starts on fresh SQLite files, with the poller on, never
//! log "no such table" (the poller once raced the migrations, about one start in ten).

use std::process::{Command, Stdio};
use std::time::Duration;

use do_simulator::Simulator;

use crate::helpers::*;

/// Kills the child when dropped, so a failing assertion leaves no server behind.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_touches_the_store_before_migrations() {
    let sim = Simulator::new(Duration::from_millis(150));
    let (addr, _) = sim
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    sim.add_app("api", "1111111111111111111111111111111111111111");
    let base = format!("http://{addr}");
    let dir = tempfile::tempdir().expect("tmp");
    for round in 0..12 {
        let mut runs = Vec::new();
        for i in 0..6 {
            let sub = dir.path().join(format!("r{round}-{i}"));
            std::fs::create_dir_all(&sub).expect("dir");
            let log = sub.join("serve.log");
            let f = std::fs::File::create(&log).expect("log");
            let child = Command::new(bin())
                .args(["serve", "--listen", "127.0.0.1:0"])
                .env_remove("DEPLOYWATCH_WEBHOOK_TOKEN")
                .env("DIGITALOCEAN_TOKEN", "sim-token")
                .env("DEPLOYWATCH_DO_API_URL", &base)
                .env(
                    "DEPLOYWATCH_DATABASE_URL",
                    format!("sqlite://{}", sub.join("dw.db").display()),
                )
                .env("RUST_LOG", "info")
                .current_dir(&sub)
                .stdout(Stdio::from(f.try_clone().expect("clone")))
                .stderr(Stdio::from(f))
                .spawn()
                .expect("spawn");
            runs.push((Reap(child), log));
        }
        let before = sim.requests_to("/v2/apps");
        // Every process has polled at least once (or the run is long enough to have raced).
        wait_for(Duration::from_secs(30), || async {
            sim.requests_to("/v2/apps") >= before + 6
        })
        .await;
        for (child, log) in runs {
            drop(child);
            let text = std::fs::read_to_string(&log).expect("log");
            assert!(
                !text.to_ascii_lowercase().contains("no such table"),
                "round {round}: {text}"
            );
        }
    }
}
