//! Health probes of the monitored apps' endpoints (`/health/live`, `/health/ready`).
//!
//! Targets come from config and, with the DigitalOcean source on, from each app's spec. Each
//! target runs on its own interval; a semaphore bounds probes in flight so a slow target never
//! delays another, and `/metrics` reads the snapshot only. Failure/success thresholds work like
//! App Platform's own, so one blip does not flap.

pub mod certificate;
pub mod http;
pub mod safety;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span, SpanKind, Status, Tracer};
use tokio::sync::{Semaphore, watch};

use crate::app::App;
use crate::config::HealthTarget;
use crate::domain::LabelValue;
use crate::domain::probe::{ProbeResult, ProbeView, Thresholds};
use http::ProbeSpec;

/// Targets discovered from the DigitalOcean snapshot: one per health path of each app's spec,
/// on the app's live URL. Pure.
pub fn discover(
    snapshot: &crate::domain::Snapshot,
    defaults: &crate::config::HealthConfig,
) -> Vec<HealthTarget> {
    let mut out = Vec::new();
    for v in snapshot.apps.values() {
        let Some(base) = v.live_url.as_deref().and_then(|u| url::Url::parse(u).ok()) else {
            continue;
        };
        for (kind, path) in &v.health_paths {
            let suffix = if kind == "liveness" { "live" } else { "ready" };
            let Ok(name) =
                LabelValue::parse(&format!("{}-{suffix}", LabelValue::sanitize(&v.name)))
            else {
                continue;
            };
            let mut url = base.clone();
            let joined = format!(
                "{}/{}",
                base.path().trim_end_matches('/'),
                path.trim_start_matches('/')
            );
            url.set_path(&joined);
            out.push(HealthTarget {
                name,
                app: LabelValue::sanitize(&v.name),
                url,
                interval: Duration::from_secs(15),
                timeout: Duration::from_secs(5),
                accepted_status: vec![],
                failure_threshold: 3,
                success_threshold: 1,
                body_checks: vec![],
                expect_active_commit: None,
                allow_link_local: defaults.allow_link_local,
            });
        }
    }
    out
}

fn record_metrics(app: &App, t: &HealthTarget, r: &ProbeResult, th: Thresholds) {
    app.metrics
        .record_probe(t.app.as_str(), t.name.as_str(), r, th);
}

fn remove_metrics(app: &App, t: &HealthTarget) {
    app.metrics.remove_probe(t.app.as_str(), t.name.as_str());
}

/// A failed probe leaves a client span with HTTP semantic-convention attributes.
fn trace_failure(t: &HealthTarget, r: &ProbeResult) {
    let tracer = crate::telemetry::tracer();
    let mut span = tracer
        .span_builder("GET")
        .with_kind(SpanKind::Client)
        .with_attributes(vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("server.address", t.url.host_str().unwrap_or("").to_string()),
            KeyValue::new(
                "server.port",
                t.url.port_or_known_default().unwrap_or(0) as i64,
            ),
            KeyValue::new("url.path", t.url.path().to_string()),
            KeyValue::new("url.scheme", t.url.scheme().to_string()),
            KeyValue::new(
                "error.type",
                r.reason.map(|x| x.as_str()).unwrap_or("unknown"),
            ),
            KeyValue::new("deploywatch.probe.target", t.name.as_str().to_string()),
            KeyValue::new("deploywatch.app", t.app.as_str().to_string()),
        ])
        .start(&tracer);
    if let Some(code) = r.status {
        span.set_attribute(KeyValue::new("http.response.status_code", code as i64));
    }
    span.set_status(Status::error(r.detail.clone().unwrap_or_default()));
    span.end();
}

/// Probes one target once and records the result; used by the loop and by tests.
pub async fn probe_target(
    app: &App,
    t: &HealthTarget,
    discovered: bool,
    tls: Arc<rustls::ClientConfig>,
    prev: Thresholds,
) -> Thresholds {
    let active_commit = app
        .app_view(t.app.as_str())
        .and_then(|v| v.active.and_then(|d| d.commit));
    let spec = ProbeSpec {
        url: t.url.clone(),
        timeout: t.timeout,
        accepted_status: t.accepted_status.clone(),
        body_checks: t.body_checks.clone(),
        expect_active_commit: t.expect_active_commit.clone(),
        allow_link_local: t.allow_link_local,
    };
    let r = http::probe(&spec, active_commit.as_deref(), tls).await;
    let th = prev.observe(r.ok, t.failure_threshold, t.success_threshold);
    record_metrics(app, t, &r, th);
    if !r.ok {
        trace_failure(t, &r);
    }
    app.probes.put(ProbeView {
        target: t.name.as_str().to_string(),
        app: t.app.as_str().to_string(),
        url: t.url.to_string(),
        discovered,
        healthy: th.healthy,
        consecutive_failures: th.consecutive_failures,
        last_failure_reason: r.reason,
        last_result: Some(r),
        checked_at: Some(Utc::now()),
    });
    th
}

/// Runs every target on its interval until shutdown; re-discovers targets every 5 seconds.
pub async fn run(
    app: Arc<App>,
    tls: Arc<rustls::ClientConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    let sem = Arc::new(Semaphore::new(app.config.health.concurrency));
    let mut running: HashMap<String, (HealthTarget, tokio::task::JoinHandle<()>)> = HashMap::new();
    loop {
        let mut wanted: Vec<(HealthTarget, bool)> = app
            .config
            .health
            .targets
            .iter()
            .cloned()
            .map(|t| (t, false))
            .collect();
        if app.config.health.discover && app.config.digitalocean.token.is_some() {
            for t in discover(&app.do_snapshot(), &app.config.health) {
                if !wanted.iter().any(|(w, _)| w.name == t.name) {
                    wanted.push((t, true));
                }
            }
        }
        let wanted_names: Vec<String> = wanted
            .iter()
            .map(|(t, _)| t.name.as_str().to_string())
            .collect();
        running.retain(|name, (t, h)| {
            let keep = wanted_names.contains(name);
            if !keep {
                h.abort();
                remove_metrics(&app, t);
                app.probes.remove(name);
            }
            keep
        });
        for (t, discovered) in wanted {
            let name = t.name.as_str().to_string();
            if running.get(&name).is_some_and(|(old, _)| old.url == t.url) {
                continue;
            }
            if let Some((_, h)) = running.remove(&name) {
                h.abort();
            }
            let (app2, tls2, sem2, t2) = (app.clone(), tls.clone(), sem.clone(), t.clone());
            let handle = tokio::spawn(async move {
                let mut th = Thresholds::default();
                let mut tick = tokio::time::interval(t2.interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Ok(_permit) = sem2.acquire().await else {
                        return;
                    };
                    th = probe_target(&app2, &t2, discovered, tls2.clone(), th).await;
                    // The source is up while probes run; their verdicts are the probe metrics.
                    app2.metrics.source_result("health", true);
                }
            });
            running.insert(name, (t, handle));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => {
                for (_, (_, h)) in running.drain() {
                    h.abort();
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_absorb_blips() {
        // (results, failure_threshold, success_threshold) -> healthy after each
        let cases: &[(&[bool], u32, u32, &[bool])] = &[
            (&[true, false, true], 3, 1, &[true, true, true]),
            (&[false, false, false], 3, 1, &[true, true, false]),
            (
                &[false, false, false, true],
                3,
                1,
                &[true, true, false, true],
            ),
            (
                &[false, false, false, true, true],
                3,
                2,
                &[true, true, false, false, true],
            ),
            (&[false], 1, 1, &[false]),
        ];
        for (results, ft, st, want) in cases {
            let mut th = Thresholds::default();
            let got: Vec<bool> = results
                .iter()
                .map(|ok| {
                    th = th.observe(*ok, *ft, *st);
                    th.healthy
                })
                .collect();
            assert_eq!(&got, want, "{results:?} ft={ft} st={st}");
        }
    }
}
