//! The row sets a batch writes, one per statement (`ingest_batch.rs`), as the planner leaves them.
//! Field names are the JSON keys the statements unpack.

use serde::Serialize;

use super::super::placement::IngestReport;

/// A receipt: the first notification with its body hash, and how often the batch holds it.
#[derive(Debug, Serialize, PartialEq)]
pub(in crate::store) struct ReceiptRow {
    pub id: String,
    pub sha: String,
    pub receiver: String,
    pub status: String,
    pub group_key: String,
    pub alert_count: i64,
    pub body: String,
    pub n: i64,
}

/// A new episode, in the state the batch leaves it.
#[derive(Debug, Serialize, PartialEq)]
pub(in crate::store) struct EpisodeInsert {
    pub fp: String,
    pub alertname: String,
    pub app: Option<String>,
    pub status: &'static str,
    pub starts_at: i64,
    pub resolved_at: Option<i64>,
    pub n: i64,
    pub labels: String,
    pub annotations: String,
}

/// An existing episode: its new state, sightings to add, and labels when a new firing replaced them.
#[derive(Debug, Serialize, PartialEq)]
pub(in crate::store) struct EpisodeUpdate {
    pub fp: String,
    pub status: &'static str,
    pub starts_at: i64,
    pub resolved_at: Option<i64>,
    pub n: i64,
    pub labels: Option<String>,
    pub annotations: Option<String>,
}

/// A new task, in the state the batch leaves it.
#[derive(Debug, Serialize, PartialEq)]
pub(in crate::store) struct TaskInsert {
    pub id: String,
    pub queue: &'static str,
    pub kind: &'static str,
    pub title: String,
    pub priority: i64,
    pub state: &'static str,
    pub dkey: String,
    pub is_open: i64,
    pub app: Option<String>,
    pub context: String,
    pub max_attempts: i64,
    pub n: i64,
    pub ar: Option<i64>,
    pub closed_reason: Option<String>,
    pub closed_at: Option<i64>,
}

/// An existing task whose state the batch changed; written only while it is still in `prior`.
#[derive(Debug, Serialize, PartialEq)]
pub(in crate::store) struct TaskUpdate {
    pub id: String,
    pub was: &'static str,
    pub state: &'static str,
    pub is_open: i64,
    pub closed_reason: Option<String>,
    pub closed_at: Option<i64>,
    /// 1: `alert_resolved_at` becomes `ar`; 0: it stays.
    pub ar_set: i64,
    pub ar: Option<i64>,
    /// 1: queued again after completion (lease cleared, one more attempt allowed).
    pub requeued: i64,
    /// Sightings to add.
    pub n: i64,
}

/// Sightings to add to one task (`id`) or to every task of a key (`key`).
#[derive(Debug, Serialize, PartialEq)]
pub(in crate::store) struct Touch {
    pub id: String,
    pub n: i64,
}

#[derive(Debug, Serialize, PartialEq)]
pub(in crate::store) struct EventRow {
    /// The order the events happened in.
    pub i: i64,
    pub task_id: String,
    pub event: &'static str,
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub(in crate::store) struct OutboxRow {
    pub id: String,
    pub notifier: String,
    pub payload: String,
}

/// Everything a batch writes, one set per statement, and each notification's report.
#[derive(Debug, Default)]
pub(in crate::store) struct Plan {
    pub receipts: Vec<ReceiptRow>,
    pub episode_inserts: Vec<EpisodeInsert>,
    pub episode_updates: Vec<EpisodeUpdate>,
    pub task_updates: Vec<TaskUpdate>,
    pub task_inserts: Vec<TaskInsert>,
    pub task_touches: Vec<Touch>,
    /// By dedup key (`Touch::id` is the key): written after the inserts, so a task the batch made
    /// and then absorbed into is counted too, as the one-by-one path counts it.
    pub key_touches: Vec<Touch>,
    pub events: Vec<EventRow>,
    pub outbox: Vec<OutboxRow>,
    pub reports: Vec<IngestReport>,
}
