//! The App Platform calls of a running app, read while a deployment is being verified: component
//! health, the monitoring series, instances, the `RUN_RESTARTED` log, job invocations; and the
//! two deployment calls verification needs (cancel, a filtered and paged listing). Each is one
//! request (or one bounded paged listing) through the budgeted, retrying client.

use chrono::{DateTime, Utc};

use super::client::Client;
use super::errors::{DoError, next_page_url, parse_deployment_envelope, seg};
use super::types::{
    self, AppHealth, AppInstance, AppMetric, Deployment, JobInvocation, MetricMatrix,
};

/// Deployments read from a filtered, paged listing, newest first; `incomplete` holds the error of
/// a page that failed after others were read (the deployments read so far are kept).
#[derive(Debug, Default)]
pub struct DeploymentsListing {
    pub deployments: Vec<Deployment>,
    pub skipped: usize,
    pub incomplete: Option<DoError>,
}

/// Pages followed at most by one listing: a runaway `next` link cannot spend the budget.
const MAX_PAGES: usize = 20;

impl Client {
    /// `GET /v2/apps/{id}/health`: per-component state and replicas ready versus desired.
    pub async fn app_health(&self, app_id: &str) -> Result<AppHealth, DoError> {
        let body = self
            .send(
                reqwest::Method::GET,
                &format!("/v2/apps/{}/health", seg(app_id)),
                "/v2/apps/{id}/health",
                None,
            )
            .await?;
        types::parse_app_health(&body).map_err(|e| DoError::Decode(e.to_string()))
    }

    /// `GET /v2/monitoring/metrics/apps/{kind}`: one series per instance between `start` and
    /// `end` (Unix seconds on the wire), all components when `component` is `None`.
    pub async fn app_metric(
        &self,
        kind: AppMetric,
        app_id: &str,
        component: Option<&str>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<MetricMatrix, DoError> {
        let mut path = format!(
            "/v2/monitoring/metrics/apps/{}?app_id={}&start={}&end={}",
            kind.path(),
            seg(app_id),
            start.timestamp(),
            // Whole seconds on the wire: round the end up so the latest samples are inside.
            end.timestamp() + i64::from(end.timestamp_subsec_nanos() > 0)
        );
        if let Some(c) = component {
            path.push_str(&format!("&app_component={}", seg(c)));
        }
        let endpoint = match kind {
            AppMetric::RestartCount => "/v2/monitoring/metrics/apps/restart_count",
            AppMetric::CpuPercentage => "/v2/monitoring/metrics/apps/cpu_percentage",
            AppMetric::MemoryPercentage => "/v2/monitoring/metrics/apps/memory_percentage",
        };
        let body = self
            .send(reqwest::Method::GET, &path, endpoint, None)
            .await?;
        types::parse_metric_matrix(&body)
            .map_err(|e| DoError::Decode(format!("{} of app {app_id}: {e}", kind.path())))
    }

    /// `GET /v2/apps/{id}/instances`.
    pub async fn app_instances(&self, app_id: &str) -> Result<Vec<AppInstance>, DoError> {
        let body = self
            .send(
                reqwest::Method::GET,
                &format!("/v2/apps/{}/instances", seg(app_id)),
                "/v2/apps/{id}/instances",
                None,
            )
            .await?;
        types::parse_instances(&body).map_err(|e| DoError::Decode(e.to_string()))
    }

    /// The last `lines` lines of the app's `RUN_RESTARTED` log (what the restarted instances
    /// printed before they died: the panic, the OOM kill). Like the deployment logs, the API
    /// answers with URLs, fetched without the API token.
    pub async fn run_restarted_log_tail(
        &self,
        app_id: &str,
        lines: usize,
    ) -> Result<String, DoError> {
        let body = self
            .send(
                reqwest::Method::GET,
                &format!(
                    "/v2/apps/{}/logs?type=RUN_RESTARTED&follow=false",
                    seg(app_id)
                ),
                "/v2/apps/{id}/logs",
                None,
            )
            .await?;
        self.follow_log_urls(&body, lines).await
    }

    /// `GET /v2/apps/{id}/job-invocations[?deployment_id=]`, every page (bounded): the runs of
    /// the app's jobs, PRE_DEPLOY and POST_DEPLOY ones included.
    pub async fn job_invocations(
        &self,
        app_id: &str,
        deployment_id: Option<&str>,
    ) -> Result<Vec<JobInvocation>, DoError> {
        let mut path = format!("/v2/apps/{}/job-invocations?per_page=100", seg(app_id));
        if let Some(d) = deployment_id {
            path.push_str(&format!("&deployment_id={}", seg(d)));
        }
        let mut url = self.url(&path)?;
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let body = self
                .send_to(
                    reqwest::Method::GET,
                    url.clone(),
                    "/v2/apps/{id}/job-invocations",
                    None,
                )
                .await?;
            let (list, _skipped, next) = types::parse_job_invocations_page(&body)
                .map_err(|e| DoError::Decode(e.to_string()))?;
            out.extend(list);
            match next {
                Some(n) => url = next_page_url(self.base(), &n)?,
                None => break,
            }
        }
        Ok(out)
    }

    /// `GET /v2/apps/{id}/job-invocations/{invocation}`.
    pub async fn job_invocation(
        &self,
        app_id: &str,
        invocation_id: &str,
    ) -> Result<JobInvocation, DoError> {
        let body = self
            .send(
                reqwest::Method::GET,
                &format!(
                    "/v2/apps/{}/job-invocations/{}",
                    seg(app_id),
                    seg(invocation_id)
                ),
                "/v2/apps/{id}/job-invocations/{id}",
                None,
            )
            .await?;
        types::parse_job_invocation(&body)
            .map_err(|e| DoError::Decode(e.to_string()))?
            .ok_or_else(|| DoError::Decode("no job_invocation in the answer".into()))
    }

    /// `POST /v2/apps/{id}/deployments/{dep}/cancel`: the deployment as it is after the cancel.
    pub async fn cancel_deployment(
        &self,
        app_id: &str,
        deployment_id: &str,
    ) -> Result<Deployment, DoError> {
        let body = self
            .send(
                reqwest::Method::POST,
                &format!(
                    "/v2/apps/{}/deployments/{}/cancel",
                    seg(app_id),
                    seg(deployment_id)
                ),
                "/v2/apps/{id}/deployments/{id}/cancel",
                None,
            )
            .await?;
        parse_deployment_envelope(&body)
    }

    /// The app's deployments, newest first, following `links.pages.next` so a burst of more
    /// deployments than one page holds is not missed. `deployment_types` filters by cause
    /// (`MANUAL`, `DEPLOY_ON_PUSH`, `MANUAL_ROLLBACK`, …; empty: all); paging stops at the first
    /// page that reaches back before `since`, or after 20 pages. Fails only when the first page
    /// fails; a later failing page keeps what was read.
    pub async fn list_deployments_paged(
        &self,
        app_id: &str,
        deployment_types: &[&str],
        since: Option<DateTime<Utc>>,
        per_page: u32,
    ) -> Result<DeploymentsListing, DoError> {
        let mut path = format!(
            "/v2/apps/{}/deployments?per_page={}",
            seg(app_id),
            per_page.clamp(1, 200)
        );
        for t in deployment_types {
            path.push_str(&format!("&deployment_types={}", seg(t)));
        }
        let mut url = self.url(&path)?;
        let mut out = DeploymentsListing::default();
        for page in 0..MAX_PAGES {
            let res = self
                .send_to(
                    reqwest::Method::GET,
                    url.clone(),
                    "/v2/apps/{id}/deployments",
                    None,
                )
                .await
                .and_then(|body| {
                    types::parse_deployments_with_next(&body)
                        .map_err(|e| DoError::Decode(e.to_string()))
                })
                .and_then(|(deps, s, next)| {
                    let next = next.map(|n| next_page_url(self.base(), &n)).transpose()?;
                    Ok((deps, s, next))
                });
            match res {
                Ok((deps, s, next)) => {
                    let reached_since = since.is_some_and(|since| {
                        deps.iter()
                            .filter_map(|d| d.created_at)
                            .min()
                            .is_some_and(|oldest| oldest < since)
                    });
                    out.deployments.extend(deps);
                    out.skipped += s;
                    match next {
                        Some(n) if !reached_since => url = n,
                        _ => break,
                    }
                }
                Err(e) if page == 0 => return Err(e),
                Err(e) => {
                    out.incomplete = Some(e);
                    break;
                }
            }
        }
        Ok(out)
    }
}
