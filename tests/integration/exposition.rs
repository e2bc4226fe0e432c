//! `/metrics` served from the cached exposition: gzip, freshness after a change, promtool.

use std::io::Read;

use crate::helpers::*;

fn without_process_lines(body: &str) -> String {
    // Process metrics (CPU, RSS) are rendered per scrape, so two scrapes differ there only.
    body.lines()
        .filter(|l| !l.contains("process_"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn gzip_scrape_decodes_to_the_plain_body_and_passes_promtool() {
    let app = spawn_app(Kind::Sqlite, "", &[]).await;
    let plain = app.get("/metrics").await;
    assert_eq!(plain.headers().get("content-encoding"), None);
    let plain = plain.text().await.expect("text");
    let r = app
        .http
        .get(format!("{}/metrics", app.url))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("request");
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["vary"], "accept-encoding");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain; version=0.0.4")
    );
    let compressed = r.bytes().await.expect("body");
    let mut decoded = String::new();
    flate2::read::MultiGzDecoder::new(&compressed[..])
        .read_to_string(&mut decoded)
        .expect("valid gzip (possibly several members)");
    assert_eq!(
        without_process_lines(&decoded),
        without_process_lines(&plain)
    );
    assert!(decoded.contains("process_resident_memory_bytes"));
    promtool_check_metrics(&decoded);
    promtool_check_metrics(&plain);
    app.stop().await;
}

#[tokio::test]
async fn a_posted_alert_shows_in_the_next_scrape() {
    let app = spawn_app(Kind::Sqlite, "", &[]).await;
    // Fill the cache first, so the next scrape would serve it if the post did not mark it stale.
    let before = app.metrics().await;
    let series = "deploywatch_tasks_created_total{kind=\"fix\",queue=\"execution\"}";
    assert_eq!(metric(&before, series), None);
    let n = notification(&[(
        "DeploymentFailed",
        "firing",
        &[("app", "api"), ("severity", "critical")],
        "2026-11-22T10:00:00Z",
    )]);
    app.post_alerts_ok(&n).await;
    let after = app.metrics().await;
    assert_eq!(metric(&after, series), Some(1.0), "{after}");
    assert_eq!(
        metric(
            &after,
            "deploywatch_webhook_alerts_total{status=\"firing\"}"
        ),
        Some(1.0)
    );
    app.stop().await;
}
