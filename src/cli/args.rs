//! Every command, flag and help text of the command line (the public interface in the README).
//! Shell completions and the man page are generated from these definitions.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "deploywatch",
    version,
    about = "Watches DigitalOcean App Platform deployments and turns trouble into work",
    long_about = "Watches DigitalOcean App Platform deployments, the apps' health endpoints and git refs; \
                  exports Prometheus metrics and OpenTelemetry traces; turns Alertmanager alerts into fix, \
                  rollback and announcement tasks that agents claim.\n\n\
                  Exit codes: 0 ok; 1 what was checked is failing; 2 usage, configuration or runtime error; \
                  124 `watch` timed out."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Exporter + webhook receiver + task API.
    Serve {
        /// TOML configuration file (every key optional; see the README).
        #[arg(long, env = "DEPLOYWATCH_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on, e.g. 127.0.0.1:9797 (default) or 0.0.0.0:9797.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Serve plus a built-in DigitalOcean simulator with sample apps, alerts and tasks.
    Demo {
        /// Address to listen on (default 127.0.0.1:9797; 127.0.0.1:0 picks a free port).
        #[arg(long)]
        listen: Option<String>,
        /// Seconds per simulated deployment step.
        #[arg(long, default_value_t = 3)]
        step_seconds: u64,
    },
    /// Latest deployments, probes, drift and open tasks, for agents after a push.
    Status {
        /// URL of a running deploywatch server (default http://127.0.0.1:9797).
        #[arg(long, env = "DEPLOYWATCH_SERVER")]
        server: Option<String>,
        /// Only this app; an app nobody knows is exit 2.
        #[arg(long)]
        app: Option<String>,
        /// Print the status document as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Follow one deployment to its end, showing its steps. With DIGITALOCEAN_TOKEN set it asks
    /// the API directly; otherwise (or with --server) it follows through a deploywatch server.
    Watch {
        /// The app to follow (its name or id).
        #[arg(long)]
        app: Option<String>,
        /// The deployment to follow (default: the one in progress, else the latest).
        #[arg(long, conflicts_with = "commit")]
        deployment: Option<String>,
        /// Wait for the deployment of this commit (a SHA, 7 to 40 hex digits), even before it
        /// exists; without --app, across apps. A later deployment that contains the commit counts
        /// when run inside a git repository that knows both.
        #[arg(long)]
        commit: Option<String>,
        /// With --commit: also wait for the post-deploy verdict a deploywatch server reports
        /// (exit 1 when it failed).
        #[arg(long, requires = "commit")]
        verify: bool,
        /// Give up after this many seconds (exit 124).
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
        /// Print JSON lines instead of text.
        #[arg(long)]
        json: bool,
        /// Follow through this deploywatch server instead of the DigitalOcean API.
        #[arg(long, env = "DEPLOYWATCH_SERVER")]
        server: Option<String>,
    },
    /// Work with the task queues.
    Tasks {
        #[command(subcommand)]
        action: TaskAction,
        /// URL of a running deploywatch server (default http://127.0.0.1:9797).
        #[arg(long, env = "DEPLOYWATCH_SERVER", global = true)]
        server: Option<String>,
    },
    /// Run every startup check once and report (exit 1 when one fails).
    Check {
        /// TOML configuration file to validate and check.
        #[arg(long, env = "DEPLOYWATCH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Apply deploywatch's own schema migrations.
    Migrate {
        /// TOML configuration file naming the database.
        #[arg(long, env = "DEPLOYWATCH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print a shell completion script (e.g. `deploywatch completions bash > /etc/bash_completion.d/deploywatch`).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Git hooks: a pre-push warning that never blocks, and a background `watch --commit` after
    /// each push, with its status under .git/deploywatch/.
    Hooks {
        #[command(subcommand)]
        action: crate::cli::hooks::HookAction,
    },
    /// Print the man page in roff (e.g. `deploywatch man | man -l -`).
    Man,
}

#[derive(Subcommand, Debug)]
pub enum TaskAction {
    /// List tasks as a table (newest first); --json for the API's JSON.
    List {
        /// Only this queue: execution, announce, e2e-test, deploy.
        #[arg(long)]
        queue: Option<String>,
        /// Only this state: queued, claimed, done, failed, cancelled.
        #[arg(long)]
        state: Option<String>,
        /// Only tasks of this app.
        #[arg(long)]
        app: Option<String>,
        /// At most this many tasks (default 100).
        #[arg(long)]
        limit: Option<i64>,
        /// Print the JSON the server answered instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Claim the most urgent queued task of a queue (exit 1 when none is queued).
    Claim {
        /// The queue: execution, announce, e2e-test, deploy.
        #[arg(long)]
        queue: String,
        /// Who claims it (the lease is this worker's).
        #[arg(long)]
        worker: String,
        /// Lease length in seconds (default from [tasks] default_lease).
        #[arg(long)]
        lease_seconds: Option<u64>,
    },
    /// Extend the lease of a claimed task (exit 1 when the lease is no longer this worker's).
    Heartbeat {
        /// The task id.
        id: String,
        /// The worker holding the lease.
        #[arg(long)]
        worker: String,
        /// New lease length in seconds.
        #[arg(long)]
        lease_seconds: Option<u64>,
    },
    /// Mark a claimed task done.
    Complete {
        /// The task id.
        id: String,
        /// The worker holding the lease.
        #[arg(long)]
        worker: String,
        /// JSON result to store with the task.
        #[arg(long)]
        result: Option<String>,
    },
    /// Create a task (e.g. a deploy task for a pull request); prints it as JSON.
    Add {
        /// The queue: execution, announce, e2e-test, deploy.
        #[arg(long)]
        queue: String,
        /// The title, e.g. "DEPLOY: PR #42 - search filters".
        #[arg(long)]
        title: String,
        /// The kind (default: the queue's own; execution defaults to fix).
        #[arg(long)]
        kind: Option<String>,
        /// The app it concerns (deploy tasks need one).
        #[arg(long)]
        app: Option<String>,
        /// 1 (most urgent) to 5; default 3.
        #[arg(long)]
        priority: Option<i64>,
        /// A JSON object, e.g. '{"pr_number": 42, "pr_url": "...", "target": "production"}'.
        #[arg(long)]
        context: Option<String>,
        /// Idempotency key: a repeat with the same key returns the open task instead of a new one.
        #[arg(long)]
        dedup_key: Option<String>,
    },
    /// Report a claimed deploy task's pull request merged: deploywatch follows the commit from now.
    Merged {
        /// The deploy task id.
        id: String,
        /// The merged commit's SHA.
        #[arg(long)]
        commit: String,
        /// The worker holding the lease (default: $DEPLOYWATCH_WORKER, else the task's holder).
        #[arg(long)]
        worker: Option<String>,
    },
    /// Give a claimed task up: back to its queue (until its attempts run out) or failed.
    Fail {
        /// The task id.
        id: String,
        /// The worker holding the lease.
        #[arg(long)]
        worker: String,
        /// Why, in a sentence for the next person or agent; or not_approved, merge_conflict,
        /// merge_failed, which queue a follow-up linked to the task.
        #[arg(long)]
        reason: String,
        /// Do not return the task to its queue.
        #[arg(long)]
        no_retry: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every subcommand and every flag says what it is for.
    #[test]
    fn every_subcommand_and_flag_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                let p = format!("{path} {}", sub.get_name());
                if sub.get_name() != "help" && sub.get_about().is_none() {
                    missing.push(p.clone());
                }
                walk(sub, &p, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "deploywatch", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
        Cli::command().debug_assert();
    }
}
