//! One way to run the deploywatch binary as a separate process: `Deploywatch::new(dir)` builds the
//! command (working directory `dir`, stdin closed), `run()` waits for it and returns its exit code
//! and output, `spawn(log)` starts it with stdout and stderr in a log file and kills it when the
//! returned `Spawned` is dropped, so a failing assertion leaves no server behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use crate::helpers::{bin, free_port};

use super::poll::{seen, until};

/// A deploywatch command line being built.
pub struct Deploywatch {
    cmd: Command,
    dir: PathBuf,
    port: Option<u16>,
}

impl Deploywatch {
    /// `deploywatch` run in `dir` with stdin closed.
    pub fn new(dir: &Path) -> Deploywatch {
        let mut cmd = Command::new(bin());
        cmd.current_dir(dir).stdin(Stdio::null());
        Deploywatch {
            cmd,
            dir: dir.to_path_buf(),
            port: None,
        }
    }

    /// `deploywatch` run in the test's own working directory (a CLI client, which writes no
    /// files), with stdin closed.
    pub fn here() -> Deploywatch {
        let mut cmd = Command::new(bin());
        cmd.stdin(Stdio::null());
        Deploywatch {
            cmd,
            dir: std::env::temp_dir(),
            port: None,
        }
    }

    /// `deploywatch serve --listen 127.0.0.1:PORT` on a free port; `Spawned::url` is its address.
    pub fn serve(dir: &Path) -> Deploywatch {
        Deploywatch::new(dir).arg("serve").listen_on_free_port()
    }

    /// Adds `--listen 127.0.0.1:PORT` on a free port and remembers the URL.
    pub fn listen_on_free_port(mut self) -> Deploywatch {
        let port = free_port();
        self.cmd.args(["--listen", &format!("127.0.0.1:{port}")]);
        self.port = Some(port);
        self
    }

    pub fn arg(mut self, a: &str) -> Deploywatch {
        self.cmd.arg(a);
        self
    }

    pub fn args(mut self, args: &[&str]) -> Deploywatch {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Deploywatch {
        self.cmd.env(k, v);
        self
    }

    pub fn envs(mut self, pairs: &[(&str, &str)]) -> Deploywatch {
        self.cmd.envs(pairs.iter().copied());
        self
    }

    pub fn env_remove(mut self, k: &str) -> Deploywatch {
        self.cmd.env_remove(k);
        self
    }

    /// Runs without the webhook tokens the test runner's environment may carry.
    pub fn without_tokens(self) -> Deploywatch {
        self.env_remove("DEPLOYWATCH_WEBHOOK_TOKEN")
            .env_remove("DEPLOYWATCH_WEBHOOK_PREVIOUS_TOKEN")
    }

    /// Runs to completion and returns the raw output, for tests that tell stdout from stderr.
    pub fn output(mut self) -> Output {
        self.cmd
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", bin().display()))
    }

    /// Runs to completion: the exit code (-1 if killed by a signal), stdout and stderr.
    pub fn run_split(self) -> (i32, String, String) {
        let out = self.output();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs to completion: the exit code (-1 if killed by a signal) and stdout followed by stderr.
    pub fn run(self) -> (i32, String) {
        let out = self.output();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Starts the process with stdout and stderr in `dir/log_name`.
    pub fn spawn(mut self, log_name: &str) -> Spawned {
        let log = self.dir.join(log_name);
        let f =
            std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let out = f
            .try_clone()
            .unwrap_or_else(|e| panic!("clone {}: {e}", log.display()));
        let child = self
            .cmd
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(f))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin().display()));
        Spawned {
            child,
            url: self
                .port
                .map(|p| format!("http://127.0.0.1:{p}"))
                .unwrap_or_default(),
            port: self.port.unwrap_or(0),
            log,
        }
    }
}

/// A running deploywatch process, killed (SIGKILL) and reaped when dropped.
pub struct Spawned {
    pub child: Child,
    /// `http://127.0.0.1:PORT` when started with a listen port from the harness, else empty.
    pub url: String,
    /// The listen port chosen by `listen_on_free_port`, else 0.
    pub port: u16,
    pub log: PathBuf,
}

impl Spawned {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL and reap: no shutdown path runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until `GET path` answers 200 (30 s), showing the last answer and the log otherwise.
    pub async fn up(&self, path: &str) {
        let c = reqwest::Client::new();
        let url = format!("{}{path}", self.url);
        until(
            &format!("GET {url} to answer 200"),
            Duration::from_secs(30),
            || async {
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => Ok(()),
                    Ok(r) => Err(format!("{}; log:\n{}", r.status(), tail(&self.log_text()))),
                    Err(e) => Err(format!("{e}; log:\n{}", tail(&self.log_text()))),
                }
            },
        )
        .await;
    }

    /// Waits until the log contains `needle` (30 s), showing the log's tail otherwise.
    pub async fn log_contains(&self, needle: &str) {
        until(
            &format!("{} to contain {needle:?}", self.log.display()),
            Duration::from_secs(30),
            || async {
                let t = self.log_text();
                seen(t.contains(needle), tail(&t))
            },
        )
        .await;
    }

    /// Waits up to `limit` for the process to exit on its own.
    pub async fn exits_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = std::time::Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn tail(t: &str) -> String {
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill9();
    }
}
