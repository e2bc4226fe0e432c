//! The SQLite flusher: a group-commit batch committed at `synchronous=NORMAL` is answered only
//! once the WAL holding it is on disk (`store/wal_sync.rs` says why and what a failure means).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Answers, BatchCommitted, Committed, Job, Shared};
use crate::store::Store;

/// A batch committed but not yet flushed, with the callers it answers once it is.
pub(super) struct Unflushed {
    pub jobs: Vec<Job>,
    pub committed: Committed,
}

/// Where a writer hands its unflushed batches.
pub(super) type Flusher = mpsc::UnboundedSender<Unflushed>;

/// SQLite: flushes the WAL for every batch committed since the last flush, then answers them
/// (`wal_sync.rs`). Ends when the writers are gone.
pub(super) async fn run(
    store: Store,
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Unflushed>,
) {
    while let Some(first) = rx.recv().await {
        let mut due = vec![first];
        while let Ok(u) = rx.try_recv() {
            due.push(u);
        }
        let r = store.note_write(store.flush_wal().await.and_then(|()| store.check_file()));
        for u in due {
            let answers = match &r {
                Ok(()) => u.committed.answers,
                Err(e) => vec![Err(e.clone()); u.jobs.len()],
            };
            answer(&shared, u.jobs, answers, u.committed.one_by_one);
        }
    }
}

/// Tells the observer what a batch stored, then answers each caller.
pub(super) fn answer(
    shared: &Shared,
    jobs: Vec<Job>,
    answers: Answers,
    one_by_one: Option<&'static str>,
) {
    let stored = answers.iter().filter(|a| a.is_ok()).count();
    if stored > 0
        && let Some(f) = shared.observer.get()
    {
        f(BatchCommitted { stored, one_by_one });
    }
    for (job, answer) in jobs.into_iter().zip(answers) {
        // A caller that stopped waiting is not there to answer.
        let _ = job.reply.send(answer);
    }
}
