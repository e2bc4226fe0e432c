//! Set-oriented ingest, the decisions. A group-commit batch is decided in memory, in arrival
//! order, by the same `tasks::episode` rules the one-by-one path (`ingest.rs`, `placement.rs`)
//! executes statement by statement; the result is a handful of row sets, one per table and kind of
//! write, that `ingest_batch.rs` writes with one statement each. Pure: the store reads what it
//! knows ([`Known`]) before, and writes the [`Plan`] after.
//!
//! Every write of an existing task is conditional on the state it was read in, and every insert
//! must insert: a miss means something else (a claim, another writer) changed the store between
//! the read and the write, and the batch runs again one by one, where each write is re-decided.

use std::collections::HashMap;

use super::ingest::{AlertRecord, NotificationRecord};
use super::placement::{
    IngestReport, PlaceOptions, cancelled_detail, noted_detail, outbox_payload, reopened_detail,
    requeued_detail,
};
use crate::tasks::episode::{
    self, EpisodeRow, KeyFacts, KeyTask, OnResolve, Placement, RESOLVED, RowWrite, Tally,
    Transition,
};
use crate::tasks::{Kind, NewTask, State};

mod rows;

pub(super) use rows::Plan;
use rows::{
    EpisodeInsert, EpisodeUpdate, EventRow, OutboxRow, ReceiptRow, TaskInsert, TaskUpdate, Touch,
};

#[cfg(test)]
mod tests;

/// One notification of the batch, as the group commit queued it.
pub(super) struct Notice<'a> {
    pub n: &'a NotificationRecord,
    pub alerts: &'a [AlertRecord],
    pub opts: PlaceOptions<'a>,
}

/// What the store holds for the batch's episodes and dedup keys, read before deciding.
#[derive(Debug, Default)]
pub(super) struct Known {
    pub episodes: HashMap<String, EpisodeRow>,
    /// The newest tasks of each key, newest first (what `placement::key_tasks` reads).
    pub tasks: HashMap<String, Vec<KeyTask>>,
}

/// The episodes and dedup keys a batch reads, each once.
pub(super) fn reads(notices: &[Notice<'_>]) -> (Vec<String>, Vec<String>) {
    let mut fps = Vec::new();
    let mut keys = Vec::new();
    for a in notices.iter().flat_map(|n| n.alerts) {
        fps.push(a.fingerprint.clone());
        keys.extend(a.cancel_keys.iter().cloned());
        keys.extend(a.create.iter().map(|t| t.dedup_key.clone()));
    }
    for v in [&mut fps, &mut keys] {
        v.sort_unstable();
        v.dedup();
    }
    (fps, keys)
}

/// An episode as the batch leaves it.
struct Ep {
    alertname: String,
    app: Option<String>,
    inserted: bool,
    row: EpisodeRow,
    /// Sightings: the total for an inserted row, those to add for an existing one.
    seen: i64,
    labels: Option<String>,
    annotations: Option<String>,
    dirty: bool,
}

/// Where a task in memory came from.
enum Origin {
    /// Made by this batch.
    New { task: NewTask, max_attempts: i64 },
    /// Read from the store in this state.
    Stored(State),
}

/// A task as the batch leaves it.
struct Mem {
    id: String,
    state: State,
    open: bool,
    closed_reason: Option<String>,
    closed_at: Option<i64>,
    origin: Origin,
    /// `Some(v)`: `alert_resolved_at` becomes `v`.
    alert_resolved: Option<Option<i64>>,
    requeued: bool,
    changed: bool,
    seen: i64,
}

impl Mem {
    fn key_task(&self) -> KeyTask {
        KeyTask {
            id: self.id.clone(),
            state: self.state,
            open: self.open,
            closed_reason: self.closed_reason.clone(),
            closed_at: self.closed_at,
        }
    }

    fn reopen(&mut self) {
        self.state = State::Queued;
        self.open = true;
        self.closed_reason = None;
        self.closed_at = None;
        self.changed = true;
        self.seen += 1;
    }
}

enum Placed {
    Created,
    Reopened,
    Absorbed,
}

/// The batch's state while it is decided.
struct Planner {
    now: i64,
    episodes: HashMap<String, Ep>,
    /// Episodes in the order first met, so the writes come out in a stable order.
    episode_order: Vec<String>,
    tasks: Vec<Mem>,
    by_id: HashMap<String, usize>,
    /// Task indexes per key, newest first.
    by_key: HashMap<String, Vec<usize>>,
    key_touches: Vec<Touch>,
    events: Vec<EventRow>,
    outbox: Vec<OutboxRow>,
}

/// Decides the whole batch: `known` is what the store held when the batch's transaction read it;
/// `now` is the batch's clock; `new_id` names new rows (a UUID in the store, a counter in tests).
pub(super) fn plan(
    notices: &[Notice<'_>],
    known: Known,
    now: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Plan {
    let mut p = Planner {
        now,
        episodes: HashMap::new(),
        episode_order: Vec::new(),
        tasks: Vec::new(),
        by_id: HashMap::new(),
        by_key: HashMap::new(),
        key_touches: Vec::new(),
        events: Vec::new(),
        outbox: Vec::new(),
    };
    for (key, list) in known.tasks {
        let idx = list.into_iter().map(|t| p.add(t, None)).collect();
        p.by_key.insert(key, idx);
    }
    let mut stored = known.episodes;
    let mut receipts: Vec<ReceiptRow> = Vec::new();
    let mut receipt_at: HashMap<&str, usize> = HashMap::new();
    let mut reports = Vec::with_capacity(notices.len());
    for notice in notices {
        let n = notice.n;
        match receipt_at.get(n.body_sha256.as_str()) {
            Some(&i) => receipts[i].n += 1,
            None => {
                receipt_at.insert(&n.body_sha256, receipts.len());
                receipts.push(ReceiptRow {
                    id: new_id(),
                    sha: n.body_sha256.clone(),
                    receiver: n.receiver.clone(),
                    status: n.status.clone(),
                    group_key: n.group_key.clone(),
                    alert_count: n.alert_count,
                    body: n.body.clone(),
                    n: 1,
                });
            }
        }
        let mut report = IngestReport {
            alerts: notice.alerts.len(),
            ..Default::default()
        };
        // The order the one-by-one path takes them in (by episode, then by the alert's own time).
        let mut ordered: Vec<&AlertRecord> = notice.alerts.iter().collect();
        ordered.sort_by(|a, b| {
            (&a.fingerprint, a.event().at(now)).cmp(&(&b.fingerprint, b.event().at(now)))
        });
        for a in ordered {
            p.alert(a, &mut stored, &notice.opts, new_id, &mut report);
        }
        reports.push(report);
    }
    p.finish(receipts, reports)
}

impl Planner {
    fn add(&mut self, t: KeyTask, new: Option<(NewTask, i64)>) -> usize {
        let i = self.tasks.len();
        self.by_id.insert(t.id.clone(), i);
        let state = t.state;
        let made = new.is_some();
        self.tasks.push(Mem {
            id: t.id,
            state,
            open: t.open,
            closed_reason: t.closed_reason,
            closed_at: t.closed_at,
            origin: match new {
                Some((task, max_attempts)) => Origin::New { task, max_attempts },
                None => Origin::Stored(state),
            },
            alert_resolved: None,
            requeued: false,
            changed: false,
            seen: i64::from(made),
        });
        i
    }

    fn key_tasks(&self, key: &str) -> Vec<KeyTask> {
        self.by_key
            .get(key)
            .map(|idx| idx.iter().map(|&i| self.tasks[i].key_task()).collect())
            .unwrap_or_default()
    }

    fn event(&mut self, task: usize, event: &'static str, detail: Option<serde_json::Value>) {
        self.events.push(EventRow {
            i: self.events.len() as i64,
            task_id: self.tasks[task].id.clone(),
            event,
            detail: detail.map(|d| d.to_string()),
        });
    }

    /// One alert: its episode's transition, then what the plan says (`ingest_alert`).
    fn alert(
        &mut self,
        a: &AlertRecord,
        stored: &mut HashMap<String, EpisodeRow>,
        opts: &PlaceOptions<'_>,
        new_id: &mut dyn FnMut() -> String,
        report: &mut IngestReport,
    ) {
        let now = self.now;
        let ev = a.event();
        let prior = self.episode(a, stored);
        let step = episode::transition(prior.as_ref(), &ev, now);
        let plan = episode::plan_event(step, a.firing);
        match plan.tally {
            Tally::Stale => report.stale_ignored += 1,
            Tally::Duplicate => report.duplicates_absorbed += 1,
            Tally::Nothing => {}
        }
        self.write_row(a, plan.row);
        if plan.close_tasks {
            for key in &a.cancel_keys {
                let (c, noted) = self.close_on_resolve(key, ev.at(now));
                report.tasks_cancelled += c;
                report.tasks_noted += noted;
            }
        }
        let episode_start = a.firing.then_some(a.starts_at_ms);
        let chosen: Vec<&NewTask> = a.create.iter().filter(|t| plan.places(t.kind)).collect();
        if step == Transition::Repeat && a.firing {
            report.duplicates_absorbed += a.create.len() - chosen.len();
        }
        for t in chosen {
            match self.place(t, opts, episode_start, new_id) {
                Placed::Created => {
                    report.tasks_created += 1;
                    report.created.push((t.kind.queue(), t.kind));
                    if t.kind == Kind::Announce {
                        for notifier in opts.notifiers {
                            self.outbox.push(OutboxRow {
                                id: new_id(),
                                notifier: notifier.clone(),
                                payload: outbox_payload(t),
                            });
                        }
                    }
                }
                Placed::Reopened => report.tasks_reopened += 1,
                Placed::Absorbed => report.duplicates_absorbed += 1,
            }
        }
    }

    /// The episode's state before this alert; `None` when this alert makes it (`lock_episode`).
    fn episode(
        &mut self,
        a: &AlertRecord,
        stored: &mut HashMap<String, EpisodeRow>,
    ) -> Option<EpisodeRow> {
        if let Some(e) = self.episodes.get(&a.fingerprint) {
            return Some(e.row);
        }
        let (row, inserted) = match stored.remove(&a.fingerprint) {
            Some(row) => (row, false),
            None => {
                let row = EpisodeRow {
                    firing: a.firing,
                    starts_at: a.starts_at_ms,
                    resolved_at: (!a.firing).then(|| a.event().at(self.now)),
                };
                (row, true)
            }
        };
        self.episode_order.push(a.fingerprint.clone());
        self.episodes.insert(
            a.fingerprint.clone(),
            Ep {
                alertname: a.alertname.clone(),
                app: a.app.clone(),
                inserted,
                row,
                seen: i64::from(inserted),
                labels: inserted.then(|| a.labels_json.clone()),
                annotations: inserted.then(|| a.annotations_json.clone()),
                dirty: false,
            },
        );
        (!inserted).then_some(row)
    }

    /// `ingest::write_row`, in memory.
    fn write_row(&mut self, a: &AlertRecord, w: RowWrite) {
        let now = self.now;
        let Some(e) = self.episodes.get_mut(&a.fingerprint) else {
            return;
        };
        match w {
            RowWrite::Keep => return,
            RowWrite::Touch => {}
            RowWrite::Fire => {
                e.row.firing = true;
                e.row.starts_at = a.starts_at_ms;
                e.row.resolved_at = None;
                e.labels = Some(a.labels_json.clone());
                e.annotations = Some(a.annotations_json.clone());
            }
            RowWrite::Resolve => {
                e.row.firing = false;
                e.row.resolved_at = Some(a.event().at(now));
            }
        }
        e.seen += 1;
        e.dirty = true;
    }

    /// `placement::close_on_resolve`, in memory.
    fn close_on_resolve(&mut self, key: &str, resolved_at: i64) -> (usize, usize) {
        let open = self
            .by_key
            .get(key)
            .and_then(|idx| idx.iter().copied().find(|&i| self.tasks[i].open));
        let Some(i) = open else {
            return (0, 0);
        };
        match episode::on_resolve(Some(self.tasks[i].state)) {
            OnResolve::Nothing => (0, 0),
            OnResolve::Cancel => {
                let t = &mut self.tasks[i];
                t.state = State::Cancelled;
                t.open = false;
                t.closed_reason = Some(RESOLVED.to_string());
                t.closed_at = Some(self.now);
                t.alert_resolved = Some(Some(resolved_at));
                t.changed = true;
                self.event(i, "cancelled", Some(cancelled_detail()));
                (1, 0)
            }
            OnResolve::Note => {
                let t = &mut self.tasks[i];
                t.alert_resolved = Some(Some(resolved_at));
                t.changed = true;
                let note = noted_detail();
                self.event(i, "note", Some(note));
                (0, 1)
            }
        }
    }

    /// `placement::place_task`, in memory.
    fn place(
        &mut self,
        t: &NewTask,
        opts: &PlaceOptions<'_>,
        episode_start: Option<i64>,
        new_id: &mut dyn FnMut() -> String,
    ) -> Placed {
        let since = self
            .now
            .saturating_sub(i64::try_from(opts.reopen_window.as_millis()).unwrap_or(i64::MAX));
        let facts = KeyFacts::from_tasks(&self.key_tasks(&t.dedup_key), since, episode_start);
        match episode::place(t.kind, &facts) {
            Placement::Absorb(id) if id.is_empty() => {
                match self.key_touches.iter_mut().find(|k| k.id == t.dedup_key) {
                    Some(k) => k.n += 1,
                    None => self.key_touches.push(Touch {
                        id: t.dedup_key.clone(),
                        n: 1,
                    }),
                }
                Placed::Absorbed
            }
            Placement::Absorb(id) => {
                if let Some(&i) = self.by_id.get(&id) {
                    self.tasks[i].seen += 1;
                }
                Placed::Absorbed
            }
            Placement::Reopen(id) => {
                if let Some(&i) = self.by_id.get(&id) {
                    self.tasks[i].reopen();
                    self.tasks[i].alert_resolved = Some(None);
                    self.event(i, "reopened", Some(reopened_detail()));
                }
                Placed::Reopened
            }
            Placement::Requeue(id) => {
                if let Some(&i) = self.by_id.get(&id) {
                    self.tasks[i].reopen();
                    self.tasks[i].requeued = true;
                    self.event(i, "reopened", Some(requeued_detail()));
                }
                Placed::Reopened
            }
            Placement::Create => {
                let kt = KeyTask {
                    id: new_id(),
                    state: State::Queued,
                    open: true,
                    closed_reason: None,
                    closed_at: None,
                };
                let i = self.add(kt, Some((t.clone(), opts.max_attempts)));
                self.by_key
                    .entry(t.dedup_key.clone())
                    .or_default()
                    .insert(0, i);
                self.event(i, "created", None);
                Placed::Created
            }
        }
    }

    fn finish(self, receipts: Vec<ReceiptRow>, reports: Vec<IngestReport>) -> Plan {
        let mut plan = Plan {
            receipts,
            reports,
            key_touches: self.key_touches,
            events: self.events,
            outbox: self.outbox,
            ..Default::default()
        };
        let mut episodes = self.episodes;
        for fp in self.episode_order {
            let Some(e) = episodes.remove(&fp) else {
                continue;
            };
            let status = if e.row.firing { "firing" } else { "resolved" };
            if e.inserted {
                plan.episode_inserts.push(EpisodeInsert {
                    fp,
                    alertname: e.alertname,
                    app: e.app,
                    status,
                    starts_at: e.row.starts_at,
                    resolved_at: e.row.resolved_at,
                    n: e.seen,
                    labels: e.labels.unwrap_or_default(),
                    annotations: e.annotations.unwrap_or_default(),
                });
            } else if e.dirty {
                plan.episode_updates.push(EpisodeUpdate {
                    fp,
                    status,
                    starts_at: e.row.starts_at,
                    resolved_at: e.row.resolved_at,
                    n: e.seen,
                    labels: e.labels,
                    annotations: e.annotations,
                });
            }
        }
        for m in self.tasks {
            match m.origin {
                Origin::New { task, max_attempts } => plan.task_inserts.push(TaskInsert {
                    id: m.id,
                    queue: task.kind.queue().as_str(),
                    kind: task.kind.as_str(),
                    title: task.title,
                    priority: task.priority,
                    state: m.state.as_str(),
                    dkey: task.dedup_key,
                    is_open: i64::from(m.open),
                    app: task.app,
                    context: task.context.to_string(),
                    max_attempts,
                    n: m.seen,
                    ar: m.alert_resolved.flatten(),
                    closed_reason: m.closed_reason,
                    closed_at: m.closed_at,
                }),
                Origin::Stored(prior) if m.changed => plan.task_updates.push(TaskUpdate {
                    id: m.id,
                    was: prior.as_str(),
                    state: m.state.as_str(),
                    is_open: i64::from(m.open),
                    closed_reason: m.closed_reason,
                    closed_at: m.closed_at,
                    ar_set: i64::from(m.alert_resolved.is_some()),
                    ar: m.alert_resolved.flatten(),
                    requeued: i64::from(m.requeued),
                    n: m.seen,
                }),
                Origin::Stored(_) if m.seen > 0 => plan.task_touches.push(Touch {
                    id: m.id,
                    n: m.seen,
                }),
                Origin::Stored(_) => {}
            }
        }
        plan
    }
}
