//! The App Platform endpoints deploywatch calls, each one request (or one paged listing) through
//! the budgeted, retrying client.

use url::Url;

use super::client::Client;
use super::errors::{
    DoError, next_page_url, parse_deployment_envelope, seg, tail_lines, without_url,
};
use super::types::{self, App, Deployment, LogsResponse, RollbackValidation};

/// Apps read from the paginated list; `incomplete` holds the error of a page that failed after
/// others were read (the apps read so far are kept).
#[derive(Debug, Default)]
pub struct AppsListing {
    pub apps: Vec<App>,
    pub skipped: usize,
    pub incomplete: Option<DoError>,
}

/// How much of a log is read: only its end matters (bounds memory for a large log).
const LOG_TAIL_BYTES: usize = 256 * 1024;

impl Client {
    /// Every app, following `links.pages.next`. Returns the apps and how many were skipped as
    /// malformed; any failing page fails the call.
    pub async fn list_apps(&self) -> Result<(Vec<App>, usize), DoError> {
        let l = self.list_apps_partial().await?;
        match l.incomplete {
            Some(e) => Err(e),
            None => Ok((l.apps, l.skipped)),
        }
    }

    /// Every app, following `links.pages.next` as given (absolute or relative, same origin only).
    /// Fails only when the first page fails; a later failing page keeps what was read.
    pub async fn list_apps_partial(&self) -> Result<AppsListing, DoError> {
        let mut url = self.url("/v2/apps?per_page=200")?;
        let mut out = AppsListing::default();
        for page in 0..100 {
            let res = self
                .send_to(reqwest::Method::GET, url.clone(), "/v2/apps", None)
                .await
                .and_then(|body| {
                    types::parse_apps_page(&body).map_err(|e| DoError::Decode(e.to_string()))
                })
                .and_then(|(apps, s, next)| {
                    let next = next
                        .filter(|n| !n.is_empty())
                        .map(|n| next_page_url(self.base(), &n))
                        .transpose()?;
                    Ok((apps, s, next))
                });
            match res {
                Ok((apps, s, next)) => {
                    out.apps.extend(apps);
                    out.skipped += s;
                    match next {
                        Some(n) => url = n,
                        None => break,
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

    pub async fn list_deployments(
        &self,
        app_id: &str,
        per_page: u32,
    ) -> Result<(Vec<Deployment>, usize), DoError> {
        let path = format!("/v2/apps/{}/deployments?per_page={per_page}", seg(app_id));
        let body = self
            .send(
                reqwest::Method::GET,
                &path,
                "/v2/apps/{id}/deployments",
                None,
            )
            .await?;
        types::parse_deployments_page(&body).map_err(|e| DoError::Decode(e.to_string()))
    }

    pub async fn get_deployment(
        &self,
        app_id: &str,
        deployment_id: &str,
    ) -> Result<Deployment, DoError> {
        let path = format!(
            "/v2/apps/{}/deployments/{}",
            seg(app_id),
            seg(deployment_id)
        );
        let body = self
            .send(
                reqwest::Method::GET,
                &path,
                "/v2/apps/{id}/deployments/{id}",
                None,
            )
            .await?;
        parse_deployment_envelope(&body)
    }

    pub async fn get_app(&self, app_id: &str) -> Result<App, DoError> {
        #[derive(serde::Deserialize)]
        struct Env {
            app: App,
        }
        let body = self
            .send(
                reqwest::Method::GET,
                &format!("/v2/apps/{}", seg(app_id)),
                "/v2/apps/{id}",
                None,
            )
            .await?;
        serde_json::from_slice::<Env>(&body)
            .map(|e| e.app.normalize())
            .map_err(|e| DoError::Decode(e.to_string()))
    }

    /// The last `lines` lines of a deployment's aggregate BUILD or DEPLOY log. The endpoint answers
    /// with URLs; the text is fetched from them without the API token.
    pub async fn deployment_log_tail(
        &self,
        app_id: &str,
        deployment_id: &str,
        log_type: &str,
        lines: usize,
    ) -> Result<String, DoError> {
        let path = format!(
            "/v2/apps/{}/deployments/{}/logs?type={}&follow=false",
            seg(app_id),
            seg(deployment_id),
            seg(log_type)
        );
        let body = self
            .send(
                reqwest::Method::GET,
                &path,
                "/v2/apps/{id}/deployments/{id}/logs",
                None,
            )
            .await?;
        self.follow_log_urls(&body, lines).await
    }

    /// Fetches the first log URL of a logs answer that works and keeps its last `lines` lines.
    pub(super) async fn follow_log_urls(
        &self,
        body: &[u8],
        lines: usize,
    ) -> Result<String, DoError> {
        let logs: LogsResponse =
            serde_json::from_slice(body).map_err(|e| DoError::Decode(e.to_string()))?;
        let mut last_err = DoError::NotFound("log URL".into());
        for u in logs.urls() {
            let Ok(url) = Url::parse(u) else { continue };
            if !matches!(url.scheme(), "http" | "https") {
                continue;
            }
            match self.plain_http.get(url).send().await {
                Ok(r) if r.status().is_success() => {
                    let text = r
                        .bytes()
                        .await
                        .map_err(|e| DoError::Transport(without_url(&e)))?;
                    let start = text.len().saturating_sub(LOG_TAIL_BYTES);
                    return Ok(tail_lines(&String::from_utf8_lossy(&text[start..]), lines));
                }
                Ok(r) => {
                    last_err = DoError::Http {
                        status: r.status().as_u16(),
                        message: "log download failed".into(),
                    }
                }
                Err(e) => last_err = DoError::Transport(without_url(&e)),
            }
        }
        Err(last_err)
    }

    pub async fn validate_rollback(
        &self,
        app_id: &str,
        deployment_id: &str,
    ) -> Result<RollbackValidation, DoError> {
        let body = self
            .send(
                reqwest::Method::POST,
                &format!("/v2/apps/{}/rollback/validate", seg(app_id)),
                "/v2/apps/{id}/rollback/validate",
                Some(serde_json::json!({"deployment_id": deployment_id})),
            )
            .await?;
        serde_json::from_slice(&body).map_err(|e| DoError::Decode(e.to_string()))
    }

    pub async fn rollback(&self, app_id: &str, deployment_id: &str) -> Result<Deployment, DoError> {
        let body = self
            .send(
                reqwest::Method::POST,
                &format!("/v2/apps/{}/rollback", seg(app_id)),
                "/v2/apps/{id}/rollback",
                Some(serde_json::json!({"deployment_id": deployment_id, "skip_pin": false})),
            )
            .await?;
        parse_deployment_envelope(&body)
    }

    /// Commits a rollback (unpins the app). The spec declares 200 but the API sends no body.
    pub async fn commit_rollback(&self, app_id: &str) -> Result<(), DoError> {
        self.send(
            reqwest::Method::POST,
            &format!("/v2/apps/{}/rollback/commit", seg(app_id)),
            "/v2/apps/{id}/rollback/commit",
            None,
        )
        .await
        .map(|_| ())
    }

    pub async fn revert_rollback(&self, app_id: &str) -> Result<Deployment, DoError> {
        let body = self
            .send(
                reqwest::Method::POST,
                &format!("/v2/apps/{}/rollback/revert", seg(app_id)),
                "/v2/apps/{id}/rollback/revert",
                None,
            )
            .await?;
        parse_deployment_envelope(&body)
    }
}
