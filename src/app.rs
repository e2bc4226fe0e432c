//! The running application: shared state every handler and background loop reads.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock, RwLockWriteGuard};

use tokio::sync::broadcast;

use crate::checks::StartupChecks;
use crate::config::Config;
use crate::domain::git::GitSnapshot;
use crate::domain::probe::ProbeSnapshot;
use crate::domain::{LifecycleEvent, Snapshot};
use crate::store::{Store, StoreError};
use crate::telemetry::metrics::Metrics;

pub struct App {
    pub config: Config,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub checks: StartupChecks,
    pub do_snapshot: RwLock<Snapshot>,
    pub probes: ProbeSnapshot,
    pub git: RwLock<GitSnapshot>,
    pub events: broadcast::Sender<LifecycleEvent>,
    /// Identifies this replica in leases.
    pub instance_id: String,
    /// Deployment outcomes already folded into the counters of this process.
    counted: Mutex<HashSet<String>>,
    /// Final verification verdicts already folded into the counters of this process.
    verified: Mutex<HashSet<String>>,
    pub started_at: std::time::Instant,
}

/// What axum handlers receive.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

impl App {
    pub fn new(config: Config, store: Store, metrics: Arc<Metrics>) -> App {
        let (events, _) = broadcast::channel(1024);
        let m = metrics.clone();
        store.on_batch_commit(move |b| m.webhook_batch_committed(b));
        App {
            checks: StartupChecks::default(),
            config,
            store,
            metrics,
            do_snapshot: RwLock::new(Snapshot::default()),
            probes: ProbeSnapshot::default(),
            git: RwLock::new(GitSnapshot::default()),
            events,
            instance_id: format!("{}-{}", hostname(), uuid::Uuid::new_v4()),
            counted: Mutex::new(HashSet::new()),
            verified: Mutex::new(HashSet::new()),
            started_at: std::time::Instant::now(),
        }
    }

    pub fn do_snapshot(&self) -> Snapshot {
        read(&self.do_snapshot).clone()
    }

    pub fn do_snapshot_mut(&self) -> RwLockWriteGuard<'_, Snapshot> {
        self.do_snapshot.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn app_view(&self, name: &str) -> Option<crate::domain::AppView> {
        read(&self.do_snapshot).apps.get(name).cloned()
    }

    pub fn git_snapshot(&self) -> GitSnapshot {
        read(&self.git).clone()
    }

    pub fn publish(&self, e: LifecycleEvent) {
        // No subscriber (fixer off) is fine: events are a notification, not a queue.
        let _ = self.events.send(e);
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "deploywatch".into())
}

/// Folds deployment outcomes persisted in the store (by this replica or another, now or before a
/// restart) into the counters and histograms, each exactly once per process.
pub async fn sync_outcome_metrics(app: &App) -> Result<usize, StoreError> {
    let rows = app.store.deployment_outcomes().await?;
    let m = &app.metrics;
    let mut counted = app.counted.lock().unwrap_or_else(|p| p.into_inner());
    let mut n = 0;
    for r in rows {
        if !counted.insert(r.deployment_id.clone()) {
            continue;
        }
        n += 1;
        m.record_outcome(&r);
    }
    m.changed();
    Ok(n)
}

/// Folds post-deploy verdicts from the store into the metrics: the latest verdict per app into
/// the `deployment_verification` gauge, and each final verdict once per process into the counter
/// (a failed one also into the DORA change failures). Every replica does it, so any can be scraped.
pub async fn sync_verification_metrics(app: &App) -> Result<usize, StoreError> {
    for r in app.store.latest_verifications().await? {
        app.metrics.verification(
            crate::domain::LabelValue::sanitize(&r.app).as_str(),
            &r.result,
        );
    }
    let rows = app.store.verifications(true).await?;
    let mut verified = app.verified.lock().unwrap_or_else(|p| p.into_inner());
    let mut n = 0;
    for r in rows.iter().filter(|r| r.ended_at_ms.is_some()) {
        if verified.insert(r.deployment_id.clone()) {
            n += 1;
            app.metrics.verification_ended(
                crate::domain::LabelValue::sanitize(&r.app).as_str(),
                &r.result,
            );
        }
    }
    Ok(n)
}
