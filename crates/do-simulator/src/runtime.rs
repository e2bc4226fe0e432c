//! How a simulated app behaves once a deployment serves it: per-instance restarts, memory and CPU,
//! replicas ready, and what the restarted instances printed, all computed from the time since
//! the deployment went ACTIVE, so a test can predict what the monitoring endpoints show.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::state::Script;
use crate::state::{SimApp, SimDeployment};

/// Replicas every simulated service runs.
pub(crate) const REPLICAS: usize = 2;
/// Steps between two OOM kills of a leaking deployment.
const LEAK_CYCLE: f64 = 6.0;

/// One instance's readings at a moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InstanceReading {
    pub(crate) instance: String,
    pub(crate) restarts: f64,
    pub(crate) memory_percent: f64,
    pub(crate) cpu_percent: f64,
    pub(crate) ready: bool,
}

impl SimDeployment {
    /// When the deployment went ACTIVE, if it has by `now`.
    pub(crate) fn active_since(&self, now: DateTime<Utc>, step: Duration) -> Option<DateTime<Utc>> {
        match self.phase_at(now, step) {
            ("ACTIVE", Some(at)) => Some(at),
            _ => None,
        }
    }

    pub(crate) fn instance_name(&self, i: usize) -> String {
        let short: String = self.id.chars().filter(|c| *c != '-').take(8).collect();
        format!("web-{short}-{i}")
    }

    /// The instances' readings `at` (steps since ACTIVE decide everything).
    pub(crate) fn readings_at(&self, at: DateTime<Utc>, step: Duration) -> Vec<InstanceReading> {
        let Some(since) = self.active_since(at, step) else {
            return Vec::new();
        };
        let steps = (at - since).num_milliseconds().max(0) as f64 / step.as_millis().max(1) as f64;
        (0..REPLICAS)
            .map(|i| {
                // A little per-instance spread, so no two series are identical.
                let spread = i as f64 * 1.5;
                let (restarts, memory, cpu, ready) = match self.script {
                    Script::CrashLoop => (steps.floor(), 18.0 + spread, 4.0 + spread, false),
                    Script::MemoryLeak => {
                        let in_cycle = steps % LEAK_CYCLE;
                        let memory = (45.0 + in_cycle.floor() * 10.0 + spread).min(97.0);
                        ((steps / LEAK_CYCLE).floor(), memory, 22.0 + spread, true)
                    }
                    _ => (0.0, 35.0 + spread, 12.0 + spread, true),
                };
                InstanceReading {
                    instance: self.instance_name(i),
                    restarts,
                    memory_percent: memory,
                    cpu_percent: cpu,
                    ready,
                }
            })
            .collect()
    }

    /// What the restarted instances printed by `now`, oldest first (the `RUN_RESTARTED` log).
    pub(crate) fn restarted_log(&self, now: DateTime<Utc>, step: Duration) -> String {
        let mut lines = Vec::new();
        for r in self.readings_at(now, step) {
            for n in 0..(r.restarts as usize).min(50) {
                match self.script {
                    Script::CrashLoop => {
                        lines.push(format!("[{}] panic: runtime error: invalid memory address or nil pointer dereference", r.instance));
                        lines.push(format!("[{}] container exited with code 2 (restart {}); back-off restarting failed container", r.instance, n + 1));
                    }
                    Script::MemoryLeak => {
                        lines.push(format!(
                            "[{}] fatal error: runtime: out of memory",
                            r.instance
                        ));
                        lines.push(format!("[{}] OOMKilled: container exceeded its memory limit (512Mi), exit code 137 (restart {})", r.instance, n + 1));
                    }
                    _ => {}
                }
            }
        }
        if lines.is_empty() {
            String::new()
        } else {
            lines.join("\n") + "\n"
        }
    }
}

impl SimApp {
    /// The deployment serving at `at`: the newest one ACTIVE by then (a later deployment going
    /// ACTIVE replaces it, as a rollback does).
    pub(crate) fn serving_at(&self, at: DateTime<Utc>, step: Duration) -> Option<&SimDeployment> {
        self.deployments
            .iter()
            .filter(|d| d.created <= at)
            .find(|d| d.active_since(at, step).is_some())
    }
}

/// Sample times in [start, end], aligned to multiples of the interval so repeated queries agree;
/// at most 500 of them (the interval grows for long ranges).
pub(crate) fn sample_times(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    step: Duration,
) -> Vec<DateTime<Utc>> {
    if end < start {
        return Vec::new();
    }
    let span = (end - start).num_milliseconds();
    let interval = (step.as_millis().max(1) as i64).max(span / 500 + 1);
    let first = start.timestamp_millis().div_euclid(interval) * interval;
    let mut out = Vec::new();
    let mut t = if first < start.timestamp_millis() {
        first + interval
    } else {
        first
    };
    while t <= end.timestamp_millis() && out.len() < 500 {
        if let Some(at) = DateTime::from_timestamp_millis(t) {
            out.push(at);
        }
        t += interval;
    }
    out
}
