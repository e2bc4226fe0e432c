//! Delivers announcements to outbound notifiers (a Slack-compatible incoming webhook, a generic
//! JSON webhook) from the persistent outbox, retrying with backoff: a notifier that is down loses
//! nothing, it only receives later.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::sync::watch;

use crate::app::App;
use crate::config::{NotifierConfig, NotifierKind};
use crate::store::{OutboxItem, now_ms};

/// The body a notifier receives. Pure.
pub fn render(kind: NotifierKind, payload: &serde_json::Value) -> serde_json::Value {
    match kind {
        NotifierKind::Slack => {
            let title = payload["title"].as_str().unwrap_or("deploywatch");
            let mut text = title.trim_start_matches("ANNOUNCE: ").to_string();
            if let Some(c) = payload["context"]["commit"].as_str() {
                text.push_str(&format!(" · commit `{}`", crate::domain::prefix(c, 7)));
            }
            if let Some(d) = payload["context"]["duration_seconds"].as_f64() {
                text.push_str(&format!(" · {d:.0}s"));
            }
            serde_json::json!({"text": text})
        }
        NotifierKind::Json => payload.clone(),
    }
}

/// Backoff after `attempts` failures: 5 s doubling to an hour.
pub fn backoff(attempts: i64) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << attempts.clamp(0, 10) as u32);
    Duration::from_secs(secs.min(3600))
}

async fn deliver(
    http: &reqwest::Client,
    n: &NotifierConfig,
    item: &OutboxItem,
) -> Result<(), String> {
    let payload: serde_json::Value =
        serde_json::from_str(&item.payload).map_err(|e| format!("corrupt payload: {e}"))?;
    let resp = http
        .post(n.url.expose_secret())
        .json(&render(n.kind, &payload))
        .send()
        .await
        .map_err(|e| format!("notifier {} unreachable: {}", n.name, e.without_url()))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "notifier {} answered HTTP {}",
            n.name,
            resp.status().as_u16()
        ))
    }
}

/// One pass over due items; returns how many were delivered.
pub async fn deliver_due(app: &App, http: &reqwest::Client) -> usize {
    let Ok(items) = app.store.outbox_due(now_ms(), 50).await else {
        return 0;
    };
    let mut sent = 0;
    for item in items {
        let Some(n) = app
            .config
            .notifiers
            .iter()
            .find(|n| n.name == item.notifier)
        else {
            // Removed from config: give up on it quietly but keep the row for the record.
            let _ = app
                .store
                .outbox_mark_failed(&item.id, i64::MAX / 2, "notifier no longer configured")
                .await;
            continue;
        };
        match deliver(http, n, &item).await {
            Ok(()) => {
                let _ = app.store.outbox_mark_sent(&item.id).await;
                sent += 1;
                let payload: serde_json::Value =
                    serde_json::from_str(&item.payload).unwrap_or_default();
                tracing::info!(notifier = %n.name, title = ?payload["title"].as_str().unwrap_or(""), "announcement delivered");
                // Older rows carry no dedup key; their tasks stay for an agent to close.
                if let Some(key) = payload["dedup_key"].as_str()
                    && let Err(e) = app.store.close_delivered_announcement(key, &n.name).await
                {
                    tracing::warn!(error = %e, "announcement delivered but its task could not be closed");
                }
            }
            Err(e) => {
                let next = now_ms() + backoff(item.attempts + 1).as_millis() as i64;
                tracing::info!(notifier = %n.name, error = %e, "announcement not delivered; will retry");
                let _ = app.store.outbox_mark_failed(&item.id, next, &e).await;
            }
        }
    }
    sent
}

pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    loop {
        deliver_due(&app, &http).await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_text_and_backoff() {
        let p = serde_json::json!({"title": "ANNOUNCE: Deployment of api (9a4df0b) failed", "context": {"commit": "9a4df0b8e1", "duration_seconds": 61.2}});
        assert_eq!(
            render(NotifierKind::Slack, &p)["text"],
            "Deployment of api (9a4df0b) failed · commit `9a4df0b` · 61s"
        );
        assert_eq!(render(NotifierKind::Json, &p), p);
        assert_eq!(backoff(0), Duration::from_secs(5));
        assert_eq!(backoff(3), Duration::from_secs(40));
        assert_eq!(backoff(50), Duration::from_secs(3600));
    }
}
