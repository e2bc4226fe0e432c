//! Which deployment of an app is inside its post-deploy verification window, and the suspect
//! commit range it carries. Pure.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::deployment::AppView;

/// The deployment a verification window watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowTarget {
    pub app: String,
    pub app_id: String,
    pub deployment_id: String,
    pub commit: Option<String>,
    /// The previous ACTIVE deployment's commit: the suspect range runs from it to `commit`.
    pub previous_commit: Option<String>,
    /// When the deployment went ACTIVE.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The app's ACTIVE deployment when it went ACTIVE less than `window` ago (plus `grace`, so the
/// verdict of a window that just closed is still written). `None` when verification is off
/// (`window` zero), nothing is active, or the window is long over.
pub fn target(
    view: &AppView,
    window: Duration,
    grace: Duration,
    now: DateTime<Utc>,
) -> Option<WindowTarget> {
    if window.is_zero() {
        return None;
    }
    let active = view.active.as_ref()?;
    let start = active.ended_at.or(active.created_at)?;
    let end = start + chrono::Duration::from_std(window).ok()?;
    let grace = chrono::Duration::from_std(grace).ok()?;
    if now > end + grace || now < start {
        return None;
    }
    Some(WindowTarget {
        app: view.name.clone(),
        app_id: view.id.clone(),
        deployment_id: active.id.clone(),
        commit: active.commit.clone(),
        previous_commit: view.previous_good_commit.clone(),
        start,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeploymentView, Phase};

    fn view(active_at: Option<DateTime<Utc>>) -> AppView {
        AppView {
            id: "a1".into(),
            name: "api".into(),
            active: active_at.map(|t| DeploymentView {
                id: "d2".into(),
                phase: Phase::Active,
                cause: None,
                commit: Some("bbb".into()),
                created_at: Some(t - chrono::Duration::minutes(5)),
                ended_at: Some(t),
                trace_id: String::new(),
                steps: vec![],
            }),
            previous_good_commit: Some("aaa".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_deployment_is_watched_from_active_to_the_end_of_its_window() {
        let now = Utc::now();
        let ten = Duration::from_secs(600);
        let grace = Duration::from_secs(60);
        let m = chrono::Duration::minutes;
        // (what, active at, window, watched)
        let cases = [
            ("just active", Some(now - m(1)), ten, true),
            ("near the end", Some(now - m(9)), ten, true),
            (
                "closed, within grace",
                Some(now - chrono::Duration::seconds(630)),
                ten,
                true,
            ),
            ("long over", Some(now - m(30)), ten, false),
            ("verification off", Some(now - m(1)), Duration::ZERO, false),
            ("nothing active", None, ten, false),
        ];
        for (what, at, window, watched) in cases {
            let t = target(&view(at), window, grace, now);
            assert_eq!(t.is_some(), watched, "{what}");
            if let (Some(t), Some(at)) = (t, at) {
                assert_eq!(t.start, at, "{what}: starts at ACTIVE");
                assert_eq!(t.commit.as_deref(), Some("bbb"));
                assert_eq!(
                    t.previous_commit.as_deref(),
                    Some("aaa"),
                    "{what}: suspect range"
                );
            }
        }
    }
}
