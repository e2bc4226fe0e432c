//! The alert-episode state machine. Pure: the store reads what it knows (the episode's row, the
//! tasks under a dedup key), asks these functions what to do, and executes the answer in one
//! transaction. The rules:
//!
//! - events of one episode are ordered by the alert's own times, never by arrival: a firing older
//!   than the stored resolve is stale, a resolve older than a newer firing belongs to an earlier
//!   episode (stale), a repeat of what is stored is a duplicate;
//! - a resolve cancels the episode's queued fix and rollback tasks, and only notes a claimed one
//!   (an agent is at work: never pull the rug);
//! - an announcement is made once per event, whether or not an agent already handled it;
//! - a firing soon after its resolve (within the reopen window) reopens the task that resolve
//!   cancelled, keeping its history;
//! - a fix completed while its alert still fires in the same episode did not work: it is queued
//!   again with one more attempt and a note; a completed rollback is not repeated.
//!
//! [`scenarios`] is the table of these rules as whole stories; the unit tests run it against an
//! in-memory model and `tests/integration/episodes.rs` runs the same table against SQLite and
//! PostgreSQL.

use super::{Kind, State};

/// An episode's stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpisodeRow {
    pub firing: bool,
    pub starts_at: i64,
    pub resolved_at: Option<i64>,
}

/// One event of an episode, by the alert's own clock (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertEvent {
    pub firing: bool,
    pub starts_at: i64,
    /// For a resolve: when it resolved (`now` when the payload gives none).
    pub ends_at: Option<i64>,
}

impl AlertEvent {
    /// When the event happened: the start of a firing, the end of a resolve.
    pub fn at(&self, now: i64) -> i64 {
        if self.firing {
            self.starts_at
        } else {
            self.ends_at.unwrap_or(now)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The first event of this episode: the row was just made from it.
    New,
    /// The event is news: store it and act on it.
    Apply,
    /// Already known (a repeat, an HA duplicate): counted; a firing still touches its tasks.
    Repeat,
    /// Older than what is stored (a firing after its own resolve, a resolve of an earlier episode).
    Stale,
}

/// Orders events of one episode by the alert's own times, never by arrival.
pub fn transition(stored: Option<&EpisodeRow>, ev: &AlertEvent, now: i64) -> Transition {
    let Some(row) = stored else {
        return Transition::New;
    };
    if ev.firing {
        if row.resolved_at.is_some_and(|r| ev.starts_at <= r) {
            Transition::Stale
        } else if row.firing && ev.starts_at <= row.starts_at {
            Transition::Repeat
        } else {
            Transition::Apply
        }
    } else {
        let ends = ev.ends_at.unwrap_or(now);
        if row.resolved_at.is_some_and(|r| r >= ends) {
            Transition::Repeat
        } else if row.firing && row.starts_at > ends {
            // A later episode already fires: this resolve belongs to an earlier one.
            Transition::Stale
        } else {
            Transition::Apply
        }
    }
}

/// What happens to the episode's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowWrite {
    /// Nothing (the row was made from this very event, or the event is stale).
    Keep,
    /// Count the sighting.
    Touch,
    /// A new firing: store its start, clear the resolve.
    Fire,
    /// A resolve: store when.
    Resolve,
}

/// Which counter of the ingest report an event moves besides its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    Nothing,
    Stale,
    Duplicate,
}

/// The store's work for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPlan {
    pub row: RowWrite,
    /// Close the open tasks the resolve names (cancel queued, note claimed).
    pub close_tasks: bool,
    /// Place the work the alert rules planned (fix and rollback tasks).
    pub place_work: bool,
    /// Make the announcements the rules planned: only for news, so an HA peer's repeat with an
    /// older `startsAt` is not announced twice.
    pub announce: bool,
    pub tally: Tally,
}

impl EventPlan {
    /// Whether a task of `kind` the alert rules planned is placed for this event: announcements
    /// only for news, the work (fix, rollback) whenever the plan places work.
    pub fn places(&self, kind: Kind) -> bool {
        if kind == Kind::Announce {
            self.announce
        } else {
            self.place_work
        }
    }
}

/// What the store does for an event, given its transition.
pub fn plan_event(t: Transition, firing: bool) -> EventPlan {
    let (row, act, tally) = match (t, firing) {
        (Transition::Stale, _) => (RowWrite::Keep, false, Tally::Stale),
        // A repeated firing still touches its open tasks (seen counts, reopen after completion).
        (Transition::Repeat, true) => (RowWrite::Touch, true, Tally::Nothing),
        (Transition::Repeat, false) => (RowWrite::Touch, false, Tally::Duplicate),
        (Transition::New, _) => (RowWrite::Keep, true, Tally::Nothing),
        (Transition::Apply, true) => (RowWrite::Fire, true, Tally::Nothing),
        (Transition::Apply, false) => (RowWrite::Resolve, true, Tally::Nothing),
    };
    EventPlan {
        row,
        close_tasks: act && !firing,
        place_work: act,
        announce: act && t != Transition::Repeat,
        tally,
    }
}

/// A task under a dedup key, as the placement decision reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTask {
    pub id: String,
    pub state: State,
    /// Set while queued or claimed.
    pub open: bool,
    pub closed_reason: Option<String>,
    pub closed_at: Option<i64>,
}

/// The reason a resolve writes on the tasks it cancels.
pub const RESOLVED: &str = "alert resolved";

/// What the store knows about a dedup key when a task is to be placed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFacts {
    /// The open (queued or claimed) task.
    pub open: Option<String>,
    /// Any task ever had this key.
    pub ever: bool,
    /// The newest task a resolve cancelled, closed within the reopen window.
    pub cancelled_recently: Option<String>,
    /// The newest task completed since the episode started (for a firing).
    pub done_in_episode: Option<String>,
}

impl KeyFacts {
    /// Reads the facts from the key's tasks (newest first is not required).
    /// `reopen_since`: the start of the reopen window; `episode_start`: the firing's start.
    pub fn from_tasks(
        tasks: &[KeyTask],
        reopen_since: i64,
        episode_start: Option<i64>,
    ) -> KeyFacts {
        let newest = |pred: &dyn Fn(&KeyTask) -> bool| {
            tasks
                .iter()
                .filter(|t| pred(t))
                .max_by_key(|t| t.closed_at)
                .map(|t| t.id.clone())
        };
        KeyFacts {
            open: tasks.iter().find(|t| t.open).map(|t| t.id.clone()),
            ever: !tasks.is_empty(),
            cancelled_recently: newest(&|t| {
                t.state == State::Cancelled
                    && t.closed_reason.as_deref() == Some(RESOLVED)
                    && t.closed_at.is_some_and(|c| c >= reopen_since)
            }),
            done_in_episode: episode_start.and_then(|start| {
                newest(&|t| t.state == State::Done && t.closed_at.is_some_and(|c| c >= start))
            }),
        }
    }
}

/// Where a planned task goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Already there: count the sighting on this task.
    Absorb(String),
    /// The task a recent resolve cancelled comes back, with its history.
    Reopen(String),
    /// A fix completed during this episode did not work: queue it again, one more attempt.
    Requeue(String),
    /// A new task.
    Create,
}

/// Decides where a task of `kind` goes, given what its dedup key holds.
pub fn place(kind: Kind, facts: &KeyFacts) -> Placement {
    if let Some(id) = &facts.open {
        return Placement::Absorb(id.clone());
    }
    if kind == Kind::Announce {
        // Once per event: the key carries the event, so any task under it is this announcement.
        return match (
            &facts.ever,
            &facts.cancelled_recently,
            &facts.done_in_episode,
        ) {
            (true, Some(id), _) | (true, None, Some(id)) => Placement::Absorb(id.clone()),
            (true, None, None) => Placement::Absorb(String::new()),
            (false, _, _) => Placement::Create,
        };
    }
    if let Some(id) = &facts.cancelled_recently {
        return Placement::Reopen(id.clone());
    }
    match (&facts.done_in_episode, kind) {
        (Some(id), Kind::Fix) => Placement::Requeue(id.clone()),
        (Some(id), _) => Placement::Absorb(id.clone()),
        (None, _) => Placement::Create,
    }
}

/// What a resolve does to the open task of a key it closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnResolve {
    /// Queued: nobody started; cancel it.
    Cancel,
    /// Claimed: an agent is at work; tell it, do not pull the rug.
    Note,
    /// No open task.
    Nothing,
}

pub fn on_resolve(open: Option<State>) -> OnResolve {
    match open {
        Some(State::Queued) => OnResolve::Cancel,
        Some(State::Claimed) => OnResolve::Note,
        _ => OnResolve::Nothing,
    }
}

mod scenarios;

pub use scenarios::{Expect, Scenario, Step, scenarios};

#[cfg(test)]
mod tests;
