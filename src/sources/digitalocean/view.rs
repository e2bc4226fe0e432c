//! Builds the domain's deployment view from the API's deployment.

use super::types;
use crate::domain::{DeploymentView, StepView};

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
