//! The rules of the verdict, one function per reason (see the parent module for what each says).

use chrono::{DateTime, Utc};

use super::types::{
    CommitReading, ComponentInput, Evidence, InstanceSeries, Limit, ProbeReading, QueryInput,
    QueryKind, Reason, ReasonKind, RegressionTest, ReplicaReading, Rules, Window,
};
use crate::domain::stats::{Alternative, mann_whitney_u, median};

/// One restart seen in a series: when, how many, and after which earlier sample.
struct Restart {
    at: DateTime<Utc>,
    after: Option<DateTime<Utc>>,
    count: f64,
}

/// The restarts of one instance inside the window, sample by sample. A counter's drop is a reset
/// (a replaced instance), not negative restarts. An instance first seen inside the window started
/// from zero, so its first value counts.
fn restarts_in(series: &InstanceSeries, w: Window) -> (Vec<Restart>, f64, f64, usize) {
    let pts: Vec<&(DateTime<Utc>, f64)> = series
        .points
        .iter()
        .filter(|(_, v)| v.is_finite() && *v >= 0.0)
        .collect();
    let mut out = Vec::new();
    let (mut before, mut after) = (0.0, 0.0);
    let (mut run, mut best_run) = (0, 0);
    let mut prev: Option<&(DateTime<Utc>, f64)> = None;
    for p in pts {
        if p.0 <= w.start {
            before = p.1;
            after = p.1;
            prev = Some(p);
            continue;
        }
        let delta = match prev {
            Some(q) if p.1 >= q.1 => p.1 - q.1,
            Some(_) => p.1,
            None => p.1,
        };
        after += delta;
        if delta > 0.0 {
            out.push(Restart {
                at: p.0,
                after: prev.map(|q| q.0),
                count: delta,
            });
            run += 1;
            best_run = best_run.max(run);
        } else {
            run = 0;
        }
        prev = Some(p);
    }
    (out, before, after, best_run)
}

/// The highest memory reading of `instance` (or of the component, when the instance has no
/// series of its own) in (after, at): just before a restart, not the fresh instance after it.
fn memory_before(c: &ComponentInput, instance: &str, r: &Restart) -> Option<f64> {
    let own: Vec<&InstanceSeries> = c
        .memory_percent
        .iter()
        .filter(|s| s.instance == instance)
        .collect();
    let pool: Vec<&InstanceSeries> = if own.is_empty() {
        c.memory_percent.iter().collect()
    } else {
        own
    };
    pool.iter()
        .flat_map(|s| s.points.iter())
        .filter(|(t, v)| *t < r.at && r.after.is_none_or(|a| *t >= a) && v.is_finite())
        .map(|(_, v)| *v)
        .reduce(f64::max)
}

pub(super) fn restart_reasons(c: &ComponentInput, w: Window, rules: &Rules) -> Vec<Reason> {
    let (mut before, mut after, mut best_run) = (0.0, 0.0, 0);
    let (mut oom_restarts, mut oom_memory, mut other_restarts) = (0.0, f64::MIN, 0.0);
    for s in &c.restarts {
        let (restarts, b, a, run) = restarts_in(s, w);
        before += b;
        after += a;
        best_run = best_run.max(run);
        for r in &restarts {
            match memory_before(c, &s.instance, r) {
                Some(m) if m >= rules.oom_memory_percent => {
                    oom_restarts += r.count;
                    oom_memory = oom_memory.max(m);
                }
                _ => other_restarts += r.count,
            }
        }
    }
    let mut out = Vec::new();
    if oom_restarts > 0.0 {
        out.push(Reason {
            kind: ReasonKind::Oom,
            subject: c.name.clone(),
            evidence: Evidence::Oom {
                oom_restarts,
                memory_before_percent: oom_memory,
                memory_at_start_percent: c
                    .memory_percent
                    .iter()
                    .filter_map(|s| s.points.iter().find(|(t, _)| *t >= w.start))
                    .map(|(_, v)| *v)
                    .reduce(f64::max),
            },
        });
    }
    if other_restarts >= f64::from(rules.crash_loop_restarts.max(1))
        || consecutive_non_oom(c, w, rules) >= rules.rising_samples.max(1)
    {
        out.push(Reason {
            kind: ReasonKind::CrashLoop,
            subject: c.name.clone(),
            evidence: Evidence::Restarts {
                restarts_before: before,
                restarts_after: after,
                consecutive_rising: best_run,
            },
        });
    }
    out
}

/// The longest run, in any instance, of consecutive samples each showing a restart that memory
/// does not explain.
fn consecutive_non_oom(c: &ComponentInput, w: Window, rules: &Rules) -> usize {
    let mut best = 0;
    for s in &c.restarts {
        let (restarts, ..) = restarts_in(s, w);
        let mut run = 0;
        let mut last: Option<DateTime<Utc>> = None;
        for r in &restarts {
            let oom =
                memory_before(c, &s.instance, r).is_some_and(|m| m >= rules.oom_memory_percent);
            // Consecutive: this restart's previous sample is the previous restart's sample.
            let follows = last.is_some() && r.after == last;
            run = match (oom, follows) {
                (true, _) => 0,
                (false, true) => run + 1,
                (false, false) => 1,
            };
            best = best.max(run);
            last = Some(r.at);
        }
    }
    best
}

/// True when enough readings are bad: the share over the whole window, and while it is open the
/// latest ones too (a rollout's first unready minute is not a verdict).
fn mostly_bad(bad: &[bool], w: Window, rules: &Rules) -> bool {
    let n = bad.len();
    if n < rules.min_readings.max(1) {
        return false;
    }
    let share = bad.iter().filter(|b| **b).count() as f64 / n as f64;
    share > rules.unhealthy_share
        && (!w.is_open() || bad[n - rules.min_readings.max(1)..].iter().all(|b| *b))
}

pub(super) fn replica_reason(c: &ComponentInput, w: Window, rules: &Rules) -> Option<Reason> {
    let mut readings: Vec<&ReplicaReading> = c
        .replicas
        .iter()
        .filter(|r| r.at >= w.start && r.desired > 0)
        .collect();
    readings.sort_by_key(|r| r.at);
    let bad: Vec<bool> = readings.iter().map(|r| r.ready < r.desired).collect();
    let last = readings.last()?;
    mostly_bad(&bad, w, rules).then(|| Reason {
        kind: ReasonKind::Unhealthy,
        subject: c.name.clone(),
        evidence: Evidence::Replicas {
            ready: last.ready,
            desired: last.desired,
            not_ready_readings: bad.iter().filter(|b| **b).count(),
            readings: bad.len(),
        },
    })
}

pub(super) fn probe_reason(probes: &[ProbeReading], w: Window, rules: &Rules) -> Option<Reason> {
    let mut p: Vec<&ProbeReading> = probes.iter().filter(|p| p.at >= w.start).collect();
    p.sort_by_key(|p| p.at);
    let bad: Vec<bool> = p.iter().map(|p| !p.ok).collect();
    mostly_bad(&bad, w, rules).then(|| Reason {
        kind: ReasonKind::Unhealthy,
        subject: "probes".into(),
        evidence: Evidence::Probes {
            failed: bad.iter().filter(|b| **b).count(),
            total: bad.len(),
        },
    })
}

/// Short and full SHAs of one commit match; case does not matter.
fn same_commit(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim().to_ascii_lowercase(), b.trim().to_ascii_lowercase());
    let n = a.len().min(b.len());
    n >= 7 && a.as_bytes()[..n] == b.as_bytes()[..n] || (!a.is_empty() && a == b)
}

/// The latest reading serves another commit; while the window is open, the one before too (an
/// instance of the old release may still answer during the switch).
pub(super) fn commit_reason(commits: &[CommitReading], w: Window) -> Option<Reason> {
    let mut known: Vec<&CommitReading> = commits
        .iter()
        .filter(|c| c.at >= w.start && c.serving.is_some())
        .collect();
    known.sort_by_key(|c| c.at);
    let wrong = |c: &CommitReading| {
        c.serving
            .as_deref()
            .is_some_and(|s| !same_commit(s, &c.expected))
    };
    let last = known.last()?;
    let need = if w.is_open() { 2 } else { 1 };
    let settled = known.len() >= need && known[known.len() - need..].iter().all(|c| wrong(c));
    settled.then(|| Reason {
        kind: ReasonKind::ServingWrongCommit,
        subject: "app".into(),
        evidence: Evidence::Commit {
            expected: last.expected.clone(),
            serving: last.serving.clone().unwrap_or_default(),
        },
    })
}

pub(super) fn query_reason(q: &QueryInput, rules: &Rules) -> Option<Reason> {
    let current: Vec<f64> = q
        .current
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let baseline: Vec<f64> = q
        .baseline
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if current.len() < rules.min_current_samples.max(1) {
        return None;
    }
    let after = median(&current)?;
    let before = median(&baseline);
    let (past_limit, alternative) = match q.limit {
        Limit::Max(m) => (after > m, Alternative::Greater),
        Limit::Min(m) => (after < m, Alternative::Less),
    };
    let past_ratio = before.is_some_and(|b| match q.limit {
        Limit::Max(_) if b > 0.0 => after >= b * rules.ratio,
        Limit::Max(_) => after > b,
        Limit::Min(_) => after * rules.ratio <= b && after < b,
    });
    let enough =
        current.len() >= rules.min_test_samples && baseline.len() >= rules.min_test_samples;
    let (failed, test, p_value) = if enough {
        let p = mann_whitney_u(&current, &baseline, alternative).map(|r| r.p_value);
        (
            p.is_some_and(|p| p < rules.alpha) && (past_limit || past_ratio),
            RegressionTest::MannWhitneyU,
            p,
        )
    } else if before.is_some() {
        (past_ratio && past_limit, RegressionTest::Ratio, None)
    } else {
        // No baseline at all: only the limit can speak, over a median of enough samples.
        (past_limit, RegressionTest::Ratio, None)
    };
    failed.then(|| Reason {
        kind: match q.kind {
            QueryKind::Latency => ReasonKind::LatencyRegression,
            QueryKind::ErrorRate => ReasonKind::ErrorRateRegression,
        },
        subject: q.name.clone(),
        evidence: Evidence::Regression {
            limit: q.limit,
            before_median: before,
            after_median: after,
            before_samples: baseline.len(),
            after_samples: current.len(),
            test,
            p_value,
        },
    })
}
