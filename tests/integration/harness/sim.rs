//! `SimBuilder`: one way to start the DigitalOcean simulator on loopback with apps, deployments and
//! a required token, instead of each test module repeating `Simulator::new` + `serve`.

use std::net::SocketAddr;
use std::ops::Deref;
use std::time::Duration;

use do_simulator::{Script, Simulator};

/// The step most tests use: short enough for a lifecycle in under a second, long enough that a
/// 100 ms fast poll sees every phase.
const DEFAULT_STEP: Duration = Duration::from_millis(150);

#[derive(Debug, Clone)]
pub struct SimBuilder {
    step: Duration,
    apps: Vec<(String, String)>,
    deployments: Vec<(String, String, Script)>,
    token: Option<String>,
}

impl Default for SimBuilder {
    fn default() -> Self {
        SimBuilder::new()
    }
}

impl SimBuilder {
    pub fn new() -> SimBuilder {
        SimBuilder {
            step: DEFAULT_STEP,
            apps: Vec::new(),
            deployments: Vec::new(),
            token: None,
        }
    }

    /// How long each lifecycle step takes (default 150 ms).
    pub fn step(mut self, step: Duration) -> SimBuilder {
        self.step = step;
        self
    }

    /// An app with one settled ACTIVE deployment of `commit`.
    pub fn app(mut self, name: &str, commit: &str) -> SimBuilder {
        self.apps.push((name.to_string(), commit.to_string()));
        self
    }

    /// A deployment of `commit` to `app` following `script`, started when the simulator starts.
    pub fn script(mut self, app: &str, commit: &str, script: Script) -> SimBuilder {
        self.deployments
            .push((app.to_string(), commit.to_string(), script));
        self
    }

    /// Accept only this bearer token (default: any non-empty one).
    pub fn require_token(mut self, token: &str) -> SimBuilder {
        self.token = Some(token.to_string());
        self
    }

    /// Serves on 127.0.0.1:0. The server task runs until the test's runtime ends.
    pub async fn start(self) -> SimHandle {
        let sim = Simulator::new(self.step);
        for (name, commit) in &self.apps {
            sim.add_app(name, commit);
        }
        for (app, commit, script) in &self.deployments {
            if sim.deploy(app, commit, *script).is_none() {
                panic!("SimBuilder: script for {app:?}, which no .app() added");
            }
        }
        if let Some(t) = &self.token {
            sim.require_token(Some(t));
        }
        let (addr, _task) = sim
            .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap_or_else(|e| panic!("the simulator binds 127.0.0.1:0: {e}"));
        SimHandle {
            url: format!("http://{addr}"),
            sim,
        }
    }
}

/// A started simulator: derefs to `Simulator` for the controls (`deploy`, `inject`, …).
#[derive(Clone)]
pub struct SimHandle {
    pub sim: Simulator,
    /// `http://127.0.0.1:PORT`, the `api_url` to configure.
    pub url: String,
}

impl Deref for SimHandle {
    type Target = Simulator;
    fn deref(&self) -> &Simulator {
        &self.sim
    }
}

impl SimHandle {
    /// The URL of a simulated app's health endpoint (`which`: `live` or `ready`).
    pub fn health_url(&self, app: &str, which: &str) -> String {
        format!("{}/sim/apps/{app}/health/{which}", self.url)
    }
}
