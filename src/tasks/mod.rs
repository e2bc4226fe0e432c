//! Tasks: the units of work agents claim. This module holds the domain types; `rules` decides which
//! tasks an alert produces, `classify` names the kind of deployment failure. All of it is free of I/O.

pub mod deploy;
pub mod episode;
pub mod followup;
pub mod impact;
pub mod lifecycle;
pub mod rules;
pub mod settle;
pub mod titles;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Queue {
    Execution,
    Announce,
    E2eTest,
    /// Deploy tasks: an agent merges a pull request, deploywatch follows the commit to its end.
    Deploy,
}

impl Queue {
    pub const ALL: [Queue; 4] = [
        Queue::Execution,
        Queue::Announce,
        Queue::E2eTest,
        Queue::Deploy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Queue::Execution => "execution",
            Queue::Announce => "announce",
            Queue::E2eTest => "e2e-test",
            Queue::Deploy => "deploy",
        }
    }

    pub fn parse(s: &str) -> Option<Queue> {
        Queue::ALL.into_iter().find(|q| q.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Fix,
    Rollback,
    Announce,
    E2eTest,
    Deploy,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Fix,
        Kind::Rollback,
        Kind::Announce,
        Kind::E2eTest,
        Kind::Deploy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Fix => "fix",
            Kind::Rollback => "rollback",
            Kind::Announce => "announce",
            Kind::E2eTest => "e2e-test",
            Kind::Deploy => "deploy",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn queue(self) -> Queue {
        match self {
            Kind::Fix | Kind::Rollback => Queue::Execution,
            Kind::Announce => Queue::Announce,
            Kind::E2eTest => Queue::E2eTest,
            Kind::Deploy => Queue::Deploy,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Queued,
    Claimed,
    Done,
    Failed,
    Cancelled,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Queued,
        State::Claimed,
        State::Done,
        State::Failed,
        State::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Claimed => "claimed",
            State::Done => "done",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|q| q.as_str() == s)
    }

    pub fn is_open(self) -> bool {
        matches!(self, State::Queued | State::Claimed)
    }
}

/// A task as the API shows it (the contract's field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub queue: Queue,
    pub kind: Kind,
    pub title: String,
    /// 1 is the most urgent.
    pub priority: i64,
    pub state: State,
    pub dedup_key: String,
    pub app: Option<String>,
    pub context: serde_json::Value,
    pub attempts: i64,
    pub max_attempts: i64,
    pub worker: Option<String>,
    pub lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub seen_count: i64,
    pub alert_resolved_at: Option<chrono::DateTime<chrono::Utc>>,
    pub closed_reason: Option<String>,
    pub result: Option<serde_json::Value>,
}

/// A task to create (or to absorb into the open one with the same dedup key).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewTask {
    pub kind: Kind,
    pub title: String,
    pub priority: i64,
    pub dedup_key: String,
    pub app: Option<String>,
    pub context: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskEvent {
    pub at: chrono::DateTime<chrono::Utc>,
    pub event: String,
    pub worker: Option<String>,
    pub detail: Option<serde_json::Value>,
}
