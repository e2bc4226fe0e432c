//! The verdict as a table: every reason, the noisy-sample cases, and the window's states.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().unwrap() + Duration::seconds(secs)
}

const OPEN: i64 = 120;
const CLOSED: i64 = 700;

fn window(now: i64) -> Window {
    Window {
        start: t(0),
        end: t(600),
        now: t(now),
    }
}

/// A series with one sample every 30 s from `from` seconds.
fn series(instance: &str, from: i64, values: &[f64]) -> InstanceSeries {
    InstanceSeries {
        instance: instance.into(),
        points: values
            .iter()
            .enumerate()
            .map(|(i, v)| (t(from + 30 * i as i64), *v))
            .collect(),
    }
}

fn component(restarts: &[f64], memory: &[f64]) -> ComponentInput {
    ComponentInput {
        name: "web".into(),
        restarts: vec![series("web-0", 30, restarts)],
        memory_percent: vec![series("web-0", 30, memory)],
        cpu_percent: vec![series("web-0", 30, &[12.0, 13.0])],
        replicas: vec![],
    }
}

fn replicas(ready: &[i64]) -> ComponentInput {
    ComponentInput {
        name: "web".into(),
        replicas: ready
            .iter()
            .enumerate()
            .map(|(i, r)| ReplicaReading {
                at: t(30 + 30 * i as i64),
                ready: *r,
                desired: 2,
            })
            .collect(),
        ..ComponentInput::default()
    }
}

fn probes(ok: &[bool]) -> Vec<ProbeReading> {
    ok.iter()
        .enumerate()
        .map(|(i, ok)| ProbeReading {
            at: t(15 + 15 * i as i64),
            ok: *ok,
        })
        .collect()
}

fn commits(serving: &[&str]) -> Vec<CommitReading> {
    serving
        .iter()
        .enumerate()
        .map(|(i, s)| CommitReading {
            at: t(20 + 20 * i as i64),
            expected: "9a4df0b8e1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6".into(),
            serving: Some(s.to_string()),
        })
        .collect()
}

fn query(kind: QueryKind, limit: Limit, baseline: &[f64], current: &[f64]) -> QueryInput {
    QueryInput {
        name: "p95".into(),
        kind,
        limit,
        baseline: baseline.to_vec(),
        current: current.to_vec(),
    }
}

fn inputs(now: i64) -> Inputs {
    Inputs {
        window: window(now),
        components: vec![],
        probes: vec![],
        commits: vec![],
        queries: vec![],
    }
}

const STEADY: [f64; 10] = [0.10, 0.11, 0.10, 0.12, 0.11, 0.10, 0.11, 0.12, 0.10, 0.11];
const DOUBLED: [f64; 10] = [0.22, 0.21, 0.24, 0.23, 0.22, 0.25, 0.21, 0.22, 0.24, 0.23];

#[test]
fn verdicts() {
    use QueryKind::*;
    use ReasonKind::*;
    use VerdictResult::*;
    let healthy = |now| Inputs {
        components: vec![component(&[0.0; 6], &[40.0; 6])],
        probes: probes(&[true; 8]),
        commits: commits(&["9a4df0b"]),
        queries: vec![query(Latency, Limit::Max(0.5), &STEADY, &STEADY[..9])],
        ..inputs(now)
    };
    let with = |f: &dyn Fn(&mut Inputs), now| {
        let mut i = inputs(now);
        f(&mut i);
        i
    };
    let mut noisy = STEADY[..9].to_vec();
    noisy[4] = 5.0;
    let rows: Vec<(&str, Inputs, VerdictResult, Vec<ReasonKind>)> = vec![
        ("healthy, window closed", healthy(CLOSED), Passed, vec![]),
        ("healthy, window open", healthy(OPEN), Pending, vec![]),
        ("no data, closed", inputs(CLOSED), Inconclusive, vec![]),
        ("no data, open", inputs(OPEN), Pending, vec![]),
        (
            "only NaN query samples are no data",
            with(
                &|i| i.queries = vec![query(Latency, Limit::Max(1.0), &[], &[f64::NAN; 9])],
                CLOSED,
            ),
            Inconclusive,
            vec![],
        ),
        (
            "crash loop: 4 restarts, memory low",
            with(
                &|i| i.components = vec![component(&[1.0, 2.0, 3.0, 4.0], &[30.0; 4])],
                OPEN,
            ),
            Failed,
            vec![CrashLoop],
        ),
        (
            "crash loop: restarts in two consecutive samples",
            with(
                &|i| i.components = vec![component(&[0.0, 0.0, 1.0, 2.0, 2.0], &[30.0; 5])],
                OPEN,
            ),
            Failed,
            vec![CrashLoop],
        ),
        (
            "two restarts far apart are no crash loop",
            with(
                &|i| i.components = vec![component(&[0.0, 1.0, 1.0, 1.0, 2.0, 2.0], &[30.0; 6])],
                CLOSED,
            ),
            Passed,
            vec![],
        ),
        (
            "an old instance's restarts before the window do not count",
            with(
                &|i| {
                    i.components = vec![ComponentInput {
                        name: "web".into(),
                        restarts: vec![series("web-old", -60, &[9.0, 10.0, 10.0, 10.0, 10.0])],
                        ..ComponentInput::default()
                    }]
                },
                CLOSED,
            ),
            Passed,
            vec![],
        ),
        (
            "a counter reset is a new instance, not negative restarts",
            with(
                &|i| {
                    i.components = vec![ComponentInput {
                        name: "web".into(),
                        restarts: vec![series("web-0", -30, &[5.0, 0.0, 0.0, 1.0, 1.0])],
                        ..ComponentInput::default()
                    }]
                },
                CLOSED,
            ),
            Passed,
            vec![],
        ),
        (
            "oom: memory climbs to 94% then restarts",
            with(
                &|i| {
                    i.components = vec![component(
                        &[0.0, 0.0, 0.0, 0.0, 1.0, 1.0],
                        &[60.0, 75.0, 88.0, 94.0, 35.0, 45.0],
                    )]
                },
                OPEN,
            ),
            Failed,
            vec![Oom],
        ),
        (
            "oom restarts are not also a crash loop",
            with(
                &|i| {
                    i.components = vec![component(
                        &[0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0],
                        &[80.0, 93.0, 40.0, 92.0, 40.0, 95.0, 40.0],
                    )]
                },
                OPEN,
            ),
            Failed,
            vec![Oom],
        ),
        (
            "restarts with memory low beside an oom: both",
            with(
                &|i| {
                    i.components = vec![component(
                        &[0.0, 1.0, 1.0, 2.0, 3.0, 4.0],
                        &[95.0, 30.0, 30.0, 30.0, 30.0, 30.0],
                    )]
                },
                OPEN,
            ),
            Failed,
            vec![CrashLoop, Oom],
        ),
        (
            "unhealthy: replicas not ready in most readings",
            with(
                &|i| i.components = vec![replicas(&[2, 0, 0, 1, 0, 2])],
                CLOSED,
            ),
            Failed,
            vec![Unhealthy],
        ),
        (
            "unhealthy ends the window early when the latest readings are bad",
            with(&|i| i.components = vec![replicas(&[0, 1, 0])], OPEN),
            Failed,
            vec![Unhealthy],
        ),
        (
            "a rollout's first unready readings are no verdict while it recovers",
            with(&|i| i.components = vec![replicas(&[0, 0, 1, 2, 2])], OPEN),
            Pending,
            vec![],
        ),
        (
            "ready in most readings passes",
            with(
                &|i| i.components = vec![replicas(&[1, 2, 2, 2, 1, 2])],
                CLOSED,
            ),
            Passed,
            vec![],
        ),
        (
            "probes failing in most of the window",
            with(
                &|i| i.probes = probes(&[true, false, false, true, false, false]),
                CLOSED,
            ),
            Failed,
            vec![Unhealthy],
        ),
        (
            "one failing probe is no verdict",
            with(&|i| i.probes = probes(&[true, false, true, true]), CLOSED),
            Passed,
            vec![],
        ),
        (
            "serving the wrong commit",
            with(&|i| i.commits = commits(&["9a4df0b", "1111111"]), CLOSED),
            Failed,
            vec![ServingWrongCommit],
        ),
        (
            "one wrong reading while open may be the old release draining",
            with(&|i| i.commits = commits(&["9a4df0b", "1111111"]), OPEN),
            Pending,
            vec![],
        ),
        (
            "two wrong readings while open fail early",
            with(&|i| i.commits = commits(&["1111111", "1111111"]), OPEN),
            Failed,
            vec![ServingWrongCommit],
        ),
        (
            "a full SHA in upper case matches",
            with(
                &|i| i.commits = commits(&["9A4DF0B8E1C2D3E4F5A6B7C8D9E0F1A2B3C4D5E6"]),
                CLOSED,
            ),
            Passed,
            vec![],
        ),
        (
            "latency doubled past max: rank test rejects",
            with(
                &|i| i.queries = vec![query(Latency, Limit::Max(0.2), &STEADY, &DOUBLED)],
                OPEN,
            ),
            Failed,
            vec![LatencyRegression],
        ),
        (
            "latency doubled but under max: the ratio still counts with enough samples",
            with(
                &|i| i.queries = vec![query(Latency, Limit::Max(0.5), &STEADY, &DOUBLED)],
                CLOSED,
            ),
            Failed,
            vec![LatencyRegression],
        ),
        (
            "a significant 10% shift under the limit and the ratio is not a regression",
            with(
                &|i| {
                    let up: Vec<f64> = STEADY.iter().map(|v| v * 1.1).collect();
                    i.queries = vec![query(Latency, Limit::Max(0.5), &STEADY, &up)]
                },
                CLOSED,
            ),
            Passed,
            vec![],
        ),
        (
            "one noisy sample among steady ones cannot fail a release",
            with(
                &|i| i.queries = vec![query(Latency, Limit::Max(0.2), &STEADY, &noisy)],
                CLOSED,
            ),
            Passed,
            vec![],
        ),
        (
            "a single huge sample cannot fail a release",
            with(
                &|i| i.queries = vec![query(Latency, Limit::Max(0.2), &STEADY, &[9.0])],
                CLOSED,
            ),
            Passed,
            vec![],
        ),
        (
            "few samples: 3x the baseline median and past max",
            with(
                &|i| {
                    i.queries = vec![query(
                        Latency,
                        Limit::Max(0.2),
                        &[0.1, 0.1, 0.11],
                        &[0.3, 0.31, 0.29],
                    )]
                },
                OPEN,
            ),
            Failed,
            vec![LatencyRegression],
        ),
        (
            "few samples: 3x the baseline but under max",
            with(
                &|i| {
                    i.queries = vec![query(
                        Latency,
                        Limit::Max(0.5),
                        &[0.1, 0.1, 0.11],
                        &[0.3, 0.31, 0.29],
                    )]
                },
                CLOSED,
            ),
            Passed,
            vec![],
        ),
        (
            "few samples: past max but near the baseline (it was already there)",
            with(
                &|i| {
                    i.queries = vec![query(
                        Latency,
                        Limit::Max(0.2),
                        &[0.25, 0.26, 0.24],
                        &[0.27, 0.28, 0.26],
                    )]
                },
                CLOSED,
            ),
            Passed,
            vec![],
        ),
        (
            "error rate from zero to 5% past a 1% max",
            with(
                &|i| {
                    i.queries = vec![query(
                        ErrorRate,
                        Limit::Max(0.01),
                        &[0.0; 10],
                        &[0.05, 0.04, 0.06, 0.05, 0.05, 0.07, 0.04, 0.05, 0.06, 0.05],
                    )]
                },
                OPEN,
            ),
            Failed,
            vec![ErrorRateRegression],
        ),
        (
            "no baseline: the limit alone, over enough samples",
            with(
                &|i| i.queries = vec![query(ErrorRate, Limit::Max(0.01), &[], &[0.05, 0.04, 0.06])],
                OPEN,
            ),
            Failed,
            vec![ErrorRateRegression],
        ),
        (
            "a min limit: throughput halved",
            with(
                &|i| {
                    let low: Vec<f64> = STEADY.iter().map(|v| v * 400.0).collect();
                    let high: Vec<f64> = STEADY.iter().map(|v| v * 1000.0).collect();
                    i.queries = vec![query(Latency, Limit::Min(60.0), &high, &low)]
                },
                CLOSED,
            ),
            Failed,
            vec![LatencyRegression],
        ),
    ];
    for (name, input, want, kinds) in rows {
        let v = judge(&input, &Rules::default());
        let got: Vec<ReasonKind> = v.reasons.iter().map(|r| r.kind).collect();
        assert_eq!((v.result, got), (want, kinds), "{name}: {v:#?}");
        for r in &v.reasons {
            assert!(!r.summary().is_empty());
        }
    }
}

#[test]
fn reasons_carry_their_numbers() {
    let mut i = inputs(OPEN);
    i.components = vec![component(
        &[0.0, 0.0, 0.0, 0.0, 1.0],
        &[60.0, 75.0, 88.0, 94.0, 35.0],
    )];
    i.queries = vec![query(
        QueryKind::Latency,
        Limit::Max(0.2),
        &STEADY,
        &DOUBLED,
    )];
    let v = judge(&i, &Rules::default());
    assert_eq!(v.result, VerdictResult::Failed);
    assert_eq!(
        v.reasons[0].evidence,
        Evidence::Oom {
            oom_restarts: 1.0,
            memory_before_percent: 94.0,
            memory_at_start_percent: Some(60.0),
        }
    );
    let Evidence::Regression {
        before_median,
        after_median,
        test,
        p_value,
        before_samples,
        after_samples,
        ..
    } = v.reasons[1].evidence
    else {
        panic!("{v:?}")
    };
    assert_eq!(before_median, Some(0.11));
    assert_eq!(after_median, 0.225);
    assert_eq!((before_samples, after_samples), (10, 10));
    assert_eq!(test, RegressionTest::MannWhitneyU);
    assert!(p_value.is_some_and(|p| p < 0.001), "{p_value:?}");
    let s = v.reasons[1].summary();
    assert!(
        s.contains("0.11") && s.contains("0.225") && s.contains("max 0.2"),
        "{s}"
    );
    // The evidence is stored as JSON with the reason's name.
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["result"], "failed");
    assert_eq!(json["reasons"][0]["kind"], "oom");
    assert_eq!(json["reasons"][0]["evidence"]["type"], "oom");
    assert_eq!(
        ReasonKind::ErrorRateRegression.as_str(),
        "error_rate_regression"
    );
    assert!(VerdictResult::Passed.is_final() && !VerdictResult::Pending.is_final());
}

#[test]
fn crash_loop_evidence_counts_before_and_after() {
    let mut i = inputs(CLOSED);
    i.components = vec![ComponentInput {
        name: "web".into(),
        restarts: vec![
            series("web-0", -30, &[2.0, 3.0, 5.0, 6.0]),
            series("web-1", 30, &[1.0, 1.0]),
        ],
        ..ComponentInput::default()
    }];
    let v = judge(&i, &Rules::default());
    assert_eq!(
        v.reasons[0].evidence,
        Evidence::Restarts {
            // web-0 read 3 at the window's start; web-1 started inside it from zero.
            restarts_before: 3.0,
            restarts_after: 7.0,
            consecutive_rising: 2,
        },
        "{v:?}"
    );
}
