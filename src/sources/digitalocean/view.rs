//! The pure half of the poller: from what the API answered (an app and its recent deployments) to
//! the domain's view of the app. No I/O; the poller is the shell that fetches and publishes.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::types::{self, App as ApiApp, Deployment};
use crate::domain::{AppView, DeploymentView, FailureView, Outcome, StepView};

impl DeploymentView {
    pub fn from_api(d: &types::Deployment) -> DeploymentView {
        DeploymentView {
            id: d.id.clone(),
            phase: d.phase,
            cause: d.cause.clone(),
            commit: d.commit().map(str::to_string),
            created_at: d.created_at,
            ended_at: if d.phase.outcome().is_some() {
                d.ended_at()
            } else {
                None
            },
            trace_id: crate::telemetry::deployment_trace_id(&d.id).to_string(),
            steps: d
                .progress
                .as_ref()
                .map(|p| {
                    p.steps
                        .iter()
                        .map(|s| StepView {
                            name: s.name.clone(),
                            status: s.status.clone().unwrap_or_default(),
                            started_at: s.started_at,
                            ended_at: s.ended_at,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Folds the listing's freshest copies of the in-progress and active deployments into the list
/// read before, newest first.
pub fn merge_listed(deployments: &mut Vec<Deployment>, a: &ApiApp) {
    for d in [&a.in_progress_deployment, &a.active_deployment]
        .into_iter()
        .flatten()
    {
        match deployments.iter_mut().find(|x| x.id == d.id) {
            Some(x) => *x = d.clone(),
            None => deployments.insert(0, d.clone()),
        }
    }
    deployments.sort_by_key(|d| std::cmp::Reverse(d.created_at));
}

/// An app's view, and the in-progress deployment when it is stuck (with how long it has been).
#[derive(Debug)]
pub struct BuiltView {
    pub view: AppView,
    pub stuck: Option<(DeploymentView, Option<f64>)>,
}

/// Builds the app's view from the API app and its deployments (newest first). Each deployment's
/// view is built once.
pub fn app_view(
    a: &ApiApp,
    deployments: &[Deployment],
    last_failure: Option<FailureView>,
    now: DateTime<Utc>,
    stuck_after: Duration,
) -> BuiltView {
    let stuck_after = chrono::Duration::from_std(stuck_after).unwrap_or_default();
    let in_progress = a
        .in_progress_deployment
        .as_ref()
        .or_else(|| deployments.iter().find(|d| d.phase.in_progress()));
    let in_progress_view = in_progress.map(DeploymentView::from_api);
    let mut stuck = None;
    if let (Some(d), Some(v)) = (in_progress, &in_progress_view) {
        let since = d.phase_last_updated_at.or(d.created_at);
        if since.is_some_and(|s| now - s > stuck_after) {
            let secs = since.map(|s| (now - s).num_milliseconds() as f64 / 1000.0);
            stuck = Some((v.clone(), secs));
        }
    }
    let active = a.active_deployment.as_ref();
    let active_view = active.map(DeploymentView::from_api);
    let previous = deployments
        .iter()
        .filter(|d| d.phase.outcome() == Some(Outcome::Success))
        .find(|d| Some(&d.id) != active.map(|x| &x.id));
    let previous_good = previous.map(|d| d.id.clone());
    let previous_good_commit = previous.and_then(|d| d.commit().map(str::to_string));
    let latest_view = match (&in_progress_view, deployments.first()) {
        (Some(v), _) => Some(v.clone()),
        (None, Some(d)) => Some(DeploymentView::from_api(d)),
        (None, None) => active_view.clone(),
    };
    let last_ended = deployments.iter().find(|d| d.phase.outcome().is_some());
    let last_ended_view = match (last_ended, &latest_view) {
        (Some(d), Some(l)) if l.id == d.id => Some(l.clone()),
        (Some(d), _) => Some(DeploymentView::from_api(d)),
        (None, _) => None,
    };
    let mut health_paths = Vec::new();
    for c in a.spec.components() {
        if let Some(p) = c.health_check.as_ref().and_then(|h| h.http_path.clone()) {
            health_paths.push(("readiness".to_string(), p));
        }
        if let Some(p) = c
            .liveness_health_check
            .as_ref()
            .and_then(|h| h.http_path.clone())
        {
            health_paths.push(("liveness".to_string(), p));
        }
    }
    health_paths.sort();
    health_paths.dedup();
    BuiltView {
        view: AppView {
            id: a.id.clone(),
            name: a.name().to_string(),
            region: a.region_slug().to_string(),
            live_url: a.live_url.clone().or_else(|| a.default_ingress.clone()),
            branch: a
                .spec
                .components()
                .find_map(|c| c.branch().map(str::to_string)),
            health_paths,
            active: active_view,
            latest: latest_view,
            in_progress: in_progress_view,
            last_ended: last_ended_view,
            pinned_deployment_id: a.pinned_deployment.as_ref().map(|d| d.id.clone()),
            last_good_deployment_id: active.map(|d| d.id.clone()),
            previous_good_deployment_id: previous_good,
            previous_good_commit,
            last_failure,
            stuck: stuck.is_some(),
        },
        stuck,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Phase;

    fn dep(id: &str, phase: Phase, minutes_ago: i64, now: DateTime<Utc>) -> Deployment {
        Deployment {
            id: id.into(),
            phase,
            created_at: Some(now - chrono::Duration::minutes(minutes_ago)),
            ..Default::default()
        }
    }

    #[test]
    fn the_view_names_latest_active_previous_good_and_stuck() {
        let now = Utc::now();
        let stuck_after = Duration::from_secs(30 * 60);
        // (what, active, in-progress in the listing, deployments newest first, want latest,
        //  want previous good, want stuck)
        let cases = [
            (
                "steady: the active one is latest, the older success is the fallback",
                Some(dep("d2", Phase::Active, 60, now)),
                None,
                vec![
                    dep("d2", Phase::Active, 60, now),
                    dep("d1", Phase::Superseded, 120, now),
                ],
                Some("d2"),
                Some("d1"),
                false,
            ),
            (
                "a fresh deployment in progress is latest and not stuck",
                Some(dep("d1", Phase::Active, 120, now)),
                Some(dep("d2", Phase::Building, 5, now)),
                vec![
                    dep("d2", Phase::Building, 5, now),
                    dep("d1", Phase::Active, 120, now),
                ],
                Some("d2"),
                None,
                false,
            ),
            (
                "an hour in BUILDING is stuck",
                Some(dep("d1", Phase::Active, 120, now)),
                Some(dep("d2", Phase::Building, 60, now)),
                vec![
                    dep("d2", Phase::Building, 60, now),
                    dep("d1", Phase::Active, 120, now),
                ],
                Some("d2"),
                None,
                true,
            ),
            (
                "a failed newest deployment is latest; the active one stays active",
                Some(dep("d1", Phase::Active, 120, now)),
                None,
                vec![
                    dep("d2", Phase::Error, 10, now),
                    dep("d1", Phase::Active, 120, now),
                ],
                Some("d2"),
                None,
                false,
            ),
            (
                "no deployments at all",
                None,
                None,
                vec![],
                None,
                None,
                false,
            ),
        ];
        for (what, active, in_progress, deps, latest, previous, stuck) in cases {
            let a = ApiApp {
                id: "a1".into(),
                active_deployment: active,
                in_progress_deployment: in_progress,
                ..Default::default()
            };
            let b = app_view(&a, &deps, None, now, stuck_after);
            assert_eq!(
                b.view.latest.as_ref().map(|d| d.id.as_str()),
                latest,
                "{what}: latest"
            );
            assert_eq!(
                b.view.previous_good_deployment_id.as_deref(),
                previous,
                "{what}: previous good"
            );
            assert_eq!(b.view.stuck, stuck, "{what}: stuck");
            assert_eq!(b.stuck.is_some(), stuck, "{what}: stuck event");
        }
    }
}
