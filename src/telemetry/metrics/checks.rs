//! The startup and migration check series.

use super::registry::Metrics;

impl Metrics {
    pub fn startup_check(&self, check: &str, ok: bool) {
        self.startup_check_success
            .with_label_values(&[check])
            .set(ok as i64);
        self.changed();
    }

    /// Which app a migration check belongs to (an `_info` series, set once at start).
    pub fn migration_check_info(&self, check: &str, app: &str) {
        self.migration_check_info
            .with_label_values(&[check, app])
            .set(1);
        self.changed();
    }

    pub fn migrations_pending(&self, check: &str, n: i64) {
        self.migration_pending.with_label_values(&[check]).set(n);
        self.changed();
    }
}
