//! The episode rules as whole stories: the table the pure model (unit tests) and both stores
//! (`tests/integration/episodes.rs`) must agree with.

use crate::tasks::State;

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
