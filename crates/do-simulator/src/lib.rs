//! A DigitalOcean App Platform simulator, built from the public OpenAPI spec's paths and example
//! payloads: the one fake in deploywatch's tests, and the data source of `deploywatch demo`.
//!
//! Deployments follow scripted lifecycles whose phase is computed from elapsed time, so a test can
//! predict exactly what the poller must see. Faults (429 with `retry-after`, 5xx streaks, hangs,
//! malformed, truncated or HTML bodies) are queued and consumed one request at a time. Every API
//! request is counted so tests and benchmarks can check the request budget.
//!
//! deploywatch's production library does not link this crate except through its `demo` command.

mod answers;
mod faults;
mod prometheus;
mod routes;
mod runtime;
mod runtime_routes;
mod scripts;
mod state;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;

pub use faults::Fault;
pub use state::Script;
use state::{SimApp, SimDeployment, SimState, lock};

/// A handle to the simulator's state; cheap to clone.
#[derive(Clone)]
pub struct Simulator {
    pub(crate) state: Arc<Mutex<SimState>>,
}

impl Simulator {
    /// A simulator whose deployments advance one lifecycle step every `step`.
    pub fn new(step: Duration) -> Simulator {
        Simulator {
            state: Arc::new(Mutex::new(SimState {
                apps: Vec::new(),
                step,
                faults: VecDeque::new(),
                requests: 0,
                requests_by_path: HashMap::new(),
                base_url: String::new(),
                health_override: HashMap::new(),
                next_id: 1,
                failing_list_page: None,
                valid_token: None,
                prom_series: HashMap::new(),
            })),
        }
    }

    pub(crate) fn next_uuid(s: &mut SimState) -> String {
        s.next_id += 1;
        // Deterministic ids keep test output stable and look like the API's UUIDs.
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            s.next_id * 7919,
            s.next_id % 65536,
            s.next_id % 4096,
            (s.next_id * 31) % 4096,
            s.next_id * 104729
        )
    }

    /// Adds an app with one ACTIVE deployment of `commit`, ended long enough ago to be settled.
    pub fn add_app(&self, name: &str, commit: &str) -> String {
        let mut s = lock(&self.state);
        let id = Self::next_uuid(&mut s);
        let dep = SimDeployment {
            id: Self::next_uuid(&mut s),
            script: Script::Success,
            created: Utc::now() - chrono::Duration::hours(1),
            commit: commit.to_string(),
            cause: format!("commit {} pushed to github/acme/{name}", prefix(commit, 7)),
            cause_type: "GIT_PUSH".into(),
            canceled_at: None,
        };
        s.apps.push(SimApp {
            id: id.clone(),
            name: name.to_string(),
            region: "ams".into(),
            branch: "main".into(),
            repo: format!("acme/{name}"),
            deployments: vec![dep],
            pinned: None,
            before_rollback: None,
        });
        id
    }

    /// Starts a new deployment of `commit` following `script`; returns its id.
    pub fn deploy(&self, app: &str, commit: &str, script: Script) -> Option<String> {
        self.deploy_with_cause(app, commit, script, "GIT_PUSH")
    }

    pub fn deploy_with_cause(
        &self,
        app: &str,
        commit: &str,
        script: Script,
        cause_type: &str,
    ) -> Option<String> {
        let mut s = lock(&self.state);
        let id = Self::next_uuid(&mut s);
        let a = s.apps.iter_mut().find(|a| a.name == app || a.id == app)?;
        let cause = match cause_type {
            "GIT_PUSH" => format!("commit {} pushed to github/{}", prefix(commit, 7), a.repo),
            other => other.to_ascii_lowercase().replace('_', " "),
        };
        a.deployments.insert(
            0,
            SimDeployment {
                id: id.clone(),
                script,
                created: Utc::now(),
                commit: commit.to_string(),
                cause,
                cause_type: cause_type.to_string(),
                canceled_at: None,
            },
        );
        Some(id)
    }

    pub fn cancel(&self, app: &str, deployment_id: &str) {
        let mut s = lock(&self.state);
        if let Some(a) = s.apps.iter_mut().find(|a| a.name == app || a.id == app)
            && let Some(d) = a.deployments.iter_mut().find(|d| d.id == deployment_id)
        {
            d.canceled_at = Some(Utc::now());
        }
    }

    pub fn app_id(&self, name: &str) -> Option<String> {
        lock(&self.state)
            .apps
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.id.clone())
    }

    pub fn is_pinned(&self, app: &str) -> bool {
        lock(&self.state)
            .apps
            .iter()
            .any(|a| (a.name == app || a.id == app) && a.pinned.is_some())
    }

    pub fn inject(&self, fault: Fault) {
        lock(&self.state).faults.push_back(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    pub fn requests(&self) -> u64 {
        lock(&self.state).requests
    }

    pub fn requests_to(&self, path_prefix: &str) -> u64 {
        lock(&self.state)
            .requests_by_path
            .iter()
            .filter(|(p, _)| p.starts_with(path_prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// Makes an app's health endpoint answer `status` and report `commit` (or the active one).
    pub fn set_health(&self, app: &str, status: u16, commit: Option<&str>) {
        lock(&self.state)
            .health_override
            .insert(app.to_string(), (status, commit.map(str::to_string)));
    }

    /// Accepts only `token` from now on (`None`: any non-empty token).
    pub fn require_token(&self, token: Option<&str>) {
        lock(&self.state).valid_token = token.map(str::to_string);
    }

    /// Makes page `page` (1-based) of the app list answer 500 until called with `None`.
    pub fn fail_list_page(&self, page: Option<usize>) {
        lock(&self.state).failing_list_page = page;
    }

    pub fn set_step(&self, step: Duration) {
        lock(&self.state).step = step;
    }

    /// Serves on `addr` (port 0 for any); returns the bound address.
    pub async fn serve(
        &self,
        addr: SocketAddr,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        lock(&self.state).base_url = format!("http://{local}");
        let router = self.router();
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok((local, handle))
    }

    pub fn base_url(&self) -> String {
        lock(&self.state).base_url.clone()
    }
}

/// The first `n` characters of `s` (a short commit): never cuts a character in two, so an
/// unexpected non-ASCII commit cannot panic the simulator. deploywatch has its own copy; this crate
/// does not depend on deploywatch.
fn prefix(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_runtime;
