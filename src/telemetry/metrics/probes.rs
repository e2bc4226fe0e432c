//! The health probe series.

use super::registry::Metrics;
use crate::domain::probe::{FailureReason, ProbeResult, Thresholds};

impl Metrics {
    /// One probe's result and the threshold state it led to.
    pub fn record_probe(&self, app: &str, target: &str, r: &ProbeResult, th: Thresholds) {
        let l = [app, target];
        self.probe_success
            .with_label_values(&l)
            .set(th.healthy as i64);
        self.probe_raw_success
            .with_label_values(&l)
            .set(r.ok as i64);
        self.probe_duration.with_label_values(&l).set(r.duration);
        self.probe_status_code
            .with_label_values(&l)
            .set(r.status.unwrap_or(0) as i64);
        self.probe_consecutive_failures
            .with_label_values(&l)
            .set(th.consecutive_failures as i64);
        self.probes_total
            .with_label_values(&[app, target, if r.ok { "success" } else { "failure" }])
            .inc();
        for (phase, v) in [
            ("dns", r.phases.dns),
            ("connect", r.phases.connect),
            ("tls", r.phases.tls),
            ("processing", r.phases.processing),
            ("transfer", r.phases.transfer),
        ] {
            self.probe_phase_duration
                .with_label_values(&[app, target, phase])
                .set(v);
        }
        for reason in FailureReason::ALL {
            self.probe_failure
                .with_label_values(&[app, target, reason.as_str()])
                .set((r.reason == Some(reason)) as i64);
        }
        if let Some(c) = r.cert_not_after {
            self.probe_tls_expiry
                .with_label_values(&l)
                .set(c.timestamp() as f64);
        }
        self.changed();
    }

    /// A target that is gone (the app was deleted, the config changed): its series go with it.
    pub fn remove_probe(&self, app: &str, target: &str) {
        let l = [app, target];
        let _ = self.probe_success.remove_label_values(&l);
        let _ = self.probe_raw_success.remove_label_values(&l);
        let _ = self.probe_duration.remove_label_values(&l);
        let _ = self.probe_status_code.remove_label_values(&l);
        let _ = self.probe_consecutive_failures.remove_label_values(&l);
        let _ = self.probe_tls_expiry.remove_label_values(&l);
        for phase in ["dns", "connect", "tls", "processing", "transfer"] {
            let _ = self
                .probe_phase_duration
                .remove_label_values(&[app, target, phase]);
        }
        for reason in FailureReason::ALL {
            let _ = self
                .probe_failure
                .remove_label_values(&[app, target, reason.as_str()]);
        }
        self.changed();
    }
}
