//! Every arm of the state machine as a table, and the scenarios against an in-memory model.

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
            let open = tasks
                .iter_mut()
                .find(|t| t.kind == Kind::Fix && matches!(t.state, State::Queued | State::Claimed));
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
