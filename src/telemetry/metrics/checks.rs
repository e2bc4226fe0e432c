//! The startup and migration check series.

use super::registry::Metrics;

impl Metrics {
    pub fn startup_check(&self, check: &str, ok: bool) {
        self.startup_check_success.set(&[check], ok as i64 as f64);
        self.changed();
    }

    /// Which app a migration check belongs to (an `_info` series, set once at start).
    pub fn migration_check_info(&self, check: &str, app: &str) {
        self.migration_check_info.set(&[check, app], 1.0);
        self.changed();
    }

    pub fn migrations_pending(&self, check: &str, n: i64) {
        self.migration_pending.set(&[check], n as f64);
        self.changed();
    }
}
