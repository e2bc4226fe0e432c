//! Health probe readings: what one probe found, why it failed, the threshold state that turns
//! results into healthy/unhealthy, and the shared table of the latest reading per target.

use std::collections::BTreeMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureReason {
    Dns,
    Connect,
    Tls,
    Timeout,
    Status,
    Body,
    /// The address is refused by the safety rules.
    Refused,
}

impl FailureReason {
    pub const ALL: [FailureReason; 7] = [
        FailureReason::Dns,
        FailureReason::Connect,
        FailureReason::Tls,
        FailureReason::Timeout,
        FailureReason::Status,
        FailureReason::Body,
        FailureReason::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Dns => "dns",
            FailureReason::Connect => "connect",
            FailureReason::Tls => "tls",
            FailureReason::Timeout => "timeout",
            FailureReason::Status => "status",
            FailureReason::Body => "body",
            FailureReason::Refused => "refused",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Phases {
    pub dns: f64,
    pub connect: f64,
    pub tls: f64,
    pub processing: f64,
    pub transfer: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProbeResult {
    pub ok: bool,
    pub reason: Option<FailureReason>,
    pub detail: Option<String>,
    pub status: Option<u16>,
    pub duration: f64,
    pub phases: Phases,
    pub cert_not_after: Option<DateTime<Utc>>,
}

/// Threshold state: healthy flips to false after `failure_threshold` failures in a row and back
/// after `success_threshold` successes in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Thresholds {
    pub healthy: bool,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            healthy: true,
            consecutive_failures: 0,
            consecutive_successes: 0,
        }
    }
}

impl Thresholds {
    pub fn observe(self, ok: bool, failure_threshold: u32, success_threshold: u32) -> Thresholds {
        if ok {
            let s = self.consecutive_successes.saturating_add(1);
            Thresholds {
                healthy: self.healthy || s >= success_threshold,
                consecutive_failures: 0,
                consecutive_successes: s,
            }
        } else {
            let f = self.consecutive_failures.saturating_add(1);
            Thresholds {
                healthy: self.healthy && f < failure_threshold,
                consecutive_failures: f,
                consecutive_successes: 0,
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeView {
    pub target: String,
    pub app: String,
    pub url: String,
    pub discovered: bool,
    pub healthy: bool,
    pub consecutive_failures: u32,
    pub last_result: Option<ProbeResult>,
    pub last_failure_reason: Option<FailureReason>,
    pub checked_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct ProbeSnapshot {
    inner: RwLock<BTreeMap<String, ProbeView>>,
}

impl ProbeSnapshot {
    pub fn all(&self) -> Vec<ProbeView> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
    pub fn get(&self, target: &str) -> Option<ProbeView> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(target)
            .cloned()
    }
    pub fn put(&self, v: ProbeView) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(v.target.clone(), v);
    }
    pub fn remove(&self, target: &str) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(target);
    }
}
