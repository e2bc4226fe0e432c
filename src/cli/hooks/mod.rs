//! `deploywatch hooks install | uninstall | status | stop | cleanup`: git hooks for agents and
//! people. `pre-push` warns (behind its remote, last deployment failed) and never blocks;
//! `reference-transaction` starts a background `watch --commit` when a push moved a
//! remote-tracking ref. Existing hooks are moved aside and chained, and put back by uninstall.
//! Decisions are in `plan.rs`, the scripts in `script.rs`.

pub mod files;
pub mod plan;
pub mod push;
pub mod script;
pub mod warnings;
pub mod watchers;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;

use crate::cli::exit::{EXIT_ERROR, EXIT_OK};
use files::StateDir;
use plan::{HOOKS, InstallStep, ORIG_SUFFIX, UninstallStep, WatchState};
use script::HookOptions;
use watchers::{WatchArgs, usage};

#[derive(Subcommand, Debug)]
pub enum HookAction {
    /// Install the pre-push and reference-transaction hooks in a repository (existing hooks are
    /// kept and run first).
    Install {
        /// The repository (default: the current directory's).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Branches whose pushes are watched and checked (repeatable; default main).
        #[arg(long = "branch", default_values_t = [String::from("main")])]
        branches: Vec<String>,
        /// Only this app (default: every app the token or server sees).
        #[arg(long)]
        app: Option<String>,
        /// Seconds a background watcher waits for the deployment.
        #[arg(long, default_value_t = 1800)]
        watch_timeout: u64,
        /// Background watchers also wait for the post-deploy verdict.
        #[arg(long)]
        verify: bool,
    },
    /// Remove deploywatch's hooks and put back exactly what was there before.
    Uninstall {
        /// The repository (default: the current directory's).
        #[arg(long)]
        repo: Option<PathBuf>,
    },
    /// List background watchers: commit, state, PID, alive, age, last line.
    Status {
        /// The repository (default: the current directory's).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop running background watchers (by their PID files).
    Stop {
        /// The repository (default: the current directory's).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Only the watcher of this commit (a SHA prefix).
        #[arg(long)]
        commit: Option<String>,
    },
    /// Remove status files of finished watchers, stale locks and PID files.
    Cleanup {
        /// The repository (default: the current directory's).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Remove finished watchers older than this many days.
        #[arg(long, default_value_t = 7)]
        older_than_days: u64,
        /// Remove every finished watcher, whatever its age.
        #[arg(long)]
        all: bool,
    },
    /// What the installed hooks call; not for use by hand.
    #[command(hide = true)]
    Run {
        #[command(subcommand)]
        hook: HookRun,
    },
}

#[derive(Subcommand, Debug)]
pub enum HookRun {
    /// pre-push: record the push, warn, exit 0.
    PrePush {
        /// Watched branches.
        #[arg(long = "branch")]
        branches: Vec<String>,
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
        /// The remote's name (git's first argument).
        remote: String,
        /// The remote's URL (git's second argument).
        url: Option<String>,
    },
    /// reference-transaction: start a watcher for each pushed commit.
    ReferenceTransaction {
        /// Watched branches (recorded by pre-push; accepted for symmetry).
        #[arg(long = "branch")]
        branches: Vec<String>,
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
        /// Seconds the watcher waits.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
        /// Wait for the post-deploy verdict too.
        #[arg(long)]
        verify: bool,
        /// The transaction state (prepared, committed, aborted).
        state: String,
    },
    /// The background watcher of one commit.
    Watcher {
        /// The state directory (.git/deploywatch).
        #[arg(long)]
        dir: PathBuf,
        /// The commit.
        #[arg(long)]
        commit: String,
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
        /// Seconds to wait.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
        /// Wait for the post-deploy verdict too.
        #[arg(long)]
        verify: bool,
    },
}

pub async fn run(action: HookAction) -> anyhow::Result<i32> {
    match action {
        HookAction::Install {
            repo,
            branches,
            app,
            watch_timeout,
            verify,
        } => install(repo.as_deref(), branches, app, watch_timeout, verify).await,
        HookAction::Uninstall { repo } => uninstall(repo.as_deref()).await,
        HookAction::Status { repo, json } => match push::state_dir(repo.as_deref()).await {
            Ok(d) => watchers::status(&d, json),
            Err(e) => Ok(usage(&format!("{e:#}"))),
        },
        HookAction::Stop { repo, commit } => match push::state_dir(repo.as_deref()).await {
            Ok(d) => watchers::stop(&d, commit.map(|c| c.to_ascii_lowercase()).as_deref()).await,
            Err(e) => Ok(usage(&format!("{e:#}"))),
        },
        HookAction::Cleanup {
            repo,
            older_than_days,
            all,
        } => match push::state_dir(repo.as_deref()).await {
            Ok(d) => watchers::cleanup(
                &d,
                Duration::from_secs(older_than_days.saturating_mul(86400)),
                all,
            ),
            Err(e) => Ok(usage(&format!("{e:#}"))),
        },
        HookAction::Run { hook } => Ok(match hook {
            HookRun::PrePush {
                branches,
                app,
                remote,
                url: _,
            } => push::pre_push(remote, branches, app).await,
            HookRun::ReferenceTransaction {
                branches: _,
                app,
                timeout,
                verify,
                state,
            } => {
                push::reference_transaction(
                    state,
                    WatchArgs {
                        app,
                        timeout,
                        verify,
                    },
                )
                .await
            }
            HookRun::Watcher {
                dir,
                commit,
                app,
                timeout,
                verify,
            } => {
                let commit = commit.to_ascii_lowercase();
                if !files::is_sha(&commit) {
                    return Ok(usage("hooks run watcher --commit wants a commit SHA"));
                }
                watchers::supervise(
                    StateDir(dir),
                    commit,
                    WatchArgs {
                        app,
                        timeout,
                        verify,
                    },
                )
                .await?
            }
        }),
    }
}

async fn hooks_dir(repo: Option<&Path>) -> anyhow::Result<PathBuf> {
    push::git(
        repo,
        &["rev-parse", "--path-format=absolute", "--git-path", "hooks"],
    )
    .await
    .map(PathBuf::from)
    .ok_or_else(|| {
        anyhow::anyhow!(
            "{} is not inside a git repository (or git is older than 2.31); run this in one, or pass --repo PATH",
            repo.map_or_else(|| "the current directory".to_string(), |r| r.display().to_string())
        )
    })
}

fn orig_path(hook: &Path) -> PathBuf {
    let mut s = hook.as_os_str().to_owned();
    s.push(ORIG_SUFFIX);
    PathBuf::from(s)
}

fn read_hook(p: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

async fn install(
    repo: Option<&Path>,
    branches: Vec<String>,
    app: Option<String>,
    watch_timeout: u64,
    verify: bool,
) -> anyhow::Result<i32> {
    let dir = match hooks_dir(repo).await {
        Ok(d) => d,
        Err(e) => return Ok(usage(&format!("{e:#}"))),
    };
    let state = push::state_dir(repo).await?;
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "deploywatch".into());
    let opts = HookOptions {
        exe,
        branches,
        app,
        watch_timeout,
        verify,
    };
    // Plan every hook before touching any, so a refusal leaves the repository as it was.
    let mut steps = Vec::new();
    for hook in HOOKS {
        let path = dir.join(hook);
        let existing = plan::classify_hook(read_hook(&path)?.as_deref());
        let step = plan::plan_install(hook, existing, orig_path(&path).exists());
        if let InstallStep::Refuse(why) = &step {
            eprintln!("deploywatch: {why}");
            return Ok(EXIT_ERROR);
        }
        steps.push((hook, path, step));
    }
    std::fs::create_dir_all(&dir)?;
    for (hook, path, step) in steps {
        if step == InstallStep::MoveAsideThenWrite {
            std::fs::rename(&path, orig_path(&path))?;
            println!("{hook}: your hook is now {hook}{ORIG_SUFFIX} and still runs first");
        }
        let body = script::render(hook, &opts).unwrap_or_default();
        files::write_atomic(&path, body.as_bytes())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        println!("installed {}", path.display());
    }
    state.create()?;
    println!(
        "background watchers write to {}; `deploywatch hooks status` lists them. Credentials come \
         from the environment of each push (DIGITALOCEAN_TOKEN, or DEPLOYWATCH_SERVER and \
         DEPLOYWATCH_WEBHOOK_TOKEN).",
        state.0.display()
    );
    Ok(EXIT_OK)
}

async fn uninstall(repo: Option<&Path>) -> anyhow::Result<i32> {
    let dir = match hooks_dir(repo).await {
        Ok(d) => d,
        Err(e) => return Ok(usage(&format!("{e:#}"))),
    };
    for hook in HOOKS {
        let path = dir.join(hook);
        let orig = orig_path(&path);
        let existing = plan::classify_hook(read_hook(&path)?.as_deref());
        match plan::plan_uninstall(existing, orig.exists()) {
            UninstallStep::RemoveAndRestore => {
                std::fs::remove_file(&path)?;
                std::fs::rename(&orig, &path)?;
                println!("{hook}: removed deploywatch's hook, your original is back");
            }
            UninstallStep::Remove => {
                std::fs::remove_file(&path)?;
                println!("{hook}: removed");
            }
            UninstallStep::Restore => {
                std::fs::rename(&orig, &path)?;
                println!("{hook}: your original is back");
            }
            UninstallStep::LeaveForeign => println!(
                "{hook}: not deploywatch's (it was replaced since install); left as it is{}",
                if orig.exists() {
                    format!(", and {} too", orig.display())
                } else {
                    String::new()
                }
            ),
            UninstallStep::Nothing => {}
        }
    }
    let state = push::state_dir(repo).await?;
    let running = state.statuses().into_iter().any(|(_, s)| {
        s.is_ok_and(|s| {
            s.state == WatchState::Running
                && files::proc_state(s.pid, &s.commit) == plan::Proc::Ours
        })
    });
    if running {
        println!(
            "watchers still run; {} stays (`deploywatch hooks stop`, then remove it)",
            state.0.display()
        );
    } else if state.0.exists() {
        std::fs::remove_dir_all(&state.0)?;
        println!("removed {}", state.0.display());
    }
    Ok(EXIT_OK)
}
