//! From DigitalOcean's answers to the verdict's inputs. Pure.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::probe::{FailureReason, ProbeView};
use crate::domain::verification::{CommitReading, ComponentInput, InstanceSeries, ReplicaReading};
use crate::sources::digitalocean::types::{AppHealth, MetricMatrix};

/// Which series of a component a matrix fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Restarts,
    Memory,
    Cpu,
}

/// Adds a monitoring matrix to the components it names (a series without a component label
/// belongs to `default_component`, the app's only component when it has one).
pub(super) fn add_matrix(
    components: &mut BTreeMap<String, ComponentInput>,
    m: &MetricMatrix,
    kind: Kind,
    default_component: &str,
) {
    for s in &m.series {
        let name = s
            .component
            .clone()
            .unwrap_or_else(|| default_component.to_string());
        let c = components
            .entry(name.clone())
            .or_insert_with(|| ComponentInput {
                name,
                ..Default::default()
            });
        let series = InstanceSeries {
            instance: s.instance.clone().unwrap_or_else(|| "instance".into()),
            points: s.points.clone(),
        };
        match kind {
            Kind::Restarts => c.restarts.push(series),
            Kind::Memory => c.memory_percent.push(series),
            Kind::Cpu => c.cpu_percent.push(series),
        }
    }
}

/// Adds one health answer's replica counts to the components' readings.
pub(super) fn add_health(
    components: &mut BTreeMap<String, ComponentInput>,
    readings: &mut BTreeMap<String, Vec<ReplicaReading>>,
    h: &AppHealth,
    at: DateTime<Utc>,
) {
    for c in &h.components {
        let Some(name) = c.name.clone() else { continue };
        if let (Some(ready), Some(desired)) = (c.replicas_ready, c.replicas_desired) {
            readings
                .entry(name.clone())
                .or_default()
                .push(ReplicaReading { at, ready, desired });
        }
        components
            .entry(name.clone())
            .or_insert_with(|| ComponentInput {
                name,
                ..Default::default()
            });
    }
}

/// What a serving-commit probe (`expect_active_commit`) says the app serves: the expected commit
/// when it passed, the commit its body named when it failed the check, nothing otherwise.
pub(super) fn commit_reading(p: &ProbeView, expected: &str) -> Option<CommitReading> {
    let at = p.checked_at?;
    let r = p.last_result.as_ref()?;
    if r.ok {
        return Some(CommitReading {
            at,
            expected: expected.to_string(),
            serving: Some(expected.to_string()),
        });
    }
    let detail = r.detail.as_deref().unwrap_or("");
    if r.reason != Some(FailureReason::Body) || !detail.contains("but the ACTIVE deployment is") {
        return None;
    }
    // "<field> is <served> but the ACTIVE deployment is <want>: …"
    let served = detail
        .split(" is ")
        .nth(1)
        .and_then(|rest| rest.split(" but ").next())
        .map(str::to_string);
    Some(CommitReading {
        at,
        expected: expected.to_string(),
        serving: served,
    })
}

/// Restarts of a component since `start`: per instance, the rises of its counter after `start`
/// (a drop is a new instance counting from zero), summed.
pub(super) fn restarts_since(c: &ComponentInput, start: DateTime<Utc>) -> f64 {
    c.restarts
        .iter()
        .map(|s| {
            let mut prev: Option<f64> = None;
            let mut n = 0.0;
            for (t, v) in s.points.iter().filter(|(_, v)| v.is_finite() && *v >= 0.0) {
                if *t > start {
                    n += match prev {
                        Some(p) if *v >= p => v - p,
                        Some(_) => *v,
                        None => *v,
                    };
                }
                prev = Some(*v);
            }
            n
        })
        .sum()
}

/// The latest sample of the component's busiest instance.
pub(super) fn latest_max(series: &[InstanceSeries]) -> Option<f64> {
    series
        .iter()
        .filter_map(|s| s.points.last().map(|p| p.1))
        .filter(|v| v.is_finite())
        .reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(points: &[(i64, f64)]) -> InstanceSeries {
        InstanceSeries {
            instance: "i1".into(),
            points: points
                .iter()
                .map(|(s, v)| (DateTime::from_timestamp(*s, 0).unwrap_or_default(), *v))
                .collect(),
        }
    }

    #[test]
    fn restarts_count_the_rises_after_the_start() {
        let start = DateTime::from_timestamp(100, 0).unwrap_or_default();
        // (what, points, want)
        let cases = [
            ("nothing after start", vec![(50, 3.0), (90, 3.0)], 0.0),
            (
                "rises after start",
                vec![(90, 1.0), (110, 2.0), (120, 4.0)],
                3.0,
            ),
            (
                "a new instance counts from zero",
                vec![(90, 5.0), (110, 1.0), (120, 2.0)],
                2.0,
            ),
            ("first seen inside the window", vec![(110, 2.0)], 2.0),
            (
                "NaN is skipped",
                vec![(90, 1.0), (110, f64::NAN), (120, 2.0)],
                1.0,
            ),
        ];
        for (what, pts, want) in cases {
            let c = ComponentInput {
                name: "web".into(),
                restarts: vec![series(&pts)],
                ..Default::default()
            };
            assert_eq!(restarts_since(&c, start), want, "{what}");
        }
        assert_eq!(
            latest_max(&[series(&[(1, 10.0), (2, 40.0)]), series(&[(1, 70.0)])]),
            Some(70.0)
        );
        assert_eq!(latest_max(&[]), None);
    }
}
