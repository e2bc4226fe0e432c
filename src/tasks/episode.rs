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

/// One step of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The alert fires (minute of its `startsAt`).
    Fire(i64),
    /// The alert resolves (minutes of `startsAt` and `endsAt`).
    Resolve(i64, i64),
    /// An agent claims the fix task.
    Claim,
    /// The agent completes the fix task.
    Complete,
}

/// The end of a scenario: the fix tasks, oldest first, by state; and the announcements made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub fix_tasks: Vec<State>,
    pub announcements: usize,
    /// Fix tasks that came back (reopened or requeued).
    pub reopened: usize,
    pub stale: usize,
    pub duplicates: usize,
    /// Claimed tasks told that their alert resolved.
    pub noted: usize,
}

/// A story of one alert episode, told on both stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub name: &'static str,
    pub steps: Vec<Step>,
    /// The reopen window in minutes (0: never reopen).
    pub reopen_window_minutes: i64,
    pub expect: Expect,
}

fn expect(
    fix_tasks: &[State],
    announcements: usize,
    reopened: usize,
    stale: usize,
    duplicates: usize,
) -> Expect {
    Expect {
        fix_tasks: fix_tasks.to_vec(),
        announcements,
        reopened,
        stale,
        duplicates,
        noted: 0,
    }
}

/// Every rule as a story. Times are minutes of the alert's own clock; the store runs them with a
/// fixed base time, so the reopen window is measured against real `now`: a window of 0 minutes
/// never reopens, 60 minutes always does within a test.
pub fn scenarios() -> Vec<Scenario> {
    use State::*;
    use Step::*;
    vec![
        Scenario {
            name: "a firing opens one fix task and one announcement",
            steps: vec![Fire(0)],
            reopen_window_minutes: 60,
            expect: expect(&[Queued], 1, 0, 0, 0),
        },
        Scenario {
            name: "repeats and HA duplicates of a firing open nothing more",
            steps: vec![Fire(0), Fire(0), Fire(-1)],
            reopen_window_minutes: 60,
            expect: expect(&[Queued], 1, 0, 0, 0),
        },
        Scenario {
            name: "a resolve cancels the queued fix and announces",
            steps: vec![Fire(0), Resolve(0, 5)],
            reopen_window_minutes: 60,
            expect: expect(&[Cancelled], 2, 0, 0, 0),
        },
        Scenario {
            name: "a resolve notes a claimed fix instead of cancelling it",
            steps: vec![Fire(0), Claim, Resolve(0, 5)],
            reopen_window_minutes: 60,
            expect: Expect {
                noted: 1,
                ..expect(&[Claimed], 2, 0, 0, 0)
            },
        },
        Scenario {
            name: "a repeated resolve is a duplicate",
            steps: vec![Fire(0), Resolve(0, 5), Resolve(0, 5)],
            reopen_window_minutes: 60,
            expect: expect(&[Cancelled], 2, 0, 0, 1),
        },
        Scenario {
            name: "a firing after its own resolve is stale",
            steps: vec![Fire(0), Resolve(0, 5), Fire(0)],
            reopen_window_minutes: 60,
            expect: expect(&[Cancelled], 2, 0, 1, 0),
        },
        Scenario {
            name: "a resolve of an earlier episode is stale",
            steps: vec![Fire(10), Resolve(0, 5)],
            reopen_window_minutes: 60,
            expect: expect(&[Queued], 1, 0, 1, 0),
        },
        Scenario {
            name: "a new episode soon after a resolve reopens the cancelled fix",
            steps: vec![Fire(0), Resolve(0, 5), Fire(10)],
            reopen_window_minutes: 60,
            expect: expect(&[Queued], 3, 1, 0, 0),
        },
        Scenario {
            name: "a new episode after the reopen window opens a new fix",
            steps: vec![Fire(0), Resolve(0, 5), Fire(10)],
            reopen_window_minutes: 0,
            expect: expect(&[Cancelled, Queued], 3, 0, 0, 0),
        },
        Scenario {
            name: "a fix completed while the alert still fires is queued again",
            steps: vec![Fire(0), Claim, Complete, Fire(0)],
            reopen_window_minutes: 60,
            expect: expect(&[Queued], 1, 1, 0, 0),
        },
        Scenario {
            name: "a fix completed and then resolved stays done",
            steps: vec![Fire(0), Claim, Complete, Resolve(0, 5)],
            reopen_window_minutes: 60,
            expect: expect(&[Done], 2, 0, 0, 0),
        },
        Scenario {
            name: "a resolve arriving before its firing leaves nothing open",
            steps: vec![Resolve(0, 5), Fire(0)],
            reopen_window_minutes: 60,
            expect: expect(&[], 1, 0, 1, 0),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn fire(s: i64) -> AlertEvent {
        AlertEvent {
            firing: true,
            starts_at: s,
            ends_at: None,
        }
    }
    fn resolve(s: i64, e: i64) -> AlertEvent {
        AlertEvent {
            firing: false,
            starts_at: s,
            ends_at: Some(e),
        }
    }

    #[test]
    fn transitions_follow_the_alerts_own_times() {
        let firing = |s| EpisodeRow {
            firing: true,
            starts_at: s,
            resolved_at: None,
        };
        let resolved = |s, r| EpisodeRow {
            firing: false,
            starts_at: s,
            resolved_at: Some(r),
        };
        use Transition::*;
        let cases = [
            ("first event", None, fire(10), New),
            ("first event, a resolve", None, resolve(10, 20), New),
            ("repeat firing", Some(firing(10)), fire(10), Repeat),
            ("HA peer, older startsAt", Some(firing(10)), fire(9), Repeat),
            (
                "later start while firing",
                Some(firing(10)),
                fire(11),
                Apply,
            ),
            (
                "resolve of the firing episode",
                Some(firing(10)),
                resolve(10, 20),
                Apply,
            ),
            (
                "firing after its own resolve",
                Some(resolved(10, 20)),
                fire(10),
                Stale,
            ),
            (
                "firing at the resolve instant",
                Some(resolved(10, 20)),
                fire(20),
                Stale,
            ),
            (
                "new episode after a resolve",
                Some(resolved(10, 20)),
                fire(30),
                Apply,
            ),
            (
                "repeated resolve",
                Some(resolved(10, 20)),
                resolve(10, 20),
                Repeat,
            ),
            (
                "later resolve",
                Some(resolved(10, 20)),
                resolve(10, 25),
                Apply,
            ),
            (
                "resolve of an earlier episode",
                Some(firing(30)),
                resolve(10, 20),
                Stale,
            ),
        ];
        for (what, row, ev, want) in cases {
            assert_eq!(transition(row.as_ref(), &ev, NOW), want, "{what}");
        }
        let no_end = AlertEvent {
            firing: false,
            starts_at: 10,
            ends_at: None,
        };
        assert_eq!(no_end.at(NOW), NOW, "a resolve without endsAt happened now");
    }

    #[test]
    fn each_transition_has_its_plan() {
        use RowWrite::*;
        use Transition::*;
        // (transition, firing, row, close, work, announce, tally)
        let cases = [
            (Stale, true, Keep, false, false, false, Tally::Stale),
            (Stale, false, Keep, false, false, false, Tally::Stale),
            (Repeat, true, Touch, false, true, false, Tally::Nothing),
            (Repeat, false, Touch, false, false, false, Tally::Duplicate),
            (New, true, Keep, false, true, true, Tally::Nothing),
            (New, false, Keep, true, true, true, Tally::Nothing),
            (Apply, true, Fire, false, true, true, Tally::Nothing),
            (Apply, false, Resolve, true, true, true, Tally::Nothing),
        ];
        for (t, firing, row, close, place_work, announce, tally) in cases {
            let p = plan_event(t, firing);
            assert_eq!(
                p,
                EventPlan {
                    row,
                    close_tasks: close,
                    place_work,
                    announce,
                    tally
                },
                "{t:?} firing={firing}"
            );
        }
    }

    #[test]
    fn placements_follow_what_the_key_holds() {
        let f = |open: Option<&str>, ever, cancelled: Option<&str>, done: Option<&str>| KeyFacts {
            open: open.map(str::to_string),
            ever,
            cancelled_recently: cancelled.map(str::to_string),
            done_in_episode: done.map(str::to_string),
        };
        use Placement::*;
        let cases = [
            ("nothing yet", Kind::Fix, f(None, false, None, None), Create),
            (
                "open task absorbs",
                Kind::Fix,
                f(Some("a"), true, None, None),
                Absorb("a".into()),
            ),
            (
                "open rollback absorbs",
                Kind::Rollback,
                f(Some("a"), true, None, None),
                Absorb("a".into()),
            ),
            (
                "recent cancel reopens",
                Kind::Fix,
                f(None, true, Some("c"), None),
                Reopen("c".into()),
            ),
            (
                "rollback reopens too",
                Kind::Rollback,
                f(None, true, Some("c"), None),
                Reopen("c".into()),
            ),
            (
                "done fix in episode requeues",
                Kind::Fix,
                f(None, true, None, Some("d")),
                Requeue("d".into()),
            ),
            (
                "done rollback is not repeated",
                Kind::Rollback,
                f(None, true, None, Some("d")),
                Absorb("d".into()),
            ),
            (
                "old task, new episode",
                Kind::Fix,
                f(None, true, None, None),
                Create,
            ),
            (
                "announcement once",
                Kind::Announce,
                f(None, false, None, None),
                Create,
            ),
            (
                "announcement made already",
                Kind::Announce,
                f(None, true, None, None),
                Absorb(String::new()),
            ),
            (
                "announcement handled already",
                Kind::Announce,
                f(None, true, None, Some("d")),
                Absorb("d".into()),
            ),
            (
                "announcement still open",
                Kind::Announce,
                f(Some("a"), true, None, None),
                Absorb("a".into()),
            ),
        ];
        for (what, kind, facts, want) in cases {
            assert_eq!(place(kind, &facts), want, "{what}");
        }
    }

    #[test]
    fn facts_come_from_the_keys_tasks() {
        let t = |id: &str, state, reason: Option<&str>, closed: Option<i64>| KeyTask {
            id: id.into(),
            state,
            open: matches!(state, State::Queued | State::Claimed),
            closed_reason: reason.map(str::to_string),
            closed_at: closed,
        };
        let tasks = [
            t("old", State::Cancelled, Some(RESOLVED), Some(10)),
            t("new", State::Cancelled, Some(RESOLVED), Some(50)),
            t("by-hand", State::Cancelled, Some("operator"), Some(60)),
            t("done", State::Done, None, Some(40)),
        ];
        let facts = KeyFacts::from_tasks(&tasks, 20, Some(30));
        assert_eq!(facts.open, None);
        assert!(facts.ever);
        assert_eq!(facts.cancelled_recently.as_deref(), Some("new"));
        assert_eq!(facts.done_in_episode.as_deref(), Some("done"));
        let facts = KeyFacts::from_tasks(&tasks, 55, Some(45));
        assert_eq!(facts.cancelled_recently, None, "outside the window");
        assert_eq!(facts.done_in_episode, None, "done before this episode");
        let open = [t("q", State::Queued, None, None)];
        assert_eq!(
            KeyFacts::from_tasks(&open, 0, None).open.as_deref(),
            Some("q")
        );
        assert_eq!(KeyFacts::from_tasks(&[], 0, None), KeyFacts::default());
    }

    #[test]
    fn a_resolve_cancels_queued_and_notes_claimed() {
        assert_eq!(on_resolve(Some(State::Queued)), OnResolve::Cancel);
        assert_eq!(on_resolve(Some(State::Claimed)), OnResolve::Note);
        assert_eq!(on_resolve(None), OnResolve::Nothing);
        assert_eq!(on_resolve(Some(State::Done)), OnResolve::Nothing);
    }

    /// The scenarios against an in-memory model built from the functions above: what the store
    /// must also do (the integration test runs the same table on SQLite and PostgreSQL).
    #[test]
    fn every_scenario_holds_in_the_model() {
        for s in scenarios() {
            let got = model(&s);
            assert_eq!(got, s.expect, "{}", s.name);
        }
    }

    #[derive(Debug, Clone)]
    struct ModelTask {
        kind: Kind,
        state: State,
        closed_reason: Option<String>,
        closed_at: Option<i64>,
    }

    /// Runs a scenario: one fix action and one announcement per event, like the shipped rules.
    fn model(s: &Scenario) -> Expect {
        let minute = 60_000;
        // Real time runs far ahead of the alert's clock, as in the store test.
        let mut now = 100 * minute;
        let window = s.reopen_window_minutes * minute;
        let mut row: Option<EpisodeRow> = None;
        let mut tasks: Vec<ModelTask> = Vec::new();
        let mut announced: Vec<(bool, i64)> = Vec::new();
        let (mut reopened, mut stale, mut duplicates, mut noted) = (0, 0, 0, 0);
        for step in &s.steps {
            now += 1;
            let ev = match *step {
                Step::Fire(m) => fire(m * minute),
                Step::Resolve(a, b) => resolve(a * minute, b * minute),
                Step::Claim | Step::Complete => {
                    if let Some(t) = tasks.iter_mut().find(|t| {
                        t.kind == Kind::Fix && matches!(t.state, State::Queued | State::Claimed)
                    }) {
                        if *step == Step::Claim {
                            t.state = State::Claimed;
                        } else {
                            t.state = State::Done;
                            t.closed_at = Some(now);
                        }
                    }
                    continue;
                }
            };
            let t = transition(row.as_ref(), &ev, now);
            let p = plan_event(t, ev.firing);
            match p.tally {
                Tally::Stale => stale += 1,
                Tally::Duplicate => duplicates += 1,
                Tally::Nothing => {}
            }
            match p.row {
                RowWrite::Keep if t == Transition::New => {
                    row = Some(EpisodeRow {
                        firing: ev.firing,
                        starts_at: ev.starts_at,
                        resolved_at: (!ev.firing).then(|| ev.at(now)),
                    })
                }
                RowWrite::Keep | RowWrite::Touch => {}
                RowWrite::Fire => {
                    row = Some(EpisodeRow {
                        firing: true,
                        starts_at: ev.starts_at,
                        resolved_at: None,
                    })
                }
                RowWrite::Resolve => {
                    if let Some(r) = row.as_mut() {
                        r.firing = false;
                        r.resolved_at = Some(ev.at(now));
                    }
                }
            }
            if p.close_tasks {
                let open = tasks.iter_mut().find(|t| {
                    t.kind == Kind::Fix && matches!(t.state, State::Queued | State::Claimed)
                });
                let state = open.as_ref().map(|t| t.state);
                match (on_resolve(state), open) {
                    (OnResolve::Cancel, Some(t)) => {
                        t.state = State::Cancelled;
                        t.closed_reason = Some(RESOLVED.into());
                        t.closed_at = Some(now);
                    }
                    (OnResolve::Note, Some(_)) => noted += 1,
                    _ => {}
                }
            }
            if ev.firing && p.place_work {
                let keyed: Vec<KeyTask> = tasks
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.kind == Kind::Fix)
                    .map(|(i, t)| KeyTask {
                        id: i.to_string(),
                        state: t.state,
                        open: matches!(t.state, State::Queued | State::Claimed),
                        closed_reason: t.closed_reason.clone(),
                        closed_at: t.closed_at,
                    })
                    .collect();
                let facts = KeyFacts::from_tasks(&keyed, now - window, Some(ev.starts_at));
                match place(Kind::Fix, &facts) {
                    Placement::Create => tasks.push(ModelTask {
                        kind: Kind::Fix,
                        state: State::Queued,
                        closed_reason: None,
                        closed_at: None,
                    }),
                    Placement::Reopen(id) | Placement::Requeue(id) => {
                        if let Some(t) = id.parse::<usize>().ok().and_then(|i| tasks.get_mut(i)) {
                            t.state = State::Queued;
                            t.closed_reason = None;
                            t.closed_at = None;
                            reopened += 1;
                        }
                    }
                    Placement::Absorb(_) => {}
                }
            }
            // One announcement per event (status and startsAt), however often it is delivered.
            let key = (ev.firing, ev.starts_at);
            if p.announce && !announced.contains(&key) {
                announced.push(key);
            }
        }
        Expect {
            fix_tasks: tasks.iter().map(|t| t.state).collect(),
            announcements: announced.len(),
            reopened,
            stale,
            duplicates,
            noted,
        }
    }
}
