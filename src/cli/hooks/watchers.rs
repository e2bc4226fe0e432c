//! Background watchers: starting one per pushed commit (detached, under a lock), the watcher
//! process itself (runs `deploywatch watch --commit SHA --json`, keeps the status file), and
//! `hooks status | stop | cleanup`.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncBufReadExt;

use super::files::{StateDir, age, now, proc_state, read_pid, write_atomic};
use super::plan::{Proc, WatchState, WatchStatus, cleanup_removes, lock_is_stale, state_for_exit};
use crate::cli::exit::{EXIT_ERROR, EXIT_FAILING, EXIT_OK};
use crate::terminal::clean;

/// What the watcher passes on to `watch --commit`.
#[derive(Debug, Clone)]
pub struct WatchArgs {
    pub app: Option<String>,
    pub timeout: u64,
    pub verify: bool,
}

/// Takes the commit's lock (`create_new`), taking over a stale one once. `false`: a live
/// watcher (or the hook starting one) holds it.
fn take_lock(dir: &StateDir, sha: &str) -> std::io::Result<bool> {
    let path = dir.lock(sha);
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                writeln!(f, "{}", std::process::id())?;
                return Ok(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let pid = read_pid(&path);
                let holder = pid.map_or(Proc::Gone, |p| proc_state(p, sha));
                if !lock_is_stale(pid, holder, age(&path)) {
                    return Ok(false);
                }
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Starts a detached watcher for `sha` unless one runs; returns its PID.
pub fn start(dir: &StateDir, sha: &str, args: &WatchArgs) -> anyhow::Result<Option<u32>> {
    dir.create()
        .with_context(|| format!("cannot create {}", dir.0.display()))?;
    if !take_lock(dir, sha)? {
        return Ok(None);
    }
    let spawned = spawn_detached(dir, sha, args);
    match spawned {
        Ok(pid) => {
            // From here the lock names the watcher, which outlives this hook.
            write_atomic(&dir.lock(sha), format!("{pid}\n").as_bytes())?;
            Ok(Some(pid))
        }
        Err(e) => {
            let _ = std::fs::remove_file(dir.lock(sha));
            Err(e)
        }
    }
}

fn spawn_detached(dir: &StateDir, sha: &str, args: &WatchArgs) -> anyhow::Result<u32> {
    let exe = std::env::current_exe().context("cannot find the deploywatch binary's own path")?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.log(sha))
        .with_context(|| format!("cannot open {}", dir.log(sha).display()))?;
    let mut a: Vec<String> = vec![
        "hooks".into(),
        "run".into(),
        "watcher".into(),
        "--dir".into(),
        dir.0.display().to_string(),
        "--timeout".into(),
        args.timeout.to_string(),
    ];
    if let Some(app) = &args.app {
        a.extend(["--app".into(), app.clone()]);
    }
    if args.verify {
        a.push("--verify".into());
    }
    a.extend(["--commit".into(), sha.to_string()]);
    // A session of its own (setsid) so the watcher outlives the push and its terminal; without
    // the setsid tool, a process group of its own keeps at least Ctrl-C off it.
    let build = |setsid: bool| -> std::io::Result<std::process::Child> {
        let mut c = if setsid {
            let mut c = std::process::Command::new("setsid");
            c.arg(&exe);
            c
        } else {
            let mut c = std::process::Command::new(&exe);
            std::os::unix::process::CommandExt::process_group(&mut c, 0);
            c
        };
        c.args(&a)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?)
            .spawn()
    };
    let child = match build(true) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => build(false)?,
        Err(e) => return Err(e.into()),
    };
    Ok(child.id())
}

/// The watcher process: runs `watch --commit SHA --json`, keeps the status file current, and
/// leaves no PID file or lock behind however the watch ends (a SIGTERM from `hooks stop`
/// included).
pub async fn supervise(dir: StateDir, sha: String, args: WatchArgs) -> anyhow::Result<i32> {
    use tokio::signal::unix::{SignalKind, signal};
    let me = std::process::id();
    write_atomic(&dir.pid(&sha), format!("{me}\n").as_bytes())?;
    write_atomic(&dir.lock(&sha), format!("{me}\n").as_bytes())?;
    let mut status = WatchStatus {
        commit: sha.clone(),
        pid: me,
        started_at: now(),
        state: WatchState::Running,
        exit_code: None,
        last_line: None,
        ended_at: None,
    };
    dir.write_status(&status)?;
    let result = async {
        let exe = std::env::current_exe()?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(["watch", "--commit", &sha, "--json", "--timeout"])
            .arg(args.timeout.to_string());
        if let Some(a) = &args.app {
            cmd.args(["--app", a]);
        }
        if args.verify {
            cmd.arg("--verify");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.log(&sha))?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let lines = |r: Option<_>| r.map(|o| tokio::io::BufReader::new(o).lines());
        let mut out = lines(
            child
                .stdout
                .take()
                .map(Box::new)
                .map(|b| b as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        );
        let mut err = lines(
            child
                .stderr
                .take()
                .map(Box::new)
                .map(|b| b as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        );
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut stopped = false;
        let mut log = log;
        // Both streams go to the log; the last line of either is the status's last line (an
        // error on stderr is what a person needs to see when the watch could not run).
        while out.is_some() || err.is_some() {
            tokio::select! {
                line = next(&mut out) => record(&dir, &mut status, &mut log, &mut out, line),
                line = next(&mut err) => record(&dir, &mut status, &mut log, &mut err, line),
                _ = term.recv() => { stopped = true; let _ = child.start_kill(); break; }
                _ = int.recv() => { stopped = true; let _ = child.start_kill(); break; }
                // A hangup is the terminal going away, which a detached watcher outlives.
                _ = hup.recv() => {}
            }
        }
        let st = child.wait().await?;
        Ok::<_, std::io::Error>((st.code(), stopped))
    }
    .await;
    let (code, stopped) = match result {
        Ok(r) => r,
        Err(e) => {
            status.last_line = Some(format!(
                "the watcher could not run `deploywatch watch`: {e}"
            ));
            (None, false)
        }
    };
    status.state = state_for_exit(code, stopped);
    status.exit_code = code;
    status.ended_at = Some(now());
    let written = dir.write_status(&status);
    let _ = std::fs::remove_file(dir.pid(&sha));
    let _ = std::fs::remove_file(dir.lock(&sha));
    written?;
    Ok(match status.state {
        WatchState::Succeeded => EXIT_OK,
        _ => EXIT_FAILING,
    })
}

type Lines = tokio::io::Lines<tokio::io::BufReader<Box<dyn tokio::io::AsyncRead + Unpin + Send>>>;

async fn next(l: &mut Option<Lines>) -> std::io::Result<Option<String>> {
    match l.as_mut() {
        Some(l) => l.next_line().await,
        None => std::future::pending().await,
    }
}

fn record(
    dir: &StateDir,
    status: &mut WatchStatus,
    log: &mut std::fs::File,
    stream: &mut Option<Lines>,
    line: std::io::Result<Option<String>>,
) {
    match line {
        Ok(Some(l)) => {
            let _ = writeln!(log, "{l}");
            status.last_line = Some(l);
            let _ = dir.write_status(status);
        }
        _ => *stream = None,
    }
}

/// Whether the status's watcher process still runs (per its PID file, else its status).
fn alive(dir: &StateDir, s: &WatchStatus) -> bool {
    let pid = read_pid(&dir.pid(&s.commit)).unwrap_or(s.pid);
    proc_state(pid, &s.commit) == Proc::Ours
}

fn human_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

pub fn status(dir: &StateDir, json: bool) -> anyhow::Result<i32> {
    let rows = dir.statuses();
    let mut out = Vec::new();
    for (path, s) in &rows {
        match s {
            Ok(s) => {
                let alive = s.state == WatchState::Running && alive(dir, s);
                let age = (now() - s.started_at).to_std().unwrap_or_default();
                out.push((s.clone(), alive, age));
            }
            Err(e) => eprintln!(
                "deploywatch: {} is not a watcher status ({e}); `deploywatch hooks cleanup --all` leaves it, delete it by hand",
                path.display()
            ),
        }
    }
    if json {
        let v: Vec<serde_json::Value> = out
            .iter()
            .map(|(s, alive, age)| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["alive"] = (*alive).into();
                v["age_seconds"] = age.as_secs().into();
                v
            })
            .collect();
        println!("{}", serde_json::json!({"watchers": v}));
        return Ok(EXIT_OK);
    }
    if out.is_empty() {
        println!("no background watchers in {}", dir.0.display());
        return Ok(EXIT_OK);
    }
    println!(
        "{:<12} {:<10} {:>8} {:<6} {:>5}  LAST",
        "COMMIT", "STATE", "PID", "ALIVE", "AGE"
    );
    for (s, alive, age) in &out {
        let state = if s.state == WatchState::Running && !alive {
            "gone".to_string()
        } else {
            s.state.as_str().to_string()
        };
        let last = s.last_line.as_deref().unwrap_or("");
        let last: String = last.chars().take(100).collect();
        println!(
            "{:<12} {:<10} {:>8} {:<6} {:>5}  {}",
            clean(s.commit.get(..12).unwrap_or(&s.commit)),
            state,
            s.pid,
            if *alive { "yes" } else { "no" },
            human_age(*age),
            clean(&last)
        );
    }
    Ok(EXIT_OK)
}

/// Stops running watchers (all, or those of commits starting with `only`) by their PID files,
/// signalling only processes that are still deploywatch watchers of that commit.
pub async fn stop(dir: &StateDir, only: Option<&str>) -> anyhow::Result<i32> {
    let mut signalled = Vec::new();
    for (_, s) in dir.statuses() {
        let Ok(s) = s else { continue };
        if s.state != WatchState::Running || only.is_some_and(|o| !s.commit.starts_with(o)) {
            continue;
        }
        let Some(pid) = read_pid(&dir.pid(&s.commit)) else {
            continue;
        };
        if proc_state(pid, &s.commit) != Proc::Ours {
            println!(
                "{}: PID {pid} is no longer its watcher; nothing to stop (`deploywatch hooks cleanup` tidies up)",
                s.commit.get(..12).unwrap_or(&s.commit)
            );
            continue;
        }
        let st = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .context("cannot run `kill`")?;
        if st.success() {
            signalled.push((s.commit.clone(), pid));
        }
    }
    // The watcher writes its final status on SIGTERM; wait for that, briefly.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut code = EXIT_OK;
    for (sha, pid) in &signalled {
        while proc_state(*pid, sha) == Proc::Ours && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if proc_state(*pid, sha) == Proc::Ours {
            eprintln!("deploywatch: watcher {pid} of {sha} has not stopped yet");
            code = EXIT_FAILING;
        } else {
            println!("stopped watcher {pid} of {}", sha.get(..12).unwrap_or(sha));
        }
    }
    if signalled.is_empty() {
        println!("no running watchers to stop");
    }
    Ok(code)
}

/// Removes the files of finished watchers (older than `older_than`, or all with `all`), stale
/// locks and PID files, and expired push records.
pub fn cleanup(dir: &StateDir, older_than: Duration, all: bool) -> anyhow::Result<i32> {
    let mut removed = 0usize;
    for (_, s) in dir.statuses() {
        let Ok(s) = s else { continue };
        let alive = alive(dir, &s);
        if cleanup_removes(&s, alive, now(), all, older_than) {
            for p in [
                dir.status(&s.commit),
                dir.log(&s.commit),
                dir.pid(&s.commit),
                dir.lock(&s.commit),
            ] {
                let _ = std::fs::remove_file(p);
            }
            removed += 1;
        }
    }
    let mut stale = 0usize;
    if let Ok(rd) = std::fs::read_dir(&dir.0) {
        for e in rd.flatten() {
            let p = e.path();
            let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
            let Some(sha) = p.file_stem().and_then(|x| x.to_str()).map(str::to_string) else {
                continue;
            };
            if ext != "lock" && ext != "pid" {
                continue;
            }
            let pid = read_pid(&p);
            let holder = pid.map_or(Proc::Gone, |pid| proc_state(pid, &sha));
            if lock_is_stale(pid, holder, age(&p)) && std::fs::remove_file(&p).is_ok() {
                stale += 1;
            }
        }
    }
    for (p, pushed) in dir.pending() {
        if all || super::plan::expired(&pushed, now()) {
            let _ = std::fs::remove_file(p);
        }
    }
    println!("removed {removed} finished watcher(s) and {stale} stale lock or PID file(s)");
    Ok(EXIT_OK)
}

pub fn usage(msg: &str) -> i32 {
    eprintln!("deploywatch: {msg}");
    EXIT_ERROR
}
