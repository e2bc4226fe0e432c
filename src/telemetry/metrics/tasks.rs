//! The webhook and task series: requests and alerts received, tasks per queue and state, claims,
//! rollbacks and announcements.

use super::registry::Metrics;
use crate::store::{BatchCommitted, IngestReport};

impl Metrics {
    /// One answered webhook request, by status code (`"200"`, `"401"`, `"503"`, …).
    pub fn webhook_request(&self, status: &str) {
        self.webhook_requests_total.inc(&[status]);
        self.changed();
    }

    /// Characters removed from a payload so it could be stored (`reason`: `nul_byte`).
    pub fn webhook_sanitized(&self, reason: &str, n: u64) {
        self.webhook_sanitized_total.add(&[reason], n as f64);
        self.changed();
    }

    /// One group commit of the webhook stored notifications in one transaction.
    pub fn webhook_batch_committed(&self, b: BatchCommitted) {
        self.webhook_batch_size.observe(&[], b.stored as f64);
        if let Some(reason) = b.one_by_one {
            self.webhook_batches_one_by_one_total.add(&[reason], 1.0);
        }
    }

    /// What one stored notification held and did.
    pub fn webhook_ingested(&self, firing: u64, resolved: u64, report: &IngestReport) {
        for (status, n) in [("firing", firing), ("resolved", resolved)] {
            if n > 0 {
                self.webhook_alerts_total.add(&[status], n as f64);
            }
        }
        self.webhook_duplicates_total
            .inc_by(report.duplicates_absorbed as u64);
        self.tasks_created(report);
        self.changed();
    }

    /// Counts the tasks a store call created.
    pub fn tasks_created(&self, report: &IngestReport) {
        for (q, k) in &report.created {
            self.tasks_created_total.inc(&[q.as_str(), k.as_str()]);
        }
        self.changed();
    }

    pub fn task_claimed(&self, queue: &str) {
        self.task_claims_total.inc(&[queue]);
        self.changed();
    }

    pub fn task_leases_expired(&self, n: u64) {
        self.task_lease_expiries_total.inc_by(n);
        self.changed();
    }

    /// The number of tasks in one queue and state, as the sweeper last counted them.
    pub fn task_count(&self, queue: &str, state: &str, n: i64) {
        self.tasks.set(&[queue, state], n as f64);
        self.changed();
    }

    pub fn announcements_pending(&self, n: i64) {
        self.announcements_pending.set(n);
        self.changed();
    }

    /// One rollback attempt's outcome (`rolled_back`, `refused`, `failed`, …).
    pub fn rollback(&self, app: &str, outcome: &str) {
        self.rollbacks_total.inc(&[app, outcome]);
        self.changed();
    }
}
