//! What the demo prints while it runs: a line per deployment event and per task change, so a
//! newcomer sees the loop happen instead of a silent terminal.

use std::collections::HashMap;

use crate::domain::{LifecycleEvent, LifecycleKind};
use crate::tasks::{Queue, State, Task};
use crate::terminal::clean;

fn short(commit: Option<&str>) -> &str {
    commit
        .map(|c| crate::domain::prefix(c, 7))
        .unwrap_or("unknown")
}

/// One line for a lifecycle event. Pure.
pub fn event_line(e: &LifecycleEvent) -> String {
    let d = &e.deployment;
    let what = match e.kind {
        LifecycleKind::Started => "started".to_string(),
        LifecycleKind::Succeeded => format!(
            "is ACTIVE after {:.0}s",
            e.duration_seconds.unwrap_or_default()
        ),
        LifecycleKind::Failed => match e.failure.as_ref().and_then(|f| f.failed_step.as_ref()) {
            Some(s) => format!(
                "FAILED at {}/{}: {}",
                s.top_step,
                s.step,
                s.reason_message.as_deref().unwrap_or("no reason given")
            ),
            None => "FAILED".to_string(),
        },
        LifecycleKind::Canceled => "was canceled".to_string(),
        LifecycleKind::Stuck => "is stuck".to_string(),
    };
    clean(&format!(
        "deploy   {:<8} {} ({}) {what}",
        e.app,
        d.id,
        short(d.commit.as_deref())
    ))
}

/// A line for a task that is new or whose state changed since `seen`. Pure.
pub fn task_line(t: &Task, seen: Option<State>) -> Option<String> {
    if seen == Some(t.state) {
        return None;
    }
    let who = t
        .worker
        .as_deref()
        .map(|w| format!(" by {w}"))
        .unwrap_or_default();
    let label = if t.queue == Queue::Announce {
        "announce"
    } else {
        "task    "
    };
    Some(clean(&format!(
        "{label} {:<9} [{}] {}{who}  id={}",
        t.state.as_str(),
        t.queue.as_str(),
        t.title,
        t.id
    )))
}

/// Remembers which task states were printed.
#[derive(Default)]
pub struct TaskLines {
    seen: HashMap<String, State>,
    primed: bool,
}

impl TaskLines {
    /// Lines for what changed. The first call only remembers (tasks from an earlier demo run in
    /// the same database are history, not news).
    pub fn update(&mut self, tasks: &[Task]) -> Vec<String> {
        let mut out = Vec::new();
        for t in tasks.iter().rev() {
            if self.primed
                && let Some(l) = task_line(t, self.seen.get(&t.id).copied())
            {
                out.push(l);
            }
            self.seen.insert(t.id.clone(), t.state);
        }
        self.primed = true;
        out
    }
}
