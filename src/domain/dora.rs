//! DORA arithmetic: what one ended deployment adds to the four key figures. Pure.
//!
//! A change is any deployment that ended other than canceled; a change failed when it failed or
//! was a rollback (the release it replaced had failed); a deployment counts toward deployment
//! frequency (and its lead time) when it succeeded and was not a rollback. Recovery time is the
//! time from a failure to the next success, measured by the store.

use super::phase::Outcome;

/// One ended deployment, as the store keeps it (a fact keyed by deployment id, recorded once).
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentOutcome {
    pub deployment_id: String,
    pub app: String,
    pub outcome: Outcome,
    /// Created to terminal phase.
    pub duration_seconds: Option<f64>,
    /// The deployed commit's time to the deployment's end.
    pub lead_time_seconds: Option<f64>,
    /// From the failure this success ends, when it ends one.
    pub recovery_seconds: Option<f64>,
    /// Autoscaling and maintenance deployments are not the team's changes.
    pub excluded_from_dora: bool,
    pub rollback: bool,
    pub ended_at_ms: i64,
}

/// What the deployment adds to the DORA counters and histograms.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DoraEffect {
    pub change: bool,
    pub change_failure: bool,
    pub deployment: bool,
    pub lead_time_seconds: Option<f64>,
    pub recovery_seconds: Option<f64>,
}

pub fn effect(d: &DeploymentOutcome) -> DoraEffect {
    if d.excluded_from_dora {
        return DoraEffect::default();
    }
    let deployment = d.outcome == Outcome::Success && !d.rollback;
    DoraEffect {
        change: d.outcome != Outcome::Canceled,
        change_failure: d.outcome == Outcome::Failure || d.rollback,
        deployment,
        lead_time_seconds: d.lead_time_seconds.filter(|_| deployment),
        recovery_seconds: d.recovery_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(outcome: Outcome, rollback: bool, excluded: bool) -> DeploymentOutcome {
        DeploymentOutcome {
            deployment_id: "d1".into(),
            app: "api".into(),
            outcome,
            duration_seconds: None,
            ended_at_ms: 0,
            rollback,
            excluded_from_dora: excluded,
            lead_time_seconds: Some(60.0),
            recovery_seconds: None,
        }
    }

    #[test]
    fn each_outcome_adds_what_dora_means() {
        use Outcome::*;
        // (what, deployment, change, change_failure, counted deployment, lead time)
        let cases = [
            (
                "success",
                ended(Success, false, false),
                true,
                false,
                true,
                Some(60.0),
            ),
            (
                "failure",
                ended(Failure, false, false),
                true,
                true,
                false,
                None,
            ),
            (
                "canceled",
                ended(Canceled, false, false),
                false,
                false,
                false,
                None,
            ),
            (
                "rollback",
                ended(Success, true, false),
                true,
                true,
                false,
                None,
            ),
            (
                "own rollback",
                ended(Success, true, true),
                false,
                false,
                false,
                None,
            ),
        ];
        for (what, d, change, failure, deployment, lead) in cases {
            let e = effect(&d);
            assert_eq!(e.change, change, "{what}: change");
            assert_eq!(e.change_failure, failure, "{what}: change failure");
            assert_eq!(e.deployment, deployment, "{what}: deployment");
            assert_eq!(e.lead_time_seconds, lead, "{what}: lead time");
        }
    }
}
