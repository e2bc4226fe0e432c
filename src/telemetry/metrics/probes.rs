//! The health probe series.

use super::registry::Metrics;
use crate::domain::probe::{FailureReason, ProbeResult, Thresholds};

impl Metrics {
    /// One probe's result and the threshold state it led to.
    pub fn record_probe(&self, app: &str, target: &str, r: &ProbeResult, th: Thresholds) {
        let l = [app, target];
        self.probe_success.set(&l, th.healthy as i64 as f64);
        self.probe_raw_success.set(&l, r.ok as i64 as f64);
        self.probe_duration.set(&l, r.duration);
        self.probe_status_code
            .set(&l, r.status.unwrap_or(0) as i64 as f64);
        self.probe_consecutive_failures
            .set(&l, th.consecutive_failures as i64 as f64);
        self.probes_total
            .inc(&[app, target, if r.ok { "success" } else { "failure" }]);
        for (phase, v) in [
            ("dns", r.phases.dns),
            ("connect", r.phases.connect),
            ("tls", r.phases.tls),
            ("processing", r.phases.processing),
            ("transfer", r.phases.transfer),
        ] {
            self.probe_phase_duration.set(&[app, target, phase], v);
        }
        for reason in FailureReason::ALL {
            self.probe_failure.set(
                &[app, target, reason.as_str()],
                ((r.reason == Some(reason)) as i64) as f64,
            );
        }
        if let Some(c) = r.cert_not_after {
            self.probe_tls_expiry.set(&l, c.timestamp() as f64);
        }
        self.changed();
    }

    /// A target that is gone (the app was deleted, the config changed): its series go with it.
    pub fn remove_probe(&self, app: &str, target: &str) {
        let l = [app, target];
        let _ = self.probe_success.remove(&l);
        let _ = self.probe_raw_success.remove(&l);
        let _ = self.probe_duration.remove(&l);
        let _ = self.probe_status_code.remove(&l);
        let _ = self.probe_consecutive_failures.remove(&l);
        let _ = self.probe_tls_expiry.remove(&l);
        for phase in ["dns", "connect", "tls", "processing", "transfer"] {
            let _ = self.probe_phase_duration.remove(&[app, target, phase]);
        }
        for reason in FailureReason::ALL {
            let _ = self.probe_failure.remove(&[app, target, reason.as_str()]);
        }
        self.changed();
    }
}
