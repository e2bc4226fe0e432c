//! The post-deploy verdict: what the readings of a deployment's verification window say about it.
//! Pure: the worker gathers the readings (DigitalOcean health and monitoring, probes, the
//! serving-commit check, PromQL queries) and hands them here; nothing here does I/O.
//!
//! Rules, each giving one [`ReasonKind`]:
//! - `crash_loop`: restarts not explained by memory rising during the window (at least
//!   `crash_loop_restarts` of them, or a restart in `rising_samples` consecutive samples);
//! - `oom`: a restart with the instance's memory at or above `oom_memory_percent` just before it;
//! - `unhealthy`: replicas ready below desired, or probes failing, in most readings of the window;
//! - `serving_wrong_commit`: the app serves another commit than the deployment's;
//! - `latency_regression` / `error_rate_regression`: a query's current samples against its
//!   baseline (the window before the deployment). With enough samples on both sides, a one-sided
//!   Mann-Whitney U test must reject at `alpha` *and* the median must have moved past the limit or
//!   by the ratio; with fewer, the median must have moved by the ratio *and* past the limit. One
//!   noisy sample moves neither a rank test nor a median.
//!
//! While the window is open the verdict is `pending` unless something already failed (a failure
//! ends the window early); when it closes, `passed`, or `inconclusive` when there was no data.

mod rules;
mod types;

pub use types::*;

use rules::{commit_reason, probe_reason, query_reason, replica_reason, restart_reasons};

/// Judges a window's readings. Pure.
pub fn judge(inputs: &Inputs, rules: &Rules) -> Verdict {
    let w = inputs.window;
    let mut reasons = Vec::new();
    for c in &inputs.components {
        reasons.extend(restart_reasons(c, w, rules));
        reasons.extend(replica_reason(c, w, rules));
    }
    reasons.extend(probe_reason(&inputs.probes, w, rules));
    reasons.extend(commit_reason(&inputs.commits, w));
    for q in &inputs.queries {
        reasons.extend(query_reason(q, rules));
    }
    reasons.sort_by(|a, b| (a.kind, &a.subject).cmp(&(b.kind, &b.subject)));
    let result = if !reasons.is_empty() {
        VerdictResult::Failed
    } else if w.is_open() {
        VerdictResult::Pending
    } else if has_data(inputs) {
        VerdictResult::Passed
    } else {
        VerdictResult::Inconclusive
    };
    Verdict { result, reasons }
}

fn has_data(i: &Inputs) -> bool {
    let series = |s: &[InstanceSeries]| s.iter().any(|s| !s.points.is_empty());
    i.components.iter().any(|c| {
        series(&c.restarts)
            || series(&c.memory_percent)
            || series(&c.cpu_percent)
            || !c.replicas.is_empty()
    }) || !i.probes.is_empty()
        || !i.commits.is_empty()
        || i.queries
            .iter()
            .any(|q| q.current.iter().any(|v| v.is_finite()))
}

#[cfg(test)]
mod tests;
