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
    assert_eq!(r.headers()["vary"], "accept, accept-encoding");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain; version=0.0.4")
    );
    let compressed = r.bytes().await.expect("body");
    // One gzip member, as curl and browsers read it (they stop after the first member).
    let mut decoded = String::new();
    let mut d = flate2::read::GzDecoder::new(&compressed[..]);
    d.read_to_string(&mut decoded).expect("valid gzip");
    assert!(
        d.into_inner().is_empty(),
        "bytes after the first gzip member"
    );
    assert_eq!(
        without_process_lines(&decoded),
        without_process_lines(&plain)
    );
    assert!(decoded.contains("process_resident_memory_bytes"));
    promtool_check_metrics(&decoded);
    promtool_check_metrics(&plain);
    app.stop().await;
}

/// Prometheus 2.x's default scrape `Accept`: OpenMetrics first.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

#[tokio::test]
async fn openmetrics_when_the_client_ranks_it_first_with_the_same_samples() {
    let app = spawn_app(Kind::Sqlite, "", &[]).await;
    let scrape = |accept: Option<&'static str>, gzip: bool| {
        let app = &app;
        async move {
            let mut req = app.http.get(format!("{}/metrics", app.url));
            if let Some(a) = accept {
                req = req.header("accept", a);
            }
            if gzip {
                req = req.header("accept-encoding", "gzip");
            }
            let r = req.send().await.expect("request");
            assert_eq!(r.status(), 200);
            let ct = r.headers()["content-type"]
                .to_str()
                .expect("ascii")
                .to_string();
            let bytes = r.bytes().await.expect("body");
            let body = if gzip {
                let mut s = String::new();
                flate2::read::GzDecoder::new(&bytes[..])
                    .read_to_string(&mut s)
                    .expect("gzip");
                s
            } else {
                String::from_utf8(bytes.to_vec()).expect("utf8")
            };
            (ct, body)
        }
    };
    let samples = |b: &str| {
        b.lines()
            .filter(|l| !l.starts_with('#') && !l.contains("process_"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    for gzip in [false, true] {
        // Both formats come from one render: scraped back to back, they carry the same samples
        // (background writers may change a value between renders, so a changed pair is retried).
        let mut same = false;
        for _ in 0..20 {
            let (ct, om) = scrape(Some(PROMETHEUS_ACCEPT), gzip).await;
            assert_eq!(
                ct,
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            );
            assert!(om.ends_with("# EOF\n"), "{om}");
            assert_eq!(om.matches("# EOF").count(), 1);
            // Counter families lose `_total` in HELP/TYPE only.
            assert!(
                om.contains("# TYPE deploywatch_webhook_duplicates_absorbed counter\n"),
                "{om}"
            );
            assert!(!om.contains("# TYPE deploywatch_webhook_duplicates_absorbed_total"));
            let (ct, text) = scrape(None, gzip).await;
            assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
            if samples(&om) == samples(&text) {
                same = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert!(same, "OpenMetrics and text never carried the same samples");
    }
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
