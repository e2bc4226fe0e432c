//! The verdict's inputs (the window's readings), thresholds and output (result, reasons, evidence).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A time series, oldest first.
pub type Points = Vec<(DateTime<Utc>, f64)>;

/// One instance's series of a component.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceSeries {
    pub instance: String,
    pub points: Points,
}

/// One replicas reading of the app's health endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaReading {
    pub at: DateTime<Utc>,
    pub ready: i64,
    pub desired: i64,
}

/// What the window saw of one component.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ComponentInput {
    pub name: String,
    /// Restart counts per instance (a counter: new instances start at zero). Query from a little
    /// before the window start, so an older instance has a reference point.
    pub restarts: Vec<InstanceSeries>,
    pub memory_percent: Vec<InstanceSeries>,
    pub cpu_percent: Vec<InstanceSeries>,
    pub replicas: Vec<ReplicaReading>,
}

/// One probe result during the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeReading {
    pub at: DateTime<Utc>,
    pub ok: bool,
}

/// One serving-commit check: what the app says it serves against what was deployed.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitReading {
    pub at: DateTime<Utc>,
    pub expected: String,
    /// `None` when the app did not say.
    pub serving: Option<String>,
}

/// The bound a query's value must keep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// Higher is worse (latency, error ratio).
    Max(f64),
    /// Lower is worse (throughput, success ratio).
    Min(f64),
}

/// What a regression of the query is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryKind {
    Latency,
    ErrorRate,
}

/// One PromQL query: its samples over the window before the deployment and during it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryInput {
    pub name: String,
    pub kind: QueryKind,
    pub limit: Limit,
    pub baseline: Vec<f64>,
    pub current: Vec<f64>,
}

/// The window: when it started (the deployment went ACTIVE), when it ends, and now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

impl Window {
    pub fn is_open(&self) -> bool {
        self.now < self.end
    }
}

/// Everything the verdict looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    pub window: Window,
    pub components: Vec<ComponentInput>,
    pub probes: Vec<ProbeReading>,
    pub commits: Vec<CommitReading>,
    pub queries: Vec<QueryInput>,
}

/// The thresholds; [`Rules::default`] holds the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Restarts (not explained by memory) in the window that make a crash loop.
    pub crash_loop_restarts: u32,
    /// Consecutive samples each showing a restart that make a crash loop.
    pub rising_samples: usize,
    /// Memory (percent of the limit) just before a restart that makes it an OOM kill.
    pub oom_memory_percent: f64,
    /// Share of bad readings (replicas, probes) that makes a component unhealthy.
    pub unhealthy_share: f64,
    /// Readings needed before unhealthy can be said; while the window is open the last this many
    /// must all be bad too.
    pub min_readings: usize,
    /// Samples each side needs for the rank test.
    pub min_test_samples: usize,
    /// Current samples needed before a query can fail at all.
    pub min_current_samples: usize,
    pub alpha: f64,
    /// How far the median must move (current / baseline, or its inverse for `min`).
    pub ratio: f64,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            crash_loop_restarts: 3,
            rising_samples: 2,
            oom_memory_percent: 90.0,
            unhealthy_share: 0.5,
            min_readings: 3,
            min_test_samples: 8,
            min_current_samples: 3,
            alpha: 0.05,
            ratio: 1.5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictResult {
    Pending,
    Passed,
    Failed,
    Inconclusive,
}

impl VerdictResult {
    /// The `result` label value and stored result.
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictResult::Pending => "pending",
            VerdictResult::Passed => "passed",
            VerdictResult::Failed => "failed",
            VerdictResult::Inconclusive => "inconclusive",
        }
    }

    pub fn is_final(self) -> bool {
        self != VerdictResult::Pending
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    CrashLoop,
    Oom,
    Unhealthy,
    LatencyRegression,
    ErrorRateRegression,
    ServingWrongCommit,
}

impl ReasonKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonKind::CrashLoop => "crash_loop",
            ReasonKind::Oom => "oom",
            ReasonKind::Unhealthy => "unhealthy",
            ReasonKind::LatencyRegression => "latency_regression",
            ReasonKind::ErrorRateRegression => "error_rate_regression",
            ReasonKind::ServingWrongCommit => "serving_wrong_commit",
        }
    }
}

/// Which judgement found a regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegressionTest {
    MannWhitneyU,
    Ratio,
}

/// The numbers behind a reason, before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Evidence {
    Restarts {
        restarts_before: f64,
        restarts_after: f64,
        /// Most consecutive samples that each showed a restart.
        consecutive_rising: usize,
    },
    Oom {
        oom_restarts: f64,
        /// The highest memory reading just before an OOM restart.
        memory_before_percent: f64,
        /// The first memory reading of the window.
        memory_at_start_percent: Option<f64>,
    },
    Replicas {
        ready: i64,
        desired: i64,
        not_ready_readings: usize,
        readings: usize,
    },
    Probes {
        failed: usize,
        total: usize,
    },
    Regression {
        limit: Limit,
        before_median: Option<f64>,
        after_median: f64,
        before_samples: usize,
        after_samples: usize,
        test: RegressionTest,
        p_value: Option<f64>,
    },
    Commit {
        expected: String,
        serving: String,
    },
}

/// Why a verification failed: the rule, what it is about (a component, a query, the app) and
/// the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub kind: ReasonKind,
    pub subject: String,
    pub evidence: Evidence,
}

impl Reason {
    /// One sentence for a task, a log line or a terminal.
    pub fn summary(&self) -> String {
        let s = &self.subject;
        match &self.evidence {
            Evidence::Restarts {
                restarts_before,
                restarts_after,
                consecutive_rising,
            } => format!(
                "{s} restarted {} times in the window (count {restarts_before} -> {restarts_after}; restarts in {consecutive_rising} consecutive samples)",
                restarts_after - restarts_before
            ),
            Evidence::Oom {
                oom_restarts,
                memory_before_percent,
                memory_at_start_percent,
            } => format!(
                "{s} was restarted {oom_restarts} times with memory at {memory_before_percent:.1}% just before (started the window at {})",
                memory_at_start_percent.map_or("unknown".into(), |m| format!("{m:.1}%"))
            ),
            Evidence::Replicas {
                ready,
                desired,
                not_ready_readings,
                readings,
            } => format!(
                "{s} had fewer replicas ready than desired in {not_ready_readings} of {readings} readings (last {ready}/{desired})"
            ),
            Evidence::Probes { failed, total } => {
                format!("{s}: {failed} of {total} health probes failed in the window")
            }
            Evidence::Regression {
                limit,
                before_median,
                after_median,
                test,
                p_value,
                ..
            } => {
                let bound = match limit {
                    Limit::Max(m) => format!("max {m}"),
                    Limit::Min(m) => format!("min {m}"),
                };
                let before = before_median.map_or("no baseline".into(), |b| format!("{b}"));
                let how = match (test, p_value) {
                    (RegressionTest::MannWhitneyU, Some(p)) => {
                        format!("Mann-Whitney U p={p:.4}")
                    }
                    _ => "median ratio".into(),
                };
                format!("{s} moved from median {before} to {after_median} ({bound}; {how})")
            }
            Evidence::Commit { expected, serving } => {
                format!("{s} serves commit {serving}, not the deployed {expected}")
            }
        }
    }
}

/// The verdict: a result and, when failed, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub result: VerdictResult,
    pub reasons: Vec<Reason>,
}
